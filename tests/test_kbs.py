"""Several knowledge bases in one store: kept apart (ingest, prune, remove, a
kill mid-write), searched one at a time or fused, managed by `ragdb kb`, and
made from a store of the previous format."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ragdb import KnowledgeBase
from ragdb.store.store import Store

from .conftest import FACTS, Ragdb
from .test_crash import long_text
from .test_migrations import older_ragdb


def records(ragdb: Ragdb, kb: str) -> list[tuple[str, Any, str]]:
    """Every chunk of knowledge base ``kb`` as Chroma holds it: id, metadata, text."""
    kbase = KnowledgeBase(store=ragdb.store, chroma_url=ragdb.chroma_url, kb=kb)
    with kbase.store().session() as session:
        found = session.fetch_records()
    return sorted((r.id, json.dumps(r.metadata(), sort_keys=True), r.text) for r in found)


def test_the_same_files_in_two_kbs_stay_apart(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    assert ragdb.json("--kb", "notes", "ingest", str(facts_dir))["added"] == 4
    notes = records(ragdb, "notes")
    assert len(notes) == 4 and {r[0] for r in notes} == {r[0] for r in records(ragdb, "default")}
    generation = _kb_generation(ragdb, "notes")

    # Change, prune and remove in default only.
    (facts_dir / "fact0.txt").write_text("The Innovation Summit moved to Porto.\n")
    (facts_dir / "fact1.txt").unlink()
    out = ragdb.json("ingest", "--prune", str(facts_dir))
    assert (out["updated"], out["removed"]) == (1, 1)
    ragdb("remove", str(facts_dir / "fact2.txt"))
    assert records(ragdb, "notes") == notes  # untouched, to the byte
    assert len(records(ragdb, "default")) == 2
    if generation is not None:  # a local store: notes' keyword index was not made stale
        assert _kb_generation(ragdb, "notes") == generation

    def top(*args: str) -> str:
        hits = ragdb.json(*args, "query", "Where is the Innovation Summit?", "--retrieve-only")
        return str(hits["chunks"][0]["text"])

    assert "Porto" in top() and "Lisbon" in top("--kb", "notes")
    assert ragdb.json("--kb", "notes", "status")["chunks"] == 4
    listed = {k["name"]: (k["chunks"], k["sources"]) for k in ragdb.json("kb", "list")}
    assert listed == {"default": (2, 2), "notes": (4, 4)}
    assert "knowledge base notes: 4 chunks, 4 sources, 0 problems" in ragdb("doctor").stdout
    doctor = ragdb.json("doctor")
    assert doctor["healthy"] and doctor["knowledge_bases"]["notes"] == {"chunks": 4, "sources": 4}


def _kb_generation(ragdb: Ragdb, kb: str) -> int | None:
    if ragdb.server:
        return None
    manifest = json.loads((ragdb.store / "ragdb.json").read_text())
    return int(manifest["knowledge_bases"][kb]["generation"])


KILL_IN_KB = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
from ragdb import KnowledgeBase

original_add = Collection.add

def add_half_then_die(self, ids, **kw):
    original_add(self, ids=ids[:1], **{k: v[:1] for k, v in kw.items()})
    os.kill(os.getpid(), signal.SIGKILL)

Collection.add = add_half_then_die
KnowledgeBase(store=sys.argv[1], kb="a").ingest([sys.argv[2]])
"""


def test_a_kill_during_a_write_to_one_kb_harms_no_other(
    local_ragdb: Ragdb, tmp_path: Path, store: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "doc.txt").write_text(long_text("llamas"))
    local_ragdb("--kb", "a", "ingest", str(docs))
    local_ragdb("--kb", "b", "ingest", str(docs))
    a, b = records(local_ragdb, "a"), records(local_ragdb, "b")
    (docs / "doc.txt").write_text(long_text("octopus"))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_IN_KB), str(store), str(docs)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9
    # The next command settles a's write (its new version never became whole).
    assert local_ragdb.json("doctor")["healthy"]
    assert records(local_ragdb, "a") == a and records(local_ragdb, "b") == b


