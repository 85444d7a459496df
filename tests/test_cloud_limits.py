"""ragdb within Chroma Cloud's published limits: a store on a real `chroma
run` behind the Cloud-shaped proxy (tests/cloudproxy.py: 300 records a
request, reads with a limit, 256-byte collection metadata values, 10
requests at once, injected 429 Backoff and 503; here 40 records a request in
place of 300), used the way a person uses it: ingest more than a write's worth
of chunks, query, list, remove, doctor,
export. Nothing is refused as over a limit, the injected faults are ridden
out, and what is stored is what the same work stores directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import chromadb
import pytest

from ragdb import KnowledgeBase

from .cloudproxy import COLLECTION_VALUE_BYTES, CloudProxy
from .conftest import clear_server
from .site import running

LIMIT = 40


@pytest.fixture
def cloud(chroma_server: str) -> Iterator[CloudProxy]:
    clear_server(chroma_server)
    # Cloud's limits, with 40 records a request instead of 300: the same paths
    # (batched writes, paged reads) crossed with a seventh of the chunks.
    proxy = CloudProxy(chroma_server, faults=0.05, limit=LIMIT)
    with running(proxy):
        yield proxy


def test_a_store_within_chroma_clouds_limits(
    cloud: CloudProxy, chroma_server: str, facts_dir: Path, tmp_path: Path
) -> None:
    kb = KnowledgeBase(
        chroma_url=cloud.url, chroma_headers={"X-Cloud-Check": "1"}, chroma_max_batch=LIMIT
    )
    long = "\n\n".join(f"Section {i} on topic {i % 17}: " + "words " * 60 for i in range(200))
    many = tmp_path / "many"  # more sources in one write than a request may claim
    many.mkdir()
    for i in range(LIMIT + 10):
        (many / f"n{i}.txt").write_text(f"Small note {i} about the harbour.")
    kb.ingest([facts_dir, many])
    kb.ingest_text("long", long)
    assert kb.retrieve("octopus intelligence", k=2).hits[0].source.endswith("fact3.txt")
    assert {s.source for s in kb.sources()} >= {"long"}
    assert kb.doctor().healthy
    archive = tmp_path / "kb.zip"
    kb.export(archive)
    assert kb.remove(["long"]).chunks_removed > LIMIT
    assert kb.remove([str(many)]).chunks_removed == LIMIT + 10
    assert [s.source for s in kb.sources()] == sorted(str(p) for p in facts_dir.iterdir())
    # Nothing beyond a limit was asked, and the faults were met and ridden out.
    assert cloud.refused == [] and cloud.injected > 0
    host, port = chroma_server.rsplit("//", 1)[1].split(":")
    manifest = chromadb.HttpClient(host=host, port=int(port)).get_collection("ragdb-manifest")
    assert all(len(str(v).encode()) <= COLLECTION_VALUE_BYTES for v in manifest.metadata.values())
