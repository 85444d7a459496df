"""Compares a store's chunks with the texts its sources should have (used by
scripts/stress.py and scripts/crashtest.py)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ragdb import KnowledgeBase


def compare(kb: KnowledgeBase, expected: dict[str, str]) -> dict[str, Any]:
    """``expected`` maps each source to its current text. Returns counts of lost
    chunks (expected, absent or wrong), duplicated chunks (present beyond one whole
    version) and unexpected sources."""
    with kb.store().session() as session:
        got: Any = session.collection.get(include=["metadatas", "documents"])
    by_source: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for meta, doc in zip(got["metadatas"], got["documents"], strict=True):
        by_source[str(meta["source"])].append((meta, doc))
    lost = duplicated = wrong = 0
    missing_sources = [s for s in expected if s not in by_source]
    unexpected = [s for s in by_source if s not in expected]
    for source, text in expected.items():
        chunks = by_source.get(source, [])
        if not chunks:
            lost += 1
            continue
        versions = defaultdict(list)
        for meta, doc in chunks:
            versions[meta["source_hash"]].append((meta, doc))
        # The version whose chunks reproduce the current text is the right one.
        good = None
        for version in versions.values():
            n = int(version[0][0]["n_chunks"])
            idx = sorted(int(m["chunk_index"]) for m, _ in version)
            if idx == list(range(n)) and all(text[m["start"] : m["end"]] == d for m, d in version):
                good = version
                break
        if good is None:
            wrong += 1
            lost += int(chunks[0][0]["n_chunks"])
        duplicated += len(chunks) - (len(good) if good else 0)
    for source in unexpected:
        duplicated += len(by_source[source])
    return {
        "sources_expected": len(expected),
        "sources_found": len(by_source),
        "chunks": len(got["ids"]),
        "lost_chunks": lost,
        "duplicated_chunks": duplicated,
        "wrong_sources": wrong,
        "missing_sources": len(missing_sources),
        "unexpected_sources": len(unexpected),
    }
