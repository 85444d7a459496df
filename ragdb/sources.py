"""A knowledge base's sources, as recorded in the chunks' own metadata.

Every chunk carries its source's name and content hash (``source_hash``) and
how many chunks that version of the source has (``n_chunks``), so Chroma alone
says which sources exist and whether each is whole: there is no second record
that could disagree with it. A source is replaced by adding the chunks of its
new version (ids that include the new hash) before deleting the old ones; a
process killed in between leaves both versions, and :func:`settle_sources`
keeps the newest complete one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .store import Session

# Sources per Chroma ``$in`` filter.
_SOURCE_BATCH = 200


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    source: str
    source_hash: str
    n_chunks: int
    ingested_at: str
    kind: str
    origin: str | None = None  # the records file a record came from
    source_type: str = "file"  # "file", "record" or "text" (see Input.source_type)

    def describe(self) -> str:
        """The source's type and origin, in words."""
        if self.source_type == "record":
            return f"a record of {self.origin}"
        return "a file" if self.source_type == "file" else "text given directly"


@dataclasses.dataclass
class NewVersion:
    """A source's new chunks, embedded and ready to write."""

    source: str
    ids: list[str]
    documents: list[str]
    metadatas: list[dict[str, Any]]
    embeddings: np.ndarray


def chunk_id(source: str, source_hash: str, index: int) -> str:
    key = hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]
    return f"{key}-{source_hash[:12]}-{index:05d}"


def list_sources(session: Session) -> dict[str, SourceInfo]:
    got = session.collection.get(where={"chunk_index": 0}, include=["metadatas"])
    out: dict[str, SourceInfo] = {}
    for meta in got["metadatas"] or []:
        info = _info(meta)
        prev = out.get(info.source)
        # Two versions only after a crash, before settling: the newer wins.
        if prev is None or info.ingested_at > prev.ingested_at:
            out[info.source] = info
    return out


def _info(meta: Any) -> SourceInfo:
    return SourceInfo(
        source=str(meta["source"]),
        source_hash=str(meta.get("source_hash", "")),
        n_chunks=int(meta.get("n_chunks", 0)),
        ingested_at=str(meta.get("ingested_at", "")),
        kind=str(meta.get("kind", "text")),
        origin=str(meta["origin"]) if meta.get("origin") else None,
        source_type=str(meta.get("source_type") or _infer_type(meta)),
    )


def _infer_type(meta: Any) -> str:
    # Chunks written before source types were recorded.
    if meta.get("origin"):
        return "record"
    return "file" if str(meta["source"]).startswith("/") else "text"


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def chunks_of(
    session: Session, sources: Sequence[str], include: list[str] | None = None
) -> dict[str, dict[str, list[Any]]]:
    """Per source: its chunks' ``ids`` and whatever ``include`` asks for."""
    include = include or ["metadatas"]
    out: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for batch in _batches(list(sources), _SOURCE_BATCH):
        where: Any = {"source": batch[0]} if len(batch) == 1 else {"source": {"$in": list(batch)}}
        got: Any = session.collection.get(where=where, include=include)  # type: ignore[arg-type]
        for i, cid in enumerate(got["ids"]):
            meta = got["metadatas"][i]
            entry = out[str(meta["source"])]
            entry["ids"].append(cid)
            for key in include:
                value = got[key]
                entry[key].append(value[i] if value is not None else None)
    return out


def write_versions(
    session: Session, versions: Sequence[NewVersion], old_ids: dict[str, list[str]]
) -> None:
    """Replace each source's chunks by its new version: add first, then delete."""
    store = session.store
    sources = [v.source for v in versions]
    store.begin_write(session, sources)
    batch = session.max_batch()
    ids: list[str] = []
    docs: list[str] = []
    metas: list[dict[str, Any]] = []
    embs: list[Any] = []

    def flush() -> None:
        if ids:
            session.collection.add(ids=ids, documents=docs, metadatas=metas, embeddings=embs)  # type: ignore[arg-type]
            session.keywords.add(ids, docs)
            ids.clear()
            docs.clear()
            metas.clear()
            embs.clear()

    for v in versions:
        for i, cid in enumerate(v.ids):
            ids.append(cid)
            docs.append(v.documents[i])
            metas.append(v.metadatas[i])
            embs.append(v.embeddings[i])
            if len(ids) >= batch:
                flush()
    flush()
    stale = [cid for v in versions for cid in old_ids.get(v.source, []) if cid not in set(v.ids)]
    for part in _batches(stale, batch):
        session.collection.delete(ids=list(part))
        session.keywords.delete(part)
    store.end_write(session)


def remove_sources(session: Session, sources: Sequence[str]) -> int:
    """Delete every chunk of ``sources``; returns how many chunks went."""
    if not sources:
        return 0
    store = session.store
    store.begin_write(session, sources)
    found = chunks_of(session, sources)
    ids = [cid for entry in found.values() for cid in entry["ids"]]
    for part in _batches(ids, session.max_batch()):
        session.collection.delete(ids=list(part))
        session.keywords.delete(part)
    store.end_write(session)
    return len(ids)


def settle_sources(session: Session, sources: Sequence[str] | None) -> dict[str, int]:
    """Leave each source with exactly one whole version: the newest complete
    one, or none if no version is complete. ``None`` checks every source.

    Returns how many chunks were deleted per source that needed it.
    """
    if sources is None:
        got = session.collection.get(include=["metadatas"])
        by_source: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for i, cid in enumerate(got["ids"]):
            meta = (got["metadatas"] or [])[i]
            by_source[str(meta.get("source", ""))]["ids"].append(cid)
            by_source[str(meta.get("source", ""))]["metadatas"].append(meta)
        found = by_source
    else:
        found = chunks_of(session, sources)
    fixed: dict[str, int] = {}
    for source, entry in found.items():
        versions: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for cid, meta in zip(entry["ids"], entry["metadatas"], strict=True):
            versions[str(meta.get("source_hash", ""))].append((cid, meta))
        complete = [chunks for chunks in versions.values() if _whole(chunks)]
        keep: set[str] = set()
        if complete:
            newest = max(complete, key=lambda ch: str(ch[0][1].get("ingested_at", "")))
            keep = {cid for cid, _ in newest}
        doomed = [cid for cid in entry["ids"] if cid not in keep]
        if doomed:
            for part in _batches(doomed, session.max_batch()):
                session.collection.delete(ids=list(part))
                session.keywords.delete(part)
            fixed[source] = len(doomed)
    return fixed


def _whole(chunks: list[tuple[str, Any]]) -> bool:
    """Whether one version's chunks are all there, each once."""
    expected = int(chunks[0][1].get("n_chunks", -1))
    indices = {m.get("chunk_index") for _, m in chunks}
    return len(chunks) == expected and len(indices) == expected
