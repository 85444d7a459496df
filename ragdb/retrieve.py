"""Retrieval: the nearest chunks to a question."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .store import Session


@dataclasses.dataclass
class Hit:
    rank: int
    id: str
    source: str
    score: float  # cosine similarity for dense retrieval
    text: str
    metadata: dict[str, Any]

    @property
    def location(self) -> str:
        """Where in its source the chunk lies, for people."""
        m = self.metadata
        parts = []
        if "page" in m:
            parts.append(f"page {m['page']}")
        if m.get("heading"):
            parts.append(f"§ {m['heading']}")
        parts.append(f"chunk {int(m.get('chunk_index', 0)) + 1}/{m.get('n_chunks', '?')}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "source": self.source,
            "score": self.score,
            "text": self.text,
            "metadata": self.metadata,
        }


def dense_search(session: Session, embedding: list[float], k: int) -> list[Hit]:
    """Chroma's cosine nearest neighbours; score = 1 - cosine distance."""
    coll = session.collection
    got: Any = coll.query(
        query_embeddings=cast(Any, [embedding]),
        n_results=k,
        include=["documents", "metadatas", "distances"],
    )
    hits = []
    for i, cid in enumerate(got["ids"][0]):
        meta = dict(got["metadatas"][0][i] or {})
        hits.append(
            Hit(
                rank=i + 1,
                id=cid,
                source=str(meta.get("source", "")),
                score=round(1.0 - float(got["distances"][0][i]), 6),
                text=got["documents"][0][i] or "",
                metadata=meta,
            )
        )
    return hits
