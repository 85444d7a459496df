"""The store's lifecycle: open it, hold it for a session, let it go.

Opening a :class:`Store` picks its backend (:mod:`ragdb.store.local` for a
directory, :mod:`ragdb.store.server` for a Chroma server), checks the
manifest (:mod:`ragdb.store.manifest`) and applies migrations (:mod:`ragdb.migrations`).
Every use of Chroma goes through :meth:`Store.session`, which takes the
backend's lock, hands out a client that sees every write finished before it,
finishes any write a killed process left half-done, and on leaving records a
write by moving the store's generation on.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.config import DEFAULT_KB
from ragdb.embed.identity import ModelIdentity
from ragdb.errors import ManifestError, StoreError, StoreNotFoundError
from ragdb.store.backend import ALL, Backend, by_kb
from ragdb.store.local import LocalBackend
from ragdb.store.manifest import (
    ManifestRepair,
    check_model,
    check_versions,
    new_manifest,
    parse_manifest,
    rebuild_manifest,
    utcnow,
    version_tuple,
)
from ragdb.store.server import ServerBackend
from ragdb.store.session import Session, call_chroma
from ragdb.version import __version__

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from ragdb.config import Settings

__all__ = ["Session", "Store", "utcnow"]


class Store:
    """A knowledge base's storage: an embedded Chroma directory or a Chroma server."""

    # Apply migrations only through this one (None: all): builds the stores an
    # older ragdb made, for tests of migrating them.
    migrate_upto: str | None = None

    def __init__(self, settings: Settings):
        self.settings = settings
        self.backend: Backend
        if settings.chroma_url is not None:
            token = {"X-Chroma-Token": settings.chroma_token} if settings.chroma_token else {}
            self.backend = ServerBackend(
                settings.chroma_url,
                {**settings.chroma_headers, **token},
                settings.chroma_tenant,
                settings.chroma_database,
                settings.wait,
                settings.lease,
                settings.host_id,
                settings.chroma_max_batch,
            )
        else:
            self.backend = LocalBackend(settings.store, settings.wait)
        self.server = self.backend.server
        # The knowledge base sessions address unless told otherwise.
        self.kb: str = settings.kb
        self.path: Path | None = None if self.server else settings.store.resolve()
        self._thread_lock = threading.RLock()
        # Shared with every view of the store (see :meth:`view`).
        self._shared = _Shared()
        # Migrations this process applied when it opened the store.
        self.migrated: list[str] = []

    @classmethod
    def open(
        cls,
        settings: Settings,
        create: bool = False,
        identity: ModelIdentity | None = None,
    ) -> Store:
        """Open (or, with ``create``, create) the store ``settings`` name.

        ``identity`` is the embedding model's, needed only to create a store.
        """
        store = cls(settings)
        store.backend.precheck(create)  # before a lock file is made anywhere
        # The default knowledge base is always there; the store's own is
        # checked on use (an ingest makes it).
        with store.session(create=create, identity=identity, kb=DEFAULT_KB):
            pass
        return store

    def view(self, kb: str) -> Store:
        """This store, addressing knowledge base ``kb`` by default: its lock,
        client and sessions are this store's (a session of one nests in the other's)."""
        twin = copy.copy(self)
        twin.kb = kb
        return twin

    @property
    def location(self) -> str:
        """The store's directory or server, for messages."""
        return self.backend.location

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as last read in a session."""
        if self._shared.manifest is None:
            with self.session(kb=DEFAULT_KB):
                pass
        assert self._shared.manifest is not None
        return self._shared.manifest

    @property
    def identity(self) -> ModelIdentity:
        """The embedding model that made the store."""
        return ModelIdentity.from_dict(self.manifest["embed_model"])

    # -- sessions --------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(
        self,
        create: bool = False,
        identity: ModelIdentity | None = None,
        kb: str | None = None,
    ) -> Iterator[Session]:
        """Hold the store for one piece of Chroma work on knowledge base ``kb``
        (the store's own, :attr:`kb`, when None).

        Sessions nest within a thread (the outer one owns the client); keep them
        short: read, chunk and embed outside them.
        """
        kb = kb or self.kb
        with self._thread_lock:
            if self._shared.session is not None:
                with self._shared.session.use(kb) as session:
                    yield session
                return
            self.backend.acquire()
            ok = False
            try:
                with _clients_lock:  # never closed for want of room while in use
                    _busy[self.backend.client_key] += 1
                if self._shared.manifest is None:
                    # Under the lock: another process may be creating the store.
                    self.backend.check_location(create)
                client = self._client()
                manifest = call_chroma(
                    self.backend,
                    "reading the manifest",
                    lambda: self._load_manifest(client, create, identity),
                )
                session = Session(self.backend, client, manifest)
                self._shared.session = session
                call_chroma(
                    self.backend, "settling writes cut short", lambda: self._recover(session)
                )
                with session.use(kb):
                    yield session
                if session.wrote and not self.server:
                    # A local store's generation: moved under its lock, so never lost.
                    # A server's is its write log's newest entry (see ragdb.store.writelog).
                    manifest["generation"] = int(manifest.get("generation", 0)) + 1
                    # The keyword indexes were updated alongside every write of this
                    # session: in step (stamped before the save, a crash between
                    # leaves a stamp the manifest lacks, so a rebuild).
                    session.keywords_written(manifest["generation"])
                    self._save_manifest(client, manifest)
                if session.wrote:
                    self.backend.after_write()
                _remember(self.backend.client_key, client, int(manifest.get("generation", 0)))
                ok = True
            finally:
                if self._shared.session is not None:
                    self._shared.session.close()
                self._shared.session = None
                with _clients_lock:
                    _busy[self.backend.client_key] -= 1
                if not ok:
                    _forget(self.backend.client_key)  # state unknown: open afresh next time
                self.backend.release()

    def ingest_turn(self, waiting: Callable[[str], None] | None = None) -> Any:
        """One ingest at a time per local store: a second one waits here (up to
        ``--wait`` seconds; ``waiting`` hears who it waits for) and then compares
        with a store that holds the first one's work. Turns nest within one Store."""
        return self.backend.ingest_turn(waiting)

    # -- Chroma clients ------------------------------------------------------------------------
    def _client(self) -> ClientAPI:
        """This process's client for the store, reused while it is known to be
        fresh: a server's always is; a local store's is while its generation
        (moved by every write, from any process) is the one the client last saw
        and no write was left half-done. Opening a client loads the vector
        index, which is what makes reuse worth it."""
        key = self.backend.client_key
        with _clients_lock:
            cached = _clients.get(key)
            if cached is not None:
                client, generation = cached
                if self.backend.unchanged_since(generation):
                    return client
                _forget(key)
            # Chroma finds a collection's embedding function by its registered
            # name: registered before any collection is read (migrations too).
            from ragdb.store import chroma_ef  # noqa: F401

            client = self.backend.connect()
            _clients[key] = (client, -1)
            return client

    # -- the manifest ---------------------------------------------------------------------------
    def _read_manifest(self, client: ClientAPI) -> dict[str, Any] | None:
        found = self.backend.read_manifest(client)
        if found is None:
            return None
        raw, where = found
        try:
            return parse_manifest(raw)
        except ValueError as exc:
            raise ManifestError(
                f"{where} is unreadable ({exc}); `ragdb doctor --repair` rebuilds it"
            ) from None

    def _save_manifest(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        manifest["updated_at"] = utcnow()
        self.backend.write_manifest(client, manifest)
        self._shared.manifest = manifest

    def _load_manifest(
        self, client: ClientAPI, create: bool, identity: ModelIdentity | None
    ) -> dict[str, Any]:
        manifest = self._read_manifest(client)
        if manifest is None:
            self.backend.manifest_missing(client)
            if not create:
                raise StoreNotFoundError(
                    f"no knowledge base at {self.location} (create one with `ragdb ingest PATH`)"
                )
            if identity is None:
                raise StoreError("creating a store needs the embedding model's identity")
            manifest = new_manifest(identity)
            self._save_manifest(client, manifest)
        from ragdb.migrations import MIGRATIONS

        check_versions(manifest, self.location, MIGRATIONS.names())
        check_model(manifest, self.settings, self.location)
        self._migrate(client, manifest)
        self._shared.manifest = manifest
        return manifest

    def _migrate(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        import chromadb

        from ragdb.migrations import MIGRATIONS, MigrationContext

        if not MIGRATIONS.pending(manifest, self.migrate_upto):
            return
        if manifest.get("migrations"):
            self.backend.backup(manifest)

        def saved(name: str) -> None:
            self.migrated.append(name)
            manifest["ragdb_version"] = __version__
            if version_tuple(chromadb.__version__) > version_tuple(
                str(manifest.get("chromadb_version", "0"))
            ):
                manifest["chromadb_version"] = chromadb.__version__
            self._save_manifest(client, manifest)

        MIGRATIONS.apply(MigrationContext(client, manifest), self.migrate_upto, after_each=saved)

    # -- rebuilding a lost manifest ------------------------------------------------------------
    def plan_manifest_repair(self) -> ManifestRepair:
        """How a missing or unreadable manifest would be rebuilt (see
        :func:`ragdb.store.manifest.rebuild_manifest`). Changes nothing."""
        with self._raw_client() as client:
            return rebuild_manifest(
                client, self.location, self.backend.read_backup(), self.settings.device
            )

    def apply_manifest_repair(self, repair: ManifestRepair) -> None:
        """Write the manifest :meth:`plan_manifest_repair` proposed; the keyword
        index is rebuilt at the next use."""
        with self._raw_client() as client:
            self._save_manifest(client, dict(repair.manifest))
            self.backend.forget_keywords()

    @contextlib.contextmanager
    def _raw_client(self) -> Iterator[ClientAPI]:
        """The store's client, locked, with no manifest read or checked."""
        with self._thread_lock:
            self.backend.acquire()
            try:
                _forget(self.backend.client_key)
                yield self._client()
            finally:
                _forget(self.backend.client_key)
                self.backend.release()

    # -- crash recovery ---------------------------------------------------------------------------
    def _recover(self, session: Session) -> None:
        """Finish what a process killed mid-write left: each source it touched
        keeps its newest whole version."""
        abandoned = self.backend.abandoned_writes(session.client)
        if not abandoned:
            return
        from ragdb.store.versions import settle_sources

        names = session.kb_names()
        for write in abandoned:
            touched = by_kb(write.sources) if write.sources is not None else {}
            for kb in names:
                if write.sources is not None and kb not in touched:
                    continue
                sources = touched.get(kb)
                with session.use(kb):
                    session.begin_write(sources or [ALL])  # claims them, on a server
                    settle_sources(session, None if not sources or ALL in sources else sources)
                    session.end_write()
            self.backend.settled(session.client, write)


class _Shared:
    """What a store and its views share: the manifest last read, the session held."""

    def __init__(self) -> None:
        self.manifest: dict[str, Any] | None = None
        self.session: Session | None = None


# One client per store and process: Chroma shares its state between clients of
# one path inside a process, so two would see each other's staleness. A client
# holds a dozen file descriptors and its index in memory: past MAX_CLIENTS, the
# least recently used idle ones are closed (a process that opens store after
# store, a test suite or a service of many knowledge bases, must not run out).
MAX_CLIENTS = 8
_clients: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()
_busy: collections.Counter[str] = collections.Counter()  # sessions using each client
_clients_lock = threading.RLock()


def _remember(key: str, client: Any, generation: int) -> None:
    with _clients_lock:
        _clients[key] = (client, generation)
        _clients.move_to_end(key)
        idle = [k for k in _clients if k != key and _busy[k] <= 0]
        doomed = idle[: max(0, len(_clients) - MAX_CLIENTS)]
    for old in doomed:
        _forget(old)


def _forget(key: str) -> None:
    with _clients_lock:
        cached = _clients.pop(key, None)
    if cached is not None:
        with contextlib.suppress(Exception):
            # ClientAPI's stubs lack close(); the client has it.
            cached[0].close()
