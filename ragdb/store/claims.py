"""Per-source claims on a Chroma server: one writer at a time per source,
across machines, without a lock server. Chroma's ``add`` keeps the first
record of an id and ignores later ones, and a read sees every write that
finished before it: that is a compare-and-swap, which is all a claim needs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragdb.errors import StoreBusyError
from ragdb.store.bookkeeping import DUMMY, Keeper, LeaseMeta, pages, small_collection
from ragdb.store.leases import writer_gone

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

CLAIMS_COLLECTION = "ragdb-claims"


class Claims:
    """One writer at a time per source, across machines: a claim is a record
    whose id names the source and a number one above the last claim's; the
    first writer to add it holds the source until it marks it released, or its
    lease runs out (see :mod:`ragdb.store.leases`)."""

    def __init__(self, backend: Keeper) -> None:
        self.backend = backend
        self.me = backend.me

    def acquire(
        self, client: ClientAPI, sources: Sequence[str], wait: float, lease: LeaseMeta
    ) -> list[str]:
        """Claim every source (in one go where free), waiting up to ``wait``
        seconds for claims held by live writers. Returns the claim ids held."""
        from ragdb.store.records import source_key

        if not sources:
            return []
        claims = small_collection(client, CLAIMS_COLLECTION, self.backend)
        names = {source_key(s): s for s in sources}
        todo = set(names)
        held: list[str] = []
        owner = ""
        deadline = time.monotonic() + wait
        try:
            while todo:
                latest = self._latest(claims, sorted(todo))
                now = self.backend.server_now(client)
                free = [k for k in sorted(todo) if k not in latest or self._free(latest[k], now)]
                free = free[: self.backend.page]  # the rest at the next turn of the loop
                if free:
                    epochs = {k: int(latest.get(k, {}).get("epoch", 0)) + 1 for k in free}
                    ids = [f"{k}-{epochs[k]:08d}" for k in free]
                    meta = lease(client)
                    owner = meta["owner"]
                    metas = [{"key": k, "epoch": epochs[k], "state": "held", **meta} for k in free]
                    claims.add(ids=ids, embeddings=DUMMY * len(ids), metadatas=metas)
                    got = claims.get(ids=ids, include=["metadatas"])
                    ours = {
                        str((m or {})["key"]): cid
                        for cid, m in zip(got["ids"], got["metadatas"] or [], strict=True)
                        if (m or {}).get("owner") == owner
                    }
                    # Ours only if still the newest: old epochs are pruned, so a
                    # writer that read long ago may re-add a pruned number.
                    newest = self._latest(claims, sorted(ours))
                    for key, cid in ours.items():
                        if newest[key]["epoch"] == epochs[key]:
                            held.append(cid)
                            todo.discard(key)
                        else:
                            self.release(client, [cid], owner)
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
            self.release(client, held, owner)
            raise
        return held

    def _latest(self, claims: Any, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest claim of each key that has one (read a page at a time)."""
        latest: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 100):
            part = list(keys[i : i + 100])
            where: Any = {"key": part[0]} if len(part) == 1 else {"key": {"$in": part}}
            offset = 0
            while True:
                got = claims.get(
                    where=where, include=["metadatas"], limit=self.backend.page, offset=offset
                )
                for meta in got["metadatas"] or []:
                    meta = dict(meta or {})
                    if int(meta["epoch"]) > int(latest.get(meta["key"], {}).get("epoch", 0)):
                        latest[meta["key"]] = meta
                if len(got["ids"]) < self.backend.page:
                    break
                offset += self.backend.page
        return latest

    def _free(self, meta: dict[str, Any], now: float) -> bool:
        return meta.get("state") == "released" or writer_gone(meta, now, self.me)

    def renew(self, client: ClientAPI, held: Sequence[str], owner: str, expires: float) -> bool:
        """Extend the lease of claims ``held`` while each is still ``owner``'s
        and the newest of its source (no other writer claimed it since)."""
        if not held:
            return True
        claims = small_collection(client, CLAIMS_COLLECTION, self.backend)
        got_ids, metas = self._read(claims, held)
        if len(metas) != len(held) or any(
            m.get("owner") != owner or m.get("state") != "held" for m in metas
        ):
            return False
        latest = self._latest(claims, sorted({str(m["key"]) for m in metas}))
        if any(latest[str(m["key"])]["epoch"] != m["epoch"] for m in metas):
            return False
        for part in pages(got_ids, self.backend.page):
            claims.update(ids=part, metadatas=[{"expires": expires}] * len(part))
        return True

    def _read(self, claims: Any, ids: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
        """Claims by id, a page at a time: their ids and metadata."""
        got_ids: list[str] = []
        metas: list[dict[str, Any]] = []
        for part in pages(list(ids), self.backend.page):
            got = claims.get(ids=part, include=["metadatas"])
            got_ids += got["ids"]
            metas += [dict(m or {}) for m in got["metadatas"] or []]
        return got_ids, metas

    def release(self, client: ClientAPI, held: Sequence[str], owner: str) -> None:
        """Let go of the claims ``held`` that are still ``owner``'s."""
        if not held:
            return
        claims = small_collection(client, CLAIMS_COLLECTION, self.backend)
        mine = [
            (c, m)
            for c, m in zip(*self._read(claims, held), strict=True)
            if m.get("owner") == owner
        ]
        if not mine:
            return
        for part in pages([c for c, _ in mine], self.backend.page):
            claims.update(ids=part, metadatas=[{"state": "released"}] * len(part))
        # Older epochs of these sources are spent: the newest is all that
        # compare-and-swap needs (see acquire). Each release prunes the two
        # before it, so the claims stay about one a source (a writer that died
        # holding one leaves a record behind).
        spent = [
            f"{m['key']}-{e:08d}"
            for _, m in mine
            for e in range(max(1, int(m["epoch"]) - 2), int(m["epoch"]))
        ]
        for i in range(0, len(spent), self.backend.page):
            claims.delete(ids=spent[i : i + self.backend.page])
