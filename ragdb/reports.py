"""The results ragdb's API returns, local or remote alike: plain dataclasses
with ``to_dict()`` and ``from_dict()`` (a remote server's JSON is read back
into the same types).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ragdb.query.retrieve import Hit


@dataclasses.dataclass
class Retrieval:
    question: str
    hits: list[Hit]
    timings: dict[str, float]


@dataclasses.dataclass
class Answer:
    question: str
    hits: list[Hit]
    answer: str | None
    enough_context: bool
    model: str | None
    timings: dict[str, float]
    error: str | None = None
    # Whether the answer was cut, and why: "max_tokens", "deadline", "repetition".
    truncated: bool = False
    truncated_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb query --json`` prints."""
        out: dict[str, Any] = {
            "question": self.question,
            "chunks": [h.to_dict() for h in self.hits],
            "answer": self.answer,
            "enough_context": self.enough_context,
            "model": self.model,
            "timings": self.timings,
            "truncated": self.truncated,
        }
        if self.truncated:
            out["truncated_reason"] = self.truncated_reason
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclasses.dataclass
class Status:
    """Where a store is, what it holds and how it was made (``ragdb status``)."""

    store: str
    mode: str  # "embedded" or "server"
    collection: str
    chunks: int
    sources: int
    embed_model: str
    embed_backend: str
    embed_dimension: int
    max_seq_length: int
    format_version: int
    ragdb_version: str | None
    chromadb_version: str | None
    created_at: str | None
    updated_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb status --json`` prints."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RemoveReport:
    """The sources :meth:`KnowledgeBase.remove` removed, and their chunks."""

    removed: list[str]
    chunks_removed: int

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb remove --json`` prints."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class MigrateReport:
    """What :meth:`KnowledgeBase.migrate` applied, and the store's format after."""

    store: str
    applied: list[str]
    format_version: int
    migrations: list[str]

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb migrate --json`` prints."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ReembedReport:
    """The model and backend a store moved from and to, and its new collection."""

    store: str
    from_model: str
    to_model: str
    from_backend: str
    to_backend: str
    collection: str
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb reembed --json`` prints."""
        return {
            "store": self.store,
            "from": self.from_model,
            "to": self.to_model,
            "from_backend": self.from_backend,
            "to_backend": self.to_backend,
            "collection": self.collection,
            "chunks": self.chunks,
        }
