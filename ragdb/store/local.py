"""An embedded store: a directory holding Chroma's files and ragdb's own.

Chroma's local store is not process-safe, so every process that opens one,
readers included, takes the directory's file lock (``ragdb.lock``) around its
Chroma work and says who it is (``ragdb.lock.holder``) for the message of
whoever waits. Writes leave a note of the sources they touch
(``ragdb.pending.json``) until they are done; the manifest (``ragdb.json``) and
its backup copy are written atomically; files are given to the group as far as
the umask allows, so that a store in a shared directory works for a team.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.errors import ManifestError, StoreBusyError, StoreError, StoreNotFoundError, first_line
from ragdb.store.backend import DEFAULT_KB, Abandoned, KeywordChanges
from ragdb.store.kept import Kept
from ragdb.store.manifest import kb_collection

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

MANIFEST = "ragdb.json"
# A copy of the manifest written after it, so that a corrupt or deleted manifest
# never strands the store (``ragdb doctor --repair`` restores from it).
MANIFEST_BACKUP = "ragdb.json.bak"
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
# Chroma's own file: its presence means chunks may be there.
CHROMA_DB = "chroma.sqlite3"
# A Chroma vector segment's folder: named by the segment's id.
_SEGMENT_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# `ragdb serve`'s files: its token is a secret, never given to the group or backed up.
SERVE_FILES = ("serve.json", "serve.token")
_OURS_ALONE = (LOCK, HOLDER, INGEST_LOCK, INGEST_HOLDER, *SERVE_FILES)


class LocalBackend:
    """A store in a local directory."""

    server = False
    # No cap on a request's records but Chroma's own.
    batch_cap: int | None = None

    def __init__(self, path: Path, wait: float) -> None:
        self.path = path.resolve()
        self.wait = wait
        self._file_lock: Any = None
        self._ingest_lock: Any = None
        # The lock holder's note as this process last wrote it (see note_holder).
        self._noted: tuple[int, int] | None = None
        # What this process read of the store: (client, generation, what it kept).
        self._kept: tuple[Any, int, Kept] | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def client_key(self) -> str:
        return str(self.path)

    def precheck(self, create: bool) -> None:
        """What can be refused before a lock file is made anywhere: a path that
        is a file, a missing store, a directory that is plainly someone else's.
        (A store another process is creating has our lock or Chroma's file in it:
        :meth:`check_location` looks again under the lock.)"""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store path {self.path} is a file, not a directory")
        if (self.path / MANIFEST).is_file() or (self.path / LOCK).exists():
            return
        if not create or not (self.path / CHROMA_DB).exists():
            self.check_location(create)

    def check_location(self, create: bool) -> None:
        """Refuse a path that is a file, a foreign directory, or a store whose
        manifest is lost (``doctor --repair`` is the way out)."""
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
        if self.path.is_dir() and any(p.name not in _OURS_ALONE for p in self.path.iterdir()):
            raise StoreError(
                f"{self.path} is not empty and holds no ragdb store; "
                "choose an empty or new directory with --store"
            )

    def connect(self) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        try:
            return chromadb.PersistentClient(
                path=str(self.path), settings=ChromaSettings(anonymized_telemetry=False)
            )
        except Exception as exc:
            raise StoreError(
                f"cannot open the Chroma store in {self.path}: {first_line(exc)}"
            ) from exc

    def make_dir(self) -> None:
        """The store's directory, made if it is not there (one line if it cannot be)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store directory {self.path}: {exc.strerror or exc} "
                "(choose another place with --store or RAGDB_STORE)"
            ) from None

    # -- the lock ------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the store's file lock, waiting up to ``wait`` seconds."""
        from filelock import FileLock, Timeout

        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store path {self.path} is a file, not a directory")
        self.make_dir()
        if self._file_lock is None:
            # 0o666 & ~umask: a group-writable umask gives the group the lock too.
            self._file_lock = FileLock(
                str(self.path / LOCK), mode=0o666, thread_local=False, is_singleton=False
            )
        try:
            self._file_lock.acquire(timeout=max(0.0, self.wait), poll_interval=0.02)
        except Timeout:
            raise StoreBusyError(
                f"store is busy: {describe_holder(self.path / HOLDER)} has held {self.path} "
                f"for longer than --wait {self.wait:g}s; try again or raise --wait"
            ) from None
        except PermissionError:
            raise StoreError(
                f"cannot lock {self.path / LOCK}: permission denied. Every user of a shared "
                "store needs write access to its directory (see README, 'Sharing a store')"
            ) from None
        self._noted = note_holder(self.path / HOLDER, self._noted)

    def release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()

    @contextlib.contextmanager
    def ingest_turn(self, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """One ingest at a time: a second one waits here up to ``--wait`` seconds
        (``waiting`` hears who it waits for). Turns nest within one backend."""
        if self._ingest_lock is not None:
            yield
            return
        from filelock import FileLock, Timeout

        self.make_dir()
        lock = FileLock(
            str(self.path / INGEST_LOCK), mode=0o666, thread_local=False, is_singleton=False
        )
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = describe_holder(self.path / INGEST_HOLDER)
            if waiting is not None and self.wait > 0:
                waiting(holder)
            try:
                lock.acquire(timeout=max(0.0, self.wait), poll_interval=0.1)
            except Timeout:
                raise StoreBusyError(
                    f"another ingest into {self.path} is running ({holder}) and did not finish "
                    f"within --wait {self.wait:g}s; try again or raise --wait"
                ) from None
        self._ingest_lock = lock
        try:
            note_holder(self.path / INGEST_HOLDER)
            yield
        finally:
            self._ingest_lock = None
            lock.release()

    # -- the manifest ----------------------------------------------------------------------
    def read_manifest(self, client: ClientAPI) -> tuple[str, str] | None:
        """The manifest's text and where it was read, or None when there is none."""
        try:
            return (self.path / MANIFEST).read_text(), str(self.path / MANIFEST)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path / MANIFEST}: {exc}") from exc

    def write_manifest(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True)
        atomic_write(self.path / MANIFEST, text)
        atomic_write(self.path / MANIFEST_BACKUP, text)

    def read_backup(self) -> str | None:
        """The manifest's backup copy, if readable."""
        try:
            return (self.path / MANIFEST_BACKUP).read_text()
        except OSError:
            return None

    def manifest_missing(self, client: ClientAPI) -> None:
        """Nothing to check: :meth:`check_location` already refused a store
        whose manifest is lost."""

    def unchanged_since(self, generation: int) -> bool:
        """Whether the store's generation is still ``generation`` and no write
        was left half-done (so a cached client is fresh)."""
        if (self.path / PENDING).exists():
            return False
        try:
            current = json.loads((self.path / MANIFEST).read_text()).get("generation")
        except (OSError, ValueError):
            return False
        return bool(current == generation)

    def keywords_path(self, manifest: dict[str, Any], kb: str) -> Path:
        """The default knowledge base's index where it always was; another's
        named by its collection, which a rename keeps."""
        if kb == DEFAULT_KB:
            return self.path / KEYWORDS
        return self.path / f"ragdb.keywords.{kb_collection(manifest, kb)}.sqlite3"

    def forget_keywords(self) -> None:
        for path in self.path.glob("ragdb.keywords*.sqlite3*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def disk_full(self) -> str | None:
        """How full the store's disk is, when too full for Chroma to write
        (under 16 MB free: its compaction and SQLite journal need room); else None."""
        try:
            free = shutil.disk_usage(self.path).free
        except OSError:
            return None
        return f"{free / 2**20:.1f} MB free" if free < 16 * 2**20 else None

    def reserved_collections(self) -> set[str]:
        """Collections that are the backend's own, never chunks."""
        return set()

    def sweep(self) -> list[str]:
        """Delete vector-index folders no collection uses any more (Chroma
        leaves a dropped collection's files on disk); their names."""
        uri = f"file:{self.path / CHROMA_DB}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                live = {row[0] for row in db.execute("SELECT id FROM segments")}
        except sqlite3.Error:
            return []  # unsure what is live: delete nothing
        gone = [
            p
            for p in self.path.iterdir()
            if p.is_dir() and _SEGMENT_DIR.fullmatch(p.name) and p.name not in live
        ]
        for folder in gone:
            shutil.rmtree(folder, ignore_errors=True)
        return [p.name for p in gone]

    def salvage(self, collection: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Every chunk of ``collection`` (id, text, metadata) as Chroma's own
        SQLite metadata segment holds it, read directly: the way back when the
        vector index no longer loads and Chroma refuses every read. The vectors
        live only in that index: the caller embeds the text again."""
        uri = f"file:{self.path / CHROMA_DB}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                rows = db.execute(
                    "SELECT e.embedding_id, m.key, m.string_value, m.int_value, m.float_value, "
                    "m.bool_value FROM embeddings e "
                    "JOIN segments s ON s.id = e.segment_id "
                    "JOIN collections c ON c.id = s.collection "
                    "LEFT JOIN embedding_metadata m ON m.id = e.id "
                    "WHERE c.name = ? AND s.scope = 'METADATA' ORDER BY e.id",
                    (collection,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot read the chunks of {self.path} from Chroma's database: {exc}"
            ) from exc
        chunks: dict[str, tuple[list[str], dict[str, Any]]] = {}
        for cid, key, text, number, real, flag in rows:
            doc, meta = chunks.setdefault(cid, ([""], {}))
            if key == "chroma:document":
                doc[0] = text or ""
            elif key is not None:
                if flag is not None:
                    meta[key] = bool(flag)
                elif number is not None:
                    meta[key] = int(number)
                elif real is not None:
                    meta[key] = float(real)
                else:
                    meta[key] = text if text is not None else ""
        return [(cid, doc[0], meta) for cid, (doc, meta) in chunks.items()]

    # -- writes in flight --------------------------------------------------------------------
    # The store's lock keeps every other process out: a note of the sources
    # being written is all a write killed part-way needs to be finished.

    def begin_write(self, client: ClientAPI, sources: Sequence[str]) -> None:
        atomic_write(self.path / PENDING, json.dumps({"sources": list(sources)}))

    def kept(self, client: ClientAPI, manifest: dict[str, Any]) -> Kept | None:
        """What this process read of the store at the manifest's generation,
        with this client (a write by any process moves the generation; the
        store replaces a client whose store changed)."""
        generation = int(manifest.get("generation", 0))
        kept = self._kept
        if kept is None or kept[0] is not client or kept[1] != generation:
            kept = self._kept = (client, generation, Kept())
        return kept[2]

    def confirm_write(self, client: ClientAPI) -> None:
        """The lock is held for the whole session: the write stays this process's."""

    def end_write(self, client: ClientAPI) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / PENDING).unlink()

    def abandon_write(self, client: ClientAPI) -> None:
        """The note stays: the next session settles the write's sources."""

    def abandoned_writes(self, client: ClientAPI) -> list[Abandoned]:
        """The write a killed process left (its note), if any."""
        try:
            pending = json.loads((self.path / PENDING).read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return [Abandoned(None)]
        sources = pending.get("sources") if isinstance(pending, dict) else None
        if not isinstance(sources, list):
            return [Abandoned(None)]
        return [Abandoned([str(s) for s in sources])]

    def settled(self, client: ClientAPI, abandoned: Abandoned) -> None:
        self.end_write(client)

    def keyword_changes(
        self, client: ClientAPI, stamp: int | None, manifest: dict[str, Any], kb: str
    ) -> KeywordChanges:
        """A local index is current when its stamp is its knowledge base's
        generation (the store's generation when that last wrote to it, from any
        process); otherwise it is rebuilt."""
        generation = kb_generation(manifest, kb)
        if stamp == generation:
            return KeywordChanges(False, set(), None)
        return KeywordChanges(True, set(), generation)

    # -- upkeep ----------------------------------------------------------------------------------
    def after_write(self) -> None:
        """Chroma creates its files 0644 whatever the umask; give the group what
        the umask allows, so a store in a shared directory works for the group."""
        if os.name != "posix":
            return
        group = 0o777 & ~_umask() & 0o070
        if not group:
            return
        for root, dirs, files in os.walk(self.path):
            if Path(root).name == BACKUPS:
                dirs[:] = []
                continue
            for name in [*dirs, *files]:
                if name in SERVE_FILES and Path(root) == self.path:
                    continue
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

    def backup(self, manifest: dict[str, Any]) -> None:
        """Copy the store aside (before migrating it)."""
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
                [n for n in names if n in (BACKUPS, *_OURS_ALONE)] if Path(d) == self.path else []
            ),
        )
        os.replace(tmp, dest)


