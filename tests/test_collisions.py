"""Sources of different kinds never replace each other without a word."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Ragdb


def names(ragdb: Ragdb) -> dict[str, str]:
    return {s["source"]: s["source_type"] for s in ragdb.json("sources")}


def test_unnamed_stdin_inputs_are_separate_sources(ragdb: Ragdb) -> None:
    first = ragdb("ingest", "-", input="Gibbons sing duets at dawn.")
    ragdb("ingest", "-", input="Hoopoes raise their crests when alarmed.")
    stored = names(ragdb)
    assert len(stored) == 2 and all(n.startswith("stdin-") for n in stored)
    assert set(stored.values()) == {"text"}
    assert "storing standard input as 'stdin-" in first.stderr


def test_a_name_that_is_a_stored_file_is_refused(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    path = str(facts_dir / "fact0.txt")
    err = ragdb("ingest", "-", "--name", path, input="Something else.", code=1).stderr
    assert f"{path!r} is stored as a file, and this is text given directly" in err
    assert "--replace" in err
    chunk = next(c for c in ragdb.chunks() if c["source"] == path)
    assert "Innovation Summit" in chunk["text"]  # untouched
    ragdb("ingest", "-", "--name", path, "--replace", input="Something else.")
    chunk = next(c for c in ragdb.chunks() if c["source"] == path)
    assert chunk["text"] == "Something else." and chunk["source_type"] == "text"


def test_same_record_id_in_two_records_files(ragdb: Ragdb, tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"id": "r1", "text": "Ravens solve puzzles."}) + "\n")
    b.write_text(json.dumps({"id": "r1", "text": "Rays glide over the sand."}) + "\n")
    ragdb("ingest", "--records", str(a))
    err = ragdb("ingest", "--records", str(b), code=1).stderr
    assert f"'r1' is stored as a record of {a.resolve()}" in err
    assert f"this is a record of {b.resolve()}" in err and "--id-prefix" in err
    ragdb("ingest", "--records", str(b), "--id-prefix", "b:")
    assert names(ragdb) == {"r1": "record", "b:r1": "record"}
    # The same file again is an update, not a collision.
    a.write_text(json.dumps({"id": "r1", "text": "Ravens solve puzzles and hold grudges."}) + "\n")
    assert ragdb.json("ingest", "--records", str(a))["updated"] == 1


def test_small_findings(local_ragdb: Ragdb, facts_dir: Path, tmp_path: Path) -> None:
    # A newline in a file name keeps `sources` one line per source.
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "two\nlines.txt").write_text("Dugongs graze on seagrass meadows.")
    local_ragdb("ingest", str(odd))
    header, *lines = local_ragdb("sources").stdout.strip().splitlines()
    assert header.split() == ["chunks", "ingested", "(UTC)", "source"]
    assert len(lines) == 1 and lines[0].endswith("two\\nlines.txt")
    # An unknown device stops only what loads a model.
    env = {"RAGDB_DEVICE": "tpu"}
    assert local_ragdb.json("status", env=env)["chunks"] == 1
    err = local_ragdb("query", "dugong", "--retrieve-only", code=2, env=env).stderr
    assert "unknown device 'tpu'" in err
    # A subcommand's usage error shows that subcommand's usage.
    err = local_ragdb("ingest", code=2).stderr
    assert "ingest [OPTIONS] [PATHS]..." in err and "nothing to ingest" in err
