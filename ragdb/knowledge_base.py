"""The Python API: a knowledge base that ingests, retrieves, answers and forgets.

:class:`KnowledgeBase` only delegates: plans and ingestion to :mod:`ragdb.ingest`,
retrieval and answers to :mod:`ragdb.query`, the store, its repair and its
re-embedding to :mod:`ragdb.store`. It implements :class:`ragdb.api.KnowledgeBaseAPI`,
as :class:`ragdb.remote.RemoteKnowledgeBase` does for a running server.

>>> from ragdb import KnowledgeBase
>>> kb = KnowledgeBase(store="~/notes-kb")
>>> kb.ingest(["~/notes"])
>>> result = kb.ask("When is the Innovation Summit held?")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from ragdb.config import DEFAULT_EMBED_MODEL, DEFAULT_KB, Settings, check_kb_name
from ragdb.embed import default_backend, get_embedder
from ragdb.embed.base import Embedder
from ragdb.errors import SourceNotFoundError, StoreNotFoundError, UsageError
from ragdb.ingest.chunking import Chunker
from ragdb.ingest.inputs import Note
from ragdb.ingest.paths import match_sources
from ragdb.ingest.pipeline import check_collisions, run_ingest
from ragdb.ingest.plan import (
    IngestPlan,
    IngestReport,
    Progress,
    Warn,
    plan_paths,
    plan_records,
    plan_text,
)
from ragdb.query.answer import Answer, answer, check_options, refuse_unsupported
from ragdb.query.filters import Filter
from ragdb.query.generate import DEFAULT_CONTEXT_TOKENS, check_llm_url
from ragdb.query.retrieve import (
    DEFAULT_MODE,
    Hit,
    Query,
    Retrieval,
    retrieve_across,
    retrieve_many,
)
from ragdb.query.support import check_support
from ragdb.reports import (
    ExportReport,
    ImportReport,
    KnowledgeBaseInfo,
    MigrateReport,
    ReembedReport,
    RemoveReport,
    Status,
)
from ragdb.store.archive import export_kb, import_archive, read_archive, vectors_fit
from ragdb.store.doctor import DoctorReport
from ragdb.store.knowledge_bases import create_kb, delete_kb, list_kbs, rename_kb
from ragdb.store.records import ChunkRecord, SourceInfo
from ragdb.store.store import Store
from ragdb.store.versions import list_sources, read_source, remove_all, remove_sources


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

    @property
    def name(self) -> str:
        """The knowledge base within the store this one addresses (``--kb``)."""
        return self.settings.kb

    def using(self, name: str) -> Self:
        """Knowledge base ``name`` of the same store, sharing its lock, client
        and model (what a service answering for several does)."""
        check_kb_name(name)
        if name == self.name:
            return self
        other = type(self)(self.settings.replace(kb=name))
        if self._store is not None:
            other._store = self._store.view(name)
        other._chunker = self._chunker
        return other

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
                name = self.settings.embed_model or DEFAULT_EMBED_MODEL
                backend = self.settings.embed_backend or default_backend(name, self.settings.device)
                identity = get_embedder(name, self.settings.device, backend).identity
                self._store = Store.open(self.settings, create=True, identity=identity)
        if create and self.name != DEFAULT_KB:
            # Ingesting into a knowledge base makes it, as into a store does.
            with self._store.session(kb=DEFAULT_KB) as session:
                create_kb(session, self.name, exist_ok=True)
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The store's model, run by ``--embed-backend`` when given (the store
        checked that it is compatible), else by the backend that made the store."""
        identity = self.store().identity
        backend = self.settings.embed_backend or identity.backend
        return get_embedder(identity.name, self.settings.device, backend)

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
        plan = plan_paths(paths, prune=prune, replace=replace, roots=roots, warn=warn)
        return self.ingest_plan(plan, progress=progress, warn=warn)

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
        plan = plan_text(name, data, kind=kind, replace=replace, metadata=metadata)
        return self.ingest_plan(plan, progress=progress, warn=warn)

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
        plan = plan_records(
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

    def ingest_plan(
        self, plan: IngestPlan, *, progress: Progress | None = None, warn: Warn | None = None
    ) -> IngestReport:
        """Carry out ``plan`` (made here, or by :mod:`ragdb.ingest.plan` elsewhere)."""
        store = self.store(create=True)
        return run_ingest(store, self.embedder, self.chunker(), plan, progress=progress, warn=warn)

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

    # -- retrieval and answers ---------------------------------------------------------
    def retrieve(
        self,
        question: str,
        k: int = 4,
        mode: str = DEFAULT_MODE,
        where: Sequence[str] = (),
        kbs: Sequence[str] = (),
    ) -> Retrieval:
        """The ``k`` chunks nearest ``question``: by embedding (``dense``), by
        keywords (``bm25``), or both fused (``hybrid``); only those meeting
        every condition of ``where`` (see :mod:`ragdb.query.filters`). ``kbs``
        names the knowledge bases to search (``"*"``: all; none: this one)."""
        keep = Filter.parse(where)
        query = Query(question, k, mode, filter=keep or None, kbs=tuple(kbs))
        return self.retrieve_many([query])[0]

    def kept_chunks(self) -> dict[str, int]:
        """What this process keeps of the store's chunks between searches (see
        :meth:`ragdb.store.session.Session.kept_chunks`)."""
        with self.store().session() as session:
            return session.kept_chunks()

    def retrieve_many(self, queries: Sequence[Query]) -> list[Retrieval]:
        """What :meth:`retrieve` gives for each of ``queries``, computed together
        where they ask the same knowledge base (see
        :func:`ragdb.query.retrieve.retrieve_many`)."""
        if not queries:
            return []
        store = self.store()
        out: dict[int, Retrieval] = {}
        same: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            kbs = self.resolve_kbs(query.kbs)
            if len(kbs) == 1:
                same.setdefault(kbs[0], []).append(i)
            else:
                out[i] = retrieve_across(store, self.embedder, query, kbs)
        for kb, numbers in same.items():
            found = retrieve_many(store.view(kb), self.embedder, [queries[i] for i in numbers])
            out.update(zip(numbers, found, strict=True))
        return [out[i] for i in range(len(queries))]

    def resolve_kbs(self, kbs: Sequence[str]) -> list[str]:
        """The knowledge bases ``kbs`` names: this one when none, every one for
        ``"*"``; a name the store lacks is an error naming those it holds."""
        if not kbs:
            return [self.name]
        names = list(dict.fromkeys(kbs))
        if len(names) == 1 and names[0] != "*":
            # One name, the common case: the session that searches it says if
            # the store lacks it (the same error), with no session of its own here.
            return names
        every = self.kb_names()
        if "*" in kbs:
            return every
        for name in kbs:
            if name not in every:
                with self.store().session(kb=name):
                    pass  # raises the error naming the knowledge bases there are
        return list(dict.fromkeys(kbs))

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
        where: Sequence[str] = (),
        kbs: Sequence[str] = (),
        require_support: bool = False,
    ) -> Answer:
        """Retrieve (only chunks meeting ``where``'s conditions), then answer
        from what was retrieved. ``on_hits`` sees the
        passages before the model is asked; ``on_text`` sees the answer as it
        streams. An :class:`~ragdb.errors.LLMError` propagates after ``on_hits``,
        carrying the :class:`Answer` so far (its ``error`` set) as ``answer``.
        ``retrieval``, when given, is what was retrieved already for ``question``.
        The answer's ``support`` says which of its sentences the chunks back;
        with ``require_support`` one they do not is an
        :class:`~ragdb.errors.UnsupportedAnswerError` carrying the answer."""
        check_options(min_score, context_tokens)
        Filter.parse(where)  # a bad filter is said before the model loads
        if not retrieve_only:
            check_llm_url(self.settings.llm_url)  # before the model loads, not after
        started = time.perf_counter()
        result = answer(
            self.settings,
            retrieval or self.retrieve(question, k, mode, where, kbs),
            self.count_tokens,
            started=started,
            min_score=min_score,
            context_tokens=context_tokens,
            show_thinking=show_thinking,
            retrieve_only=retrieve_only,
            on_hits=on_hits,
            on_text=on_text,
            encode=self.embedder.encode,
        )
        if require_support:
            refuse_unsupported(result)
        return result

    def check(
        self,
        question: str,
        answer: str,
        k: int = 4,
        *,
        mode: str = DEFAULT_MODE,
        where: Sequence[str] = (),
        kbs: Sequence[str] = (),
        ids: Sequence[str] = (),
    ) -> Answer:
        """Check an answer written elsewhere against this knowledge base: the
        chunks retrieved for ``question`` (or the chunks ``ids`` names, in that
        order) and which of ``answer``'s sentences they back."""
        if not answer.strip():
            raise UsageError("the answer to check is empty")
        if ids:
            hits = self._hits_of(ids)
            retrieval = Retrieval(question, hits, {})
        else:
            retrieval = self.retrieve(question, k, mode, where, kbs)
        support = check_support(answer, retrieval.hits, self.embedder.encode)
        timings = {**retrieval.timings, "support_ms": support.ms}
        found = Answer(question, retrieval.hits, answer, bool(retrieval.hits), None, timings)
        found.support = support
        return found

    def _hits_of(self, ids: Sequence[str]) -> list[Hit]:
        with self.store().session() as session:
            records = {r.id: r for r in session.fetch_records(ids=list(ids))}
        missing = [i for i in ids if i not in records]
        if missing:
            raise SourceNotFoundError(f"no chunk {missing[0]} in the knowledge base")
        return [
            Hit(n, r.id, r.source, 0.0, r.text, r.metadata(), kb=self.name)
            for n, r in enumerate((records[i] for i in ids), 1)
        ]

    # -- removal ------------------------------------------------------------------------
    def matching_sources(self, targets: Sequence[str | Path]) -> dict[str, int]:
        """The stored sources ``targets`` name (stored names, file paths, directories,
        glob patterns), with their chunk counts; an error names a target that
        matches nothing."""
        known = {info.source: info.n_chunks for info in self.sources()}
        return match_sources(targets, known)

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

    # -- knowledge bases ----------------------------------------------------------------
    def knowledge_bases(self) -> list[KnowledgeBaseInfo]:
        """The store's knowledge bases, with what each holds, by name."""
        with self.store().session(kb=DEFAULT_KB) as session:
            return list_kbs(session)

    def kb_names(self) -> list[str]:
        """The store's knowledge bases' names, sorted (no counting)."""
        with self.store().session(kb=DEFAULT_KB) as session:
            return session.kb_names()

    def create_kb(self, name: str) -> KnowledgeBaseInfo:
        """Make knowledge base ``name``, empty, in this store (made if need be)."""
        check_kb_name(name)  # before a store is made for it
        with self.store(create=True).session(kb=DEFAULT_KB) as session:
            create_kb(session, name)
        return KnowledgeBaseInfo(name, 0, 0)

    def rename_kb(self, old: str, new: str) -> None:
        """Call knowledge base ``old`` ``new`` (``default`` keeps its name)."""
        with self.store().session(kb=DEFAULT_KB) as session:
            rename_kb(session, old, new)

    def delete_kb(self, name: str) -> int:
        """Delete knowledge base ``name`` and its chunks; how many there were."""
        with self.store().session(kb=DEFAULT_KB) as session:
            return delete_kb(session, name)

    # -- moving a knowledge base -----------------------------------------------------------
    def export(self, path: str | Path) -> ExportReport:
        """Write this knowledge base (chunks, metadata, vectors, model) to an
        archive at ``path`` (see :mod:`ragdb.store.archive`)."""
        with self.store().session() as session:
            header = export_kb(session, Path(path))
        return ExportReport(
            str(path), self.name, header["sources"], header["chunks"], header["embed_model"]["name"]
        )

    def import_archive(self, path: str | Path, warn: Warn | None = None) -> ImportReport:
        """Restore an archive into this knowledge base (made, and its store,
        if need be): with its own vectors when the store's model made them,
        else embedded anew (``warn`` hears that first). The whole archive is
        checked before anything is written; stored sources of the same
        version are left as they are."""
        archive = read_archive(Path(path))
        if self._store is None and self.settings.embed_model is None:
            try:
                self._store = Store.open(self.settings)
            except StoreNotFoundError:  # a new store takes the archive's model
                self._store = Store.open(self.settings, create=True, identity=archive.identity)
        store = self.store(create=True)
        fit = vectors_fit(archive, store.identity)
        if not fit and warn is not None:
            warn(
                Note(
                    f"the archive's vectors are {archive.identity.name}'s "
                    f"({archive.identity.backend}); the store uses {store.identity.name} "
                    f"({store.identity.backend}): embedding {len(archive.chunks)} chunks anew"
                )
            )
        encode = None if fit else self.embedder.encode
        counts = import_archive(store, self.name, archive, encode)
        return ImportReport(
            str(path),
            self.name,
            counts.added,
            counts.updated,
            counts.unchanged,
            counts.chunks,
            not fit,
            archive.identity.name,
            store.identity.name,
        )

    # -- the store's upkeep ---------------------------------------------------------------
    def doctor(
        self,
        repair: bool = False,
        confirm: Callable[[str], bool] | None = None,
        progress: Progress | None = None,
    ) -> DoctorReport:
        """Check the store (and with ``repair``, fix what can be fixed; see
        :func:`ragdb.store.doctor.doctor`). ``confirm`` agrees to rebuilding a
        lost manifest; ``progress`` hears how far a rebuilt index has come."""
        from ragdb.store.doctor import doctor

        return doctor(self.settings, self.store, repair, confirm, progress)

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
        from ragdb.store.rebuild import reembed

        return reembed(self.store(), self.settings, model, backend, progress)

    # -- what it holds ----------------------------------------------------------------------
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
            chunks, sources = session.count(), len(list_sources(session))
            manifest, index = dict(session.manifest), session.index_kind()
        return Status.of(
            store.location, bool(store.server), store.kb, chunks, sources, manifest, index
        )
