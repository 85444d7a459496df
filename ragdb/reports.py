"""The reports of the knowledge base's own operations (status, remove,
migrate, reembed, knowledge bases): plain dataclasses with ``to_dict()``, and ``from_dict()``
where a remote server's JSON is read back into the same type. Each layer's
results live with it: :class:`~ragdb.ingest.plan.IngestReport`,
:class:`~ragdb.query.retrieve.Retrieval`, :class:`~ragdb.query.answer.Answer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ragdb.wire import from_fields


@dataclasses.dataclass
class Status:
    """Where a store is, what it holds and how it was made (``ragdb status``)."""

    store: str
    mode: str  # "embedded" or "server"
    collection: str
    kb: str  # the knowledge base counted
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
    # Every knowledge base in the store, by name.
    knowledge_bases: list[str] = dataclasses.field(default_factory=list)
    # The vector index the collection has: "hnsw" (single-node Chroma) or
    # "spann" (Chroma's distributed deployment and Cloud).
    index: str = "hnsw"

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb status --json`` prints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Status:
        """The status :meth:`to_dict` wrote (a server's, say)."""
        return from_fields(cls, data)

    @classmethod
    def of(
        cls,
        location: str,
        server: bool,
        kb: str,
        chunks: int,
        sources: int,
        manifest: Any,
        index: str = "hnsw",
    ) -> Status:
        """The status of knowledge base ``kb`` of a store at ``location`` from
        its manifest and counts."""
        from ragdb.store.manifest import kb_collection, kb_entries

        model = manifest["embed_model"]
        return cls(
            store=location,
            mode="server" if server else "embedded",
            collection=kb_collection(manifest, kb),
            kb=kb,
            knowledge_bases=sorted(kb_entries(manifest)),
            chunks=chunks,
            sources=sources,
            embed_model=model["name"],
            embed_backend=model.get("backend", "torch"),
            embed_dimension=int(model["dimension"]),
            max_seq_length=int(model["max_seq_length"]),
            format_version=int(manifest["format_version"]),
            ragdb_version=manifest.get("ragdb_version"),
            chromadb_version=manifest.get("chromadb_version"),
            created_at=manifest.get("created_at"),
            updated_at=manifest.get("updated_at"),
            index=index,
        )


@dataclasses.dataclass
class RemoveReport:
    """The sources :meth:`KnowledgeBase.remove` removed, and their chunks."""

    removed: list[str]
    chunks_removed: int

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb remove --json`` prints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RemoveReport:
        """The report :meth:`to_dict` wrote (a server's, say)."""
        return from_fields(cls, data)


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


@dataclasses.dataclass
class KnowledgeBaseInfo:
    """One knowledge base of a store (``ragdb kb list``)."""

    name: str
    chunks: int
    sources: int
    created_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb kb list --json`` prints of it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KnowledgeBaseInfo:
        """The record :meth:`to_dict` wrote (a server's, say)."""
        return from_fields(cls, data)


@dataclasses.dataclass
class ExportReport:
    """What ``ragdb export`` wrote."""

    file: str
    kb: str
    sources: int
    chunks: int
    embed_model: str

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb export --json`` prints."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ImportReport:
    """What ``ragdb import`` did: sources added, replaced and already there,
    chunks written, and whether they were embedded anew (another model)."""

    file: str
    kb: str
    added: int
    updated: int
    unchanged: int
    chunks: int
    reembedded: bool
    from_model: str
    to_model: str

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb import --json`` prints."""
        return dataclasses.asdict(self)
