"""Errors that can be known before the embedding model loads are given before it
loads: a fresh process that fails them never imports the model's runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Ragdb

RUNTIMES = ("onnxruntime", "torch", "sentence_transformers")


def run_cold(store: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``ragdb`` in a fresh process, and the top-level modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ragdb", "--store", str(store), *args],
        capture_output=True,
        text=True,
    )
    imported = set()
    lines = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            imported.add(line.split("|")[-1].strip().split(".")[0])
        else:
            lines.append(line)
    proc.stderr = "\n".join(lines)
    return proc, imported


def test_empty_store_is_reported_before_the_model_loads(
    local_ragdb: Ragdb, facts_dir: Path, store: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    local_ragdb("remove", str(facts_dir))
    for mode in ("dense", "hybrid", "bm25"):
        proc, imported = run_cold(store, "query", "octopus", "--mode", mode)
        assert proc.returncode == 1, (mode, proc.stderr)
        assert "is empty" in proc.stderr and proc.stderr.count("\n") == 0
        assert not imported & set(RUNTIMES), (mode, imported & set(RUNTIMES))


def test_dense_mode_on_an_empty_store_fails_like_the_others(
    local_ragdb: Ragdb, facts_dir: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    local_ragdb("query", "octopus", "--retrieve-only")  # the model is warm in this process
    local_ragdb("remove", str(facts_dir))
    for mode in ("dense", "hybrid", "bm25"):
        err = local_ragdb("query", "octopus", "--retrieve-only", "--mode", mode, code=1).stderr
        assert "is empty" in err


def test_bad_llm_url_is_reported_before_the_model_loads(
    local_ragdb: Ragdb, facts_dir: Path, store: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    proc, imported = run_cold(store, "query", "octopus", "--llm-url", "localhost:11434")
    assert proc.returncode == 2 and "is not an http(s)://" in proc.stderr
    assert not imported & set(RUNTIMES)


def test_foreign_directory_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    proc, imported = run_cold(foreign, "query", "octopus")
    assert proc.returncode == 1 and "no knowledge base" in proc.stderr
    assert not imported & set(RUNTIMES)


def test_empty_store_path_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ragdb", "--store", "", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "store path is empty" in proc.stderr
    assert list(tmp_path.iterdir()) == []
