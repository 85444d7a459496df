"""Folder sync for ``ragdb serve --watch DIR``: a directory kept in step with
the store.

A watch reconciles at start (``ingest --prune DIR``), then treats file events
(watchfiles; debounced, or polled with ``--poll`` or where native events fail)
only as hints that the same reconcile is due: editors' save-by-rename,
duplicate events and bursts of thousands of files all converge to what one
``ragdb ingest --prune DIR`` gives, and prune never touches a source outside
the directory. A periodic reconcile is the safety net for missed events. Every
reconcile is a job in the service's queue, so writes stay one at a time.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Milliseconds of quiet before a burst of events becomes one reconcile; a file
# still being written keeps the burst going, so it is read once it is stable.
DEBOUNCE_MS = 500
# Seconds between safety-net reconciles.
RECONCILE_SECONDS = 300.0
# A changed file is read once its size and modification time held still this
# long (a file still being written is waited for), up to STABLE_MAX seconds.
STABLE_SECONDS = 1.0
STABLE_MAX = 30.0


@dataclasses.dataclass
class Watch:
    """One watched directory and what is known of it."""

    path: Path
    poll: bool = False
    reconciles: int = 0
    last_reconcile: float | None = None
    last_job: str | None = None
    last_error: str | None = None
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /v1/watches`` and ``/v1/status`` show of it."""
        return {
            "path": str(self.path),
            "poll": self.poll,
            "reconciles": self.reconciles,
            "last_reconcile": self.last_reconcile,
            "last_job": self.last_job,
            "last_error": self.last_error,
        }


class Watcher:
    """The watched directories of one service; ``reconcile(path)`` submits the
    ingest job and returns its id (waiting for it is the job's business)."""

    def __init__(self, reconcile: Callable[[Path], Any]) -> None:
        self._reconcile = reconcile
        self._watches: dict[str, Watch] = {}
        self._lock = threading.Lock()

    def add(self, path: Path, poll: bool = False) -> Watch:
        """Watch ``path`` (a directory): reconcile now, then on every change."""
        from ragdb.errors import InputError

        path = Path(os.path.realpath(path))
        if not path.is_dir():
            raise InputError(f"cannot watch {path}: not a directory")
        with self._lock:
            if str(path) in self._watches:
                return self._watches[str(path)]
            watch = Watch(path, poll)
            self._watches[str(path)] = watch
        watch._thread = threading.Thread(
            target=self._run, args=(watch,), name=f"ragdb-watch-{path.name}", daemon=True
        )
        watch._thread.start()
        return watch

    def remove(self, path: Path) -> Watch | None:
        """Stop watching ``path`` (its sources stay in the store)."""
        with self._lock:
            watch = self._watches.pop(os.path.realpath(path), None)
        if watch is not None:
            watch._stop.set()
        return watch

    def all(self) -> list[Watch]:
        """Every watch."""
        return list(self._watches.values())

    def stop(self) -> None:
        """Stop every watch."""
        for watch in self.all():
            watch._stop.set()
        for watch in self.all():
            if watch._thread is not None:
                watch._thread.join(timeout=10)

    def _sync(self, watch: Watch) -> None:
        """One reconcile, waited for: its failure is the watch's ``last_error``."""
        try:
            job = self._reconcile(watch.path)
            watch.last_job = getattr(job, "id", None)
            error = None
            if hasattr(job, "wait") and job.wait(watch._stop) and job.state != "succeeded":
                error = job.error or f"the reconcile was {job.state}"
        except Exception as exc:  # reported in /v1/status; the watch goes on
            error = f"{type(exc).__name__}: {exc}"
        watch.last_error = error
        watch.reconciles += 1
        watch.last_reconcile = time.time()

    def _run(self, watch: Watch) -> None:
        self._sync(watch)
        while not watch._stop.is_set():
            identity = _identity(watch.path)
            if identity is None:
                # Gone (deleted, unmounted): its sources stay until it is back.
                watch.last_error = f"{watch.path} is gone; its sources are kept until it is back"
                watch._stop.wait(1.0)
                if _identity(watch.path) is not None:
                    self._sync(watch)
                continue
            self._watch(watch, identity)
            if not watch._stop.is_set() and _identity(watch.path) not in (None, identity):
                self._sync(watch)  # made again (a re-clone): watch the new one at once

    def _watch(self, watch: Watch, identity: tuple[int, int]) -> None:
        """Follow the events of the folder ``identity`` names until it stops
        being that folder (deleted, replaced) or the watch stops."""
        import watchfiles

        deadline = time.monotonic() + RECONCILE_SECONDS
        while not watch._stop.is_set():
            try:
                for _changes in watchfiles.watch(
                    watch.path,
                    debounce=DEBOUNCE_MS,
                    step=50,
                    stop_event=watch._stop,
                    rust_timeout=int(min(RECONCILE_SECONDS, 5.0) * 1000),
                    yield_on_timeout=True,
                    force_polling=watch.poll or None,
                    poll_delay_ms=300,
                    raise_interrupt=False,
                ):
                    if _identity(watch.path) != identity:
                        return
                    if _changes or time.monotonic() > deadline:
                        settle({Path(p) for _, p in _changes}, watch._stop)
                        self._sync(watch)
                        deadline = time.monotonic() + RECONCILE_SECONDS
                    if watch._stop.is_set():
                        return
            except Exception as exc:  # native events failed: fall back to polling
                if _identity(watch.path) != identity:
                    return
                watch.last_error = f"{type(exc).__name__}: {exc}; polling instead"
                if watch.poll:
                    time.sleep(1.0)
                watch.poll = True


def _identity(path: Path) -> tuple[int, int] | None:
    """Which directory ``path`` is now (device, inode), or None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if path.is_dir() else None


def settle(paths: set[Path], stop: threading.Event) -> None:
    """Wait until none of ``paths`` changes size or modification time for
    STABLE_SECONDS (gone files count as still), at most STABLE_MAX seconds."""

    def state() -> dict[Path, tuple[int, int] | None]:
        out: dict[Path, tuple[int, int] | None] = {}
        for path in paths:
            try:
                st = path.stat()
                out[path] = (st.st_size, st.st_mtime_ns)
            except OSError:
                out[path] = None
        return out

    give_up = time.monotonic() + STABLE_MAX
    before = state()
    while time.monotonic() < give_up and not stop.wait(STABLE_SECONDS):
        now = state()
        if now == before:
            return
        before = now
