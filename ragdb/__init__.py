"""ragdb: a persistent, local retrieval-augmented generation tool over Chroma.

Importing ragdb is cheap: torch, sentence-transformers and chromadb load only
when a knowledge base is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "IngestReport",
    "KnowledgeBase",
    "RagdbError",
    "Retrieval",
    "Settings",
    "__version__",
]

if TYPE_CHECKING:
    from .config import Settings
    from .errors import RagdbError
    from .ingest import IngestReport
    from .knowledge_base import Answer, KnowledgeBase, Retrieval

_LAZY = {
    "Answer": "knowledge_base",
    "KnowledgeBase": "knowledge_base",
    "Retrieval": "knowledge_base",
    "IngestReport": "ingest",
    "Settings": "config",
    "RagdbError": "errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragdb' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
