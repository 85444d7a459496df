"""A store on a Chroma server (``chroma run``, or Chroma's distributed deployment).

The server serialises its own writes, so there is no lock file to take; the
manifest is a record of a small collection of its own; writes in flight are
recorded in a write log (:mod:`ragdb.store.writelog`) and per-source claims
(:mod:`ragdb.store.claims`); each client
machine keeps its keyword index in its own cache, rebuilt when the store's
generation moves. The client is made for one tenant and database, with the
headers a proxy in front of the server may need, and refuses a server whose
version this chromadb cannot speak to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

from ragdb.errors import (
    LeaseLostError,
    ManifestError,
    StoreError,
    StoreUnavailableError,
    StoreVersionError,
    UsageError,
    first_line,
)
from ragdb.store.backend import (
    ALL,
    DEFAULT_KB,
    Abandoned,
    KeywordChanges,
    by_kb,
    unqualify,
    writer_id,
)
from ragdb.store.bookkeeping import DUMMY, Retrying
from ragdb.store.claims import CLAIMS_COLLECTION, Claims
from ragdb.store.kept import Kept
from ragdb.store.leases import LEASE, Heartbeat, ServerClock, host_identity, writer_gone
from ragdb.store.manifest import kb_collection
from ragdb.store.writelog import LOG_COLLECTION, WriteLog

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

# The collection holding the manifest, as the document of record MANIFEST_ID.
MANIFEST_COLLECTION = "ragdb-manifest"
MANIFEST_ID = "manifest"
# Chroma Cloud takes at most 300 records a request (and reports 1,000:
# chroma-core/chroma #5453); reads of the bookkeeping stay within that anywhere.
CLOUD_DOMAIN = "trychroma.com"
CLOUD_BATCH = 300


class ServerBackend:
    """A store on a Chroma server."""

    server = True

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        tenant: str | None = None,
        database: str | None = None,
        wait: float = 60.0,
        lease: float = LEASE,
        host_id: str | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.tenant = tenant
        self.database = database
        self.wait = wait
        self.lease = lease
        cloud = (urlparse(url).hostname or "").endswith(CLOUD_DOMAIN)
        self.batch_cap = max_batch or (CLOUD_BATCH if cloud else None)
        # Records per request of the bookkeeping's own reads and deletes.
        self.page = min(CLOUD_BATCH, self.batch_cap or CLOUD_BATCH)
        self.me = host_identity(host_id)
        self.clock = ServerClock()
        self._log = WriteLog(self)
        self._claims = Claims(self)
        # The write in progress: its token, sources, claims, log entry, heartbeat.
        self._token = ""
        self._sources: list[str] = []
        self._held: list[str] = []
        self._entry: str | None = None
        self._heartbeat: Heartbeat | None = None
        # What this process last read of the store, valid while the log's head holds.
        self._head: _Head | None = None
        self._seen: tuple[Any, int] | None = None  # the log's newest entry, as last read

    @property
    def location(self) -> str:
        where = self.url
        if self.tenant or self.database:
            where += f" (tenant {self.tenant or 'default'}, database {self.database or 'default'})"
        return where

    @property
    def client_key(self) -> str:
        return f"{self.url}|{self.tenant}|{self.database}|{sorted(self.headers.items())}"

    def precheck(self, create: bool) -> None:
        """The URL's form, before connecting."""
        self.check_location(create)

    def check_location(self, create: bool) -> None:
        url = urlparse(self.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"--chroma-url {self.url!r} is not an http(s)://HOST:PORT URL")

    def connect(self) -> ClientAPI:
        """A client of the server, tried again while it is unavailable."""
        url = urlparse(self.url)
        for attempt in range(4):  # a server restarting, a dropped connection
            try:
                return self._connect(url)
            except StoreUnavailableError:
                if attempt == 3:
                    raise
                time.sleep(0.1 * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _connect(self, url: Any) -> ClientAPI:
        import chromadb
        from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT
        from chromadb.config import Settings as ChromaSettings

        try:
            client = chromadb.HttpClient(
                host=str(url.hostname),
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                headers=self.headers or None,
                tenant=self.tenant or DEFAULT_TENANT,
                database=self.database or DEFAULT_DATABASE,
                settings=ChromaSettings(anonymized_telemetry=False),
            )
            version = str(client.get_version())
        except Exception as exc:
            from ragdb.store.session import rate_limited, transient

            # chromadb reports a failed tenant check as a ValueError raised
            # while handling the real error: judge that one.
            real = exc.__cause__ or exc.__context__ or exc
            again = any(transient(e) or rate_limited(e) for e in (exc, real))
            error = StoreUnavailableError if again else StoreError
            raise error(
                f"cannot reach the Chroma server at {self.location}: {first_line(exc)}"
            ) from exc
        check_server_version(version, self.url)
        return client

    def acquire(self) -> None:
        """Nothing to take: the server serialises writes itself."""

    def release(self) -> None:
        """Nothing to let go."""

    @contextlib.contextmanager
    def ingest_turn(self, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """No lock is shared between machines: concurrent ingests stay correct
        (whole versions, deterministic ids) but may both embed the same files."""
        yield

    # -- the manifest ----------------------------------------------------------------------
    def read_manifest(self, client: ClientAPI) -> tuple[str, str] | None:
        """The manifest: the document of a record of its own collection (a
        hosted Chroma allows 256 bytes a metadata value); a store an older ragdb
        wrote keeps it in the collection's metadata until its next save.

        Read once per change of the store: every change (a write, a manifest
        save) appends to the write log, so while its newest entry is the one
        last seen, the manifest read then, the pending writes found then and
        the chunk collections opened since still hold, and a session costs
        one request (is there a newer entry?) before its own work."""
        count = self._log_head(client)
        head = self._head
        if head is not None and head.client is client and head.newest == count:
            return head.manifest, f"the manifest of {self.location}"
        self._head = None
        stored = self._read_manifest(client)
        if stored is None:
            return None
        self._head = _Head(client, count, stored)
        return stored, f"the manifest of {self.location}"

    def _read_manifest(self, client: ClientAPI) -> str | None:
        from chromadb.errors import NotFoundError

        from ragdb.store.session import call_chroma

        def find() -> Any:
            try:
                return client.get_collection(MANIFEST_COLLECTION)
            except NotFoundError:
                return None

        found = call_chroma(self, "reading the manifest", find)
        if found is None:
            return None
        coll = Retrying(found, self, "reading the manifest")
        got = coll.get(ids=[MANIFEST_ID], include=["documents"])
        stored: str | None = (got["documents"] or [""])[0]
        if not stored:
            legacy = str((coll.metadata or {}).get("manifest") or "")
            stored = None if not legacy or '"stub"' in legacy else legacy
        return stored or None

    def _log_head(self, client: ClientAPI) -> int:
        """The write log's newest entry number (0 before the first write): one
        request while it is the one this process saw last."""
        newest = self._log.head(client, self._last_seen(client))
        self._seen = (client, newest)
        return newest

    def _last_seen(self, client: ClientAPI) -> int | None:
        seen = self._seen
        return seen[1] if seen is not None and seen[0] is client else None

    def generation(self, client: ClientAPI) -> int:
        """The write log's newest entry as this session saw it at its start."""
        head = self._head
        if head is not None and head.client is client:
            return head.newest
        return self._log_head(client)

    def kept(self, client: ClientAPI, manifest: dict[str, Any]) -> Kept | None:
        """What this process read of the store since the write log's head last
        moved (a reset makes the collection anew: a change)."""
        head = self._head
        return head.kept if head is not None and head.client is client else None

    def write_manifest(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        """Save the manifest as its record's document (one upsert: atomic), and
        drop an older ragdb's copy in the collection's metadata."""
        made = Retrying(client, self, "writing the manifest").get_or_create_collection(
            MANIFEST_COLLECTION, embedding_function=None
        )
        coll = Retrying(made, self, "writing the manifest")
        text = json.dumps(manifest, sort_keys=True)
        coll.upsert(ids=[MANIFEST_ID], documents=[text], embeddings=DUMMY)
        stub = _stub(manifest)
        if (coll.metadata or {}).get("manifest") != stub:
            coll.modify(metadata={"ragdb": MANIFEST_COLLECTION, "manifest": stub})
        # A change every process must see: the log's head moves (an entry
        # with no sources, done at once).
        self._head = None
        mine = {"owner": writer_id(), "pid": 0}
        entry = self._log.append(client, [], lambda c: mine, self._last_seen(client))
        self._log.finish(client, entry, "done")

    def read_backup(self) -> str | None:
        """A server keeps no backup copy: the chunks' own collection is the
        source for a rebuilt manifest."""
        return None

    def manifest_missing(self, client: ClientAPI) -> None:
        """Refuse to start afresh on a server that holds ragdb chunks without a
        manifest: ``doctor --repair`` rebuilds it."""
        if any((c.metadata or {}).get("ragdb") == "chunks" for c in client.list_collections()):
            raise ManifestError(
                f"the manifest of {self.location} is missing though the server holds ragdb "
                "chunks; `ragdb doctor --repair` rebuilds it"
            )

    def unchanged_since(self, generation: int) -> bool:
        """A server's client always sees the latest writes."""
        return True

    def keywords_path(self, manifest: dict[str, Any], kb: str) -> Path:
        """This machine's keyword index for knowledge base ``kb``, in the user's cache."""
        from platformdirs import user_cache_path

        key = f"{self.url}|{self.tenant}|{self.database}|{manifest.get('created_at')}"
        if not (self.tenant or self.database):
            key = f"{self.url}|{manifest.get('created_at')}"  # as before tenants existed
        if kb != DEFAULT_KB:
            key += f"|{kb_collection(manifest, kb)}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return user_cache_path("ragdb", appauthor=False) / "keywords" / f"{digest}.sqlite3"

    def forget_keywords(self) -> None:
        """The cached index is rebuilt when the generation moves: nothing to do."""

    def disk_full(self) -> None:
        """A server's disk is the server's to report."""
        return None

    def reserved_collections(self) -> set[str]:
        """Collections that are the backend's own, never chunks."""
        return {MANIFEST_COLLECTION, LOG_COLLECTION, CLAIMS_COLLECTION}

    def sweep(self) -> list[str]:
        """A server deletes a dropped collection's files itself: nothing to do."""
        return []

    def salvage(self, collection: str) -> list[tuple[str, str, dict[str, Any]]]:
        """A server's broken index is its operator's to repair."""
        raise StoreError(
            f"the vector index of {self.location} fails to load: repair the Chroma server "
            "(ragdb cannot read a server's files)"
        )

    # -- writes in flight: the write log and the claims ---------------------------------------
    # Chroma's `add` keeps the first record of an id and ignores later ones, and a
    # read sees every write that finished before it: that is a compare-and-swap,
    # which is all a lock-free write log and per-source claims need.

    def begin_write(self, client: ClientAPI, sources: Sequence[str]) -> None:
        """Claim ``sources`` (waiting for another writer's claim up to --wait),
        append a pending entry to the write log, and keep both alive with a
        heartbeat until the write ends."""
        claimed = [s for s in sources if unqualify(s)[1] != ALL]
        self._token = writer_id()
        self._sources = list(sources)
        self._held = self._claims.acquire(client, claimed, self.wait, self._lease_meta)
        try:
            self._entry = self._log.append(
                client, self._sources, self._lease_meta, self._last_seen(client)
            )
        except BaseException:
            # Let the claims go (best effort) so that a retry does not wait on them.
            with contextlib.suppress(Exception):
                self._claims.release(client, self._held, self._token)
            self._held = []
            raise
        self._heartbeat = Heartbeat(self.lease / 3, lambda: self.renew(client)).start()

    def _lease_meta(self, client: ClientAPI) -> dict[str, Any]:
        """What a claim or log entry records of its writer and its lease."""
        return {
            "owner": self._token,
            "host": socket.gethostname(),
            "hostid": self.me,
            "pid": os.getpid(),
            "expires": self.server_now(client) + self.lease,
        }

    def server_now(self, client: ClientAPI) -> float:
        """The Chroma server's time (see :class:`ragdb.store.leases.ServerClock`)."""
        return self.clock.now(cast(Any, Retrying(client, self, "reading the server's clock")))

    def renew(self, client: ClientAPI) -> bool:
        """Extend the lease of the write in progress; False when it is no longer
        this writer's (its entry was settled or a claim taken by another)."""
        if self._entry is None:
            return True
        expires = self.server_now(client) + self.lease
        if not self._log.renew(client, self._entry, self._token, expires):
            return False
        return self._claims.renew(client, self._held, self._token, expires)

    def confirm_write(self, client: ClientAPI) -> None:
        """Before deleting: renew the lease, and stop if the write was lost
        (another process took it over while this one stalled). Its sources are
        left to the next session to settle: nothing is deleted here."""
        if self._entry is None:
            return
        beat = self._heartbeat
        if beat is not None and not beat.lost and self.renew(client):
            return
        self._stop_heartbeat()
        dead = {"owner": writer_id(), "hostid": "", "pid": 0, "expires": 0.0}
        self._log.append(client, self._sources, lambda c: dead, self._last_seen(client))
        self._claims.release(client, self._held, self._token)
        self._entry, self._held = None, []
        raise LeaseLostError(
            f"this write stalled for longer than its {self.lease:g}s lease on {self.location} "
            "and another process took it over; nothing was deleted, the next command settles "
            "its sources: run the same command again"
        )

    def end_write(self, client: ClientAPI) -> None:
        """Mark the log entry done and let the claims go."""
        self._stop_heartbeat()
        if self._entry is not None:
            self._log.finish(client, self._entry, "done")
            # Bounded growth: the writer prunes the log when it is long enough;
            # a failure leaves that to the next one (the write itself is done).
            with contextlib.suppress(StoreError):
                self._log.prune(client, int(self._entry))
            self._entry = None
        self._claims.release(client, self._held, self._token)
        self._held = []

    def abandon_write(self, client: ClientAPI) -> None:
        """Leave the write in progress for the next session to settle: its
        lease ends now, and its claims go."""
        self._stop_heartbeat()
        if self._entry is not None:
            self._log.expire(client, self._entry)
            self._entry = None
        self._claims.release(client, self._held, self._token)
        self._held = []

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def abandoned_writes(self, client: ClientAPI) -> list[Abandoned]:
        """Log entries of writers that are gone: on this host identity a process
        that no longer runs, elsewhere one whose lease ran out on the server's
        clock."""
        head = self._head
        if head is not None and head.client is client and head.settled:
            return []  # none were pending at this head of the log
        pending = self._log.pending(client)
        if head is not None and head.client is client:
            head.settled = not pending
        if not pending:
            return []
        now = self.server_now(client)
        return [
            Abandoned(entry.sources, entry.id)
            for entry in pending
            if writer_gone(entry.meta, now, self.me)
        ]

    def settled(self, client: ClientAPI, abandoned: Abandoned) -> None:
        """Record that an abandoned write's sources were settled."""
        if abandoned.token is not None:
            self._log.finish(client, abandoned.token, "settled")

    def keyword_changes(
        self, client: ClientAPI, stamp: int | None, manifest: dict[str, Any], kb: str
    ) -> KeywordChanges:
        """What this machine's keyword index of ``kb`` lacks: its sources in
        every log entry after its stamp (all of them when it has none)."""
        count = self.generation(client)
        if stamp is not None and stamp == count:
            return KeywordChanges(False, set(), None)
        if stamp is None or stamp > count:
            pending = [e.number for e in self._log.pending(client)]
            return KeywordChanges(True, set(), min(pending, default=count + 1) - 1)
        entries = self._log.entries(client, stamp + 1, count)
        pending = [e.number for e in entries if e.state == "pending"]
        # Never stamp past a write still in flight: its sources are looked at again.
        new_stamp = min(pending) - 1 if pending else count
        if len(entries) < count - stamp:  # pruned past the stamp: look at everything
            return KeywordChanges(True, set(), new_stamp)
        sources = {s for e in entries for s in by_kb(e.sources).get(kb, [])}
        return KeywordChanges(ALL in sources, sources - {ALL}, new_stamp)

    def after_write(self) -> None:
        """Nothing: the server owns its files."""

    def backup(self, manifest: dict[str, Any]) -> None:
        """A server's data is backed up by whoever runs it."""


def check_server_version(version: str, url: str) -> None:
    """Refuse a server this chromadb cannot speak to (another major version)."""
    import chromadb

    mine = chromadb.__version__.split(".")[0]
    theirs = version.split(".")[0]
    if theirs != mine:
        raise StoreVersionError(
            f"the Chroma server at {url} runs chromadb {version}; this ragdb's chromadb is "
            f"{chromadb.__version__}: run a {mine}.x server (`chroma run`) or install "
            f"chromadb {theirs}.x"
        )


def _stub(manifest: dict[str, Any]) -> str:
    """What stays in the manifest collection's metadata (under 256 bytes): an
    older ragdb, which reads the manifest there, finds a format it does not
    know and refuses the store instead of calling the manifest lost."""
    return json.dumps(
        {
            "stub": 1,
            "embed_model": {"name": "-", "dimension": 0, "max_seq_length": 0},
            "format_version": manifest.get("format_version", 0),
            "ragdb_version": manifest.get("ragdb_version", "?"),
        },
        sort_keys=True,
    )


@dataclasses.dataclass
class _Head:
    """What a process read of a server store at one head of its write log."""

    client: Any
    newest: int
    manifest: str
    # No write was pending at this head (None pending: nothing to settle).
    settled: bool = False
    kept: Kept = dataclasses.field(default_factory=Kept)