def kb_generation(manifest: dict[str, Any], kb: str) -> int:
    """The store's generation when knowledge base ``kb`` was last written."""
    entry = (manifest.get("knowledge_bases") or {}).get(kb) or {}
    return int(entry.get("generation", manifest.get("generation", 0)))


def note_holder(path: Path, noted: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Say who holds a lock, for the message of whoever waits for it. Returns
    the note's (inode, mtime): given back as ``noted``, a note this process
    wrote that is still there is kept as it is (a query takes the lock each
    time; its note need not be written again). No fsync: after a crash a
    note says nothing anyone relies on."""
    from ragdb.store.manifest import utcnow

    with contextlib.suppress(OSError):
        if noted is not None:
            stat = path.stat()
            if (stat.st_ino, stat.st_mtime_ns) == noted:
                return noted
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": _user(),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
            "since": utcnow(),
        }
        atomic_write(path, json.dumps(holder), durable=False)
        stat = path.stat()
        return stat.st_ino, stat.st_mtime_ns
    return None


def describe_holder(path: Path) -> str:
    """Who holds a lock, in words."""
    try:
        info = json.loads(path.read_text())
        return (
            f"process {info['pid']} ({info.get('command') or '?'}) of user "
            f"{info.get('user', '?')} on {info.get('host', '?')}"
        )
    except (OSError, ValueError, KeyError):
        return "another process"


def atomic_write(path: Path, text: str, durable: bool = True) -> None:
    """Write ``text`` so that readers see the old file or the new one, whole
    (and, ``durable``, on disk before the rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


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
