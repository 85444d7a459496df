"""Compares a store's chunks with the texts its sources should have (used by
scripts/stress.py and scripts/crashtest.py)."""

from __future__ import annotations

from typing import Any

from ragdb import KnowledgeBase
from ragdb.store.records import version_problem, versions


def compare(kb: KnowledgeBase, expected: dict[str, str]) -> dict[str, Any]:
    """``expected`` maps each source to its current text. Returns counts of lost
    chunks (expected, absent or wrong), duplicated chunks (present beyond one whole
    version) and unexpected sources."""
    with kb.store().session() as session:
        unreadable: list[str] = []
        records = session.fetch_records(unreadable=unreadable)
    by_source = versions(records)
    lost = wrong = 0
    duplicated = len(unreadable)
    missing_sources = [s for s in expected if s not in by_source]
    unexpected = [s for s in by_source if s not in expected]
    for source, text in expected.items():
        found = by_source.get(source, {})
        if not found:
            lost += 1
            continue
        # The whole version whose chunks reproduce the current text is the right one.
        good = None
        for version in found.values():
            if version_problem(version) is None and all(
                text[r.start : r.end] == r.text for r in version
            ):
                good = version
                break
        n = sum(len(v) for v in found.values())
        if good is None:
            wrong += 1
            lost += next(iter(found.values()))[0].n_chunks
        duplicated += n - (len(good) if good else 0)
    for source in unexpected:
        duplicated += sum(len(v) for v in by_source[source].values())
    return {
        "sources_expected": len(expected),
        "sources_found": len(by_source),
        "chunks": len(records) + len(unreadable),
        "lost_chunks": lost,
        "duplicated_chunks": duplicated,
        "wrong_sources": wrong,
        "missing_sources": len(missing_sources),
        "unexpected_sources": len(unexpected),
    }
