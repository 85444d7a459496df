"""The one path by which chunks are written and deleted.

A source is replaced by adding the chunks of its new version (ids that include
the new hash) before deleting the old ones, under a write-ahead note of the
sources being written; a process killed in between leaves both versions, and
:func:`settle_sources` (run by the next session, see
:meth:`ragdb.store.store.Store.session`) keeps the newest complete one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ragdb.store.backend import ALL
from ragdb.store.records import (
    ChunkRecord,
    NewVersion,
    SourceInfo,
    chunk_id,
    version_problem,
    versions,
)

if TYPE_CHECKING:
    from ragdb.store.session import Session


# Sources per ``$in`` filter.
_SOURCE_BATCH = 200


# -- reading ---------------------------------------------------------------------------
def list_sources(session: Session, only: Sequence[str] | None = None) -> dict[str, SourceInfo]:
    """Every stored source (the newest version, if a crash left two); with
    ``only``, just those of these names that are stored (a few names are found
    without reading every source's record)."""
    where: Any = {"chunk_index": 0}
    if only is not None and 0 < len(only) <= _SOURCE_BATCH:
        names: Any = only[0] if len(only) == 1 else {"$in": list(only)}
        where = {"$and": [where, {"source": names}]}
    out: dict[str, SourceInfo] = {}
    for record in session.fetch_records(where=where, text=False):
        prev = out.get(record.source)
        if prev is None or record.ingested_at > prev.ingested_at:
            out[record.source] = SourceInfo.of(record)
    if only is not None:
        wanted = set(only)
        out = {name: info for name, info in out.items() if name in wanted}
    return out


def records_of(
    session: Session, sources: Sequence[str], text: bool = False
) -> dict[str, list[ChunkRecord]]:
    """Per source, all its stored chunks (every version), in no set order."""
    return session.records_of(sources, text=text)


def read_source(session: Session, source: str) -> list[ChunkRecord]:
    """A source's chunks with their text, in order (its newest whole version)."""
    found = records_of(session, [source], text=True).get(source, [])
    by_version = versions(found).get(source, {})
    whole = [v for v in by_version.values() if version_problem(v) is None]
    if not whole:
        return []
    newest = max(whole, key=lambda v: v[0].ingested_at)
    return sorted(newest, key=lambda r: r.chunk_index)


def embeddings_by_chunk_hash(session: Session, sources: Sequence[str]) -> dict[str, Any]:
    """The stored vector of every chunk of ``sources``, by the hash of its text:
    a changed source reuses those of its unchanged chunks."""
    out: dict[str, Any] = {}
    for batch in _batches(list(sources), _SOURCE_BATCH):
        where: Any = {"source": batch[0]} if len(batch) == 1 else {"source": {"$in": list(batch)}}
        for record, vector in session.fetch_embeddings(where=where):
            if vector is not None and record.chunk_hash:
                out[record.chunk_hash] = vector
    return out


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- writing ---------------------------------------------------------------------------
def write_versions(session: Session, new: Sequence[NewVersion]) -> None:
    """Replace each source's chunks by its new version: add first, then delete."""
    session.begin_write([v.source for v in new])
    old = records_of(session, [v.source for v in new if v.replaces])
    batch = session.max_batch()
    records: list[ChunkRecord] = []
    vectors: list[Any] = []
    for version in new:
        for record, vector in zip(version.records, version.embeddings, strict=True):
            records.append(record)
            vectors.append(vector)
            if len(records) >= batch:
                session.add(records, vectors)
                records, vectors = [], []
    if records:
        session.add(records, vectors)
    keep = {cid for v in new for cid in v.ids}
    session.delete([r.id for v in new for r in old.get(v.source, []) if r.id not in keep])
    session.end_write([v.source for v in new])


def remove_sources(session: Session, sources: Sequence[str]) -> int:
    """Delete every chunk of ``sources``; returns how many chunks went."""
    if not sources:
        return 0
    session.begin_write(sources)
    ids = [r.id for found in records_of(session, sources).values() for r in found]
    session.delete(ids)
    session.end_write(sources)
    return len(ids)


def remove_ids(session: Session, ids: Sequence[str]) -> int:
    """Delete chunks by id (those without ragdb's records, found by doctor)."""
    if ids:
        session.begin_write([ALL])  # their sources are unknown
        session.delete(ids)
        session.end_write()
    return len(ids)


def remove_all(session: Session) -> int:
    """Delete every chunk: the store is left empty, with its settings."""
    return session.clear()


def settle_sources(session: Session, sources: Sequence[str] | None) -> dict[str, int]:
    """Leave each source with exactly one whole version: the newest complete
    one, or none if no version is complete. ``None`` checks every source.

    Returns how many chunks were deleted per source that needed it.
    """
    if sources is None:
        found = versions(session.fetch_records(text=False))
    else:
        found = versions(r for rs in records_of(session, sources).values() for r in rs)
    fixed: dict[str, int] = {}
    for source, by_hash in found.items():
        # A chunk stored twice (under another id) is one chunk: keep the copy
        # whose id is the canonical one, so a duplicate does not cost the version.
        deduped = {h: _one_per_index(v) for h, v in by_hash.items()}
        complete = [v for v in deduped.values() if version_problem(v) is None]
        keep: set[str] = set()
        if complete:
            keep = {r.id for r in max(complete, key=lambda v: v[0].ingested_at)}
        doomed = [r.id for v in by_hash.values() for r in v if r.id not in keep]
        # Two copies of one id count once: Chroma holds it once.
        doomed = list(dict.fromkeys(doomed))
        if doomed:
            session.delete(doomed)
            fixed[source] = len(doomed)
    return fixed


def _one_per_index(version: list[ChunkRecord]) -> list[ChunkRecord]:
    best: dict[int, ChunkRecord] = {}
    for record in version:
        canonical = chunk_id(record.source, record.source_hash, record.chunk_index)
        held = best.get(record.chunk_index)
        if held is None or (record.id == canonical and held.id != canonical):
            best[record.chunk_index] = record
    return list(best.values())
