"""The Python API: a knowledge base that ingests, retrieves, answers and forgets.

:class:`KnowledgeBase` only delegates: ingestion to :mod:`ragdb.ingest`,
retrieval and answers to :mod:`ragdb.query`, the store to :mod:`ragdb.store`;
its results are the dataclasses of :mod:`ragdb.reports`.

>>> from ragdb import KnowledgeBase
>>> kb = KnowledgeBase(store="~/notes-kb")
>>> kb.ingest(["~/notes"])
>>> result = kb.ask("When is the Innovation Summit held?")
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ragdb.config import DEFAULT_EMBED_MODEL, Settings
from ragdb.embed import default_backend, get_embedder
from ragdb.embed.base import Embedder
from ragdb.embed.identity import ModelIdentity
from ragdb.errors import (
    EmptyStoreError,
    InputError,
    LLMError,
    ManifestError,
    SourceNotFoundError,
    StoreNotFoundError,
    UsageError,
)
from ragdb.ingest.chunking import Chunker
from ragdb.ingest.inputs import Input
from ragdb.ingest.paths import expand_paths, match_sources
from ragdb.ingest.pipeline import check_collisions, run_ingest
from ragdb.ingest.plan import IngestPlan, IngestReport, Progress, Warn
from ragdb.ingest.record_files import read_records
from ragdb.query.generate import (
    DEFAULT_CONTEXT_TOKENS,
    NOT_ENOUGH,
    StreamState,
    build_prompt,
    check_llm_url,
    stream_answer,
)
from ragdb.query.retrieve import DEFAULT_MODE, MODES, Hit, Query, candidate_depth, search_many
from ragdb.reports import Answer, MigrateReport, ReembedReport, RemoveReport, Retrieval, Status
from ragdb.store.doctor import DoctorReport
from ragdb.store.records import ChunkRecord, SourceInfo
from ragdb.store.store import Store
from ragdb.store.versions import list_sources, read_source, remove_all, remove_sources

T = TypeVar("T")


_executor: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragdb-keywords")
    return _executor


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# Bounds on one question: a request must not be able to cost the service
# gigabytes (a question is echoed back, tokenised, and scored word by word).
MAX_QUESTION_CHARS = 8000


MAX_K = 1000


def check_query(query: Query) -> None:
    """Refuse a query that cannot be answered, before any work is done for it."""
    if not query.question.strip():
        raise UsageError("the question is empty")
    if len(query.question) > MAX_QUESTION_CHARS:
        raise UsageError(
            f"the question is {len(query.question):,} characters; at most "
            f"{MAX_QUESTION_CHARS:,} are read (the model embeds only its first few hundred words)"
        )
    if not 1 <= query.k <= MAX_K:
        raise UsageError(f"-k must be between 1 and {MAX_K}")
    if query.mode not in MODES:
        raise UsageError(f"unknown mode {query.mode!r}: use one of {', '.join(MODES)}")


class KnowledgeBase:
    """A persistent knowledge base. Options override environment and defaults
    (see :class:`ragdb.config.Settings`)."""

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        if settings is None:
            settings = Settings.resolve(**options)
        elif options:
            settings = settings.replace(**{k: v for k, v in options.items() if v is not None})
        self.settings = settings
        self._store: Store | None = None
        self._chunker: tuple[int, Chunker] | None = None

    # -- the parts ------------------------------------------------------------------
    def store(self, create: bool = False) -> Store:
        """The opened store (``create`` makes it if there is none yet)."""
        if self._store is None:
            try:
                self._store = Store.open(self.settings)
            except StoreNotFoundError:
                if not create:
                    raise
                # Only a new store needs the model loaded before it opens.
                self._store = Store.open(self.settings, create=True, identity=self._new_identity())
        return self._store

    def _new_identity(self) -> ModelIdentity:
        name = self.settings.embed_model or DEFAULT_EMBED_MODEL
        backend = self.settings.embed_backend or default_backend(name, self.settings.device)
        return self._embedder_for(name, backend).identity

    def _embedder_for(self, name: str, backend: str) -> Embedder:
        return get_embedder(name, self.settings.device, backend)

    @property
    def embedder(self) -> Embedder:
        """The store's model, run by ``--embed-backend`` when given (the store
        checked that it is compatible), else by the backend that made the store."""
        identity = self.store().identity
        return self._embedder_for(identity.name, self.settings.embed_backend or identity.backend)

    def count_tokens(self, text: str) -> int:
        """How many tokens the store's embedding model's tokenizer makes of ``text``
        (what the context budget of an answer is counted in)."""
        return len(self.embedder.tokenizer.encode(text, add_special_tokens=False).ids)

    def chunker(self) -> Chunker:
        """The store's chunker: sized to its model's maximum sequence length
        (made once: a tokenizer's chunker costs tens of milliseconds to build)."""
        size = self.store().identity.max_seq_length
        if self._chunker is None or self._chunker[0] != size:
            self._chunker = (size, Chunker.for_model(self.embedder.tokenizer, size))
        return self._chunker[1]

    # -- ingest -----------------------------------------------------------------------
    def ingest(
        self,
        paths: Sequence[str | Path] = (),
        *,
        prune: bool = False,
        replace: bool = False,
        roots: Sequence[Path] | None = None,
        progress: Progress | None = None,
        warn: Warn | None = None,
    ) -> IngestReport:
        """Add new and changed files under ``paths`` (files, directories, globs).

        ``prune`` also removes stored files that no longer exist under the
        directories given or no longer match the glob patterns given (quoted, so
        that ragdb sees the pattern, not the shell's list of what exists now).
        With ``roots``, only files that lie under one of them when opened are
        read (what a server reads on a client's behalf)."""
        plan = self.plan_paths(paths, prune=prune, replace=replace, roots=roots, warn=warn)
        return self.ingest_plan(plan, progress=progress, warn=warn)

    def plan_paths(
        self,
        paths: Sequence[str | Path],
        *,
        prune: bool = False,
        replace: bool = False,
        roots: Sequence[Path] | None = None,
        warn: Warn | None = None,
    ) -> IngestPlan:
        """What :meth:`ingest` of ``paths`` would do, decided where the files
        are (nothing is read yet, and the store is not opened)."""
        bound = tuple(Path(r) for r in roots) if roots is not None else None
        found = expand_paths([str(p) for p in paths], bound)
        if prune and not found.dirs and not found.patterns:
            raise UsageError(
                "--prune removes stored files that are gone from the directories or quoted "
                "glob patterns given; files named one by one cover nothing (to prune "
                "notes/*.md, quote it: 'notes/*.md')"
            )
        for note in found.notes:
            if warn:
                warn(note)
        if not found.files and not prune:
            raise InputError("nothing to ingest: no files under the paths given")
        return IngestPlan(
            [Input(source=str(f), path=f, roots=bound) for f in found.files],
            prune_dirs=list(found.dirs) if prune else [],
            prune_patterns=list(found.patterns) if prune else [],
            replace=replace,
        )

    def ingest_text(
        self,
        name: str,
        data: bytes | str,
        *,
        kind: str | None = None,
        replace: bool = False,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
        warn: Warn | None = None,
    ) -> IngestReport:
        """Add one source given directly (standard input, say) under ``name``;
        ``metadata`` (strings, numbers, booleans) is kept on each of its chunks."""
        plan = self.plan_text(name, data, kind=kind, replace=replace, metadata=metadata)
        return self.ingest_plan(plan, progress=progress, warn=warn)

    def plan_text(
        self,
        name: str,
        data: bytes | str,
        *,
        kind: str | None = None,
        replace: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> IngestPlan:
        """What :meth:`ingest_text` would do."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not name.strip():
            raise UsageError("a source name must not be empty")
        meta = tuple((metadata or {}).items())
        for key, value in meta:
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise InputError(f"metadata {key!r}: values are strings, numbers or booleans")
        return IngestPlan(
            [Input(source=name, data=data, kind_hint=kind, meta=meta)], replace=replace
        )

    def ingest_records(
        self,
        path: str | Path,
        *,
        id_field: str = "id",
        text_field: str = "text",
        title_field: str | None = None,
        meta_fields: Sequence[str] = (),
        prune: bool = False,
        id_prefix: str = "",
        replace: bool = False,
        progress: Progress | None = None,
        warn: Warn | None = None,
    ) -> IngestReport:
        """Add each record of a JSONL or CSV file as a source named by
        ``id_prefix`` and its id. A record whose name is stored from another
        records file is refused (unless ``replace``)."""
        plan = self.plan_records(
            path,
            id_field=id_field,
            text_field=text_field,
            title_field=title_field,
            meta_fields=meta_fields,
            prune=prune,
            id_prefix=id_prefix,
            replace=replace,
        )
        return self.ingest_plan(plan, progress=progress, warn=warn)

    def plan_records(
        self,
        path: str | Path,
        *,
        id_field: str = "id",
        text_field: str = "text",
        title_field: str | None = None,
        meta_fields: Sequence[str] = (),
        prune: bool = False,
        id_prefix: str = "",
        replace: bool = False,
    ) -> IngestPlan:
        """What :meth:`ingest_records` would do (the file is read now)."""
        inputs = read_records(path, id_field, text_field, title_field, tuple(meta_fields))
        if id_prefix:
            inputs = [dataclasses.replace(i, source=id_prefix + i.source) for i in inputs]
        return IngestPlan(inputs, prune_records=prune, replace=replace)

    def ingest_plan(
        self,
        plan: IngestPlan,
        *,
        progress: Progress | None = None,
        warn: Warn | None = None,
    ) -> IngestReport:
        """Carry out ``plan`` (made here, or by a ``plan_*`` method elsewhere)."""
        return self.ingest_inputs(
            plan.inputs,
            prune_dirs=plan.prune_dirs,
            progress=progress,
            warn=warn,
            prune_records=plan.prune_records,
            prune_patterns=plan.prune_patterns,
            replace=plan.replace,
            skip_clashes=plan.skip_clashes,
        )

    def check_plan(self, plan: IngestPlan) -> None:
        """Refuse ``plan`` before it runs when it would overwrite a source stored
        as another kind (a :class:`~ragdb.errors.SourceConflictError`); running
        it checks again."""
        if plan.replace or plan.skip_clashes or not plan.inputs:
            return
        try:
            store = self.store()
        except StoreNotFoundError:
            return
        with store.session() as session:
            existing = list_sources(session, [i.source for i in plan.inputs])
        check_collisions(plan.inputs, existing)

    def ingest_inputs(
        self,
        inputs: Sequence[Input],
        prune_dirs: Sequence[Path] = (),
        progress: Progress | None = None,
        warn: Warn | None = None,
        prune_records: bool = False,
        prune_patterns: Sequence[str] = (),
        replace: bool = False,
        skip_clashes: bool = False,
    ) -> IngestReport:
        """Ingest ``inputs`` (the other ``ingest_*`` methods make them)."""
        store = self.store(create=True)
        return run_ingest(
            store,
            self.embedder,
            self.chunker(),
            inputs,
            prune_dirs,
            progress=progress,
            warn=warn,
            prune_records=prune_records,
            prune_patterns=prune_patterns,
            replace=replace,
            skip_clashes=skip_clashes,
        )

    # -- retrieval --------------------------------------------------------------------
    def retrieve(self, question: str, k: int = 4, mode: str = DEFAULT_MODE) -> Retrieval:
        """The ``k`` chunks nearest ``question``: by embedding (``dense``), by
        keywords (``bm25``), or both fused (``hybrid``)."""
        return self.retrieve_many([Query(question, k, mode)])[0]

    def retrieve_many(self, queries: Sequence[Query]) -> list[Retrieval]:
        """What :meth:`retrieve` gives for each of ``queries``, computed together:
        the questions are searched in one query of the vector index, their chunks
        read in one go, and they are embedded in one encoder call where the
        backend gives the same vectors that way (how ``ragdb serve`` answers
        concurrent clients)."""
        for query in queries:
            check_query(query)
        if not queries:
            return []
        store = self.store()
        embedder = self.embedder
        if not embedder.loaded:
            # A cold process: say the store is empty before seconds of model loading.
            with store.session() as session:
                if session.count() == 0:
                    raise _empty(store)
        embedder.load()  # a first load takes seconds: never under the lock
        questions = [q.question for q in queries]
        t0 = time.perf_counter()
        with store.session() as session:
            # The keyword searches need no embeddings: they run beside the encoder.
            keyword = None
            if any(q.mode != "dense" and q.source_prefix is None for q in queries):
                index = session.keywords
                keyword = _background().submit(
                    lambda: [
                        index.search(q.question, candidate_depth(q.mode, q.k))
                        if q.mode != "dense" and q.source_prefix is None
                        else None
                        for q in queries
                    ]
                )
            embeddings = embedder.encode_queries(questions)
            t1 = time.perf_counter()
            found = keyword.result() if keyword is not None else [None] * len(queries)
            hits = search_many(session, queries, [list(map(float, e)) for e in embeddings], found)
            # Counting costs a little on every query: only when nothing came back.
            if any(not h for h in hits) and session.count() == 0:
                raise _empty(store)
        t2 = time.perf_counter()
        timings = {"embed_ms": _ms(t1 - t0), "search_ms": _ms(t2 - t1)}
        return [Retrieval(q, h, dict(timings)) for q, h in zip(questions, hits, strict=True)]

    def ask(
        self,
        question: str,
        k: int = 4,
        *,
        mode: str = DEFAULT_MODE,
        min_score: float | None = None,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        show_thinking: bool = False,
        retrieve_only: bool = False,
        on_hits: Callable[[list[Hit]], None] | None = None,
        on_text: Callable[[str], None] | None = None,
        retrieval: Retrieval | None = None,
    ) -> Answer:
        """Retrieve, then answer from what was retrieved. ``on_hits`` sees the
        passages before the model is asked; ``on_text`` sees the answer as it
        streams. An :class:`~ragdb.errors.LLMError` propagates after ``on_hits``,
        carrying the :class:`Answer` so far (its ``error`` set) as ``answer``.
        ``retrieval``, when given, is what was retrieved already for ``question``."""
        if context_tokens < 16:
            raise UsageError("--context-tokens must be at least 16")
        if min_score is not None and not -1.0 <= min_score <= 1.0:
            raise UsageError("--min-score must be between -1 and 1 (a cosine similarity)")
        if not retrieve_only:
            check_llm_url(self.settings.llm_url)  # before the model loads, not after
        t0 = time.perf_counter()
        if retrieval is None:
            retrieval = self.retrieve(question, k, mode)
        hits = retrieval.hits
        timings = dict(retrieval.timings)
        if on_hits:
            on_hits(hits)
        enough = bool(hits) and (min_score is None or any(h.score >= min_score for h in hits))
        if retrieve_only:
            timings["total_ms"] = _ms(time.perf_counter() - t0)
            return Answer(question, hits, None, enough, None, timings)
        if not enough:
            if on_text:
                on_text(NOT_ENOUGH)
            timings["total_ms"] = _ms(time.perf_counter() - t0)
            return Answer(question, hits, NOT_ENOUGH, False, None, timings)
        usable = [h for h in hits if min_score is None or h.score >= min_score]
        prompt = build_prompt(question, usable, context_tokens, self.count_tokens)
        t1 = time.perf_counter()
        pieces: list[str] = []
        first: float | None = None
        state = StreamState()
        try:
            for piece in stream_answer(
                self.settings, prompt.messages, show_thinking=show_thinking, state=state
            ):
                if first is None:
                    first = time.perf_counter()
                pieces.append(piece)
                if on_text:
                    on_text(piece)
        except LLMError as exc:
            # The retrieved passages are still worth having: they travel with the error.
            timings["total_ms"] = _ms(time.perf_counter() - t0)
            exc.answer = Answer(
                question, hits, None, True, self.settings.llm_model, timings, error=str(exc)
            )
            raise
        t2 = time.perf_counter()
        timings["first_token_ms"] = _ms((first or t2) - t1)
        timings["generate_ms"] = _ms(t2 - t1)
        timings["total_ms"] = _ms(t2 - t0)
        timings["context_tokens"] = prompt.context_tokens
        return Answer(
            question,
            hits,
            "".join(pieces).strip(),
            True,
            self.settings.llm_model,
            timings,
            truncated=state.truncated,
            truncated_reason=state.reason,
        )

    # -- removal ------------------------------------------------------------------------
    def matching_sources(self, targets: Sequence[str | Path]) -> dict[str, int]:
        """The stored sources ``targets`` name (stored names, file paths, directories,
        glob patterns), with their chunk counts; an error names a target that
        matches nothing."""
        with self.store().session() as session:
            known = list_sources(session)
        return match_sources(targets, {name: info.n_chunks for name, info in known.items()})

    def remove(self, targets: Sequence[str | Path]) -> RemoveReport:
        """Remove sources: a stored source name, a file's path, a directory
        (every source under it), or a glob pattern."""
        doomed = list(self.matching_sources(targets))
        with self.store().session() as session:
            chunks = remove_sources(session, doomed)
        return RemoveReport(doomed, chunks)

    def reset(self) -> int:
        """Delete every chunk; returns how many there were."""
        with self.store().session() as session:
            return remove_all(session)

    def doctor(
        self,
        repair: bool = False,
        confirm: Callable[[str], bool] | None = None,
        progress: Progress | None = None,
    ) -> DoctorReport:
        """Check the store (and with ``repair``, fix what can be fixed).

        A missing or unreadable manifest is a finding; repairing it rebuilds the
        manifest from its backup copy or from Chroma, once ``confirm`` (given
        what it is rebuilt from, in words) agrees. ``progress`` hears how far a
        rebuild of the vector index has come (chunks done, chunks in all)."""
        from ragdb.store.doctor import Finding, check
        from ragdb.store.doctor import repair as do_repair

        try:
            store = self.store()
        except ManifestError as exc:
            broken = Store(self.settings)
            if not repair:
                # The store's location as every report gives it (a server's URL too).
                return DoctorReport(broken.location, findings=[Finding("manifest", str(exc))])
            plan = broken.plan_manifest_repair()
            if confirm is not None and not confirm(plan.source):
                raise InputError("the manifest was not rebuilt: nothing changed") from None
            broken.apply_manifest_repair(plan)
            report = do_repair(self.store(), progress)
            report.repaired.insert(0, f"rebuilt the manifest from {plan.source}")
            return report
        return do_repair(store, progress) if repair else check(store)

    def migrate(self) -> MigrateReport:
        """Bring the store to this ragdb's format (opening does so too)."""
        store = self.store()
        return MigrateReport(
            store.location,
            list(store.migrated),
            int(store.manifest["format_version"]),
            list(store.manifest.get("migrations", [])),
        )

    def reembed(
        self,
        model: str | None = None,
        progress: Progress | None = None,
        *,
        backend: str | None = None,
    ) -> ReembedReport:
        """Re-embed every chunk with ``model`` and/or ``backend`` (either one
        defaults to the store's) into a new collection, then switch to it."""
        from ragdb.embed.identity import check_backend, same_model
        from ragdb.store.rebuild import rebuild

        if model is None and backend is None:
            raise UsageError("give the model or the backend to re-embed with")
        store = self.store()
        old = store.identity
        target_model = model or old.name
        target_backend = (
            check_backend(backend)
            if backend
            else default_backend(target_model, self.settings.device)
        )
        if same_model(target_model, old.name) and target_backend == old.backend:
            raise UsageError(f"the store already uses {old.name!r} with the {old.backend} backend")
        embedder = self._embedder_for(target_model, target_backend)
        identity = embedder.identity
        name, count = rebuild(store, embedder, identity.to_dict(), progress=progress)
        return ReembedReport(
            store.location, old.name, identity.name, old.backend, identity.backend, name, count
        )

    def chunks(self, source: str) -> list[ChunkRecord]:
        """A stored source's chunks, with their text, in order; an error when
        ``source`` is not stored."""
        with self.store().session() as session:
            found = read_source(session, source)
        if not found:
            raise SourceNotFoundError(f"not in the knowledge base: {source}")
        return found

    def sources(self) -> list[SourceInfo]:
        """Every stored source (name, type, origin, hash, chunks, date), by name."""
        with self.store().session() as session:
            infos = list_sources(session)
        return sorted(infos.values(), key=lambda i: i.source)

    def status(self) -> Status:
        """Where the store is, what it holds and how it was made."""
        store = self.store()
        with store.session() as session:
            chunks = session.count()
            sources = len(list_sources(session))
            manifest = dict(session.manifest)
        model = manifest["embed_model"]
        return Status(
            store=store.location,
            mode="server" if store.server else "embedded",
            collection=manifest["collection"],
            chunks=chunks,
            sources=sources,
            embed_model=model["name"],
            embed_backend=model.get("backend", "torch"),
            embed_dimension=int(model["dimension"]),
            max_seq_length=int(model["max_seq_length"]),
            format_version=int(manifest["format_version"]),
            ragdb_version=manifest.get("ragdb_version"),
            chromadb_version=manifest.get("chromadb_version"),
            created_at=manifest.get("created_at"),
            updated_at=manifest.get("updated_at"),
        )


def _empty(store: Store) -> EmptyStoreError:
    return EmptyStoreError(
        f"the knowledge base at {store.location} is empty: add documents with `ragdb ingest PATH`"
    )
