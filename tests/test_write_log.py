"""The write log of a server store stays small: settled entries behind the
newest are pruned and a checkpoint says where readers start; a machine whose
keyword index is behind the prune rebuilds it; a writer stalled past a lease
between reading the log's head and taking a number gives that number back.
Against a real `chroma run`, with the real model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import chromadb
import pytest

from ragdb import KnowledgeBase
from ragdb.store import writelog
from ragdb.store.server import ServerBackend
from ragdb.store.writelog import CHECKPOINT_ID, LOG_COLLECTION, WriteLog

from .conftest import clear_server, machine

WORDS = ["zebra", "walrus", "falcon", "badger", "otter", "heron", "lynx", "moose", "ibis"]


def client_of(url: str) -> Any:
    host, port = url.rsplit("//", 1)[1].split(":")
    return chromadb.HttpClient(host=host, port=int(port))


def bm25_sources(reader: KnowledgeBase, cache: Path, word: str) -> list[str]:
    """What another machine's keyword index (its own cache directory) finds for ``word``."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("XDG_CACHE_HOME", str(cache))
        return [hit.source for hit in reader.retrieve(word, mode="bm25").hits]


def test_the_log_is_pruned_behind_a_checkpoint_and_a_lagging_reader_rebuilds(
    chroma_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clear_server(chroma_server)
    monkeypatch.setattr(writelog, "LOG_KEEP", 4)
    monkeypatch.setattr(writelog, "LOG_SLACK", 2)
    kb = KnowledgeBase(chroma_url=chroma_server, lease=1.0)
    kb.ingest_text("doc-0", f"A note about the {WORDS[0]} and its habits.")
    # Another machine: its own process's view of the store, its own cache.
    other = Path(machine(tmp_path, "other")["XDG_CACHE_HOME"])
    reader = KnowledgeBase(chroma_url=chroma_server)
    assert bm25_sources(reader, other, WORDS[0]) == ["doc-0"]  # its index, stamped
    for i, word in enumerate(WORDS[1:-1], start=1):
        kb.ingest_text(f"doc-{i}", f"A note about the {word} and its habits.")
    time.sleep(2.2)  # older than two leases: prunable
    kb.ingest_text(f"doc-{len(WORDS) - 1}", f"A note about the {WORDS[-1]} and its habits.")

    log = client_of(chroma_server).get_collection(LOG_COLLECTION)
    got = log.get(include=["metadatas"])
    base = next(
        m["base"] for i, m in zip(got["ids"], got["metadatas"], strict=True) if i == CHECKPOINT_ID
    )
    numbers = sorted(m["number"] for m in got["metadatas"] if "number" in m)
    # Every entry up to the checkpoint is gone, the newest few are kept, no gaps.
    assert base > 0 and numbers[0] == base + 1
    assert numbers == list(range(base + 1, base + len(numbers) + 1))
    assert len(numbers) <= writelog.LOG_KEEP + writelog.LOG_SLACK + 3
    # A fresh reader finds the newest entry from the checkpoint.
    backend = ServerBackend(chroma_server, {})
    assert WriteLog(backend).newest(log) == numbers[-1]
    # The other machine's index was stamped before the pruned entries: it
    # rebuilds, and finds what was written since.
    for i in (1, len(WORDS) - 1):
        assert bm25_sources(reader, other, WORDS[i]) == [f"doc-{i}"]
    assert sorted(s.source for s in kb.sources()) == [f"doc-{i}" for i in range(len(WORDS))]
    report = kb.doctor()
    assert report.healthy, report.findings


def test_a_writer_stalled_before_taking_its_number_gives_it_back(chroma_server: str) -> None:
    clear_server(chroma_server)
    backend = ServerBackend(chroma_server, {}, lease=1.0)
    times = iter([100.0, 105.0, 105.0, 105.0])  # the first add lands 5 s after its read
    backend.server_now = lambda client: next(times)  # type: ignore[method-assign]
    log = WriteLog(backend)
    client = client_of(chroma_server)
    eid = log.append(client, ["a.txt"], lambda c: {"owner": "w1", "pid": 0}, None)
    got = client.get_collection(LOG_COLLECTION).get(include=["metadatas"])
    states = {m["number"]: m["state"] for m in got["metadatas"]}
    assert states == {1: "void", 2: "pending"} and eid == writelog.entry_id(2)
    assert log.newest(client.get_collection(LOG_COLLECTION)) == 2