def test_kb_commands_and_their_errors(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir / "fact0.txt"))
    assert "created knowledge base work" in local_ragdb("kb", "create", "work").stdout
    assert "exists already" in local_ragdb("kb", "create", "work", code=1).stderr
    assert "cannot name a knowledge base" in local_ragdb("kb", "create", "a/b", code=2).stderr
    assert "cannot be renamed" in local_ragdb("kb", "rename", "default", "x", code=2).stderr
    assert "cannot be deleted" in local_ragdb("kb", "delete", "default", code=2).stderr
    assert "exists already" in local_ragdb("kb", "rename", "work", "default", code=1).stderr
    err = local_ragdb("kb", "rename", "nope", "x", code=1).stderr
    assert "no knowledge base 'nope'" in err and "default, work" in err
    local_ragdb("--kb", "work", "ingest", str(facts_dir / "fact3.txt"))
    local_ragdb("kb", "rename", "work", "job")
    # RAGDB_KB names it as --kb does; a renamed one keeps its chunks.
    hits = local_ragdb.json("query", "octopus", "--retrieve-only", env={"RAGDB_KB": "job"})
    assert [Path(h["source"]).name for h in hits["chunks"]] == ["fact3.txt"]
    assert hits["chunks"][0]["kb"] == "job"
    assert "no knowledge base 'work'" in local_ragdb("--kb", "work", "status", code=1).stderr
    # Delete asks first, naming what goes.
    said = local_ragdb("kb", "delete", "job", input="n\n", code=1)
    assert "Delete knowledge base job (1 chunks of 1 sources)?" in said.stderr
    assert "deleted knowledge base job (1 chunk)" in local_ragdb("kb", "delete", "job", "-y").stdout
    assert [k["name"] for k in local_ragdb.json("kb", "list")] == ["default"]
    assert not list(local_ragdb.store.glob("ragdb.keywords.kb-*"))  # its index went too


def test_several_kbs_searched_as_one_ranking(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir / "fact0.txt"), str(facts_dir / "fact1.txt"))
    local_ragdb("--kb", "b", "ingest", str(facts_dir / "fact2.txt"), str(facts_dir / "fact3.txt"))
    question = "What animal does the company like?"

    def query(*args: str) -> list[dict[str, Any]]:
        out = local_ragdb.json("query", question, "--retrieve-only", "-k", "4", *args)
        return list(out["chunks"])

    # Dense: the union of each one's own ranking, ordered by similarity.
    each = query("--mode", "dense") + query("--mode", "dense", "--kb", "b")
    expected = sorted(each, key=lambda h: -h["score"])
    fused = query("--mode", "dense", "--all")
    assert [(h["kb"], h["id"]) for h in fused] == [(h["kb"], h["id"]) for h in expected]
    assert [h["rank"] for h in fused] == [1, 2, 3, 4]
    assert fused[0]["kb"] == "b" and fused[0]["source"].endswith("fact3.txt")
    # BM25: the keyword matches of both (each index's own scores), best first.
    bm25 = query("--mode", "bm25", "--kb", "default", "--kb", "b")
    assert {h["kb"] for h in bm25} == {"default", "b"}
    scores = [h["scores"]["bm25"] for h in bm25]
    assert scores == sorted(scores, reverse=True)
    hybrid = query("--mode", "hybrid", "--kb", "default", "--kb", "b")
    assert len(hybrid) == 4 and hybrid[0]["source"].endswith("fact3.txt")
    fused_scores = [h["scores"]["fused"] for h in hybrid]
    assert fused_scores == sorted(fused_scores, reverse=True)
    # Filters apply in every knowledge base searched.
    only = query("--all", "--source", "**/fact2.txt")
    assert [(h["kb"], Path(h["source"]).name) for h in only] == [("b", "fact2.txt")]
    text = local_ragdb("query", question, "--retrieve-only", "--all").stdout
    assert "[1] b: " in text
    err = local_ragdb("query", "x", "--all", "--kb", "b", "--retrieve-only", code=2).stderr
    assert "--kb NAME or --all, not both" in err


