"""The store: one object that owns a knowledge base's Chroma collection.

Opening a :class:`Store` resolves where it lives, checks the store format and
the embedding model, and applies migrations. Every use of Chroma goes through
:meth:`Store.session`, which takes the store's lock (embedded stores: Chroma's
local store is not process-safe, and even readers replay its log), opens a
fresh client so the session sees every write that finished before it, finishes
any write a killed process left half-done, and closes the client again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import os
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

from . import __version__
from .config import Settings
from .embeddings import ModelIdentity, canonical_name, compatible_backends, same_model
from .errors import (
    ManifestError,
    ModelMismatchError,
    StoreBusyError,
    StoreError,
    StoreNotFoundError,
    StoreVersionError,
    UsageError,
    first_line,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from .keywords import KeywordIndex

MANIFEST = "ragdb.json"
# A copy of the manifest written after it, so that a corrupt or deleted manifest
# never strands the store (``ragdb doctor --repair`` restores from it).
MANIFEST_BACKUP = "ragdb.json.bak"
# Chroma's own file in a local store: its presence means chunks may be there.
CHROMA_DB = "chroma.sqlite3"
LOCK = "ragdb.lock"
HOLDER = "ragdb.lock.holder"
# Held by an ingest from its comparison with the store to its last write, so that
# a second ingest of the same files waits and then finds them done instead of
# embedding them twice. Queries and other commands never take it.
INGEST_LOCK = "ragdb.ingest.lock"
INGEST_HOLDER = "ragdb.ingest.holder"
PENDING = "ragdb.pending.json"
KEYWORDS = "ragdb.keywords.sqlite3"
BACKUPS = "backups"
# In server mode the manifest lives in the metadata of this (empty) collection.
MANIFEST_COLLECTION = "ragdb-manifest"

# Chosen so that HNSW top-10 matches exact cosine search on SciFact
# (scripts/eval-scifact reports the measured recall).
HNSW_SETTINGS: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 200,
    "max_neighbors": 32,
    "ef_search": 400,
}


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def migrations() -> list[tuple[str, Any]]:
    from .migrations import MIGRATIONS

    return list(MIGRATIONS)


def parse_manifest(raw: str) -> dict[str, Any]:
    """A manifest's JSON, checked for what every reader relies on; ``ValueError``
    says what is wrong."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    model = data.get("embed_model")
    if not isinstance(model, dict) or not {"name", "dimension", "max_seq_length"} <= set(model):
        raise ValueError("no embed_model record")
    if data.get("migrations") and not data.get("collection"):
        raise ValueError("no collection name")
    return data


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class ManifestRepair:
    """A rebuilt manifest and, in words, what it was rebuilt from."""

    manifest: dict[str, Any]
    source: str


class MigrationContext:
    """What a migration may touch: the manifest (a dict, saved once the
    migration finishes) and the Chroma client."""

    def __init__(self, store: Store, client: ClientAPI, manifest: dict[str, Any]):
        self.store = store
        self.client = client
        self.manifest = manifest

    def create_chunk_collection(self, name: str, hnsw: dict[str, Any]) -> Collection:
        return self.store._create_chunk_collection(self.client, name, self.manifest, hnsw)

    def tune_hnsw_search(self, name: str) -> None:
        coll = self.client.get_collection(name)
        coll.modify(configuration={"hnsw": {"ef_search": HNSW_SETTINGS["ef_search"]}})


class Session:
    """One locked use of the store; its ``collection`` is fresh for this session."""

    def __init__(self, store: Store, client: ClientAPI, manifest: dict[str, Any]):
        self.store = store
        self.client = client
        self.manifest = manifest
        self._collection: Collection | None = None
        self._keywords: KeywordIndex | None = None
        self.wrote = False

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            from chromadb.errors import NotFoundError

            try:
                self._collection = self.client.get_collection(self.manifest["collection"])
            except NotFoundError:
                # Lost (a reset killed between delete and create): recreate empty.
                self._collection = self.store._create_chunk_collection(
                    self.client, self.manifest["collection"], self.manifest
                )
        return self._collection

    @property
    def keywords(self) -> KeywordIndex:
        """The keyword index, brought in line with the collection if it is not."""
        if self._keywords is None:
            from .keywords import KeywordIndex

            index = KeywordIndex(self.store.keywords_path(self.manifest))
            generation = int(self.manifest.get("generation", 0))
            if index.generation != generation:
                index.rebuild(self.collection)
                index.set_generation(generation)
            self._keywords = index
        return self._keywords

    def max_batch(self) -> int:
        return max(1, min(int(self.client.get_max_batch_size()), 5000))

    def mark_written(self) -> None:
        self.wrote = True


