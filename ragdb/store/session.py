"""One locked use of a store: the few named operations ragdb needs of Chroma.

Nothing outside the storage package (:mod:`ragdb.store`: this module, the store,
its manifest, the backends) and the migrations sees a Chroma object.
Every operation here turns Chroma's, SQLite's and the OS's errors into
:class:`~ragdb.errors.StoreError` with a one-line message, and against a
server retries the transient ones with jittered backoff (chunk ids are
deterministic, so a retried write is idempotent).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ragdb.errors import (
    DiskFullError,
    RagdbError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
    first_line,
)
from ragdb.store.backend import ALL, DEFAULT_KB, qualify
from ragdb.store.manifest import kb_collection, kb_entries, kb_entry, utcnow
from ragdb.store.records import ChunkRecord, source_key

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from ragdb.store.backend import Backend
    from ragdb.store.kept import Kept
    from ragdb.store.keywords import KeywordIndex

T = TypeVar("T")
PAGE = 1000
# Chunks per write at most, whatever the server allows: bounds one request.
MAX_BATCH = 5000
# Chroma's HNSW settings for a new chunk collection. Chosen so that HNSW top-10
# matches exact cosine search on SciFact (scripts/eval-scifact reports the recall).
HNSW_SETTINGS: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 200,
    "max_neighbors": 32,
    "ef_search": 400,
}
# How long a server that fails transiently (a dropped connection, 502/503, a
# concurrent delete seen mid-read) or says it is rate limited (HTTP 429, Chroma's
# RateLimitError, Chroma Cloud's Backoff) is asked again, with growing jittered
# pauses, before the command gives up.
RETRY_SECONDS = 30.0
# A server that refuses connections is down, not busy: asked again this long only.
DOWN_SECONDS = 2.0


def create_chunk_collection(
    client: ClientAPI,
    name: str,
    embed_model: dict[str, Any],
    hnsw: dict[str, Any] | None = None,
    kb: str = DEFAULT_KB,
) -> Collection:
    """The chunk collection ``name`` of knowledge base ``kb`` (made if missing)
    with ragdb's embedding function for ``embed_model``. The collection names
    its knowledge base, so that a lost manifest can be rebuilt."""
    from ragdb.store.chroma_ef import RagdbEmbeddingFunction

    metadata = {"ragdb": "chunks"} | ({} if kb == DEFAULT_KB else {"ragdb_kb": kb})

    return client.get_or_create_collection(
        name,
        configuration=cast(Any, {"hnsw": dict(hnsw or HNSW_SETTINGS)}),
        embedding_function=cast(
            Any,
            RagdbEmbeddingFunction(
                embed_model["name"], backend=embed_model.get("backend", "torch")
            ),
        ),
        metadata=metadata,
    )


def chroma_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Chroma (or what it stands on, the network to a
    server included) failed."""
    import httpx
    from chromadb.errors import ChromaError

    return (ChromaError, sqlite3.Error, OSError, httpx.HTTPError)


def foreign(exc: BaseException, server: bool) -> bool:
    """Whether ``exc`` is Chroma's failure (so a StoreError), not a bug of ours:
    one of :func:`chroma_errors`, or on a server the plain Exception the 1.5
    client raises for a server error whose name it does not know."""
    return isinstance(exc, chroma_errors()) or (server and type(exc) is Exception)


def transient(exc: BaseException) -> bool:
    """Whether a server's error is worth another try: a concurrent delete seen
    mid-read ("Error finding id"), a dropped connection, a busy server."""
    import httpx
    from chromadb.errors import InternalError

    if isinstance(exc, (InternalError, httpx.TransportError)):
        return True
    return "503" in str(exc) or "502" in str(exc)


def down(exc: BaseException) -> bool:
    """Whether a server refused the connection outright (it is not running)."""
    import httpx

    return isinstance(exc, httpx.ConnectError)


def rate_limited(exc: BaseException) -> bool:
    """Whether a server's error says to slow down: chromadb raises its
    RateLimitError for a 429 it knows, and a plain Exception carrying the
    body for one it does not (Chroma Cloud's "Backoff")."""
    from chromadb.errors import RateLimitError

    if isinstance(exc, RateLimitError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("backoff", "rate limit", "ratelimit", "too many requests"))


# How many times a keyword index refilled from a server is checked against its ids.
REFILL_CHECKS = 5

