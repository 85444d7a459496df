"""The chunk record: what one stored chunk is, pure data.

A chunk carries its source's name and content hash (``source_hash``) and how
many chunks that version of the source has (``n_chunks``), so the store alone
says which sources exist and whether each is whole: there is no second record
that could disagree with it. Adding a metadata field is a change here alone.
This module imports nothing of ragdb's: everything in the store sits above it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ragdb.wire import from_fields

if TYPE_CHECKING:
    import numpy as np


# What every chunk's metadata holds; a chunk without them is not ragdb's.
REQUIRED = ("source", "chunk_index", "n_chunks", "source_hash")


# The fields of ChunkRecord stored as metadata under their own names.
_OPTIONAL = ("start", "end", "chunk_hash", "ingested_at", "kind", "source_type")


_IF_SET = ("heading", "page", "section", "title", "origin", "etag", "last_modified", "modified")


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
    # "file", "record", "page" or "text" (see ragdb.ingest.inputs.Input.source_type).
    source_type: str = "file"
    # The records file a record came from; the URL a crawl started at.
    origin: str | None = None
    heading: str | None = None
    page: int | None = None
    # Where in a slide deck, workbook or e-book the chunk lies, in words.
    section: str | None = None
    title: str | None = None
    # A web page's validators, for the next conditional request.
    etag: str | None = None
    last_modified: str | None = None
    # A file's modification time (ISO 8601) when this version was stored.
    modified: str | None = None
    # The user's own metadata (records files' --meta-field) and the document's
    # (front matter, document properties), never ragdb's keys.
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkRecord:
        """The chunk :meth:`to_dict` wrote (a server's, say)."""
        extra = data.get("extra") if isinstance(data, Mapping) else None
        pairs = tuple(extra.items()) if isinstance(extra, Mapping) else ()
        return from_fields(cls, data, extra=pairs)

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
            section=str(meta["section"]) if meta.get("section") else None,
            title=str(meta["title"]) if meta.get("title") else None,
            etag=str(meta["etag"]) if meta.get("etag") else None,
            last_modified=str(meta["last_modified"]) if meta.get("last_modified") else None,
            modified=str(meta["modified"]) if meta.get("modified") else None,
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
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    # The document's metadata and the user's (front matter, properties, headers).
    extra: tuple[tuple[str, Scalar], ...] = ()

    @classmethod
    def of(cls, record: ChunkRecord) -> SourceInfo:
        """The source whose chunk ``record`` is."""
        return cls(
            record.source,
            record.source_hash,
            record.n_chunks,
            record.ingested_at,
            record.kind,
            record.origin,
            record.source_type,
            record.etag,
            record.last_modified,
            record.title,
            record.extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb sources --json`` prints of it (metadata as an object)."""
        out = dataclasses.asdict(self)
        out["metadata"] = dict(out.pop("extra"))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceInfo:
        """The source :meth:`to_dict` wrote (a server's, say)."""
        meta = data.get("metadata") if isinstance(data, Mapping) else None
        extra = tuple(meta.items()) if isinstance(meta, Mapping) else ()
        return from_fields(cls, data, extra=extra)

    def describe(self) -> str:
        """The source's type and origin, in words."""
        if self.source_type == "record":
            return f"a record of {self.origin}"
        if self.source_type == "page":
            return "a web page"
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
