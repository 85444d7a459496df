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
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ragdb.errors import SourceConflictError
from ragdb.ingest.chunking import Chunk, Chunker
from ragdb.ingest.extract import extract
from ragdb.ingest.inputs import Document, Input, Skipped
from ragdb.ingest.paths import glob_matcher
from ragdb.ingest.plan import IngestInterrupted, IngestReport, Progress, Warn
from ragdb.store.manifest import utcnow
from ragdb.store.records import ChunkRecord, NewVersion, SourceInfo
from ragdb.store.versions import (
    embeddings_by_chunk_hash,
    list_sources,
    remove_sources,
    write_versions,
)

if TYPE_CHECKING:
    from ragdb.embed.base import Embedder
    from ragdb.store.store import Store


# Chunks embedded between two writes: sized as the ingest goes so that each batch
# takes about WRITE_SECONDS to embed, which bounds what a Ctrl-C throws away,
# memory, and how long a query waits; within [WRITE_MIN, WRITE_MAX] chunks, and
# small at first so that something is stored early.
WRITE_SECONDS = 5.0


WRITE_MIN, WRITE_FIRST, WRITE_MAX = 16, 64, 1024


T = TypeVar("T")


@dataclasses.dataclass
class _Pending:
    inp: Input
    source_hash: str
    updating: bool
    doc: Document | None = None
    chunks: list[Chunk] = dataclasses.field(default_factory=list)
    size: int = 0  # bytes, as fingerprinted


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
    batch_size: int | None = None,
    prune_records: bool = False,
    prune_patterns: Sequence[str] = (),
    replace: bool = False,
    skip_clashes: bool = False,
) -> IngestReport:
    """Ingest ``inputs`` into ``store``; prune what left ``prune_dirs``, no longer
    matches ``prune_patterns`` or (``prune_records``) left its records file.

    A source whose name is stored with another type or origin (a file, standard
    input, a record of another records file) is refused before anything is
    written, unless ``replace``; with ``skip_clashes`` it alone is skipped.

    One ingest runs at a time per local store: a second one waits for the first
    (saying so through ``warn``), then finds its work done."""

    def waiting(holder: str) -> None:
        if warn:
            warn(f"waiting for {holder} to finish its ingest into this store")

    with store.ingest_turn(waiting):
        return _ingest(
            store,
            embedder,
            chunker,
            inputs,
            prune_dirs,
            progress,
            warn,
            batch_size,
            prune_records,
            prune_patterns,
            replace,
            skip_clashes,
        )


