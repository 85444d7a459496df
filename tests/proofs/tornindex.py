"""Tear each file of a persisted HNSW index, then see that every command says
so in one line, ``doctor`` finds it, ``doctor --repair`` mends it with nothing
left behind, and queries answer as before.

Run: ``scripts/torn-index`` (every file, truncated to nothing and to half);
the suite runs two cases through the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle")
QUERY = ["query", "octopus hearts", "--retrieve-only", "-k", "4", "--json"]
SEGMENT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def make_store(store: Path, notes: int = 1100) -> None:
    """A store past Chroma's 1,000-write persistence threshold: its HNSW
    files are on disk."""
    from ragdb import KnowledgeBase
    from ragdb.store.records import ChunkRecord, NewVersion
    from ragdb.store.versions import write_versions

    kb = KnowledgeBase(store=store)
    kb.ingest_text("octopus", "The company's favorite animal is the octopus, for its intelligence.")
    kb = KnowledgeBase(store=store)
    texts = [f"Note {i}: a ledger line about item {i * 7} in aisle {i % 40}." for i in range(notes)]
    vectors = kb.embedder.encode(texts)
    records = [
        ChunkRecord(f"note-{i}", 0, 1, "0" * 32, text=t, end=len(t), source_type="text")
        for i, t in enumerate(texts)
    ]
    with kb.store().session() as session:
        write_versions(
            session, [NewVersion(r.source, [r], vectors[i : i + 1]) for i, r in enumerate(records)]
        )


def run(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A fresh ragdb process (a live client keeps the index it loaded in memory)."""
    cmd = [sys.executable, "-m", "ragdb", "--store", str(store), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def tear(store: Path, name: str, cut: float) -> Path:
    """Truncate the index file ``name`` to ``cut`` of its size (below 1), or to
    ``cut`` bytes."""
    (path,) = [p for p in store.glob(f"*/{name}") if SEGMENT.fullmatch(p.parent.name)]
    os.truncate(path, int(cut if cut >= 1 else path.stat().st_size * cut))
    return path


def segment_dirs(store: Path) -> tuple[set[str], set[str]]:
    """The vector-index folders on disk, and those Chroma's database uses."""
    on_disk = {p.name for p in store.iterdir() if p.is_dir() and SEGMENT.fullmatch(p.name)}
    db = sqlite3.connect(f"file:{store / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        live = {row[0] for row in db.execute("SELECT id FROM segments")}
    finally:
        db.close()
    return on_disk, live


def case(base: Path, work: Path, name: str, fraction: float) -> dict[str, Any]:
    """Tear ``name`` in a copy of ``base``; what each step did."""
    store = work / f"{name}-{fraction:g}"
    shutil.copytree(base, store)
    before = json.loads(run(base, *QUERY).stdout)["chunks"]
    tear(store, name, fraction)
    torn = run(store, *QUERY)
    found = json.loads(run(store, "doctor", "--json").stdout)
    repair = run(store, "doctor", "--repair", "--yes", "--json")
    repaired = json.loads(repair.stdout)
    after = run(store, *QUERY)
    hits = json.loads(after.stdout)["chunks"] if after.returncode == 0 else []
    on_disk, live = segment_dirs(store)
    collections = _collections(store)
    return {
        "file": name,
        "size": fraction,
        "query_torn_rc": torn.returncode,
        "query_torn_err": torn.stderr.strip().splitlines()[-1:] if torn.stderr.strip() else [],
        "found": [p["problem"] for p in found["problems"]],
        "repair_rc": repair.returncode,
        "repair_progress": "rebuilding" in repair.stderr,
        "repaired": repaired["repaired"],
        "healthy": repaired["healthy"],
        "chunks": repaired["chunks"],
        "query_rc": after.returncode,
        "same_top_hit": bool(hits) and hits[0]["id"] == before[0]["id"],
        "stray_dirs": sorted(on_disk - live),
        "collections": collections,
        "doctor_after_rc": run(store, "doctor").returncode,
    }


def _collections(store: Path) -> list[str]:
    db = sqlite3.connect(f"file:{store / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        return sorted(row[0] for row in db.execute("SELECT name FROM collections"))
    finally:
        db.close()


def _cut(cut: float) -> str:
    return f"{int(cut)} B" if cut >= 1 else f"{cut:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the stores made")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragdb-torn-"))
    base = work / "base"
    print(f"making a store of 1,101 chunks in {base}", file=sys.stderr)
    make_store(base)
    failures = 0
    print(f"{'file':<22} {'cut to':>6}  {'query':>5}  {'found':<16} {'repaired':>8}  after")
    cases = [(name, cut) for name in FILES for cut in (0.0, 0.5)]
    cases.insert(3, ("data_level0.bin", 1000))  # the report's `truncate -s 1000`
    for name, fraction in cases:
        r = case(base, work, name, fraction)
        ok = (
            r["healthy"]
            and r["query_rc"] == 0
            and r["same_top_hit"]
            and not r["stray_dirs"]
            and r["doctor_after_rc"] == 0
            and r["chunks"] == 1101
            and (not r["found"] or r["repair_progress"])
        )
        failures += not ok
        print(
            f"{name:<22} {_cut(fraction):>6}  {'fails' if r['query_torn_rc'] else 'works':>5}  "
            f"{','.join(r['found']) or '-':<16} {'yes' if r['repaired'] else 'no':>8}  "
            f"{'ok' if ok else 'FAILED ' + json.dumps(r)}"
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(cases) - failures} of {len(cases)} cases ok")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
