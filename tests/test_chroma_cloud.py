"""Opt-in, run by hand: ragdb against a real Chroma Cloud database.

Skipped unless RAGDB_TEST_CHROMA_CLOUD is set to ``TENANT/DATABASE/TOKEN`` of a
database this test may fill and empty (it deletes every collection in it at
the end). Run it as::

    RAGDB_TEST_CHROMA_CLOUD=tenant/db/ck-... .venv/bin/python -m pytest tests/test_chroma_cloud.py

(The suite cannot reach Chroma Cloud from here; tests/test_cloud_limits.py
works the same calls through a proxy that enforces Cloud's published limits.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragdb import KnowledgeBase

# Read at import: the suite's fixtures clear RAGDB_* variables for each test.
CLOUD = os.environ.get("RAGDB_TEST_CHROMA_CLOUD", "")

pytestmark = pytest.mark.skipif(
    CLOUD.count("/") < 2, reason="RAGDB_TEST_CHROMA_CLOUD (TENANT/DATABASE/TOKEN) is not set"
)


def test_a_store_on_chroma_cloud(facts_dir: Path) -> None:
    tenant, database, token = CLOUD.split("/", 2)
    kb = KnowledgeBase(
        chroma_url="https://api.trychroma.com",
        chroma_token=token,
        chroma_tenant=tenant,
        chroma_database=database,
    )
    try:
        kb.ingest([facts_dir])
        kb.ingest_text("long", "\n\n".join(f"Part {i}. " + "words " * 60 for i in range(1000)))
        assert kb.retrieve("octopus intelligence", k=1).hits[0].source.endswith("fact3.txt")
        assert kb.status().index in ("hnsw", "spann")
        assert kb.doctor().healthy
        assert kb.remove(["long"]).chunks_removed > 300
    finally:
        with kb.store().session() as session:
            for name in session.collection_names():
                session.client.delete_collection(name)
