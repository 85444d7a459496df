"""A process killed in the middle of a write leaves a store that opens, answers,
and holds each source whole (old or new version, never a mix)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import Ragdb

KILL_IN = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
from ragdb import KnowledgeBase

where = sys.argv[3]
original_add = Collection.add

def add_half_then_die(self, ids, **kw):
    half = max(1, len(ids) // 2)
    original_add(self, ids=ids[:half], **{k: v[:half] for k, v in kw.items()})
    os.kill(os.getpid(), signal.SIGKILL)

def die(self, *a, **kw):
    os.kill(os.getpid(), signal.SIGKILL)

if where == "add":
    Collection.add = add_half_then_die
elif where == "delete":
    Collection.delete = die
KnowledgeBase(store=sys.argv[1]).ingest([sys.argv[2]], prune=True)
"""


def long_text(word: str) -> str:
    return "\n\n".join(f"Paragraph {i} about {word}. " + f"More on {word}. " * 40 for i in range(6))


@pytest.mark.parametrize("where", ["add", "delete"])
def test_kill_during_update(local_ragdb: Ragdb, tmp_path: Path, store: Path, where: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    doc = docs / "doc.txt"
    doc.write_text(long_text("llamas"))
    local_ragdb("ingest", str(docs))
    old = {c["id"] for c in local_ragdb.chunks()}
    doc.write_text(long_text("octopus"))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_IN), str(store), str(docs), where],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9
    # The next process finishes or undoes the interrupted write before anything else.
    result = local_ragdb("doctor")
    assert "healthy" in result.stdout
    chunks = local_ragdb.chunks()
    ids = {c["id"] for c in chunks}
    assert len({c["source_hash"] for c in chunks}) == 1
    if where == "add":  # the new version never became whole: the old one stays
        assert ids == old
    else:  # the new version was whole: it wins
        assert ids.isdisjoint(old) and all("octopus" in c["text"] for c in chunks)
    # A re-run brings the store to exactly the expected state.
    local_ragdb("ingest", str(docs))
    chunks = local_ragdb.chunks()
    assert all("octopus" in c["text"] for c in chunks)
    assert sorted(c["chunk_index"] for c in chunks) == list(range(chunks[0]["n_chunks"]))


def test_doctor_finds_and_repairs(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    with local_ragdb.chroma() as coll:
        got = coll.get(limit=1, include=["embeddings", "metadatas"])
        vec = [float(x) for x in got["embeddings"][0]]
        meta = got["metadatas"][0]
        # A stray chunk with no records, and a half-written second version.
        coll.add(ids=["stray"], embeddings=[vec], documents=["stray"], metadatas=[{"x": 1}])
        coll.add(
            ids=["half"],
            embeddings=[vec],
            documents=["half"],
            metadatas=[{**meta, "source_hash": "f" * 32, "n_chunks": 3}],
        )
    result = local_ragdb("doctor", code=1)
    assert "chunks-without-source" in result.stdout and "mixed-versions" in result.stdout
    result = local_ragdb("doctor", "--repair")
    assert "repaired" in result.stdout and "healthy" in result.stdout
    ids = {c["id"] for c in local_ragdb.chunks()}
    assert "stray" not in ids and "half" not in ids and len(ids) == 4
    local_ragdb("doctor")


def test_repair_rebuilds_a_broken_index(local_ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    """Chroma persists its HNSW files once a collection passes 1,000 writes; torn,
    they make it refuse every read. doctor finds that, and --repair re-embeds
    the chunks' text (kept in Chroma's database) into a new collection."""
    from ragdb.store.records import ChunkRecord, NewVersion
    from ragdb.store.versions import write_versions

    local_ragdb("ingest", str(facts_dir))
    kb = local_ragdb.kb()
    texts = [f"Note {i}: a ledger line about item {i * 7} in aisle {i % 40}." for i in range(1100)]
    vectors = kb.embedder.encode(texts)
    records = [
        ChunkRecord(f"note-{i}", 0, 1, "0" * 32, text=t, end=len(t), source_type="text")
        for i, t in enumerate(texts)
    ]
    with kb.store().session() as session:
        write_versions(
            session, [NewVersion(r.source, [r], vectors[i : i + 1]) for i, r in enumerate(records)]
        )
    ragdb = [sys.executable, "-m", "ragdb", "--store", str(store)]

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        # Fresh processes: this one's client keeps the index it loaded in memory.
        proc = subprocess.run([*ragdb, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == code, proc.stderr
        return proc

    query = ["query", "octopus hearts", "--retrieve-only", "-k", "4", "--json"]
    before = json.loads(run(*query).stdout)
    segment_files = [p for p in store.rglob("*.bin") if p.stat().st_size > 16]
    assert segment_files, "Chroma persisted no HNSW files to tear"
    for path in segment_files:
        path.write_bytes(b"\x00" * 16)
    # Every command says what is wrong and how to repair it, in one line...
    err = run(*query, code=1).stderr.strip()
    assert len(err.splitlines()) == 1 and "`ragdb doctor --repair` rebuilds the vector index" in err
    # ...doctor sees it before anything is repaired...
    found = json.loads(run("doctor", "--json", code=1).stdout)
    assert [p["problem"] for p in found["problems"]] == ["index-unloadable"]
    # ...and the repair re-embeds every chunk into a new collection.
    repaired = json.loads(run("doctor", "--repair", "--json").stdout)
    assert repaired["repaired"] == ["rebuilt the vector index as ragdb-chunks-2 (1104 chunks)"]
    assert repaired["healthy"] is True and repaired["chunks"] == 1104
    after = json.loads(run(*query).stdout)
    # The same best hit; the tail may reorder near-ties (a new HNSW graph).
    assert after["chunks"][0]["id"] == before["chunks"][0]["id"]
    assert after["chunks"][0]["source"].endswith("fact3.txt")
    scores = {c["id"]: c["score"] for c in before["chunks"]}
    common = [c for c in after["chunks"] if c["id"] in scores]
    assert len(common) >= 3
    diffs = [abs(c["score"] - scores[c["id"]]) for c in common]
    # int8 quantises activations per batch: the same text in another batch moves a little.
    assert max(diffs) < 0.02, diffs
    run("doctor")


KILL_IN_RESET = """
import os, signal, sys
from chromadb.api.client import Client
from ragdb import KnowledgeBase

original = Client.delete_collection

def drop_then_die(self, name, *a, **kw):
    original(self, name, *a, **kw)
    os.kill(os.getpid(), signal.SIGKILL)  # dropped, not yet made anew

Client.delete_collection = drop_then_die
KnowledgeBase(store=sys.argv[1]).reset()
"""


def test_kill_during_reset(local_ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_IN_RESET), str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    # The next command finds an empty store, not a broken one, and it works again.
    assert local_ragdb.json("status")["chunks"] == 0
    assert json.loads(local_ragdb("doctor", "--json").stdout)["healthy"] is True
    local_ragdb("ingest", str(facts_dir))
    assert local_ragdb.json("status")["chunks"] == 4
