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
from ragdb.ingest.extract import extract, reader_version
from ragdb.ingest.formats.ocr import reporting as ocr_reporting
from ragdb.ingest.formats.ocr import signature as ocr_signature
from ragdb.ingest.inputs import Document, Input, Note, Skipped
from ragdb.ingest.paths import glob_matcher
from ragdb.ingest.plan import IngestInterrupted, IngestPlan, IngestReport, Progress, Warn
from ragdb.ingest.skips import SkipMemory
from ragdb.ingest.web import gather
from ragdb.store.manifest import kb_collection, utcnow
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


# Seconds between notes of a long OCR read's progress (pages take seconds each).
OCR_EVERY = 2.0


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
    plan: IngestPlan,
    progress: Progress | None = None,
    warn: Warn | None = None,
    batch_size: int | None = None,
) -> IngestReport:
    """Carry out ``plan`` on ``store``: ingest its inputs and web pages, and
    prune what it says to (see :class:`~ragdb.ingest.plan.IngestPlan`).

    A source whose name is stored with another type or origin (a file, standard
    input, a record of another records file) is refused before anything is
    written, unless ``plan.replace``; with ``plan.skip_clashes`` it alone is
    skipped.

    One ingest runs at a time per local store: a second one waits for the first
    (saying so through ``warn``), then finds its work done."""

    def waiting(holder: str) -> None:
        if warn:
            warn(f"waiting for {holder} to finish its ingest into this store")

    with store.ingest_turn(waiting):
        return _ingest(store, embedder, chunker, plan, progress, warn, batch_size)


def _ingest(
    store: Store,
    embedder: Embedder,
    chunker: Chunker,
    plan: IngestPlan,
    progress: Progress | None,
    warn: Warn | None,
    batch_size: int | None,
) -> IngestReport:
    started = time.perf_counter()
    run = _Run(store, embedder, chunker, warn, plan.pruning)
    inputs: Sequence[Input] = plan.inputs
    # Pages a crawl will find are not known by name yet: look every source up.
    run.look_up(inputs, everything=plan.pruning or bool(plan.pages or plan.complete_origins))
    origins = set(plan.complete_origins)
    if plan.prune_records:
        origins |= {i.origin for i in inputs if i.origin}
    if plan.pages:
        fetched = gather(plan.pages, run.existing, warn)
        inputs = [*inputs, *fetched.inputs]
        origins |= fetched.whole if plan.prune_pages else set()
    seen = {inp.source for inp in inputs}
    if not plan.replace and not plan.skip_clashes:
        check_collisions(inputs, run.existing)
    elif not plan.replace:
        inputs = run.drop_clashes(inputs)
    todo = run.fingerprint(inputs)
    tally = _Tally(progress, chunker)
    for item in todo:
        tally.expect(item.size)
    run.embed_and_write(todo, tally, batch_size or embedder.batch_size)
    gone = run.gone(seen, plan.prune_dirs, plan.prune_patterns, origins)
    if gone:
        with store.session() as session:
            run.report.chunks_removed += remove_sources(session, gone)
        run.report.removed += len(gone)
    run.memory.save()
    run.report.seconds = round(time.perf_counter() - started, 3)
    return run.report