# Sources named in one `where ... $in` filter (Chroma's filters grow with it).
SOURCE_BATCH = 200


def call_chroma(backend: Backend, what: str, fn: Callable[[], T]) -> T:
    """``fn()``, with Chroma's failures as one-line StoreErrors; on a server,
    retried with jittered backoff for up to RETRY_SECONDS when the failure is
    transient or the server says it is rate limited."""
    started = time.monotonic()
    attempt, deadline = 0, started + RETRY_SECONDS
    while True:
        try:
            return fn()
        except RagdbError:
            raise
        except Exception as exc:
            limited = backend.server and rate_limited(exc)
            if not (limited or foreign(exc, backend.server)):
                raise
            again = limited or (backend.server and transient(exc))
            if down(exc):  # refused outright: fail fast, a service answers 503
                deadline = min(deadline, started + DOWN_SECONDS)
            if again and time.monotonic() < deadline:
                time.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + random.random()))
                attempt += 1
                continue
            raise failure(backend, what, exc, limited) from exc


def failure(backend: Backend, what: str, exc: BaseException, limited: bool = False) -> StoreError:
    """Chroma's failure as the one line a user can act on."""
    if limited:
        return StoreBusyError(
            f"the Chroma server at {backend.location} kept refusing ragdb as rate "
            f"limited for {RETRY_SECONDS:g}s ({what}: {first_line(exc)}); try again "
            "later (a write cut short is finished by the next command)"
        )
    if backend.server and transient(exc):
        return StoreUnavailableError(
            f"the Chroma server at {backend.location} is unavailable ({what}: "
            f"{first_line(exc)}); try again once it is back (a write cut short is "
            "finished by the next command)"
        )
    full = backend.disk_full()
    if full is not None:
        return DiskFullError(
            f"the disk holding {backend.location} is full ({full}): free some space, "
            f"then run the same command again (Chroma failed {what}). What was stored "
            "before is kept, and a write cut short is finished or undone by the next command"
        )
    hint = ""
    text = str(exc).lower()
    # A torn vector index: Chroma names HNSW when it cannot load it, and
    # reports vectors it cannot find as internal errors.
    torn = "hnsw" in text or "error finding id" in text or "error getting embedding" in text
    if torn and not backend.server:
        hint = "; `ragdb doctor --repair` rebuilds the vector index"
    return StoreError(f"Chroma failed {what} in {backend.location}: {first_line(exc)}{hint}")


