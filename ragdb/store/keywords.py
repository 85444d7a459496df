"""The keyword index: BM25 over every chunk, kept beside the Chroma collection.

It is an SQLite FTS5 table (porter stemming, BM25 ranking), updated in the same
locked session as every Chroma write, and stamped with the store's generation:
an index whose stamp differs from the store's (a crash between the two writes,
or writes by another client of a Chroma server) is rebuilt from Chroma's chunks
before it is used, so the two never disagree.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)
# Lucene's English stop words. Left out of queries (not of the index): they match
# nearly every chunk, which makes the search slow and adds nothing to the ranking.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the "
    "their then there these they this to was will with".split()
)


class KeywordIndex:
    """BM25 over the store's chunks, in an SQLite FTS5 table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Used from one thread at a time (the store's session), though not always
        # the thread that opened it: a query searches it beside the embedding.
        self.db = sqlite3.connect(
            str(path), timeout=60, isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS chunk_ids (
                rowid INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL
            );
            CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
                text, tokenize='porter unicode61'
            );
            """
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    # -- the stamp ----------------------------------------------------------------------
    @property
    def generation(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else None

    def set_generation(self, generation: int | None) -> None:
        if generation is None:
            self.db.execute("DELETE FROM meta WHERE key='generation'")
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('generation', ?)",
                (str(generation),),
            )

    # -- writes ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Any:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        with self.transaction():
            self._delete(ids)
            for cid, text in zip(ids, texts, strict=True):
                cur = self.db.execute("INSERT INTO chunk_ids(chunk_id) VALUES (?)", (cid,))
                self.db.execute(
                    "INSERT INTO chunks(rowid, text) VALUES (?, ?)", (cur.lastrowid, text)
                )

    def delete(self, ids: Iterable[str]) -> None:
        with self.transaction():
            self._delete(list(ids))

    def _delete(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT rowid FROM chunk_ids WHERE chunk_id IN ({marks})", part
            ).fetchall()
            if rows:
                rowids = [r[0] for r in rows]
                rmarks = ",".join("?" * len(rowids))
                self.db.execute(f"DELETE FROM chunks WHERE rowid IN ({rmarks})", rowids)
                self.db.execute(f"DELETE FROM chunk_ids WHERE rowid IN ({rmarks})", rowids)

    def delete_prefixes(self, prefixes: Iterable[str]) -> None:
        """Delete every chunk whose id starts with one of ``prefixes`` plus "-"
        (a source's chunks share the prefix :func:`ragdb.store.records.source_key` gives)."""
        with self.transaction():
            for prefix in prefixes:
                rows = self.db.execute(
                    "SELECT rowid FROM chunk_ids WHERE chunk_id >= ? AND chunk_id < ?",
                    (prefix + "-", prefix + "."),  # "." sorts right after "-"
                ).fetchall()
                rowids = [r[0] for r in rows]
                for i in range(0, len(rowids), 500):
                    part = rowids[i : i + 500]
                    marks = ",".join("?" * len(part))
                    self.db.execute(f"DELETE FROM chunks WHERE rowid IN ({marks})", part)
                    self.db.execute(f"DELETE FROM chunk_ids WHERE rowid IN ({marks})", part)

    def clear(self) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM chunks")
            self.db.execute("DELETE FROM chunk_ids")

    def rebuild(self, pages: Iterable[tuple[list[str], list[str]]]) -> None:
        """Refill from the store's chunks: pages of (ids, texts)."""
        self.clear()
        for ids, texts in pages:
            self.add(ids, texts)

    # -- reads ------------------------------------------------------------------------------
    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT chunk_id FROM chunk_ids")}

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best chunks for ``query`` by BM25 (higher is better)."""
        words = [w for w in _WORD.findall(query.lower()) if w not in STOP_WORDS]
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        rows = self.db.execute(
            "SELECT c.chunk_id, bm25(chunks) AS s FROM chunks "
            "JOIN chunk_ids c ON c.rowid = chunks.rowid "
            "WHERE chunks MATCH ? ORDER BY s LIMIT ?",
            (match, k),
        ).fetchall()
        # FTS5's bm25() is negated so that ascending order is best first.
        return [(cid, -float(score)) for cid, score in rows]
