"""The chunk record, and the one path by which chunks are written and deleted.

A chunk carries its source's name and content hash (``source_hash``) and how
many chunks that version of the source has (``n_chunks``), so the store alone
says which sources exist and whether each is whole: there is no second record
that could disagree with it. A source is replaced by adding the chunks of its
new version (ids that include the new hash) before deleting the old ones, under
a write-ahead note of the sources being written; a process killed in between
leaves both versions, and :func:`settle_sources` (run by the next session, see
:meth:`ragdb.store.Store.session`) keeps the newest complete one.

Every reader and writer of chunks goes through this module: adding a metadata
field is a change here alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .writes import ALL

if TYPE_CHECKING:
    import numpy as np

    from .session import Session

# What every chunk's metadata holds; a chunk without them is not ragdb's.
REQUIRED = ("source", "chunk_index", "n_chunks", "source_hash")
# The fields of ChunkRecord stored as metadata under their own names.
_OPTIONAL = ("start", "end", "chunk_hash", "ingested_at", "kind", "source_type")
_IF_SET = ("heading", "page", "title", "origin")
# Sources per ``$in`` filter.
_SOURCE_BATCH = 200

Scalar = str | int | float | bool


def source_key(source: str) -> str:
    """The prefix every chunk id of ``source`` starts with (before a "-")."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def chunk_id(source: str, source_hash: str, index: int) -> str:
    """A chunk's id: stable for a source's version, so rewriting it is idempotent."""
    return f"{source_key(source)}-{source_hash[:12]}-{index:05d}"


@dataclasses.dataclass(frozen=True)
class ChunkRecord:
    """One stored chunk: its text and where it comes from."""

    source: str
    chunk_index: int
    n_chunks: int
    source_hash: str
    text: str = ""
    start: int = 0
    end: int = 0
    chunk_hash: str = ""
    ingested_at: str = ""
    kind: str = "text"
    # "file", "record" or "text" (see ragdb.loaders.Input.source_type).
    source_type: str = "file"
    origin: str | None = None  # the records file a record came from
    heading: str | None = None
    page: int | None = None
    title: str | None = None
    # The user's own metadata (records files' --meta-field), never ragdb's keys.
    extra: tuple[tuple[str, Scalar], ...] = ()
    # As stored; a new chunk's comes from its source, version and index.
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", chunk_id(self.source, self.source_hash, self.chunk_index)
            )

    def to_dict(self) -> dict[str, Any]:
        """The chunk as plain JSON data (what ``GET /v1/sources/{name}`` lists);
        the user's own metadata as an object."""
        out = dataclasses.asdict(self)
        out["extra"] = dict(self.extra)
        return out

    def metadata(self) -> dict[str, Any]:
        """The metadata Chroma stores for this chunk."""
        meta: dict[str, Any] = {key: getattr(self, key) for key in REQUIRED + _OPTIONAL}
        for key in _IF_SET:
            value = getattr(self, key)
            if value is not None and value != "":
                meta[key] = value
        for key, value in self.extra:
            meta.setdefault(key, value)
        return meta

    @classmethod
    def from_metadata(cls, meta: Any, text: str | None = "", id: str = "") -> ChunkRecord:
        """Read a stored chunk; ``ValueError`` when it lacks ragdb's records."""
        meta = dict(meta or {})
        missing = [key for key in REQUIRED if key not in meta]
        if missing:
            raise ValueError(f"chunk metadata lacks {', '.join(missing)}")
        known = set(REQUIRED + _OPTIONAL + _IF_SET)
        return cls(
            source=str(meta["source"]),
            chunk_index=int(meta["chunk_index"]),
            n_chunks=int(meta["n_chunks"]),
            source_hash=str(meta["source_hash"]),
            text=text or "",
            start=int(meta.get("start", 0)),
            end=int(meta.get("end", 0)),
            chunk_hash=str(meta.get("chunk_hash", "")),
            ingested_at=str(meta.get("ingested_at", "")),
            kind=str(meta.get("kind", "text")),
            source_type=str(meta.get("source_type") or _infer_type(meta)),
            origin=str(meta["origin"]) if meta.get("origin") else None,
            heading=str(meta["heading"]) if meta.get("heading") else None,
            page=int(meta["page"]) if meta.get("page") is not None else None,
            title=str(meta["title"]) if meta.get("title") else None,
            extra=tuple((k, v) for k, v in meta.items() if k not in known),
            id=id,
        )


def _infer_type(meta: dict[str, Any]) -> str:
    # Chunks written before source types were recorded.
    if meta.get("origin"):
        return "record"
    return "file" if str(meta["source"]).startswith("/") else "text"


def version_problem(records: Sequence[ChunkRecord]) -> str | None:
    """Whether one version's chunks are all there, each once: ``None`` when they
    are, else ``"duplicate-chunks"`` or ``"incomplete-source"``."""
    indices = [r.chunk_index for r in records]
    if len(indices) != len(set(indices)):
        return "duplicate-chunks"
    if sorted(indices) != list(range(records[0].n_chunks)):
        return "incomplete-source"
    return None


def versions(records: Iterable[ChunkRecord]) -> dict[str, dict[str, list[ChunkRecord]]]:
    """Per source, its chunks grouped by version (content hash)."""
    out: dict[str, dict[str, list[ChunkRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        out[record.source][record.source_hash].append(record)
    return out


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """A stored source, as its first chunk describes it."""

    source: str
    source_hash: str
    n_chunks: int
    ingested_at: str
    kind: str
    origin: str | None = None
    source_type: str = "file"

    @classmethod
    def of(cls, record: ChunkRecord) -> SourceInfo:
        return cls(
            record.source,
            record.source_hash,
            record.n_chunks,
            record.ingested_at,
            record.kind,
            record.origin,
            record.source_type,
        )

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb sources --json`` prints of it."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The source's type and origin, in words."""
        if self.source_type == "record":
            return f"a record of {self.origin}"
        return "a file" if self.source_type == "file" else "text given directly"


@dataclasses.dataclass
class NewVersion:
    """A source's new chunks, embedded and ready to write."""

    source: str
    records: list[ChunkRecord]
    embeddings: np.ndarray
    # False only where the source is known to be new (a synthetic benchmark
    # store): the write then skips looking for an old version to delete.
    replaces: bool = True

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]


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
    out: dict[str, list[ChunkRecord]] = defaultdict(list)
    for batch in _batches(list(sources), _SOURCE_BATCH):
        where: Any = {"source": batch[0]} if len(batch) == 1 else {"source": {"$in": list(batch)}}
        for record in session.fetch_records(where=where, text=text):
            out[record.source].append(record)
    return out


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
    session.end_write()


def remove_sources(session: Session, sources: Sequence[str]) -> int:
    """Delete every chunk of ``sources``; returns how many chunks went."""
    if not sources:
        return 0
    session.begin_write(sources)
    ids = [r.id for found in records_of(session, sources).values() for r in found]
    session.delete(ids)
    session.end_write()
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