def test_a_single_collection_store_becomes_default(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        older_ragdb(m, 3)  # the format before knowledge bases
        KnowledgeBase(store=store).ingest([facts_dir])
        assert Store.migrate_upto == "m003_record_embed_backend"
        chunks = records(local_ragdb, "default")  # as the older ragdb reads them
    before = json.loads((store / "ragdb.json").read_text())
    assert "knowledge_bases" not in before
    assert local_ragdb.json("migrate")["applied"] == [
        "m004_knowledge_bases",
        "m005_manifest_as_record",
        "m006_pruned_write_log",
    ]
    after = json.loads((store / "ragdb.json").read_text())
    assert after["knowledge_bases"]["default"]["collection"] == before["collection"]
    assert "collection" not in after
    assert records(local_ragdb, "default") == chunks
    local_ragdb("--kb", "new", "ingest", "-", "--name", "memo", input=FACTS[0])
    assert [k["name"] for k in local_ragdb.json("kb", "list")] == ["default", "new"]


def vectors(ragdb: Ragdb, kb: str) -> dict[str, bytes]:
    """Every chunk's vector, as the float32 bytes Chroma stores (a server's JSON
    spells them with fewer digits)."""
    import numpy as np

    kbase = KnowledgeBase(store=ragdb.store, chroma_url=ragdb.chroma_url, kb=kb)
    with kbase.store().session() as session:
        found = session.fetch_embeddings()
    return {r.id: np.asarray(v, dtype=np.float32).tobytes() for r, v in found}


def test_export_and_import_move_a_kb_to_a_server_without_embedding(
    local_ragdb: Ragdb, facts_dir: Path, tmp_path: Path, chroma_server: str
) -> None:
    from .conftest import clear_server

    local_ragdb("--kb", "notes", "ingest", str(facts_dir), "--meta", "team=ops")
    archive = tmp_path / "notes.ragdb.zip"
    out = local_ragdb.json("export", "--kb", "notes", str(archive))
    assert (out["sources"], out["chunks"], out["kb"]) == (4, 4, "notes")

    clear_server(chroma_server)
    remote = Ragdb(tmp_path / "unused", chroma_url=chroma_server)
    # Refused before anything is written: a foreign zip, a corrupt one, a newer one.
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("data.csv", "a,b\n")
    assert "not a ragdb archive" in remote("import", str(foreign), code=1).stderr
    corrupt = _rewritten(
        archive, tmp_path / "corrupt.zip", lambda b: b.replace(b"octopus", b"otter")
    )
    assert "do not match their checksum" in remote("import", str(corrupt), code=1).stderr
    newer = _rewritten(archive, tmp_path / "newer.zip", header={"version": 99})
    assert "upgrade ragdb" in remote("import", str(newer), code=1).stderr
    assert "no knowledge base" in remote("status", code=1).stderr  # no store was made

    got = remote.json("import", str(archive), "--kb", "notes")
    assert (got["added"], got["chunks"], got["reembedded"]) == (4, 4, False)
    assert records(remote, "notes") == records(local_ragdb, "notes")
    assert vectors(remote, "notes") == vectors(local_ragdb, "notes")

    def hits(ragdb: Ragdb) -> list[tuple[str, float]]:
        out = ragdb.json("--kb", "notes", "query", "favourite animal", "--retrieve-only", "-k", "4")
        return [(h["id"], round(h["score"], 5)) for h in out["chunks"]]

    assert hits(remote) == hits(local_ragdb)
    again = remote.json("import", str(archive), "--kb", "notes")
    assert (again["unchanged"], again["chunks"]) == (4, 0)  # nothing duplicates


def _rewritten(
    archive: Path,
    dest: Path,
    chunks: Any = None,
    header: dict[str, Any] | None = None,
) -> Path:
    """A copy of ``archive`` with its chunks passed through ``chunks`` (the
    checksum left as it was) or its header updated."""
    with zipfile.ZipFile(archive) as zf:
        head = json.loads(zf.read("ragdb-archive.json"))
        body = zf.read("chunks.jsonl")
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("ragdb-archive.json", json.dumps({**head, **(header or {})}))
        zf.writestr("chunks.jsonl", chunks(body) if chunks else body)
    return dest
