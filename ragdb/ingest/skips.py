"""What an ingest read and found nothing to store in, remembered so that the
same bytes are not read again: a blank scan OCR found no text in costs seconds
a page on every ingest otherwise. Kept per store on this machine, in ragdb's
cache (``$XDG_CACHE_HOME/ragdb/skips``), keyed by the source and what decided
the outcome (its fingerprint, the OCR mode, engine and languages). It is a
cache: lost or stale, it costs a read, never a wrong answer; a changed file
has another fingerprint and is read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

# Entries beyond this are dropped, oldest first: a cache, not a log.
MAX_ENTRIES = 100_000


def cache_dir() -> Path:
    """Where the memories of every store are kept."""
    from platformdirs import user_cache_path

    return user_cache_path("ragdb", appauthor=False) / "skips"


class SkipMemory:
    """One store's remembered skips: source -> (key, reason)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[str]] = {}
        self.changed = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.entries = {
                        str(k): v for k, v in loaded.items() if isinstance(v, list) and len(v) == 2
                    }

    @classmethod
    def for_store(cls, location: str, collection: str) -> SkipMemory:
        """The memory of the store at ``location`` holding ``collection``."""
        name = hashlib.sha1(f"{location}\0{collection}".encode()).hexdigest()[:20]
        return cls(cache_dir() / f"{name}.json")

    def recall(self, source: str, key: str) -> str | None:
        """Why ``source`` was skipped when it last had ``key``, if it was."""
        entry = self.entries.get(source)
        if entry is None:
            return None
        if entry[0] == key:
            return entry[1]
        self.forget(source)  # it changed since: read it again
        return None

    def remember(self, source: str, key: str, reason: str) -> None:
        """``source``, as ``key``, was read and skipped for ``reason``."""
        self.entries.pop(source, None)  # newest last, for the bound
        self.entries[source] = [key, reason]
        self.changed = True

    def forget(self, source: str) -> None:
        """``source`` is to be read again."""
        if self.entries.pop(source, None) is not None:
            self.changed = True

    def save(self) -> None:
        """Write the memory (atomically) if it changed; a failure is no error."""
        if not self.changed or self.path is None:
            return
        while len(self.entries) > MAX_ENTRIES:
            self.entries.pop(next(iter(self.entries)))
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".skips-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self.entries, fh)
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):  # not replaced: a failed write leaves nothing
                    os.unlink(tmp)
        self.changed = False