class Store:
    """A knowledge base's storage: an embedded Chroma directory or a Chroma server."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.server = settings.chroma_url is not None
        self.path: Path | None = None if self.server else settings.store.resolve()
        self._manifest: dict[str, Any] | None = None
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._file_lock: Any = None
        self._session: Session | None = None
        self._ingest_lock: Any = None
        # Migrations this process applied when it opened the store.
        self.migrated: list[str] = []

    # -- opening -----------------------------------------------------------------
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
        store._check_location(create)
        with store.session(create=create, identity=identity):
            pass
        return store

    @property
    def location(self) -> str:
        return str(self.settings.chroma_url) if self.server else str(self.path)

    def _check_location(self, create: bool) -> None:
        if self.path is None:
            return
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store path {self.path} is a file, not a directory")
        if (self.path / MANIFEST).is_file():
            return
        if (self.path / CHROMA_DB).is_file() or (self.path / MANIFEST_BACKUP).is_file():
            raise ManifestError(
                f"the manifest {self.path / MANIFEST} is missing though {self.path} holds a "
                "ragdb store; `ragdb doctor --repair` rebuilds it"
            )
        if not create:
            raise StoreNotFoundError(
                f"no knowledge base at {self.path} (create one with `ragdb ingest PATH`)"
            )
        if self.path.is_dir() and any(
            p.name not in (LOCK, HOLDER, INGEST_LOCK, INGEST_HOLDER) for p in self.path.iterdir()
        ):
            raise StoreError(
                f"{self.path} is not empty and holds no ragdb store; "
                "choose an empty or new directory with --store"
            )

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as last read in a session."""
        if self._manifest is None:
            with self.session():
                pass
        assert self._manifest is not None
        return self._manifest

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity.from_dict(self.manifest["embed_model"])

    # -- coordination --------------------------------------------------------------
    def _acquire(self) -> None:
        """Take the store's file lock, waiting up to ``settings.wait`` seconds."""
        if self.path is None:
            return
        from filelock import FileLock, Timeout

        self.path.mkdir(parents=True, exist_ok=True)
        if self._file_lock is None:
            # 0o666 & ~umask: a group-writable umask gives the group the lock too.
            self._file_lock = FileLock(
                str(self.path / LOCK), mode=0o666, thread_local=False, is_singleton=False
            )
        try:
            self._file_lock.acquire(timeout=max(0.0, self.settings.wait), poll_interval=0.02)
        except Timeout:
            raise StoreBusyError(
                f"store is busy: {self._holder()} has held {self.path} for longer than "
                f"--wait {self.settings.wait:g}s; try again or raise --wait"
            ) from None
        except PermissionError:
            raise StoreError(
                f"cannot lock {self.path / LOCK}: permission denied. Every user of a shared "
                "store needs write access to its directory (see README, 'Sharing a store')"
            ) from None
        _note_holder(self.path / HOLDER)

    def _release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()

    def _holder(self) -> str:
        assert self.path is not None
        return _describe_holder(self.path / HOLDER)

    @contextlib.contextmanager
    def ingest_turn(self, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """One ingest at a time per local store: a second one waits here (as long
        as it takes; ``waiting`` hears who it waits for) and then compares with a
        store that holds the first one's work. A server has no lock to share
        between machines: there, concurrent ingests stay safe but may both embed."""
        if self.path is None or self._ingest_lock is not None:
            yield  # a server; or this store already holds the turn (turns nest)
            return
        from filelock import FileLock, Timeout

        lock = FileLock(
            str(self.path / INGEST_LOCK), mode=0o666, thread_local=False, is_singleton=False
        )
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if waiting is not None:
                waiting(_describe_holder(self.path / INGEST_HOLDER))
            lock.acquire(poll_interval=0.1)
        self._ingest_lock = lock
        try:
            _note_holder(self.path / INGEST_HOLDER)
            yield
        finally:
            self._ingest_lock = None
            lock.release()

    @contextlib.contextmanager
    def session(
        self, create: bool = False, identity: ModelIdentity | None = None
    ) -> Iterator[Session]:
        """Hold the store for one piece of Chroma work.

        Sessions nest within a thread (the outer one owns the client); keep them
        short: read, chunk and embed outside them.
        """
        with self._thread_lock:
            if self._session is not None:
                yield self._session
                return
            self._acquire()
            client = None
            ok = False
            try:
                client = self._client()
                manifest = self._load_manifest(client, create, identity)
                session = Session(self, client, manifest)
                self._session = session
                self._recover(session)
                yield session
                if session.wrote:
                    manifest["generation"] = int(manifest.get("generation", 0)) + 1
                    self._save_manifest(client, manifest)
                    if session._keywords is not None:
                        # Updated alongside every write of this session: in step.
                        session._keywords.set_generation(manifest["generation"])
                    self._share_with_group()
                _remember(self._client_key, client, int(manifest.get("generation", 0)))
                ok = True
            finally:
                if self._session is not None and self._session._keywords is not None:
                    self._session._keywords.close()
                self._session = None
                if not ok:
                    _forget(self._client_key)  # its state is unknown: open afresh next time
                self._release()

    def _share_with_group(self) -> None:
        """Chroma creates its files 0644 whatever the umask; give the group what
        the umask allows, so a store in a shared directory works for the group."""
        if self.path is None or os.name != "posix":
            return
        allowed = 0o777 & ~_umask()
        group = allowed & 0o070
        if not group:
            return
        for root, dirs, files in os.walk(self.path):
            if Path(root).name == BACKUPS:
                dirs[:] = []
                continue
            for name in [*dirs, *files]:
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    regular = stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
                    if st.st_uid != os.getuid() or not regular:
                        continue
                    owner = (st.st_mode & 0o700) >> 3
                    want = st.st_mode | (owner & group)
                    if want != st.st_mode:
                        os.chmod(path, want & 0o7777)

    # -- Chroma clients ------------------------------------------------------------
    @property
    def _client_key(self) -> str:
        if self.server:
            return f"{self.settings.chroma_url}|{sorted(self.settings.chroma_headers.items())}"
        return str(self.path)

    def _client(self) -> ClientAPI:
        """This process's client for the store, reused while it is known to be
        fresh: a server always is; a local store is while its generation (bumped
        by every write, from any process) is the one the client last saw and no
        write was left half-done. Opening a client loads the vector index, which
        is what makes reuse worth it."""
        with _clients_lock:
            cached = _clients.get(self._client_key)
            if cached is not None:
                client, generation = cached
                if self.server or self._unchanged_since(generation):
                    return client
                _forget(self._client_key)
            client = self._connect()
            _clients[self._client_key] = (client, -1)
            return client

    def _unchanged_since(self, generation: int) -> bool:
        assert self.path is not None
        if (self.path / PENDING).exists():
            return False
        try:
            current = json.loads((self.path / MANIFEST).read_text()).get("generation")
        except (OSError, ValueError):
            return False
        return bool(current == generation)

    # -- Chroma clients ------------------------------------------------------------
    def _connect(self) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        from . import chroma_ef  # noqa: F401  (registers ragdb's embedding function)

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if self.server:
            url = urlparse(str(self.settings.chroma_url))
            if url.scheme not in ("http", "https") or not url.hostname:
                raise UsageError(
                    f"--chroma-url {self.settings.chroma_url!r} is not an http(s)://HOST:PORT URL"
                )
            try:
                return chromadb.HttpClient(
                    host=url.hostname,
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    headers=dict(self.settings.chroma_headers) or None,
                    settings=chroma_settings,
                )
            except Exception as exc:
                raise StoreError(
                    f"cannot reach the Chroma server at {self.settings.chroma_url}: "
                    f"{first_line(exc)}"
                ) from exc
        assert self.path is not None
        try:
            return chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)
        except Exception as exc:
            raise StoreError(
                f"cannot open the Chroma store in {self.path}: {first_line(exc)}"
            ) from exc

    def _create_chunk_collection(
        self,
        client: ClientAPI,
        name: str,
        manifest: dict[str, Any],
        hnsw: dict[str, Any] | None = None,
    ) -> Collection:
        from .chroma_ef import RagdbEmbeddingFunction

        return client.get_or_create_collection(
            name,
            configuration=cast(Any, {"hnsw": dict(hnsw or HNSW_SETTINGS)}),
            embedding_function=cast(
                Any,
                RagdbEmbeddingFunction(
                    manifest["embed_model"]["name"],
                    backend=manifest["embed_model"].get("backend", "torch"),
                ),
            ),
            metadata={"ragdb": "chunks"},
        )

    # -- the manifest ---------------------------------------------------------------
    def _read_manifest(self, client: ClientAPI) -> dict[str, Any] | None:
        if self.path is not None:
            try:
                raw = (self.path / MANIFEST).read_text()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise StoreError(f"cannot read {self.path / MANIFEST}: {exc}") from exc
            where = str(self.path / MANIFEST)
        else:
            from chromadb.errors import NotFoundError

            try:
                coll = client.get_collection(MANIFEST_COLLECTION)
            except NotFoundError:
                return None
            stored = (coll.metadata or {}).get("manifest")
            if not stored:
                return None
            raw = str(stored)
            where = f"the manifest of {self.location}"
        try:
            return parse_manifest(raw)
        except ValueError as exc:
            raise ManifestError(
                f"{where} is unreadable ({exc}); `ragdb doctor --repair` rebuilds it"
            ) from None

    def _save_manifest(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        manifest["updated_at"] = utcnow()
        if self.path is not None:
            text = json.dumps(manifest, indent=2, sort_keys=True)
            _atomic_write(self.path / MANIFEST, text)
            _atomic_write(self.path / MANIFEST_BACKUP, text)
        else:
            coll = client.get_or_create_collection(MANIFEST_COLLECTION, embedding_function=None)
            coll.modify(metadata={"manifest": json.dumps(manifest, sort_keys=True)})
        self._manifest = manifest

    def _load_manifest(
        self, client: ClientAPI, create: bool, identity: ModelIdentity | None
    ) -> dict[str, Any]:
        manifest = self._read_manifest(client)
        if (
            manifest is None
            and self.path is None
            and any((c.metadata or {}).get("ragdb") == "chunks" for c in client.list_collections())
        ):
            raise ManifestError(
                f"the manifest of {self.location} is missing though the server holds ragdb "
                "chunks; `ragdb doctor --repair` rebuilds it"
            )
        if manifest is None:
            if not create:
                raise StoreNotFoundError(
                    f"no knowledge base at {self.location} (create one with `ragdb ingest PATH`)"
                )
            if identity is None:
                raise StoreError("creating a store needs the embedding model's identity")
            manifest = self._new_manifest(identity)
            self._save_manifest(client, manifest)
        self._check_versions(manifest)
        self._check_model(manifest)
        self._migrate(client, manifest)
        self._manifest = manifest
        return manifest

    def _new_manifest(self, identity: ModelIdentity) -> dict[str, Any]:
        import chromadb

        return {
            "format_version": 0,
            "migrations": [],
            "ragdb_version": __version__,
            "chromadb_version": chromadb.__version__,
            "created_at": utcnow(),
            "embed_model": identity.to_dict(),
            "generation": 0,
        }

    def _check_versions(self, manifest: dict[str, Any]) -> None:
        import chromadb

        known = [name for name, _ in migrations()]
        unknown = [m for m in manifest.get("migrations", []) if m not in known]
        if unknown or int(manifest.get("format_version", 0)) > len(known):
            raise StoreVersionError(
                f"store {self.location} has format {manifest.get('format_version')} "
                f"(written by ragdb {manifest.get('ragdb_version', '?')}); this ragdb "
                f"{__version__} reads formats up to {len(known)}: upgrade ragdb "
                f"to {manifest.get('ragdb_version', 'a newer version')} or later"
            )
        written = str(manifest.get("chromadb_version", "0"))
        if _version_tuple(written) > _version_tuple(chromadb.__version__):
            raise StoreVersionError(
                f"store {self.location} was written by chromadb {written}; the installed "
                f"chromadb is {chromadb.__version__}: install chromadb>={written}"
            )

    def _check_model(self, manifest: dict[str, Any]) -> None:
        wanted = self.settings.embed_model
        recorded = manifest["embed_model"]["name"]
        if wanted is not None and not same_model(wanted, recorded):
            raise ModelMismatchError(
                f"store {self.location} was made with embedding model {recorded!r}, not "
                f"{canonical_name(wanted)!r}; use the store's model (drop --embed-model), "
                "another --store, or `ragdb reembed --embed-model "
                f"{canonical_name(wanted)}`"
            )
        backend = self.settings.embed_backend
        made_with = manifest["embed_model"].get("backend", "torch")
        if backend is not None and not compatible_backends(backend, made_with):
            raise ModelMismatchError(
                f"store {self.location} was embedded with the {made_with} backend, whose "
                f"vectors differ from {backend}'s; drop --embed-backend, or move the store "
                f"with `ragdb reembed --embed-backend {backend}`"
            )

    def _migrate(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        import chromadb

        pending = [(n, fn) for n, fn in migrations() if n not in manifest.get("migrations", [])]
        if not pending:
            return
        if manifest.get("migrations"):
            self._backup(manifest)
        for name, fn in pending:
            fn(MigrationContext(self, client, manifest))
            self.migrated.append(name)
            manifest.setdefault("migrations", []).append(name)
            manifest["format_version"] = len(manifest["migrations"])
            manifest["ragdb_version"] = __version__
            if _version_tuple(chromadb.__version__) > _version_tuple(
                str(manifest.get("chromadb_version", "0"))
            ):
                manifest["chromadb_version"] = chromadb.__version__
            self._save_manifest(client, manifest)

    def _backup(self, manifest: dict[str, Any]) -> None:
        """Copy an embedded store aside before migrating it."""
        if self.path is None:
            return
        fmt = manifest.get("format_version", 0)
        backups = self.path / BACKUPS
        if backups.is_dir() and any(
            p.name.startswith(f"format-{fmt}-") and not p.name.endswith(".partial")
            for p in backups.iterdir()
        ):
            return  # taken before an earlier, interrupted try: that copy is the one to keep
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = backups / f"format-{fmt}-{stamp}"
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(
            self.path,
            tmp,
            ignore=lambda d, names: (
                [n for n in names if n in (BACKUPS, LOCK, HOLDER, INGEST_LOCK, INGEST_HOLDER)]
                if Path(d) == self.path
                else []
            ),
        )
        os.replace(tmp, dest)

    # -- rebuilding a lost manifest ------------------------------------------------------
    def plan_manifest_repair(self) -> ManifestRepair:
        """How a missing or unreadable manifest would be rebuilt: from its backup
        copy when that is readable and names a collection Chroma has, else from
        what Chroma holds (the chunk collection, its embedding function's
        settings, a vector's dimension, the chunks' dates). Changes nothing."""
        with self._raw_client() as client:
            chunk_collections = {
                c.name: c
                for c in client.list_collections()
                if (c.metadata or {}).get("ragdb") == "chunks"
            }
            backup = self._read_backup()
            if backup is not None and backup.get("collection") in chunk_collections:
                backup["generation"] = int(backup.get("generation", 0)) + 1
                return ManifestRepair(
                    backup, f"its backup copy {MANIFEST_BACKUP} (of {backup.get('updated_at')})"
                )
            if not chunk_collections:
                raise ManifestError(
                    f"{self.location} holds no ragdb chunk collection: nothing to rebuild "
                    "its manifest from"
                )
            # An interrupted rebuild leaves a second, smaller collection: keep the fuller.
            coll = max(chunk_collections.values(), key=lambda c: (c.count(), c.name))
            try:
                ef = coll.configuration_json.get("embedding_function") or {}
            except Exception:
                ef = {}
            config = ef.get("config") or {}
            if ef.get("name") != "ragdb_sentence_transformer" or not config.get("model_name"):
                raise ManifestError(
                    f"collection {coll.name!r} does not record ragdb's embedding model: "
                    "cannot rebuild the manifest"
                )
            sample: Any = coll.get(limit=1, include=cast(Any, ["embeddings"]))
            firsts: Any = coll.get(where={"chunk_index": 0}, include=["metadatas"])
            count = coll.count()
        name, backend = str(config["model_name"]), str(config.get("backend", "torch"))
        from .embeddings import get_embedder

        identity = get_embedder(name, self.settings.device, backend).identity
        if len(sample["ids"]) and len(sample["embeddings"][0]) != identity.dimension:
            raise ManifestError(
                f"collection {coll.name!r} holds {len(sample['embeddings'][0])}-dimensional "
                f"vectors, but {name} makes {identity.dimension}: cannot rebuild the manifest"
            )
        dates = [str(m.get("ingested_at")) for m in firsts["metadatas"] or [] if m]
        manifest = self._new_manifest(identity)
        manifest["created_at"] = min(dates, default=manifest["created_at"])
        manifest["collection"] = coll.name
        # Only the first migration is known to have run (the collection exists);
        # the later ones are safe to run again, and opening the store runs them.
        manifest["migrations"] = ["m001_chunks_collection"]
        manifest["format_version"] = 1
        manifest["generation"] = 1
        return ManifestRepair(
            manifest,
            f"Chroma's collection {coll.name!r} ({count} chunks, {len(dates)} "
            f"sources, model {name}, {backend} backend)",
        )

    def apply_manifest_repair(self, repair: ManifestRepair) -> None:
        """Write the manifest :meth:`plan_manifest_repair` proposed; the keyword
        index is rebuilt at the next use."""
        with self._raw_client() as client:
            self._save_manifest(client, dict(repair.manifest))
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / KEYWORDS).unlink()

    @contextlib.contextmanager
    def _raw_client(self) -> Iterator[ClientAPI]:
        """The store's client, locked, with no manifest read or checked."""
        with self._thread_lock:
            self._acquire()
            try:
                _forget(self._client_key)
                client = self._connect()
                try:
                    yield client
                finally:
                    with contextlib.suppress(Exception):
                        client.close()  # type: ignore[attr-defined]
            finally:
                self._release()

    def _read_backup(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            return parse_manifest((self.path / MANIFEST_BACKUP).read_text())
        except (OSError, ValueError):
            return None

    # -- crash recovery ---------------------------------------------------------------
    def keywords_path(self, manifest: dict[str, Any]) -> Path:
        if self.path is not None:
            return self.path / KEYWORDS
        # A server's clients each keep a cache, rebuilt when the store's generation moves.
        import hashlib

        from platformdirs import user_cache_path

        key = f"{self.settings.chroma_url}|{manifest.get('created_at')}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return user_cache_path("ragdb", appauthor=False) / "keywords" / f"{digest}.sqlite3"

    def begin_write(self, session: Session, sources: Sequence[str]) -> None:
        """Record which sources a write is about to touch, so that a process
        killed part-way leaves a note for the next session to finish."""
        session.mark_written()
        # Unstamped until the session ends: a crash before then forces a rebuild.
        session.keywords.set_generation(None)
        if self.path is not None:
            _atomic_write(self.path / PENDING, json.dumps({"sources": list(sources)}))

    def end_write(self, session: Session) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.path / PENDING).unlink()

    def _recover(self, session: Session) -> None:
        if self.path is None:
            return
        try:
            pending = json.loads((self.path / PENDING).read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            pending = {"sources": None}
        from .sources import settle_sources

        settle_sources(session, pending.get("sources"))
        session.mark_written()
        self.end_write(session)


# One client per store and process: Chroma shares its state between clients of
# one path inside a process, so two would see each other's staleness.
_clients: dict[str, tuple[Any, int]] = {}
_clients_lock = threading.RLock()


def _remember(key: str, client: Any, generation: int) -> None:
    with _clients_lock:
        _clients[key] = (client, generation)


def _forget(key: str) -> None:
    with _clients_lock:
        cached = _clients.pop(key, None)
    if cached is not None:
        with contextlib.suppress(Exception):
            # ClientAPI's stubs lack close(); the client has it.
            cached[0].close()


def _note_holder(path: Path) -> None:
    """Say who holds a lock, for the message of whoever waits for it."""
    with contextlib.suppress(OSError):
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": _user(),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
            "since": utcnow(),
        }
        _atomic_write(path, json.dumps(holder))


def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (
            f"process {info['pid']} ({info.get('command') or '?'}) of user "
            f"{info.get('user', '?')} on {info.get('host', '?')}"
        )
    except (OSError, ValueError, KeyError):
        return "another process"


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # no other way to read it; put it straight back
    os.umask(current)
    return current


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
