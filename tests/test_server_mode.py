"""Several ragdb processes, each with its own cache (standing in for separate
machines), writing to one `chroma run` server: no lost writes, keyword indexes
that see every other process's writes, and killed writers settled without a
manual repair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import chromadb
import pytest

from ragdb import KnowledgeBase

from .conftest import Ragdb, clear_server, machine


@pytest.fixture
def server_kb(chroma_server: str, facts_dir: Path) -> KnowledgeBase:
    """An emptied server store holding the four facts."""
    clear_server(chroma_server)
    kb = KnowledgeBase(chroma_url=chroma_server)
    kb.ingest([facts_dir])
    return kb


def run(url: str, env: dict[str, str], *args: str, input: str | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "ragdb", "--chroma-url", url, *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def bm25_sources(kb: KnowledgeBase, question: str) -> list[str]:
    return [h.source for h in kb.retrieve(question, k=3, mode="bm25").hits]


def test_each_machines_keyword_index_sees_the_others_writes(
    chroma_server: str, server_kb: KnowledgeBase, tmp_path: Path
) -> None:
    kb = server_kb
    assert "zeppelins" not in bm25_sources(kb, "zeppelin hangar")
    other = machine(tmp_path, "b")
    run(
        chroma_server,
        other,
        "ingest",
        "-",
        "--name",
        "zeppelins",
        input="Zeppelins rest in a hangar.",
    )
    assert bm25_sources(kb, "zeppelin hangar")[0] == "zeppelins"
    run(chroma_server, other, "ingest", "-", "--name", "zeppelins", input="Blimps rest in a barn.")
    assert bm25_sources(kb, "blimp barn")[0] == "zeppelins"
    assert "zeppelins" not in bm25_sources(kb, "zeppelin hangar")  # the old text is gone
    run(chroma_server, other, "remove", "zeppelins")
    assert "zeppelins" not in bm25_sources(kb, "blimp barn")
    # Every keyword hit exists in Chroma, and every chunk is findable by its words.
    with kb.store().session() as session:
        assert session.keywords.ids() == session.ids()


WRITER = """
import sys
from ragdb import KnowledgeBase
kb = KnowledgeBase(chroma_url=sys.argv[1], wait=120)
for i in range(int(sys.argv[3])):
    words = " ".join(f"{sys.argv[2]}{i}w{j}" for j in range(40))
    kb.ingest_text("shared", f"Version {i} of writer {sys.argv[2]}: {words}.", replace=True)
print("done")
"""


def test_two_writers_on_one_source(chroma_server: str, facts_dir: Path, tmp_path: Path) -> None:
    clear_server(chroma_server)
    kb = KnowledgeBase(chroma_url=chroma_server)
    kb.ingest([facts_dir])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), chroma_server, name, "4"],
            env=machine(tmp_path, name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done", err
    report = kb.doctor()
    assert report.healthy, report.findings
    chunks = kb.chunks("shared")
    assert chunks and {c.source_hash for c in chunks} == {chunks[0].source_hash}
    text = " ".join(c.text for c in chunks)
    assert text.startswith("Version 3 of writer ")  # each writer's last version, whole
    # The keyword index agrees: the final text's words find it; nothing else's do.
    final = text.split()[-1].rstrip(".")
    assert bm25_sources(kb, final)[0] == "shared"
    with kb.store().session() as session:
        assert session.keywords.ids() == session.ids()


KILLED_WRITER = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
from ragdb import KnowledgeBase

original = Collection.add

def add_half_then_die(self, ids, **kw):
    if not self.name.startswith("ragdb-chunks"):  # the write log and claims pass
        return original(self, ids=ids, **kw)
    half = max(1, len(ids) // 2)
    original(self, ids=ids[:half], **{k: v[:half] for k, v in kw.items()})
    os.kill(os.getpid(), signal.SIGKILL)

Collection.add = add_half_then_die
KnowledgeBase(chroma_url=sys.argv[1]).ingest_text("doc", sys.argv[2], replace=True)
"""


