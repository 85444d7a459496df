"""Incremental ingestion: only new or changed sources are chunked and embedded.

The work runs in three steps, and only the first and last hold the store:
1. fingerprint every input (a hash of its bytes and of the chunker's settings)
   and compare with what the store holds;
2. extract, chunk and embed the new and changed ones, reusing the stored
   embedding of any chunk whose text did not change;
3. write each batch of sources (new version first, then drop the old one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chunking import Chunk, Chunker
from .loaders import Document, Input, Skipped, extract
from .sources import NewVersion, chunk_id, chunks_of, list_sources, remove_sources, write_versions
from .store import utcnow

if TYPE_CHECKING:
    from .embeddings import Embedder
    from .store import Store

# Chunks embedded between two writes: bounds memory and how long queries wait.
WRITE_EVERY = 2048

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)
Warn = Callable[[str], None]


@dataclasses.dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    skipped_sources: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed, {self.skipped} skipped; "
            f"{self.chunks_embedded} chunks embedded in {self.seconds:.1f}s"
        )


@dataclasses.dataclass
class _Pending:
    inp: Input
    source_hash: str
    updating: bool
    doc: Document | None = None
    chunks: list[Chunk] = dataclasses.field(default_factory=list)


def source_hash(data: bytes, chunker: Chunker, extra: str = "") -> str:
    h = hashlib.sha256()
    h.update(chunker.signature.encode())
    h.update(b"\0" + extra.encode() + b"\0")
    h.update(data)
    return h.hexdigest()[:32]


def run_ingest(
    store: Store,
    embedder: Embedder,
    chunker: Chunker,
    inputs: Sequence[Input],
    prune_dirs: Sequence[Path] = (),
    progress: Progress | None = None,
    warn: Warn | None = None,
    batch_size: int = 64,
    prune_records: bool = False,
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport()

    def skip(source: str, reason: str) -> None:
        report.skipped += 1
        report.skipped_sources.append({"source": source, "reason": reason})
        if warn:
            warn(f"skipped {source}: {reason}")

    # 1. Fingerprints, outside the lock.
    fingerprints: list[tuple[Input, str]] = []
    for inp in inputs:
        try:
            data = inp.read_bytes()
        except Skipped as exc:
            skip(inp.source, str(exc))
            continue
        if not data:
            skip(inp.source, "empty")
            continue
        fingerprints.append((inp, source_hash(data, chunker, inp.describe())))

    with store.session() as session:
        existing = list_sources(session)

    todo: list[_Pending] = []
    for inp, digest in fingerprints:
        known = existing.get(inp.source)
        if known is not None and known.source_hash == digest:
            report.unchanged += 1
        else:
            todo.append(_Pending(inp, digest, updating=known is not None))

    # 2. Extract and chunk what is new or changed.
    for item in todo:
        try:
            data = item.inp.read_bytes()
            item.doc = extract(item.inp, data)
        except Skipped as exc:
            skip(item.inp.source, str(exc))
            continue
        item.chunks = chunker.split(
            item.doc.text, markdown=item.doc.kind == "markdown", pages=item.doc.page_starts
        )
        if not item.chunks:
            skip(item.inp.source, "no text")
            item.doc = None
    ready = [item for item in todo if item.doc is not None]

    # 3. Embed and write, a batch of sources at a time.
    total = sum(len(item.chunks) for item in ready)
    done = 0
    if progress:
        progress(0, total)
    group: list[_Pending] = []
    group_chunks = 0
    for item in ready:
        group.append(item)
        group_chunks += len(item.chunks)
        if group_chunks >= WRITE_EVERY:
            done = _embed_and_write(
                store, embedder, group, report, done, total, progress, batch_size
            )
            group, group_chunks = [], 0
    if group:
        done = _embed_and_write(store, embedder, group, report, done, total, progress, batch_size)

    # 4. Prune sources that no longer exist under the directories given, or
    #    records no longer in the records files given.
    origins = {inp.origin for inp in inputs if inp.origin}
    if prune_dirs or (prune_records and origins):
        seen = {inp.source for inp in inputs}
        gone = [
            src
            for src, info in existing.items()
            if src not in seen
            and (
                (
                    info.origin is None
                    and any(_under(src, d) for d in prune_dirs)
                    and not Path(src).exists()
                )
                or (prune_records and info.origin in origins)
            )
        ]
        if gone:
            with store.session() as session:
                report.chunks_removed += remove_sources(session, gone)
            report.removed += len(gone)

    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _under(source: str, directory: Path) -> bool:
    try:
        Path(source).relative_to(directory)
    except ValueError:
        return False
    return True


def _embed_and_write(
    store: Store,
    embedder: Embedder,
    group: list[_Pending],
    report: IngestReport,
    done: int,
    total: int,
    progress: Progress | None,
    batch_size: int,
) -> int:
    import numpy as np

    updating = [item.inp.source for item in group if item.updating]
    old: dict[str, dict[str, list[Any]]] = {}
    reuse: dict[str, Any] = {}
    if updating:
        with store.session() as session:
            old = chunks_of(session, updating, include=["metadatas", "embeddings"])
        for entry in old.values():
            for meta, emb in zip(entry["metadatas"], entry["embeddings"], strict=True):
                if emb is not None and meta.get("chunk_hash"):
                    reuse[str(meta["chunk_hash"])] = emb

    texts: list[str] = []
    where: list[tuple[int, int]] = []  # (group index, chunk index) of each text to embed
    vectors: list[Any] = []
    for gi, item in enumerate(group):
        vectors.append([None] * len(item.chunks))
        for ci, chunk in enumerate(item.chunks):
            hit = reuse.get(chunk.hash)
            if hit is not None:
                vectors[gi][ci] = np.asarray(hit, dtype=np.float32)
                report.chunks_reused += 1
            else:
                texts.append(chunk.text)
                where.append((gi, ci))
    to_embed = len(where)

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    tick(sum(len(item.chunks) for item in group) - to_embed)  # reused ones
    embedded = embedder.encode(texts, batch_size=batch_size, progress=tick)
    for (gi, ci), vec in zip(where, embedded, strict=True):
        vectors[gi][ci] = vec
    report.chunks_embedded += len(texts)

    now = utcnow()
    versions = []
    for gi, item in enumerate(group):
        assert item.doc is not None
        n = len(item.chunks)
        ids = [chunk_id(item.inp.source, item.source_hash, i) for i in range(n)]
        metas = [_metadata(item, i, chunk, n, now) for i, chunk in enumerate(item.chunks)]
        versions.append(
            NewVersion(
                source=item.inp.source,
                ids=ids,
                documents=[c.text for c in item.chunks],
                metadatas=metas,
                embeddings=np.stack(vectors[gi]),
            )
        )
    old_ids = {src: list(entry["ids"]) for src, entry in old.items()}
    with store.session() as session:
        write_versions(session, versions, old_ids)
    for item in group:
        if item.updating:
            report.updated += 1
        else:
            report.added += 1
    return done


def _metadata(item: _Pending, index: int, chunk: Chunk, n: int, now: str) -> dict[str, Any]:
    assert item.doc is not None
    meta: dict[str, Any] = {
        "source": item.inp.source,
        "chunk_index": index,
        "n_chunks": n,
        "start": chunk.start,
        "end": chunk.end,
        "chunk_hash": chunk.hash,
        "source_hash": item.source_hash,
        "ingested_at": now,
        "kind": item.doc.kind,
    }
    if chunk.heading:
        meta["heading"] = chunk.heading
    if chunk.page is not None:
        meta["page"] = chunk.page
    if item.doc.title:
        meta["title"] = item.doc.title
    if item.inp.origin:
        meta["origin"] = item.inp.origin
    for key, value in item.inp.meta:
        if key not in meta:
            meta[key] = value
    return meta