class _Run:
    """One ingest's state: what is stored, what was skipped, the report."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunker: Chunker,
        warn: Warn | None,
        pruning: bool,
    ) -> None:
        self.store, self.embedder, self.chunker = store, embedder, chunker
        self.warn, self.pruning = warn, pruning
        self.report = IngestReport()
        self.existing: dict[str, SourceInfo] = {}
        # Sources that can no longer be read but have a stored version: their text
        # no longer exists, so --prune removes them; without it the warning says so.
        self.stale: list[str] = []
        self.memory = SkipMemory.for_store(store.location, kb_collection(store.manifest, store.kb))
        self.ocr = ocr_signature()

    def _memo(self, inp: Input, digest: str) -> str:
        """What decides whether ``inp`` yields text: its bytes and reading, and OCR."""
        return f"{digest}:{inp.ocr}:{self.ocr if inp.ocr != 'off' else ''}"

    def look_up(self, inputs: Sequence[Input], everything: bool) -> None:
        """What is stored: every source, or only the inputs' own."""
        with self.store.session() as session:
            only = None if everything else [i.source for i in inputs]
            self.existing = list_sources(session, only)

    def drop_clashes(self, inputs: Sequence[Input]) -> list[Input]:
        """The inputs whose names are not stored as another kind; the others are
        skipped with a warning (their stored versions kept)."""
        kept = []
        for inp in inputs:
            clash = clash_message(inp, self.existing)
            if clash is None:
                kept.append(inp)
                continue
            self.report.skipped += 1
            self.report.skipped_sources.append(
                {"source": inp.source, "reason": clash, "stored_version": "kept"}
            )
            self._say(f"skipped {inp.source}: {clash}")
        return kept

    def skip(self, source: str, reason: str, keep: bool = False) -> None:
        """Count and report a source that cannot be ingested, saying what
        becomes of its stored version (``keep``: it stays, --prune or not)."""
        self.report.skipped += 1
        entry = {"source": source, "reason": reason}
        known = self.existing.get(source)
        if known is not None and keep:
            entry["stored_version"] = "kept"
            reason += "; its stored version is kept (this may pass)"
        elif known is not None:
            if self.pruning:
                self.stale.append(source)
                entry["stored_version"] = "removed (--prune)"
                reason += "; its stored version is removed (--prune)"
            else:
                entry["stored_version"] = "kept"
                chunks = f"{known.n_chunks} chunk{'' if known.n_chunks == 1 else 's'}"
                reason += (
                    f"; its previous version ({chunks}) is still stored and answers "
                    f"queries: drop it with `ragdb remove {source}`, or ingest with --prune"
                )
        self.report.skipped_sources.append(entry)
        self._say(f"skipped {source}: {reason}")

    def fingerprint(self, inputs: Sequence[Input]) -> list[_Pending]:
        """1. The new and changed inputs (a hash of each one's bytes and of the
        chunker's settings against the stored one), read outside the lock."""
        todo: list[_Pending] = []
        for inp in inputs:
            if inp.fetched is not None and inp.fetched.not_modified:
                self.report.unchanged += 1  # a 304: asked only of what is stored
                continue
            try:
                data = inp.read_bytes()
            except Skipped as exc:
                # A failure that may pass (a timeout, a 5xx) is no sign the page is gone.
                self.skip(inp.source, str(exc), keep=bool(inp.fetched and inp.fetched.transient))
                continue
            if not data:
                self.skip(inp.source, "empty")
                continue
            digest = source_hash(data, self.chunker, inp.describe() + reader_version(inp))
            known_skip = self.memory.recall(inp.source, self._memo(inp, digest))
            if known_skip is not None:
                self.skip(inp.source, f"{known_skip} (unchanged since it was read; not read again)")
                continue
            known = self.existing.get(inp.source)
            if known is not None and known.source_hash == digest:
                self.report.unchanged += 1
            else:
                todo.append(_Pending(inp, digest, known is not None, size=len(data)))
        return todo

    def chunked(
        self, todo: list[_Pending], tally: _Tally, budget: list[int]
    ) -> Iterator[list[_Pending]]:
        """2. Sources extracted and chunked, in groups of about ``budget[0]`` chunks."""
        group: list[_Pending] = []
        size = 0
        for item in todo:
            if not self._split(item, tally):
                continue
            group.append(item)
            size += len(item.chunks)
            if size >= budget[0]:
                yield group
                group, size = [], 0
        if group:
            yield group

    def _split(self, item: _Pending, tally: _Tally) -> bool:
        try:
            data = item.inp.read_bytes()
        except Skipped as exc:
            tally.chunked(item.size, 0)
            self.skip(item.inp.source, str(exc))
            return False
        try:
            with ocr_reporting(self._pages_of(item.inp.source)):
                item.doc = extract(item.inp, data)
        except Skipped as exc:
            tally.chunked(item.size, 0)
            # What these bytes hold, read this way: not worth reading twice.
            self.memory.remember(item.inp.source, self._memo(item.inp, item.source_hash), str(exc))
            self.skip(item.inp.source, str(exc))
            return False
        for note in item.doc.notes:
            said = f"{item.inp.source}: {note}"
            self._say(Note(said) if isinstance(note, Note) else said)
        item.chunks = self.chunker.split(
            item.doc.text,
            markdown=item.doc.markdown or item.doc.kind == "markdown",
            pages=item.doc.page_starts,
            sections=item.doc.sections,
        )
        tally.chunked(item.size, len(item.chunks))
        if not item.chunks:
            self.skip(item.inp.source, "no text")
            return False
        return True

    def _pages_of(self, source: str) -> Callable[[int, int], None]:
        """What says how OCR of ``source`` goes, page by page: a note at most
        every :data:`OCR_EVERY` seconds (a one-page scan says nothing)."""
        said = [time.monotonic()]

        def on_page(done: int, total: int) -> None:
            now = time.monotonic()
            if total > 1 and done < total and now - said[0] >= OCR_EVERY:
                said[0] = now
                self._say(Note(f"{source}: read page {done} of {total} by OCR"))

        return on_page

    def embed_and_write(self, todo: list[_Pending], tally: _Tally, batch_size: int) -> None:
        """2-3. A pipeline: a thread extracts and chunks the next sources while
        this one embeds, and another writes what was embedded, so the encoder
        (the real cost) never waits for either."""
        budget = [WRITE_FIRST]  # chunks per batch, retuned after each one
        writer = _Writer(self.store)
        try:
            with writer:
                for group in _prefetch(self.chunked(todo, tally, budget)):
                    t0 = time.perf_counter()
                    versions = _embed(
                        self.store, self.embedder, group, self.report, tally.advance, batch_size
                    )
                    rate = sum(len(item.chunks) for item in group) / (time.perf_counter() - t0)
                    budget[0] = max(WRITE_MIN, min(WRITE_MAX, int(rate * WRITE_SECONDS)))
                    writer.put(versions)
                    for item in group:
                        if item.updating:
                            self.report.updated += 1
                        else:
                            self.report.added += 1
        except KeyboardInterrupt:
            # Leaving the block above waited for the writes already queued.
            raise IngestInterrupted(writer.sources, writer.chunks) from None

    def gone(
        self,
        seen: set[str],
        prune_dirs: Sequence[Path],
        prune_patterns: Sequence[str],
        origins: set[str],
    ) -> list[str]:
        """4. What to prune: sources no longer under the directories given or
        matching the patterns given, those of ``origins`` (records files,
        mailboxes, whole crawls) not found in them this time, and stored
        sources that can no longer be read."""
        matchers = [glob_matcher(p) for p in prune_patterns]
        if not (prune_dirs or matchers or origins or self.stale):
            return []

        def left(src: str, info: SourceInfo) -> bool:
            if info.origin in origins:
                return True
            if info.source_type == "page":
                return False  # only its crawl prunes a page (or a 404, as stale)
            # A record (of a records file, a message of a mailbox) goes with its
            # file: when that file is gone from the directories pruned.
            path = info.origin or src
            covered = any(_under(path, d) for d in prune_dirs) or any(
                m.match(path) for m in matchers
            )
            return covered and not Path(path).exists()

        gone = [src for src, info in self.existing.items() if src not in seen and left(src, info)]
        return gone + [src for src in self.stale if src not in gone]

    def _say(self, message: str) -> None:
        if self.warn:
            self.warn(message)


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
    if known.source_type == inp.source_type == "page":
        return None  # a page found by another crawl now: the same page
    new = SourceInfo(inp.source, "", 0, "", "", inp.origin, inp.source_type).describe()
    hint = {
        "record": "give its records another --id-prefix",
        "text": "choose another --name",
        "file": "remove the stored one first",
        "page": "remove the stored one first",
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
        section=chunk.section,
        title=item.doc.title,
        etag=item.inp.fetched.etag if item.inp.fetched else None,
        last_modified=item.inp.fetched.last_modified if item.inp.fetched else None,
        modified=item.inp.modified,
        # The user's own metadata wins over the document's of the same name.
        extra=tuple({**item.doc.meta, **dict(item.inp.meta)}.items()),
    )