def _ingest(
    store: Store,
    embedder: Embedder,
    chunker: Chunker,
    inputs: Sequence[Input],
    prune_dirs: Sequence[Path],
    progress: Progress | None,
    warn: Warn | None,
    batch_size: int | None,
    prune_records: bool,
    prune_patterns: Sequence[str],
    replace: bool,
    skip_clashes: bool,
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport()
    pruning = bool(prune_dirs or prune_patterns or prune_records)
    with store.session() as session:
        # Pruning looks at every stored source; otherwise only the inputs' own.
        existing = list_sources(session, None if pruning else [i.source for i in inputs])
    seen = {inp.source for inp in inputs}
    if not replace and not skip_clashes:
        check_collisions(inputs, existing)
    elif not replace:
        kept = []
        for inp in inputs:
            clash = clash_message(inp, existing)
            if clash is None:
                kept.append(inp)
                continue
            report.skipped += 1
            report.skipped_sources.append(
                {"source": inp.source, "reason": clash, "stored_version": "kept"}
            )
            if warn:
                warn(f"skipped {inp.source}: {clash}")
        inputs = kept
    # Sources that can no longer be read but have a stored version: their text
    # no longer exists, so --prune removes them; without it the warning says so.
    stale: list[str] = []

    def skip(source: str, reason: str) -> None:
        report.skipped += 1
        entry = {"source": source, "reason": reason}
        known = existing.get(source)
        if known is not None:
            if pruning:
                stale.append(source)
                entry["stored_version"] = "removed (--prune)"
                reason += "; its stored version is removed (--prune)"
            else:
                entry["stored_version"] = "kept"
                chunks = f"{known.n_chunks} chunk{'' if known.n_chunks == 1 else 's'}"
                reason += (
                    f"; its previous version ({chunks}) is still stored and answers "
                    f"queries: drop it with `ragdb remove {source}`, or ingest with --prune"
                )
        report.skipped_sources.append(entry)
        if warn:
            warn(f"skipped {source}: {reason}")

    # 1. Fingerprints, outside the lock.
    fingerprints: list[tuple[Input, str, int]] = []
    for inp in inputs:
        try:
            data = inp.read_bytes()
        except Skipped as exc:
            skip(inp.source, str(exc))
            continue
        if not data:
            skip(inp.source, "empty")
            continue
        fingerprints.append((inp, source_hash(data, chunker, inp.describe()), len(data)))

    todo: list[_Pending] = []
    tally = _Tally(progress, chunker)
    for inp, digest, size in fingerprints:
        known = existing.get(inp.source)
        if known is not None and known.source_hash == digest:
            report.unchanged += 1
        else:
            todo.append(_Pending(inp, digest, updating=known is not None, size=size))
            tally.expect(size)

    # 2-3. A pipeline: a thread extracts and chunks the next sources while this
    #      one embeds, and another writes what was embedded, so the encoder
    #      (the real cost) never waits for either.
    budget = WRITE_FIRST  # chunks per batch, retuned after each one

    def chunked() -> Iterator[list[_Pending]]:
        group: list[_Pending] = []
        size = 0
        for item in todo:
            try:
                data = item.inp.read_bytes()
                item.doc = extract(item.inp, data)
            except Skipped as exc:
                tally.chunked(item.size, 0)
                skip(item.inp.source, str(exc))
                continue
            for note in item.doc.notes:
                if warn:
                    warn(f"{item.inp.source}: {note}")
            item.chunks = chunker.split(
                item.doc.text, markdown=item.doc.kind == "markdown", pages=item.doc.page_starts
            )
            tally.chunked(item.size, len(item.chunks))
            if not item.chunks:
                skip(item.inp.source, "no text")
                continue
            group.append(item)
            size += len(item.chunks)
            if size >= budget:
                yield group
                group, size = [], 0
        if group:
            yield group

    tick = tally.advance

    writer = _Writer(store)
    try:
        with writer:
            for group in _prefetch(chunked()):
                t0 = time.perf_counter()
                versions = _embed(
                    store, embedder, group, report, tick, batch_size or embedder.batch_size
                )
                rate = sum(len(item.chunks) for item in group) / (time.perf_counter() - t0)
                budget = max(WRITE_MIN, min(WRITE_MAX, int(rate * WRITE_SECONDS)))
                writer.put(versions)
                for item in group:
                    if item.updating:
                        report.updated += 1
                    else:
                        report.added += 1
    except KeyboardInterrupt:
        # Leaving the block above waited for the writes already queued.
        raise IngestInterrupted(writer.sources, writer.chunks) from None

    # 4. Prune sources that no longer exist under the directories given, or
    #    records no longer in the records files given.
    origins = {inp.origin for inp in inputs if inp.origin}
    matchers = [glob_matcher(p) for p in prune_patterns]
    if prune_dirs or matchers or (prune_records and origins) or stale:
        gone = [
            src
            for src, info in existing.items()
            if src not in seen
            and (
                (
                    info.origin is None
                    and (
                        any(_under(src, d) for d in prune_dirs)
                        or any(m.match(src) for m in matchers)
                    )
                    and not Path(src).exists()
                )
                or (prune_records and info.origin in origins)
            )
        ]
        gone += [src for src in stale if src not in gone]
        if gone:
            with store.session() as session:
                report.chunks_removed += remove_sources(session, gone)
            report.removed += len(gone)

    report.seconds = round(time.perf_counter() - started, 3)
    return report


def check_collisions(inputs: Sequence[Input], existing: dict[str, SourceInfo]) -> None:
    """A :class:`SourceConflictError` naming the first input whose name is
    stored as something else."""
    for inp in inputs:
        clash = clash_message(inp, existing)
        if clash is not None:
            raise SourceConflictError(clash)


def clash_message(inp: Input, existing: dict[str, SourceInfo]) -> str | None:
    """Why ``inp`` may not replace what is stored under its name (a file, a
    record and text given directly never overwrite each other), or None."""
    known = existing.get(inp.source)
    if known is None or (known.source_type, known.origin) == (inp.source_type, inp.origin):
        return None
    new = SourceInfo(inp.source, "", 0, "", "", inp.origin, inp.source_type).describe()
    hint = {
        "record": "give its records another --id-prefix",
        "text": "choose another --name",
        "file": "remove the stored one first",
    }[inp.source_type]
    return (
        f"{inp.source!r} is stored as {known.describe()}, and this is {new}: "
        f"{hint}, or add --replace to replace it"
    )


def _under(source: str, directory: Path) -> bool:
    try:
        Path(source).relative_to(directory)
    except ValueError:
        return False
    return True


def _prefetch(items: Iterator[T]) -> Iterator[T]:
    """``items``, computed one ahead in a thread."""
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    done = object()

    def run() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(_Failure(exc))
            return
        q.put(done)

    thread = threading.Thread(target=run, name="ragdb-chunking", daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, _Failure):
            raise item.exc
        yield item
    thread.join()


class _Tally:
    """An ingest's progress in chunks, for a bar that never runs backwards.
    How many chunks there are is known only once every source is chunked, and
    chunking runs ahead of embedding as it goes; so the total starts as a
    generous estimate from the sources' sizes, and is refined downwards as
    sources are chunked (upwards only where the estimate fell short)."""

    CHARS_PER_TOKEN = 3  # low for most text: the estimate errs on the high side

    def __init__(self, progress: Progress | None, chunker: Chunker) -> None:
        self.progress = progress
        self.per_chunk = max(1, (chunker.max_tokens - chunker.overlap) * self.CHARS_PER_TOKEN)
        self.pending_bytes = self.pending_sources = 0  # not chunked yet
        self.chunks = self.done = self.total = 0
        self.lock = threading.Lock()

    def expect(self, size: int) -> None:
        """A source of ``size`` bytes is to be chunked."""
        self.pending_bytes += size
        self.pending_sources += 1

    def chunked(self, size: int, chunks: int) -> None:
        """The source of ``size`` bytes made ``chunks`` chunks (0: skipped)."""
        with self.lock:
            self.pending_bytes -= size
            self.pending_sources -= 1
            self.chunks += chunks

    def advance(self, n: int) -> None:
        """``n`` more chunks embedded (or reused)."""
        with self.lock:
            self.done += n
            estimate = self.chunks + max(
                self.pending_sources, -(-self.pending_bytes // self.per_chunk)
            )
            # Never up unless it must be: a total that grows moves the bar back.
            self.total = max(self.done, self.chunks, min(self.total or estimate, estimate))
            done, total = self.done, self.total
        if self.progress:
            self.progress(done, total)


@dataclasses.dataclass
class _Failure:
    exc: BaseException


class _Writer:
    """Writes embedded sources to the store in a thread of its own, in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.sources = self.chunks = 0  # written so far
        self.thread = threading.Thread(target=self._run, name="ragdb-writer", daemon=True)

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def put(self, versions: list[NewVersion]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(versions)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.error is not None:
                continue  # drain: the first failure is the one reported
            try:
                with self.store.session() as session:
                    write_versions(session, job)
                self.sources += len(job)
                self.chunks += sum(len(v.records) for v in job)
            except BaseException as exc:
                self.error = exc

    def __exit__(self, *exc_info: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


def _embed(
    store: Store,
    embedder: Embedder,
    group: list[_Pending],
    report: IngestReport,
    tick: Callable[[int], None],
    batch_size: int,
) -> list[NewVersion]:
    import numpy as np

    updating = [item.inp.source for item in group if item.updating]
    reuse: dict[str, Any] = {}
    if updating:
        with store.session() as session:
            reuse = embeddings_by_chunk_hash(session, updating)

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
    tick(sum(len(item.chunks) for item in group) - len(where))  # the reused ones
    embedded = embedder.encode(texts, batch_size=batch_size, progress=tick)
    for (gi, ci), vec in zip(where, embedded, strict=True):
        vectors[gi][ci] = vec
    report.chunks_embedded += len(texts)

    now = utcnow()
    return [
        NewVersion(
            source=item.inp.source,
            records=[_record(item, i, chunk, now) for i, chunk in enumerate(item.chunks)],
            embeddings=np.stack(vectors[gi]),
        )
        for gi, item in enumerate(group)
    ]


def _record(item: _Pending, index: int, chunk: Chunk, now: str) -> ChunkRecord:
    assert item.doc is not None
    return ChunkRecord(
        source=item.inp.source,
        chunk_index=index,
        n_chunks=len(item.chunks),
        source_hash=item.source_hash,
        text=chunk.text,
        start=chunk.start,
        end=chunk.end,
        chunk_hash=chunk.hash,
        ingested_at=now,
        kind=item.doc.kind,
        source_type=item.inp.source_type,
        origin=item.inp.origin,
        heading=chunk.heading,
        page=chunk.page,
        title=item.doc.title,
        extra=tuple(item.inp.meta),
    )
