"""What a process keeps of a store between its sessions while the store has not
changed: its chunk collections' handles, its keyword indexes (open, checked)
and the chunks it has read.

A chunk id names one version of one source's chunk, and Chroma keeps the first
record of an id, so a chunk read once reads the same until the store changes;
every write moves the store on (a local store's generation, a server's write
log), and with it the backend hands out a new, empty :class:`Kept`. A search
then reads from Chroma only the winners it has not read before: under load the
read of the winners was the largest part of a batch's time besides the encoder.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragdb.store.keywords import KeywordIndex
    from ragdb.store.records import ChunkRecord

# Chunks kept at most (each is its text, metadata and, once read, its vector:
# a few kB, so some tens of MB at most). The least recently used go first.
CHUNKS_KEPT = 8192


class ChunkCache:
    """Chunks by id, each with its stored vector or None where it was read
    without; bounded, least recently used out first, safe across threads."""

    def __init__(self, size: int = CHUNKS_KEPT) -> None:
        self.size = size
        self._items: collections.OrderedDict[str, tuple[ChunkRecord, Any]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        # How many chunks were asked for, and how many of them were here.
        self.asked = 0
        self.found = 0

    def __len__(self) -> int:
        return len(self._items)

    def get_many(
        self, ids: Sequence[str], vectors: bool
    ) -> tuple[dict[str, tuple[ChunkRecord, Any]], list[str]]:
        """The chunks of ``ids`` kept here (with their vectors when ``vectors``:
        one kept without counts as missing), and the ids missing."""
        found: dict[str, tuple[ChunkRecord, Any]] = {}
        missing: list[str] = []
        with self._lock:
            for cid in ids:
                item = self._items.get(cid)
                if item is None or (vectors and item[1] is None):
                    missing.append(cid)
                    continue
                self._items.move_to_end(cid)
                found[cid] = item
            self.asked += len(ids)
            self.found += len(found)
        return found, missing

    def put_many(self, items: Iterable[tuple[ChunkRecord, Any]]) -> None:
        """Keep these chunks (a vector already kept stays when one comes without)."""
        with self._lock:
            for record, vector in items:
                old = self._items.get(record.id)
                if vector is None and old is not None:
                    vector = old[1]
                self._items[record.id] = (record, vector)
                self._items.move_to_end(record.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclasses.dataclass
class Kept:
    """What one process read of a store at one state of it (see the module)."""

    collections: dict[str, Any] = dataclasses.field(default_factory=dict)
    chunks: ChunkCache = dataclasses.field(default_factory=ChunkCache)
    # Keyword indexes by knowledge base, open and in line with the store, with
    # the stamp each had then.
    indexes: dict[str, tuple[KeywordIndex, int | None]] = dataclasses.field(default_factory=dict)

    def keep_index(self, kb: str, index: KeywordIndex) -> None:
        """Keep knowledge base ``kb``'s index, just brought in line."""
        self.indexes[kb] = (index, index.generation)

    def index(self, kb: str) -> KeywordIndex | None:
        """Knowledge base ``kb``'s index as kept, unless its stamp moved since
        (a write cut short unstamps it): then it is checked afresh."""
        index, stamp = self.indexes.get(kb, (None, None))
        if index is None or index.generation != stamp:
            return None
        return index
