"""What a store's backend is: the :class:`Backend` protocol both
implementations (:mod:`ragdb.store.local`, a directory; :mod:`ragdb.store.server`,
a Chroma server) satisfy, and what they share about writes in flight: the
names of the records that let a write killed part-way be found and finished by
the next process, and that tell a keyword index which sources changed since it
last looked.

The protocol itself (add the new version, then delete the old) is
:mod:`ragdb.store.versions`'; how a backend records a write is its own (a note file
beside a local store, a write log and per-source claims on a server).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragdb.config import DEFAULT_KB

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from ragdb.store.kept import Kept

# The "source" of a write that touches every chunk (reset, rebuild, re-embed).
ALL = "*"
# Between a knowledge base's name and a source's in what a write records: a
# character no file name, URL or record id holds. The default knowledge base's
# sources go bare, as they did before there were others.
_KB_SEP = "\x1f"


def qualify(kb: str, source: str) -> str:
    """How a write records ``source`` of knowledge base ``kb``."""
    return source if kb == DEFAULT_KB else f"{kb}{_KB_SEP}{source}"


def unqualify(recorded: str) -> tuple[str, str]:
    """The knowledge base and source a write recorded (see :func:`qualify`)."""
    kb, sep, source = recorded.partition(_KB_SEP)
    return (kb, source) if sep else (DEFAULT_KB, recorded)


def by_kb(recorded: Sequence[str]) -> dict[str, list[str]]:
    """Recorded sources grouped by knowledge base (:data:`ALL` for all of one's)."""
    out: dict[str, list[str]] = {}
    for name in recorded:
        kb, source = unqualify(name)
        out.setdefault(kb, []).append(source)
    return out


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


def writer_id() -> str:
    """A token no other write, in this process or any other, will have."""
    return uuid.uuid4().hex


class Backend(Protocol):
    """Where a store lives and how its processes coordinate: everything
    :class:`~ragdb.store.store.Store` and :class:`~ragdb.store.session.Session`
    ask of a directory or of a Chroma server."""

    server: bool
    # Most records one request writes, deletes or reads (None: Chroma's own limit).
    batch_cap: int | None

    @property
    def location(self) -> str:
        """The store's directory or server, for messages."""

    @property
    def client_key(self) -> str:
        """What identifies this store's Chroma client in the process cache."""

    def precheck(self, create: bool) -> None:
        """Refuse early what cannot be a store (before a model loads)."""

    def check_location(self, create: bool) -> None:
        """Refuse what is not a store, once locked."""

    def connect(self) -> ClientAPI:
        """A Chroma client for the store."""

    def acquire(self) -> None:
        """Take the store for one session (a lock where there is one)."""

    def release(self) -> None:
        """Give the store back."""

    def ingest_turn(
        self, waiting: Callable[[str], None] | None = None
    ) -> AbstractContextManager[None]:
        """One ingest at a time, where the backend can tell."""

    def read_manifest(self, client: ClientAPI) -> tuple[str, str] | None:
        """The manifest's text and where it was read, or None."""

    def write_manifest(self, client: ClientAPI, manifest: dict[str, Any]) -> None:
        """Write the manifest."""

    def read_backup(self) -> str | None:
        """The manifest's backup copy, if any."""

    def manifest_missing(self, client: ClientAPI) -> None:
        """Raise the error for a store whose manifest is gone."""

    def unchanged_since(self, generation: int) -> bool:
        """Whether no write happened since ``generation``."""

    def keywords_path(self, manifest: dict[str, Any], kb: str) -> Path:
        """Where this machine keeps knowledge base ``kb``'s keyword index."""

    def forget_keywords(self) -> None:
        """Drop the keyword indexes (each is rebuilt on use)."""

    def disk_full(self) -> str | None:
        """How full the store's disk is when too full to write, else None."""

    def sweep(self) -> list[str]:
        """Delete files no collection uses any more; their names."""

    def salvage(self, collection: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Every chunk (id, text, metadata) read around a broken vector index."""

    def kept(self, client: ClientAPI, manifest: dict[str, Any]) -> Kept | None:
        """What this process keeps of the store between sessions while it has
        not changed since ``manifest`` was read (see :mod:`ragdb.store.kept`)."""

    def begin_write(self, client: ClientAPI, sources: Sequence[str]) -> None:
        """Record a write about to touch ``sources``."""

    def confirm_write(self, client: ClientAPI) -> None:
        """Before a delete: raise LeaseLostError if the write in progress is no
        longer this process's (another took it over)."""

    def end_write(self, client: ClientAPI) -> None:
        """Record that the write finished."""

    def abandon_write(self, client: ClientAPI) -> None:
        """Leave the write in progress, cut short, for the next session to settle."""

    def abandoned_writes(self, client: ClientAPI) -> list[Abandoned]:
        """Writes whose processes died part-way."""

    def settled(self, client: ClientAPI, abandoned: Abandoned) -> None:
        """Record that an abandoned write was finished or undone."""

    def keyword_changes(
        self, client: ClientAPI, stamp: int | None, manifest: dict[str, Any], kb: str
    ) -> KeywordChanges:
        """What knowledge base ``kb``'s keyword index, stamped ``stamp``, must
        catch up with."""

    def after_write(self) -> None:
        """Upkeep after a session that wrote (file modes, say)."""

    def backup(self, manifest: dict[str, Any]) -> None:
        """Keep a copy of the manifest."""

    def reserved_collections(self) -> set[str]:
        """Collections that are the backend's own, never chunks."""
