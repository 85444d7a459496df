"""A lost or corrupt manifest never strands a store: doctor --repair rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb

from .conftest import Ragdb


def hits(ragdb: Ragdb) -> list[tuple[str, str]]:
    out = ragdb.json("query", "--retrieve-only", "When is the Innovation Summit?")
    return [(c["source"], c["text"]) for c in out["chunks"]]


def test_corrupt_manifest_is_rebuilt_from_its_backup(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    before = hits(local_ragdb)
    manifest = local_ragdb.store / "ragdb.json"
    backup = local_ragdb.store / "ragdb.json.bak"
    assert json.loads(backup.read_text()) == json.loads(manifest.read_text())
    manifest.write_text('{"embed_model": ')  # torn by hand, say

    err = local_ragdb("status", code=1).stderr
    assert "ragdb.json is unreadable" in err and "`ragdb doctor --repair`" in err
    assert len(err.strip().splitlines()) == 1
    report = json.loads(local_ragdb("doctor", "--json", code=1).stdout)
    assert [p["problem"] for p in report["problems"]] == ["manifest"]
    # Not on a terminal, and no --yes: nothing is changed.
    err = local_ragdb("doctor", "--repair", code=2).stderr
    assert "rebuilt from its backup copy ragdb.json.bak" in err and "--yes" in err
    assert manifest.read_text() == '{"embed_model": '

    out = local_ragdb("doctor", "--repair", "--yes").stdout
    assert "repaired: rebuilt the manifest from its backup copy ragdb.json.bak" in out
    assert "healthy (4 chunks, 4 sources)" in out
    assert hits(local_ragdb) == before
    assert local_ragdb.json("ingest", str(facts_dir))["unchanged"] == 4


def test_deleted_manifest_and_backup_are_rebuilt_from_chroma(
    local_ragdb: Ragdb, facts_dir: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    before = hits(local_ragdb)
    sources = local_ragdb.json("sources")
    old = json.loads((local_ragdb.store / "ragdb.json").read_text())
    (local_ragdb.store / "ragdb.json").unlink()
    (local_ragdb.store / "ragdb.json.bak").unlink()

    # Neither a dead end nor a foreign directory: the message names the way out.
    for args in (["status"], ["ingest", str(facts_dir)]):
        err = local_ragdb(*args, code=1).stderr
        assert "ragdb.json is missing" in err and "`ragdb doctor --repair`" in err

    out = local_ragdb("doctor", "--repair", "--yes").stdout
    assert "rebuilt the manifest from Chroma's collection 'ragdb-chunks' (4 chunks" in out
    assert "healthy" in out
    new = json.loads((local_ragdb.store / "ragdb.json").read_text())
    assert new["embed_model"] == old["embed_model"]
    assert (
        new["knowledge_bases"]["default"]["collection"]
        == old["knowledge_bases"]["default"]["collection"]
    )
    assert new["migrations"] == old["migrations"]
    assert new["created_at"] <= sources[0]["ingested_at"]
    assert hits(local_ragdb) == before
    assert local_ragdb.json("sources") == sources
    assert local_ragdb.json("ingest", str(facts_dir))["unchanged"] == 4


def test_server_manifest_rebuilt_from_chroma(
    chroma_server: str, store: Path, facts_dir: Path
) -> None:
    from .conftest import clear_server

    clear_server(chroma_server)
    ragdb = Ragdb(store, chroma_url=chroma_server)
    ragdb("ingest", str(facts_dir))
    before = hits(ragdb)
    host, port = chroma_server.rsplit("//", 1)[1].split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    client.delete_collection("ragdb-manifest")

    err = ragdb("sources", code=1).stderr
    assert "manifest" in err and "is missing" in err and "doctor --repair" in err
    out = ragdb("doctor", "--repair", "--yes").stdout
    assert "rebuilt the manifest from Chroma's collection" in out and "healthy" in out
    assert hits(ragdb) == before
