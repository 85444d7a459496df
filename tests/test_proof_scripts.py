"""The stress and crash scripts, in small sizes: they must pass, not just run.
Their server-mode runs (`scripts/stress --server`, `scripts/crashtest --server`)
share these harnesses and are left to the scripts: tests/test_server_mode.py
proves a killed writer and two writers on one source against a real server in
the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .proofs.data import ROOT


def run_script(name: str, *args: str, timeout: float = 600) -> dict:
    """A script of scripts/ (NAME.py) or a proof harness (tests.proofs.NAME),
    run as scripts/run-python runs it: from the root, which is importable."""
    target = [str(ROOT / "scripts" / name)] if name.endswith(".py") else ["-m", name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, *target, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return json.loads(proc.stdout)


def test_stress_embedded() -> None:
    out = run_script("tests.proofs.stress", "--writers", "2", "--readers", "2", "--seconds", "3")
    assert out["errors"] == out["lost_chunks"] == out["duplicated_chunks"] == 0
    assert out["write_ops"] > 0 and out["queries"] > 0


def test_crashtest(tmp_path: Path) -> None:
    out = run_script("tests.proofs.crashtest", "--kills", "1", "--docs", "40")
    assert out["killed"] == 1
    assert out["unusable_stores"] == out["unhealthy_after_kill"] == 0
    assert out["lost_chunks"] == out["duplicated_chunks"] == 0


def test_bench_quick() -> None:
    out = run_script("bench.py", "--quick")
    ingest = out["ingest"]
    assert ingest["chunks"] > 0 and ingest["ragdb_chunks_per_s"] > 0
    assert 0 < ingest["ingest_ratio"] < 5
    assert set(ingest["backends"]) == {"torch", "onnx-int8"}  # --quick leaves out onnx
    assert ingest["default_backend"] == "onnx-int8"
    # Measured, not judged: with 12 documents a fresh process's start-up is most of
    # a re-ingest, and the ratio is the full run's figure (README, "Speed").
    assert ingest["reingest_fraction"] > 0
    for key in ("query_corpus", "query_large"):
        assert set(out[key]) == {"torch", "onnx-int8"}
        for row in out[key].values():
            assert row["dense_p50_ms"] > 0 and row["hybrid_p95_ms"] > 0
    assert out["query_large"]["onnx-int8"]["chunks"] >= 1000
    # --quick times no torch cold query, so no floor to judge one against.
    assert out["cli"]["help_s"] > 0 and "floor_s" not in out["cli"]
    assert out["cli"]["cold_query_onnx-int8_dense_s"] > 0
    assert out["memory"]["chunks"] == 500 and out["memory"]["peak_rss_mb"] > 0
