"""A store on a Chroma server (``chroma run``, or Chroma's distributed deployment).

The server serialises its own writes, so there is no lock file to take; the
manifest lives in the metadata of a small collection of its own; each client
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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ragdb.errors import (
    ManifestError,
    StoreBusyError,
    StoreError,
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
    writer_gone,
    writer_id,
)
from ragdb.store.manifest import kb_collection

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

# The collection whose metadata holds the manifest.
MANIFEST_COLLECTION = "ragdb-manifest"
# The write log (one entry per write, numbered without gaps) and the per-source claims.
LOG_COLLECTION = "ragdb-writes"
CLAIMS_COLLECTION = "ragdb-claims"
# How long a claim or a pending write of another host counts as alive.
LEASE = 120.0


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
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.tenant = tenant
        self.database = database
        self.wait = wait
        self._log = WriteLog()
        self._claims = Claims()
        self._held: list[str] = []
        self._entry: str | None = None

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
        import chromadb
        from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT
        from chromadb.config import Settings as ChromaSettings

        url = urlparse(self.url)
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
            raise StoreError(
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
        from chromadb.errors import NotFoundError

        try:
            coll = client.get_collection(MANIFEST_COLLECTION)
        except NotFoundError:
            return None
        stored = (coll.metadata or {}).get("manifest")
        if not stored:
            return None
        return str(stored), f"the manifest of {self.location}"

    def write_manifest(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        coll = client.get_or_create_collection(MANIFEST_COLLECTION, embedding_function=None)
        coll.modify(metadata={"manifest": json.dumps(manifest, sort_keys=True)})

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
        then append a pending entry to the write log."""
        claimed = [s for s in sources if unqualify(s)[1] != ALL]
        self._held = self._claims.acquire(client, claimed, self.wait)
        self._entry = self._log.append(client, list(sources))

    def end_write(self, client: ClientAPI) -> None:
        """Mark the log entry done and let the claims go."""
        if self._entry is not None:
            self._log.finish(client, self._entry, "done")
            self._entry = None
        self._claims.release(client, self._held)
        self._held = []

    def abandoned_writes(self, client: ClientAPI) -> list[Abandoned]:
        """Log entries of writers that died mid-write: on this host a process that
        is gone, elsewhere one whose lease ran out."""
        return [
            Abandoned(entry.sources, entry.id)
            for entry in self._log.pending(client)
            if entry.dead()
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
        count = self._log.count(client)
        if stamp is not None and stamp == count:
            return KeywordChanges(False, set(), None)
        if stamp is None or stamp > count:
            pending = [e.number for e in self._log.pending(client)]
            return KeywordChanges(True, set(), min(pending, default=count + 1) - 1)
        entries = self._log.entries(client, stamp + 1, count)
        sources = {s for e in entries for s in by_kb(e.sources).get(kb, [])}
        pending = [e.number for e in entries if e.state == "pending"]
        # Never stamp past a write still in flight: its sources are looked at again.
        new_stamp = min(pending) - 1 if pending else count
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


def _small(client: ClientAPI, name: str) -> Any:
    """A bookkeeping collection of ragdb's: records with a one-number vector.
    (Looked up each time, a request to the server: a cached handle would go
    stale when the collection is dropped and made again.)"""
    return client.get_or_create_collection(name, embedding_function=None, metadata={"ragdb": name})


_DUMMY = [[0.0]]


@dataclasses.dataclass
class LogEntry:
    """One write, as the log records it."""

    number: int
    id: str
    state: str  # "pending", "done" or "settled"
    sources: list[str]
    host: str
    pid: int
    expires: float

    def dead(self) -> bool:
        """Whether its writer is gone (see :func:`ragdb.store.backend.writer_gone`)."""
        return writer_gone(self.host, self.pid, self.expires)


class WriteLog:
    """Entries numbered 1, 2, 3... with no gaps: the store's generation on a
    server is their count, and no concurrent writer's entry is ever lost."""

    def count(self, client: ClientAPI) -> int:
        return int(_small(client, LOG_COLLECTION).count())

    def append(self, client: ClientAPI, sources: list[str]) -> str:
        log = _small(client, LOG_COLLECTION)
        me = writer_id()
        number = log.count()
        while True:
            number += 1
            entry_id = f"{number:012d}"
            meta = {
                "number": number,
                "state": "pending",
                "sources": json.dumps(sources),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "writer": me,
                "expires": time.time() + LEASE,
            }
            log.add(ids=[entry_id], embeddings=_DUMMY, metadatas=[meta])
            got = log.get(ids=[entry_id], include=["metadatas"])
            if got["metadatas"] and (got["metadatas"][0] or {}).get("writer") == me:
                return entry_id  # the number is ours; otherwise try the next one

    def finish(self, client: ClientAPI, entry_id: str, state: str) -> None:
        log = _small(client, LOG_COLLECTION)
        got = log.get(ids=[entry_id], include=["metadatas"])
        if got["metadatas"]:
            log.update(ids=[entry_id], metadatas=[{**(got["metadatas"][0] or {}), "state": state}])

    def pending(self, client: ClientAPI) -> list[LogEntry]:
        got = _small(client, LOG_COLLECTION).get(where={"state": "pending"}, include=["metadatas"])
        return [_entry(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)]

    def entries(self, client: ClientAPI, first: int, last: int) -> list[LogEntry]:
        ids = [f"{n:012d}" for n in range(first, last + 1)]
        out: list[LogEntry] = []
        log = _small(client, LOG_COLLECTION)
        for i in range(0, len(ids), 1000):
            got = log.get(ids=ids[i : i + 1000], include=["metadatas"])
            out += [_entry(e, m) for e, m in zip(got["ids"], got["metadatas"] or [], strict=True)]
        return out


def _entry(entry_id: str, meta: Any) -> LogEntry:
    meta = meta or {}
    return LogEntry(
        number=int(meta.get("number", entry_id)),
        id=entry_id,
        state=str(meta.get("state", "done")),
        sources=list(json.loads(meta.get("sources") or "[]")),
        host=str(meta.get("host", "")),
        pid=int(meta.get("pid", 0)),
        expires=float(meta.get("expires", 0.0)),
    )


class Claims:
    """One writer at a time per source, across machines: a claim is a record
    whose id names the source and a number one above the last claim's; the
    first writer to add it holds the source until it marks it released."""

    def acquire(self, client: ClientAPI, sources: Sequence[str], wait: float) -> list[str]:
        """Claim every source (in one go where free), waiting up to ``wait``
        seconds for claims held by live writers. Returns the claim ids held."""
        from ragdb.store.records import source_key

        if not sources:
            return []
        claims = _small(client, CLAIMS_COLLECTION)
        names = {source_key(s): s for s in sources}
        me = writer_id()
        todo = set(names)
        held: list[str] = []
        deadline = time.monotonic() + wait
        try:
            while todo:
                latest: dict[str, dict[str, Any]] = {}
                keys = sorted(todo)
                for i in range(0, len(keys), 200):
                    part = keys[i : i + 200]
                    where: Any = {"key": part[0]} if len(part) == 1 else {"key": {"$in": part}}
                    got = claims.get(where=where, include=["metadatas"])
                    for meta in got["metadatas"] or []:
                        meta = dict(meta or {})
                        if int(meta["epoch"]) > int(latest.get(meta["key"], {}).get("epoch", 0)):
                            latest[meta["key"]] = meta
                free = [k for k in keys if k not in latest or _claim_free(latest[k])]
                if free:
                    ids = [f"{k}-{int(latest.get(k, {}).get('epoch', 0)) + 1:08d}" for k in free]
                    metas = [
                        {
                            "key": k,
                            "epoch": int(latest.get(k, {}).get("epoch", 0)) + 1,
                            "owner": me,
                            "host": socket.gethostname(),
                            "pid": os.getpid(),
                            "expires": time.time() + LEASE,
                            "state": "held",
                        }
                        for k in free
                    ]
                    claims.add(ids=ids, embeddings=_DUMMY * len(ids), metadatas=metas)
                    got = claims.get(ids=ids, include=["metadatas"])
                    for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                        if (meta or {}).get("owner") == me:
                            held.append(cid)
                            todo.discard(str((meta or {})["key"]))
                if not todo:
                    break
                if time.monotonic() > deadline:
                    key = sorted(todo)[0]
                    holder = latest.get(key, {})
                    raise StoreBusyError(
                        f"store is busy: process {holder.get('pid', '?')} on "
                        f"{holder.get('host', '?')} has been writing {names[key]!r} for longer "
                        f"than --wait {wait:g}s; try again or raise --wait"
                    )
                time.sleep(0.02 + 0.08 * random.random())
        except BaseException:
            self.release(client, held)
            raise
        return held

    def release(self, client: ClientAPI, held: Sequence[str]) -> None:
        if not held:
            return
        claims = _small(client, CLAIMS_COLLECTION)
        got = claims.get(ids=list(held), include=["metadatas"])
        metas = [{**(m or {}), "state": "released"} for m in got["metadatas"] or []]
        if metas:
            claims.update(ids=got["ids"], metadatas=metas)


def _claim_free(meta: dict[str, Any]) -> bool:
    if meta.get("state") == "released":
        return True
    return writer_gone(
        str(meta.get("host", "")), int(meta.get("pid", 0)), float(meta.get("expires", 0.0))
    )
