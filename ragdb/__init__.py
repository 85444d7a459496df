"""ragdb: a persistent, local retrieval-augmented generation tool over Chroma.

Importing ragdb is cheap: torch, sentence-transformers and chromadb load only
when a knowledge base is used.

>>> from ragdb import KnowledgeBase
>>> kb = KnowledgeBase(store="~/notes-kb")
>>> report = kb.ingest(["~/notes"])
>>> answer = kb.ask("When is the Innovation Summit held?")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragdb.version import __version__

# Every name ragdb exports, and the module that defines it (imported on first use).
_EXPORTS = {
    "KnowledgeBase": "knowledge_base",
    "Answer": "query.answer",
    "Retrieval": "query.retrieve",
    "Status": "reports",
    "RemoveReport": "reports",
    "MigrateReport": "reports",
    "ReembedReport": "reports",
    "Settings": "config",
    "Hit": "query.retrieve",
    "Query": "query.retrieve",
    "IngestReport": "ingest.plan",
    "IngestPlan": "ingest.plan",
    "IngestInterrupted": "ingest.plan",
    "ChunkRecord": "store.records",
    "SourceInfo": "store.records",
    "DoctorReport": "store.doctor",
    "Finding": "store.doctor",
    "RagdbError": "errors",
    "InputError": "errors",
    "UsageError": "errors",
    "StoreError": "errors",
    "StoreNotFoundError": "errors",
    "EmptyStoreError": "errors",
    "ManifestError": "errors",
    "ModelMismatchError": "errors",
    "StoreVersionError": "errors",
    "StoreBusyError": "errors",
    "SourceNotFoundError": "errors",
    "NotAllowedError": "errors",
    "EmbeddingModelError": "errors",
    "LLMError": "errors",
    "LLMTimeoutError": "errors",
    "Support": "query.support",
    "SentenceSupport": "query.support",
    "KnowledgeBaseInfo": "reports",
    "ExportReport": "reports",
    "ImportReport": "reports",
    "UnsupportedAnswerError": "errors",
    "KnowledgeBaseNotFoundError": "errors",
    "KnowledgeBaseExistsError": "errors",
}

# Literal, so that linters and IDEs read it; test_api checks it against _EXPORTS.
__all__ = [
    "Answer",
    "ChunkRecord",
    "DoctorReport",
    "EmbeddingModelError",
    "EmptyStoreError",
    "ExportReport",
    "Finding",
    "Hit",
    "ImportReport",
    "IngestInterrupted",
    "IngestPlan",
    "IngestReport",
    "InputError",
    "KnowledgeBase",
    "KnowledgeBaseExistsError",
    "KnowledgeBaseInfo",
    "KnowledgeBaseNotFoundError",
    "LLMError",
    "LLMTimeoutError",
    "ManifestError",
    "MigrateReport",
    "ModelMismatchError",
    "NotAllowedError",
    "Query",
    "RagdbError",
    "ReembedReport",
    "RemoveReport",
    "Retrieval",
    "SentenceSupport",
    "Settings",
    "SourceInfo",
    "SourceNotFoundError",
    "Status",
    "StoreBusyError",
    "StoreError",
    "StoreNotFoundError",
    "StoreVersionError",
    "Support",
    "UnsupportedAnswerError",
    "UsageError",
    "__version__",
]

if TYPE_CHECKING:
    from ragdb.config import Settings
    from ragdb.errors import (
        EmbeddingModelError,
        EmptyStoreError,
        InputError,
        KnowledgeBaseExistsError,
        KnowledgeBaseNotFoundError,
        LLMError,
        LLMTimeoutError,
        ManifestError,
        ModelMismatchError,
        NotAllowedError,
        RagdbError,
        SourceNotFoundError,
        StoreBusyError,
        StoreError,
        StoreNotFoundError,
        StoreVersionError,
        UnsupportedAnswerError,
        UsageError,
    )
    from ragdb.ingest.plan import IngestInterrupted, IngestPlan, IngestReport
    from ragdb.knowledge_base import KnowledgeBase
    from ragdb.query.answer import Answer
    from ragdb.query.retrieve import Hit, Query, Retrieval
    from ragdb.query.support import SentenceSupport, Support
    from ragdb.reports import (
        ExportReport,
        ImportReport,
        KnowledgeBaseInfo,
        MigrateReport,
        ReembedReport,
        RemoveReport,
        Status,
    )
    from ragdb.store.doctor import DoctorReport, Finding
    from ragdb.store.records import ChunkRecord, SourceInfo


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragdb' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
