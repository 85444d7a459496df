"""What both backends share about writes in flight: the names of the records
that let a write killed part-way be found and finished by the next process,
and that tell a keyword index which sources changed since it last looked.

The protocol itself (add the new version, then delete the old) is
:mod:`ragdb.chunks`'; how a backend records a write is its own (a note file
beside a local store, a write log and per-source claims on a server).
"""

from __future__ import annotations

import dataclasses
import os
import uuid

# The "source" of a write that touches every chunk (reset, rebuild, re-embed).
ALL = "*"


@dataclasses.dataclass(frozen=True)
class Abandoned:
    """A write whose process died before it finished: its sources (None when
    unknown: check them all) and the backend's token for it."""

    sources: list[str] | None
    token: str | None = None


@dataclasses.dataclass(frozen=True)
class KeywordChanges:
    """What a keyword index must do to match the store: rebuild it all, or look
    again at some sources; and the stamp to give it after (None: keep it)."""

    full: bool
    sources: set[str]
    stamp: int | None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's, but there
    return True


def writer_gone(host: str, pid: int, expires: float) -> bool:
    """Whether the process that recorded a write or claim is gone: on this host
    one that no longer runs, elsewhere one whose lease (``expires``) ran out."""
    import socket
    import time

    if host == socket.gethostname():
        return not alive(pid)
    return time.time() > expires


def writer_id() -> str:
    """A token no other write, in this process or any other, will have."""
    return uuid.uuid4().hex
