"""The write log of a store on a Chroma server: one numbered entry per write
(and per manifest save), so that every process can tell whether the store
changed since it last looked, find a write whose process died part-way, and
learn which sources a keyword index of its own must look at again.

Numbers go up without gaps: a writer takes one above the newest it read, and
Chroma's ``add`` keeps the first record of an id (a compare-and-swap), so two
writers never share one. Whether the store changed is one request: is there
an entry above the newest this process saw? Settled entries behind the newest
:data:`LOG_KEEP` are pruned; the checkpoint record says up to which number,
and readers start there.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import TYPE_CHECKING, Any

from ragdb.errors import StoreError
from ragdb.store.bookkeeping import DUMMY, Keeper, LeaseMeta, Retrying, pages, small_collection

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

LOG_COLLECTION = "ragdb-writes"
# The record that says all entries up to its "base" were settled and pruned.
CHECKPOINT_ID = "checkpoint"
# Entries kept behind the newest when the log is pruned: a process whose
# keyword index is further behind than this rebuilds it from Chroma.
LOG_KEEP = 1000
# How far past LOG_KEEP the log may grow before a writer prunes it.
LOG_SLACK = 250


@dataclasses.dataclass
class LogEntry:
    """One write, as the log records it."""

    number: int
    id: str
    state: str  # "pending", "done", "settled" or "void" (a number given back)
    sources: list[str]
    meta: dict[str, Any]  # its writer and lease (see ragdb.store.leases.writer_gone)


def entry_id(number: int) -> str:
    """The record id of entry ``number``."""
    return f"{number:012d}"


class WriteLog:
    """The write log of the store ``backend`` works for."""

    def __init__(self, backend: Keeper) -> None:
        self.backend = backend
        self._handle: tuple[Any, Any] | None = None

    def _log(self, client: ClientAPI) -> Any:
        return small_collection(client, LOG_COLLECTION, self.backend)

    # -- where the log's head is -------------------------------------------------------------
    def head(self, client: ClientAPI, seen: int | None) -> int:
        """The newest entry's number (0 before the first write), through a
        handle kept for the client (looked up again if the log was dropped).
        From ``seen`` (the newest this process saw before): one request while
        nothing came since."""
        from chromadb.errors import NotFoundError

        from ragdb.store.session import call_chroma

        for _ in range(2):
            if self._handle is None or self._handle[0] is not client:
                try:
                    found = call_chroma(
                        self.backend,
                        "reading the write log",
                        lambda: client.get_collection(LOG_COLLECTION),
                    )
                except StoreError as exc:
                    if isinstance(exc.__cause__, NotFoundError):
                        return 0
                    raise
                self._handle = (client, Retrying(found, self.backend, "reading the write log"))
                seen = None  # the log may have been made anew
            try:
                return self.newest(self._handle[1], seen)
            except StoreError as exc:
                if not isinstance(exc.__cause__, NotFoundError):
                    raise
                self._handle = None
        return 0

    def newest(self, log: Any, seen: int | None = None) -> int:
        """The newest entry's number in ``log`` (0 when empty), from ``seen``
        when this process saw one before."""
        if seen is None:
            got = log.get(ids=[CHECKPOINT_ID], include=["metadatas"])
            base = _base(got)
            candidate = base + log.count() - len(got["ids"])
            found = self._above(log, candidate - 1)
            # No entry at the estimate: a prune is under way, or a stray number
            # below the checkpoint counted. Start from the checkpoint instead.
            return found if found >= candidate else self._above(log, base)
        return self._above(log, seen)

    def _above(self, log: Any, seen: int) -> int:
        """The highest number above ``seen`` (``seen`` when there is none)."""
        page = self.backend.page
        while True:
            got = log.get(where={"number": {"$gt": seen}}, include=["metadatas"], limit=page)
            numbers = [int((m or {})["number"]) for m in got["metadatas"] or []]
            if not numbers:
                return seen
            seen = max(numbers)
            if len(numbers) < page:
                return seen

    def base(self, log: Any) -> int:
        """The checkpoint: every entry up to this number was settled and pruned."""
        return _base(log.get(ids=[CHECKPOINT_ID], include=["metadatas"]))

    # -- writing -----------------------------------------------------------------------------
    def append(
        self, client: ClientAPI, sources: list[str], lease: LeaseMeta, seen: int | None
    ) -> str:
        """A pending entry for ``sources`` under the next free number; its id.
        ``seen``: the newest number this process knows of (a hint)."""
        log = self._log(client)
        while True:
            read_at = self.backend.server_now(client)
            first = self.newest(log, seen) + 1
            for number in itertools.count(first):
                eid = entry_id(number)
                meta = {"number": number, "state": "pending", "at": read_at, **lease(client)}
                # The sources go in the document: a metadata value is capped on Chroma Cloud.
                log.add(
                    ids=[eid], embeddings=DUMMY, metadatas=[meta], documents=[json.dumps(sources)]
                )
                got = log.get(ids=[eid], include=["metadatas"])
                if got["metadatas"] and (got["metadatas"][0] or {}).get("owner") == meta["owner"]:
                    break  # the number is ours; otherwise try the next one
            if self.backend.server_now(client) - read_at <= self.backend.lease:
                return eid
            # Stalled for longer than a lease between reading the head and taking
            # the number: a prune may have passed it, so readers would not look
            # at it. Give it back (it stays taken, as void) and take another.
            log.update(ids=[eid], metadatas=[{"state": "void"}])
            seen = number

    def finish(self, client: ClientAPI, eid: str, state: str) -> None:
        """Mark an entry ``state`` (Chroma merges the keys an update names)."""
        self._log(client).update(ids=[eid], metadatas=[{"state": state}])

    def renew(self, client: ClientAPI, eid: str, owner: str, expires: float) -> bool:
        """Extend an entry's lease while it is still ``owner``'s and pending."""
        log = self._log(client)
        got = log.get(ids=[eid], include=["metadatas"])
        meta = (got["metadatas"] or [None])[0] or {}
        if meta.get("state") != "pending" or meta.get("owner") != owner:
            return False
        log.update(ids=[eid], metadatas=[{"expires": expires}])
        return True

    def expire(self, client: ClientAPI, eid: str) -> None:
        """End an entry's lease now: the next reader settles its sources."""
        self._log(client).update(ids=[eid], metadatas=[{"expires": 0.0, "hostid": ""}])

    # -- reading -----------------------------------------------------------------------------
    def pending(self, client: ClientAPI) -> list[LogEntry]:
        """The entries still pending, a page at a time (one settled meanwhile
        may shift another past a page: it is found at the next look)."""
        log = self._log(client)
        out: list[LogEntry] = []
        while True:
            got = log.get(
                where={"state": "pending"},
                include=["metadatas", "documents"],
                limit=self.backend.page,
                offset=len(out),
            )
            out += _entries(got)
            if len(got["ids"]) < self.backend.page:
                return out

    def entries(
        self, client: ClientAPI, first: int, last: int, sources: bool = True
    ) -> list[LogEntry]:
        """The entries numbered ``first`` to ``last`` that are still kept."""
        ids = [entry_id(n) for n in range(first, last + 1)]
        include = ["metadatas", "documents"] if sources else ["metadatas"]
        log = self._log(client)
        out: list[LogEntry] = []
        for part in pages(ids, self.backend.page):
            out += _entries(log.get(ids=part, include=include))
        return out

    # -- bounded growth ----------------------------------------------------------------------
    def prune(self, client: ClientAPI, newest: int) -> int:
        """Drop the entries behind the newest :data:`LOG_KEEP` once there are
        :data:`LOG_SLACK` more, oldest first, stopping at the first one still
        pending or younger than two leases (a writer stalled past one lease
        gives its number back, see :meth:`append`); then move the checkpoint.
        Returns how many were dropped."""
        log = self._log(client)
        base = self.base(log)
        target = newest - LOG_KEEP
        if target - base < LOG_SLACK:
            return 0
        old = self.backend.server_now(client) - 2 * self.backend.lease
        dropped = 0
        for first in range(base + 1, target + 1, self.backend.page):
            last = min(first + self.backend.page - 1, target)
            got = self.entries(client, first, last, sources=False)
            young = [e.number for e in got if e.state == "pending" or _at(e) > old]
            keep_from = min(young, default=last + 1)
            doomed = [e.id for e in got if e.number < keep_from]
            if doomed:
                log.delete(ids=doomed)
                dropped += len(doomed)
            # Only after the delete: until the checkpoint moves, readers
            # under-count the head and look further, never the other way.
            log.upsert(
                ids=[CHECKPOINT_ID],
                embeddings=DUMMY,
                metadatas=[{"base": keep_from - 1, "state": "checkpoint"}],
            )
            if young:
                break
        return dropped


def _base(got: Any) -> int:
    """The checkpoint's number from a ``get`` of its record (0 when none)."""
    return int(((got["metadatas"] or [None])[0] or {}).get("base", 0))


def _at(entry: LogEntry) -> float:
    """When an entry's writer read the log's head (0 for an older ragdb's)."""
    return float(entry.meta.get("at", 0.0))


def _entries(got: Any) -> list[LogEntry]:
    """Log entries from a ``get`` of the log (sources in the document; an older
    ragdb's entries held them in the metadata)."""
    out = []
    docs = got.get("documents") or [None] * len(got["ids"])
    for eid, meta, doc in zip(got["ids"], got["metadatas"] or [], docs, strict=True):
        meta = dict(meta or {})
        out.append(
            LogEntry(
                number=int(meta.get("number", eid)),
                id=eid,
                state=str(meta.get("state", "done")),
                sources=list(json.loads(doc or meta.get("sources") or "[]")),
                meta=meta,
            )
        )
    return out
