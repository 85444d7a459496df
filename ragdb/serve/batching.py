"""Concurrent retrievals answered together: the service's requests wait in one
queue, and one thread takes everything waiting as one batch for
:meth:`KnowledgeBase.retrieve_many` (one nearest-neighbour query, one read of the
chunks, one encoder call where that gives the same vectors).

Nothing waits on purpose: a lone request is served at once, and a batch is
whatever arrived while the previous one was being answered, so batches grow
exactly when the service is busy. One thread also keeps the two cores for the
encoder instead of having requests fight over them.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from typing import TYPE_CHECKING

from ragdb.query.retrieve import Query, check_query

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase
    from ragdb.query.retrieve import Retrieval

# Larger batches only add latency to the first request of a batch.
MAX_BATCH = 32
# How many of the latest retrievals' latencies the status keeps.
LATENCIES_KEPT = 200

_Item = tuple[Query, "asyncio.Future[Retrieval]", asyncio.AbstractEventLoop]


class QueryBatcher:
    """Retrieves for many concurrent callers in batches (see the module)."""

    def __init__(self, kb: KnowledgeBase, max_batch: int = MAX_BATCH) -> None:
        self.kb = kb
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # The sizes of the batches answered (the service's status shows them).
        self.batches = 0
        self.queries = 0
        # The latest retrievals' latencies in ms, queueing included (the page charts them).
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCIES_KEPT)

    async def retrieve(self, query: Query) -> Retrieval:
        """``kb.retrieve(query)``, answered with whatever else is waiting."""
        check_query(query)  # a bad query fails alone, never its batch
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Retrieval] = loop.create_future()
        self._queue.put((query, future, loop))
        started = time.perf_counter()
        try:
            return await future
        finally:
            self.latencies.append(round((time.perf_counter() - started) * 1000, 2))

    def stop(self) -> None:
        """Let the thread finish the batch in hand, then end."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ragdb-queries", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._answer(batch)
            if stopping:
                return

    def _answer(self, batch: list[_Item]) -> None:
        self.batches += 1
        self.queries += len(batch)
        # One call per set of knowledge bases asked: a name that is not there
        # fails its own requests, never the others'.
        groups: dict[tuple[str, ...], list[_Item]] = {}
        for item in batch:
            groups.setdefault(item[0].kbs, []).append(item)
        for items in groups.values():
            try:
                results = self.kb.retrieve_many([query for query, _, _ in items])
            except Exception as exc:  # handed to each waiting request, whatever it is
                for _, future, loop in items:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                continue
            for (_, future, loop), result in zip(items, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(
    future: asyncio.Future[Retrieval], result: Retrieval | None, exc: BaseException | None
) -> None:
    if future.done():  # the client went away
        return
    if exc is not None:
        future.set_exception(exc)
    elif result is not None:
        future.set_result(result)