class Session:
    """One locked use of the store; everything it reads is fresh for this session.

    A session addresses one knowledge base at a time (``kb``; :meth:`use`
    switches): its chunk collection and keyword index."""

    def __init__(
        self, backend: Backend, client: ClientAPI, manifest: dict[str, Any], kb: str = DEFAULT_KB
    ):
        self.backend = backend
        self.client = client
        self.manifest = manifest
        self.kb = kb
        self._collections: dict[str, Collection] = {}
        self._indexes: dict[str, KeywordIndex] = {}
        # Knowledge bases whose keyword index is kept between sessions (see _kept).
        self._borrowed: set[str] = set()
        self.wrote = False
        # The knowledge bases this session wrote to (their keyword stamps move).
        self.written: set[str] = set()

    @contextlib.contextmanager
    def use(self, kb: str) -> Iterator[Session]:
        """Address knowledge base ``kb`` until the block ends."""
        kb_entry(self.manifest, kb, self.backend.location)  # one that is there
        before, self.kb = self.kb, kb
        try:
            yield self
        finally:
            self.kb = before

    @property
    def collection_name(self) -> str:
        """The chunk collection of the knowledge base addressed."""
        return kb_collection(self.manifest, self.kb)

    # -- the error boundary -----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` through :func:`call_chroma`."""
        return call_chroma(self.backend, what, fn)

    # -- the collection -----------------------------------------------------------------------
    @property
    def _coll(self) -> Collection:
        name = self.collection_name
        if name not in self._collections:
            kept = self._kept()
            known = kept.collections.get(name) if kept is not None else None
            if known is not None:
                self._collections[name] = known
                return known
            from chromadb.errors import NotFoundError

            try:
                found = self._call(
                    "opening the chunk collection", lambda: self.client.get_collection(name)
                )
            except StoreError as exc:
                if not isinstance(exc.__cause__, NotFoundError):
                    raise
                # Lost (a reset killed between delete and create): recreate empty.
                found = self._call(
                    "creating the chunk collection",
                    lambda: create_chunk_collection(
                        self.client, name, self.manifest["embed_model"], kb=self.kb
                    ),
                )
            self._collections[name] = found
            if kept is not None:
                kept.collections[name] = found
        return self._collections[name]

    def _kept(self) -> Kept | None:
        """What this process keeps of the store as this session found it; none
        once the session wrote (the store changes at its end)."""
        return None if self.wrote else self.backend.kept(self.client, self.manifest)

    @property
    def keywords(self) -> KeywordIndex:
        """The keyword index, brought in line with the collection if it is not."""
        if self.kb not in self._indexes:
            kept = self._kept()
            index = kept.index(self.kb) if kept is not None else None
            if index is None:
                index = self._open_keywords(self.kb)
                if kept is not None:
                    kept.keep_index(self.kb, index)
            if kept is not None:
                self._borrowed.add(self.kb)  # the store's to close, not this session's
            self._indexes[self.kb] = index
        return self._indexes[self.kb]

    def _open_keywords(self, kb: str) -> KeywordIndex:
        from ragdb.store.keywords import KeywordIndex

        index = KeywordIndex(self.backend.keywords_path(self.manifest, kb))
        changes = self._call(
            "reading the write log",
            lambda: self.backend.keyword_changes(self.client, index.generation, self.manifest, kb),
        )
        if changes.full:
            self._refill(index)
        elif changes.sources:
            # Other writers changed these sources: take their chunks afresh.
            found = self.records_of(sorted(changes.sources), text=True)
            index.delete_prefixes(source_key(s) for s in changes.sources)
            records = [r for rs in found.values() for r in rs]
            index.add([r.id for r in records], [r.text for r in records])
        if changes.stamp is not None:
            index.set_generation(changes.stamp)
        return index

    def rebuild_keywords(self) -> None:
        """Refill the keyword index from the collection."""
        self._refill(self.keywords)
        self.mark_written()

    def _refill(self, index: KeywordIndex) -> None:
        """Refill ``index`` from the collection. On a server, where another
        process may delete while the pages are read (shifting records past the
        page being read), the index's ids are then checked against a fresh
        listing of the collection's, and mended, until they agree."""
        index.rebuild(self.texts())
        for _ in range(REFILL_CHECKS if self.backend.server else 0):
            stored, held = self.ids(), index.ids()
            if stored == held:
                return
            index.delete(held - stored)
            found = self.fetch_records(ids=sorted(stored - held), text=True)
            index.add([r.id for r in found], [r.text for r in found])

    def max_batch(self) -> int:
        """Chunks per write: the server's limit, at most MAX_BATCH and the
        backend's cap (--chroma-max-batch; Chroma Cloud reports more than it takes)."""
        limit = self._call("reading its batch limit", self.client.get_max_batch_size)
        return max(1, min(int(limit), MAX_BATCH, self.backend.batch_cap or MAX_BATCH))

    @property
    def page(self) -> int:
        """Records per read: PAGE, or fewer where the backend caps requests."""
        return min(PAGE, self.backend.batch_cap or PAGE)

    def count(self) -> int:
        """How many chunks the store holds."""
        return int(self._call("counting chunks", self._coll.count))

    # -- reads --------------------------------------------------------------------------------
    def _get(self, what: str, coll: Any = None, **kw: Any) -> Any:
        return self._call(what, lambda: (coll or self._coll).get(**kw))

    def _get_all(
        self,
        what: str,
        ids: list[str] | None = None,
        where: Any = None,
        coll: Any = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Every record a ``get`` names. On a server, read a page at a time (a
        page of ids, or a ``limit`` on a filter), so that no request asks for
        more than a hosted Chroma serves; a local store reads them in one go."""
        if not self.backend.server:
            return dict(self._get(what, coll, ids=ids, where=where, **kw))
        fields = ["ids", *kw.get("include", [])]
        out: dict[str, list[Any]] = {f: [] for f in fields}
        offset = 0
        while True:
            if ids is not None:
                part: Any = self._get(what, coll, ids=ids[offset : offset + self.page], **kw)
            else:
                part = self._get(what, coll, where=where, limit=self.page, offset=offset, **kw)
            for field in fields:
                out[field] += list(part[field]) if part[field] is not None else []
            offset += self.page
            if (ids is not None and offset >= len(ids)) or (
                ids is None and len(part["ids"]) < self.page
            ):
                return out

    def records_of(
        self, sources: Sequence[str], text: bool = False
    ) -> dict[str, list[ChunkRecord]]:
        """Per source, all its stored chunks (every version), in no set order."""
        out: dict[str, list[ChunkRecord]] = {}
        for i in range(0, len(sources), SOURCE_BATCH):
            batch = list(sources[i : i + SOURCE_BATCH])
            where: Any = {"source": batch[0]} if len(batch) == 1 else {"source": {"$in": batch}}
            for record in self.fetch_records(where=where, text=text):
                out.setdefault(record.source, []).append(record)
        return out

    def save_manifest(self) -> None:
        """Write this session's manifest (the store's, shared with it)."""
        self.manifest["updated_at"] = utcnow()
        self._call(
            "writing the manifest", lambda: self.backend.write_manifest(self.client, self.manifest)
        )

    def fetch_records(
        self,
        *,
        where: dict[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        text: bool = True,
        unreadable: list[str] | None = None,
    ) -> list[ChunkRecord]:
        """Chunks by filter or id (all of them with neither). Chunks without
        ragdb's records are left out; their ids go to ``unreadable``."""
        include = ["metadatas", "documents"] if text else ["metadatas"]
        got = self._get_all(
            "reading chunks",
            where=where,
            ids=list(ids) if ids is not None else None,
            include=include,
        )
        return list(self._records(got, text, unreadable))

    def fetch_embeddings(
        self, *, where: dict[str, Any] | None = None, ids: Sequence[str] | None = None
    ) -> list[tuple[ChunkRecord, Any]]:
        """Chunks (with text) and their stored vectors."""
        got = self._get_all(
            "reading vectors",
            where=where,
            ids=list(ids) if ids is not None else None,
            include=["metadatas", "documents", "embeddings"],
        )
        records = list(self._records(got, True, None, keep_all=True))
        vectors = got["embeddings"]
        if vectors is None or len(vectors) == 0:
            vectors = [None] * len(records)
        return [(r, v) for r, v in zip(records, vectors, strict=True) if r is not None]

    def read_chunks(self, ids: Sequence[str], vectors: bool) -> dict[str, tuple[ChunkRecord, Any]]:
        """The chunks ``ids`` names by id, each with its stored vector (None
        unless ``vectors``), read from Chroma only where this process has not
        read them since the store last changed (see :mod:`ragdb.store.kept`).
        Chunks without ragdb's records are left out."""
        kept = self._kept()
        found, missing = kept.chunks.get_many(ids, vectors) if kept else ({}, list(ids))
        if missing:
            read = (
                self.fetch_embeddings(ids=missing)
                if vectors
                else [(r, None) for r in self.fetch_records(ids=missing)]
            )
            if kept is not None:
                kept.chunks.put_many(read)
            found.update((record.id, (record, vector)) for record, vector in read)
        return found

    def kept_chunks(self) -> dict[str, int]:
        """How many chunks this process keeps of the store as it is now, how
        many :meth:`read_chunks` was asked for since the store last changed,
        and how many of those were kept already."""
        kept = self._kept()
        if kept is None:
            return {"kept": 0, "asked": 0, "found": 0}
        chunks = kept.chunks
        return {"kept": len(chunks), "asked": chunks.asked, "found": chunks.found}

    def ids(self) -> set[str]:
        """Every chunk id."""
        return set(self._get_all("listing chunk ids", include=[])["ids"])

    def pages(
        self, *, embeddings: bool = False, size: int | None = None, offset: int = 0
    ) -> Iterator[list[tuple[ChunkRecord, Any]]]:
        """Every chunk (from ``offset`` on) with its text (and vector), a page
        at a time (:attr:`page` records unless ``size``). Chunks without
        ragdb's records are left out."""
        size = size or self.page
        include = ["metadatas", "documents"] + (["embeddings"] if embeddings else [])
        while True:
            got = self._get("reading chunks", limit=size, offset=offset, include=include)
            if not got["ids"]:
                return
            records = list(self._records(got, True, None, keep_all=True))
            vectors = got.get("embeddings")
            if vectors is None:
                vectors = [None] * len(records)
            yield [(r, v) for r, v in zip(records, vectors, strict=True) if r is not None]
            offset += len(got["ids"])

    def texts(self) -> Iterator[tuple[list[str], list[str]]]:
        """Every chunk's id and text, a page at a time (for the keyword index)."""
        offset = 0
        while True:
            got = self._get("reading chunks", limit=self.page, offset=offset, include=["documents"])
            if not got["ids"]:
                return
            yield list(got["ids"]), [d or "" for d in got["documents"] or []]
            offset += len(got["ids"])

    def salvage(self) -> list[ChunkRecord]:
        """Every chunk with its text, read around a vector index that no longer
        loads (see :meth:`ragdb.store.local.LocalBackend.salvage`)."""
        found = self.backend.salvage(self.collection_name)
        out = []
        for cid, text, meta in found:
            with contextlib.suppress(ValueError):  # chunks without records stay behind
                out.append(ChunkRecord.from_metadata(meta, text, id=cid))
        return out

    def sample_vector(self) -> list[float] | None:
        """One stored vector (to check the index's dimension), or None when empty."""
        got = self._get("reading a vector", limit=1, include=["embeddings"])
        if not got["ids"]:
            return None
        return [float(x) for x in got["embeddings"][0]]

    def nearest_many(
        self,
        embeddings: Sequence[Sequence[float]],
        k: int,
        where: dict[str, Any] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest chunk ids (with cosine distances) of each embedding,
        in one query of the index; ``where`` filters on chunk metadata, ``ids``
        keeps to those chunks."""
        got: Any = self._call(
            "searching the vector index",
            lambda: self._coll.query(
                query_embeddings=cast(Any, [list(map(float, e)) for e in embeddings]),
                n_results=k,
                where=cast(Any, where),
                ids=cast(Any, list(ids) if ids is not None else None),
                include=cast(Any, ["distances"]),
            ),
        )
        return [
            [(cid, float(d)) for cid, d in zip(ids, distances, strict=True)]
            for ids, distances in zip(got["ids"], got["distances"], strict=True)
        ]

    @staticmethod
    def _records(
        got: Any, text: bool, unreadable: list[str] | None, keep_all: bool = False
    ) -> Iterator[Any]:
        for i, cid in enumerate(got["ids"]):
            doc = got["documents"][i] if text and got.get("documents") is not None else ""
            try:
                yield ChunkRecord.from_metadata(got["metadatas"][i], doc, id=cid)
            except ValueError:
                if unreadable is not None:
                    unreadable.append(cid)
                if keep_all:
                    yield None

    # -- writes (see ragdb.store.versions for the protocol) ---------------------------------------
    def begin_write(self, sources: Sequence[str]) -> None:
        """Note which sources a write is about to touch, so that a process killed
        part-way leaves a note for the next session to finish."""
        self._begin({self.kb: sources})

    def _begin(self, sources: dict[str, Sequence[str]]) -> None:
        """Begin one write touching ``sources`` of each knowledge base named."""
        self.mark_written()
        self.written.update(sources)
        if not self.backend.server:
            # Unstamped until the session ends: a crash before then forces a rebuild.
            # (A server's index follows its write log instead.)
            for kb in sources:
                with self.use(kb):
                    self.keywords.set_generation(None)
        recorded = [qualify(kb, s) for kb, names in sources.items() for s in names]
        self._call("recording a write", lambda: self.backend.begin_write(self.client, recorded))

    def end_write(self, written: Sequence[str] = ()) -> None:
        """The write begun by :meth:`begin_write` is done. On a server it is
        recorded done only once a re-read shows each source ``written`` (of the
        knowledge base addressed) with at most one version, and that one whole;
        otherwise the write is left for the next session to settle."""
        if self.backend.server and written and not self._whole(written):
            self._call("recording a write", lambda: self.backend.abandon_write(self.client))
            return
        self._call("recording a write", lambda: self.backend.end_write(self.client))

    def _whole(self, sources: Sequence[str]) -> bool:
        """Whether each of ``sources`` holds no version or one whole one."""
        from ragdb.store.records import version_problem, versions

        found = versions(r for rs in self.records_of(sources).values() for r in rs)
        return all(
            len(by_hash) <= 1 and all(version_problem(v) is None for v in by_hash.values())
            for by_hash in found.values()
        )

    def abandon_write(self) -> None:
        """Leave a write cut short by an error for the next session to settle
        (on a server its lease ends now, instead of when this process does)."""
        with contextlib.suppress(Exception):
            self.backend.abandon_write(self.client)

    def _confirm(self) -> None:
        """Before a delete: the write is still this process's (see
        :meth:`ragdb.store.backend.Backend.confirm_write`)."""
        self._call("renewing a write's lease", lambda: self.backend.confirm_write(self.client))

    def add(self, records: Sequence[ChunkRecord], vectors: Sequence[Any]) -> None:
        """Add chunks and their vectors (one batch, within :meth:`max_batch`).

        Chroma keeps the first record of an id and ignores a later add of it, and
        an id names one version of one source (its content hash): adding again,
        as a retry or a re-run after a crash does, changes nothing. (``add`` is
        also a quarter faster than ``upsert``.)"""
        import numpy as np

        ids = [r.id for r in records]
        docs = [r.text for r in records]
        matrix = np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in vectors]))
        self._call(
            "writing chunks",
            lambda: self._coll.add(
                ids=ids,
                documents=docs,
                metadatas=cast(Any, [r.metadata() for r in records]),
                embeddings=cast(Any, matrix),
            ),
        )
        self.keywords.add(ids, docs)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete chunks by id, in batches, from the collection and the keyword index."""
        if not ids:
            return
        batch = self.max_batch()
        for i in range(0, len(ids), batch):
            part = list(ids[i : i + batch])
            self._confirm()
            self._call("deleting chunks", lambda part=part: self._coll.delete(ids=part))  # type: ignore[misc]
            self.keywords.delete(part)

    def clear(self) -> int:
        """Delete every chunk (the collection is dropped and made anew, empty,
        with the store's settings); returns how many there were."""
        n = self.count()
        name = self.collection_name
        self.begin_write([ALL])
        self._confirm()
        self.keywords.clear()
        self._call("dropping the chunk collection", lambda: self.client.delete_collection(name))
        self._collections.pop(name, None)
        _ = self._coll  # recreated empty
        self.end_write()
        return n

    def mark_written(self) -> None:
        """Say that this session wrote: the store's generation moves on at its end."""
        self.wrote = True

    def keywords_written(self, generation: int) -> None:
        """A local store's session ends at ``generation``: the knowledge bases
        it wrote record that, and the keyword indexes it used are stamped in
        step with their knowledge base."""
        entries = kb_entries(self.manifest)
        for kb in self.written & set(entries):
            entries[kb]["generation"] = generation
        for kb, index in self._indexes.items():
            if kb in entries:
                index.set_generation(int(entries[kb].get("generation", generation)))

    def close(self) -> None:
        """Let go of the keyword indexes (the store closes its session), and of
        a write an error cut short."""
        self.abandon_write()
        for kb, index in self._indexes.items():
            if kb not in self._borrowed:
                index.close()

    # -- collections (doctor, rebuild, re-embed) ------------------------------------------
    def collection_names(self) -> list[str]:
        """Every collection in the store's database."""
        return [c.name for c in self._call("listing collections", self.client.list_collections)]

    def drop_collection(self, name: str) -> None:
        """Delete a collection other than the active one (and its files)."""
        if name in {e["collection"] for e in kb_entries(self.manifest).values()}:
            raise StoreError(f"{name!r} is a knowledge base's active collection")
        self._call("dropping a collection", lambda: self.client.delete_collection(name))
        self.backend.sweep()

    def index_settings(self) -> dict[str, Any]:
        """The chunk collection's HNSW settings."""
        config = self._call(
            "reading the collection's settings", lambda: self._coll.configuration_json
        )
        return dict(config.get("hnsw") or {})

    def index_kind(self) -> str:
        """The collection's vector index: "spann" where the server builds that
        (Chroma's distributed deployment, Cloud), else "hnsw"."""
        config = self._call(
            "reading the collection's settings", lambda: self._coll.configuration_json
        )
        return "spann" if config.get("spann") else "hnsw"

    def recorded_model(self) -> str | None:
        """The model the collection's embedding function names, if it says."""
        try:
            config = self._coll.configuration_json.get("embedding_function") or {}
        except Exception:  # an older chromadb without configuration_json
            return None
        named = (config.get("config") or {}).get("model_name")
        return str(named) if named else None

    def create_collection(self, name: str, embed_model: dict[str, Any]) -> None:
        """A new, empty chunk collection beside the active one (for a rebuild)."""
        self._call(
            "creating a collection",
            lambda: create_chunk_collection(self.client, name, embed_model, kb=self.kb),
        )

    def add_to(self, name: str, records: Sequence[ChunkRecord], vectors: Sequence[Any]) -> None:
        """Add chunks to collection ``name`` (being rebuilt), not the active one."""
        coll = self._call("opening a collection", lambda: self.client.get_collection(name))
        batch = self.max_batch()
        for i in range(0, len(records), batch):
            part, part_vectors = records[i : i + batch], vectors[i : i + batch]

            def write(
                part: Sequence[ChunkRecord] = part, vecs: Sequence[Any] = part_vectors
            ) -> None:
                coll.upsert(
                    ids=[r.id for r in part],
                    documents=[r.text for r in part],
                    metadatas=cast(Any, [r.metadata() for r in part]),
                    embeddings=cast(Any, [list(map(float, v)) for v in vecs]),
                )

            self._call("writing the rebuilt collection", write)

    def ids_of(self, name: str) -> set[str]:
        """Every chunk id of collection ``name``."""
        coll = self._call("opening a collection", lambda: self.client.get_collection(name))
        return set(self._get_all("listing chunk ids", coll=coll, include=[])["ids"])

    def delete_from(self, name: str, ids: Sequence[str]) -> None:
        """Delete chunks from collection ``name`` (being rebuilt)."""
        coll = self._call("opening a collection", lambda: self.client.get_collection(name))
        batch = self.max_batch()
        for i in range(0, len(ids), batch):
            part = list(ids[i : i + batch])
            self._call("deleting chunks", lambda part=part: coll.delete(ids=part))  # type: ignore[misc]

    def switch_collections(self, new: dict[str, str], embed_model: dict[str, Any]) -> None:
        """Make ``new[kb]`` each knowledge base's collection, all in one manifest
        write (with the model that embedded them), and drop the old ones."""
        entries = kb_entries(self.manifest)
        old = {kb: entries[kb]["collection"] for kb in new}
        self._begin({kb: [ALL] for kb in new})
        for kb, name in new.items():
            entries[kb]["collection"] = name
        self.manifest["embed_model"] = embed_model
        self.save_manifest()
        for name in old.values():
            with contextlib.suppress(StoreError):
                self._call(
                    "dropping the old collection",
                    lambda n=name: self.client.delete_collection(n),  # type: ignore[misc]
                )
        self._collections.clear()
        self.end_write()
        self.backend.sweep()

    # -- knowledge bases -----------------------------------------------------------------
    def kb_names(self) -> list[str]:
        """The store's knowledge bases, by name."""
        return sorted(kb_entries(self.manifest))

    def create_kb(self, name: str) -> None:
        """A new, empty knowledge base ``name`` (its collection made first: a
        process killed before the manifest names it leaves an orphan that
        doctor removes, never a knowledge base without its collection)."""
        import uuid

        collection = f"kb-{uuid.uuid4().hex[:12]}-chunks"
        self._call(
            "creating a knowledge base's collection",
            lambda: create_chunk_collection(
                self.client, collection, self.manifest["embed_model"], kb=name
            ),
        )
        entry = {"collection": collection, "generation": 0, "created_at": utcnow()}
        self.manifest.setdefault("knowledge_bases", {})[name] = entry
        self.mark_written()
        self.save_manifest()

    def rename_kb(self, old: str, new: str) -> None:
        """Knowledge base ``old`` is called ``new`` (its collection stays)."""
        entries = self.manifest["knowledge_bases"]
        entries[new] = entries.pop(old)
        self.mark_written()
        self.save_manifest()

    def delete_kb(self, name: str) -> int:
        """Delete knowledge base ``name``, its chunks and its keyword index;
        returns how many chunks it held."""
        with self.use(name):
            n = self.count()
            collection = self.collection_name
            path = self.backend.keywords_path(self.manifest, name)
            index = self._indexes.pop(name, None)
        if index is not None:
            index.close()
        del self.manifest["knowledge_bases"][name]
        self.mark_written()
        self.save_manifest()
        with contextlib.suppress(StoreError):
            self._call("dropping a collection", lambda: self.client.delete_collection(collection))
        self._collections.pop(collection, None)
        for leftover in path.parent.glob(path.name + "*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        self.backend.sweep()
        return n
