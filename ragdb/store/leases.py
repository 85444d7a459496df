"""Who holds a write on a Chroma server, and until when.

A writer's per-source claims and its write-log entry carry a lease that ends
on the Chroma server's clock (its heartbeat reports the time; this process
follows it by its own monotonic clock), renewed every third of the lease by a
:class:`Heartbeat` thread while the write lasts. Another process takes a write
over only when its lease ran out on that one clock or, on the same host
identity (hostname, boot id and pid namespace, not just the hostname), when its
process is gone. Two machines' wall clocks are never compared, so a skewed
clock neither shortens nor lengthens a lease.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

# How long a writer may go unheard (seconds) before another process takes its
# write over; settable with RAGDB_LEASE.
LEASE = 120.0


def host_identity(override: str | None = None) -> str:
    """What tells this host's processes from every other's: the hostname, the
    boot id and the pid namespace (containers often share a hostname with
    different pid namespaces, where a pid says nothing). ``override``
    (RAGDB_HOST_ID) stands in where /proc cannot tell."""
    if override:
        return override
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "|".join(parts)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (in this pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's, but there
    return True


def writer_gone(record: Mapping[str, Any], server_now: float, me: str) -> bool:
    """Whether the writer of a claim or log entry (its ``hostid``, ``pid`` and
    ``expires``) is gone: on this host identity, one whose process no longer
    runs; elsewhere one whose lease ran out by the server's clock."""
    hostid = str(record.get("hostid") or "")
    if hostid and hostid == me:
        return not alive(int(record.get("pid") or 0))
    return server_now > float(record.get("expires") or 0.0)


class ServerClock:
    """The Chroma server's time: read from its heartbeat now and then, and
    followed in between by this process's monotonic clock (which a wall-clock
    step or skew does not move)."""

    REFRESH = 300.0

    def __init__(self) -> None:
        self._offset: float | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def now(self, client: ClientAPI) -> float:
        """Seconds since the epoch on the server's clock."""
        with self._lock:
            if self._offset is None or time.monotonic() - self._read_at > self.REFRESH:
                before = time.monotonic()
                beat = client.heartbeat()  # nanoseconds since the epoch, the server's
                after = time.monotonic()
                self._offset = beat / 1e9 - (before + after) / 2
                self._read_at = after
            return time.monotonic() + self._offset


class Heartbeat:
    """Calls ``renew`` every ``interval`` seconds in a daemon thread until
    stopped; ``renew`` returns False when the write was lost, which stops it
    and sets :attr:`lost`. A failed renewal (a network blip) is tried again
    at the next beat: the lease has two more beats of room."""

    def __init__(self, interval: float, renew: Callable[[], bool]) -> None:
        self.lost = False
        self._interval = interval
        self._renew = renew
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragdb-lease", daemon=True)

    def start(self) -> Heartbeat:
        """Begin beating; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (and wait for a beat in progress)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._renew():
                    self.lost = True
                    return
            except Exception:  # a blip: tried again at the next beat; confirm() decides
                continue