def test_killed_writer_is_settled_by_the_next_reader(
    chroma_server: str, store: Path, tmp_path: Path
) -> None:
    clear_server(chroma_server)
    ragdb = Ragdb(store, chroma_url=chroma_server)
    old = "\n\n".join(f"Paragraph {i} about llamas. " + "More on llamas. " * 40 for i in range(6))
    new = old.replace("llamas", "octopus")
    ragdb("ingest", "-", "--name", "doc", input=old)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), chroma_server, new],
        env=machine(tmp_path, "killed"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    # Half the new version is on the server now, beside the whole old one (read
    # with Chroma's own client: any ragdb session would settle it at once)...
    host, port = chroma_server.rsplit("//", 1)[1].split(":")
    coll = chromadb.HttpClient(host=host, port=int(port)).get_collection("ragdb-chunks")
    metas = coll.get(include=["metadatas"])["metadatas"]
    assert len({m["source_hash"] for m in metas}) == 2
    # ...and the next ordinary command, on another machine, settles it: no repair.
    out = run(chroma_server, machine(tmp_path, "reader"), "sources", "--json")
    assert [s["source"] for s in json.loads(out)] == ["doc"]
    chunks = ragdb.chunks()
    assert len({c["source_hash"] for c in chunks}) == 1 and "llamas" in chunks[0]["text"]
    assert json.loads(ragdb("doctor", "--json").stdout)["healthy"] is True


def test_a_keyword_index_refilled_while_another_process_deletes_misses_nothing(
    chroma_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragdb.store import session as session_module
    from ragdb.store.session import Session

    clear_server(chroma_server)
    kb = KnowledgeBase(chroma_url=chroma_server, chroma_max_batch=5)
    for i in range(4):
        kb.ingest_text(f"doc{i}", f"Document {i} about topic {i}. " * 3)
    kb.ingest_text("big", "\n\n".join(f"Part {j} of a long text. " * 40 for j in range(8)))
    host, port = chroma_server.rsplit("//", 1)[1].split(":")
    coll = chromadb.HttpClient(host=host, port=int(port)).get_collection("ragdb-chunks")
    doomed: list[str] = []
    real_texts = Session.texts

    def texts_with_a_delete_between_pages(self: Session) -> Iterator[tuple[list[str], list[str]]]:
        for n, page in enumerate(real_texts(self)):
            yield page
            if n == 0:  # another process deletes read records: later ones shift up a page
                coll.delete(ids=doomed)

    monkeypatch.setattr(Session, "texts", texts_with_a_delete_between_pages)
    for checks in (0, 5):
        monkeypatch.setattr(session_module, "REFILL_CHECKS", checks)
        doomed[:] = coll.get(limit=5, include=[])["ids"][:3]
        with kb.store().session() as session:
            session.rebuild_keywords()
            stored, indexed = session.ids(), session.keywords.ids()
        assert len(stored) >= 10 and not set(doomed) & stored
        if checks:
            assert indexed == stored
        else:
            assert stored - indexed  # offset paging alone skipped records


def test_two_processes_on_one_host_rebuild_a_shared_keyword_index_at_once(
    chroma_server: str, server_kb: KnowledgeBase, tmp_path: Path
) -> None:
    kb = server_kb
    for i in range(30):
        kb.ingest_text(f"note{i}", f"Note {i} on harbours and tides, with the word t{i}word.")
    with kb.store().session() as session:
        path = session.backend.keywords_path(session.manifest, "default")
        expected = session.ids()
    env = machine(tmp_path, "one-host")  # one cache directory: one index file for both
    shared = Path(env["XDG_CACHE_HOME"]) / path.relative_to(os.environ["XDG_CACHE_HOME"])
    args = ["--chroma-url", chroma_server, "query", "t7word", "--retrieve-only", "--mode", "bm25"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ragdb", *args, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert json.loads(out)["chunks"][0]["source"] == "note7"
    from ragdb.store.keywords import KeywordIndex

    index = KeywordIndex(shared)
    try:
        assert index.ids() == expected
    finally:
        index.close()


def test_what_a_machine_keeps_is_renewed_by_another_machines_write(
    chroma_server: str, server_kb: KnowledgeBase, tmp_path: Path
) -> None:
    """The chunks one machine kept from its searches (see ragdb.store.kept) go
    once another machine's write moves the write log on: a source removed and
    re-added with the same text (the same chunk id) is reported as re-added."""
    kb, text = server_kb, "Zeppelins rest in a hangar by the lake."
    kb.ingest_text("zeppelins", text)
    first = kb.retrieve("zeppelin hangar", k=1).hits[0]
    assert kb.retrieve("zeppelin hangar", k=1).hits[0].to_dict() == first.to_dict()
    assert kb.kept_chunks()["found"] >= 1
    other = machine(tmp_path, "b")
    run(chroma_server, other, "remove", "zeppelins")
    run(chroma_server, other, "ingest", "-", "--name", "zeppelins", input=text)
    assert kb.kept_chunks()["kept"] == 0
    renewed = kb.retrieve("zeppelin hangar", k=1).hits[0]
    assert renewed.id == first.id
    assert renewed.metadata["ingested_at"] > first.metadata["ingested_at"]
