"""Retrieval: the nearest chunks to a question."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .chunks import ChunkRecord

MODES = ("dense", "bm25", "hybrid")
# Hybrid beats both others on SciFact's test split at about the latency of dense
# (README, "Retrieval quality"; scripts/eval-scifact reproduces it).
DEFAULT_MODE = "hybrid"
# Reciprocal rank fusion: score = sum of weight / (RRF_K + rank) over the retrievers.
# Tuned on SciFact's train split only (scripts/tune-hybrid.py).
RRF_K = 10
HYBRID_WEIGHTS = {"dense": 1.0, "bm25": 1.25}
# How many candidates each retriever offers to the fusion, at least.
HYBRID_DEPTH = 20

if TYPE_CHECKING:
    from .session import Session


@dataclasses.dataclass
class Hit:
    """One retrieved chunk, best first."""

    rank: int
    id: str
    source: str
    score: float  # cosine similarity to the question, whatever the mode
    text: str
    metadata: dict[str, Any]
    # Per-retriever evidence: "bm25" (keyword score), "fused" (hybrid's RRF score).
    scores: dict[str, float] = dataclasses.field(default_factory=dict)

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
            "scores": self.scores,
        }


def _hit(rank: int, record: ChunkRecord, score: float, scores: dict[str, float]) -> Hit:
    return Hit(
        rank=rank,
        id=record.id,
        source=record.source,
        score=round(score, 6),
        text=record.text,
        metadata=record.metadata(),
        scores=scores,
    )


def dense_search(session: Session, embedding: list[float], k: int) -> list[Hit]:
    """Chroma's cosine nearest neighbours; score = 1 - cosine distance."""
    return [
        _hit(i + 1, record, 1.0 - distance, {})
        for i, (_, distance, record) in enumerate(session.nearest(embedding, k))
        if record is not None
    ]


def keyword_search(
    session: Session,
    question: str,
    embedding: list[float],
    k: int,
    found: list[tuple[str, float]] | None = None,
) -> list[Hit]:
    """BM25 over the chunks; each hit still carries its cosine similarity."""
    if found is None:
        found = session.keywords.search(question, k)
    if not found:
        return []
    return _hits_for(
        session,
        [cid for cid, _ in found],
        embedding,
        {cid: {"bm25": round(score, 6)} for cid, score in found},
    )


def _hits_for(
    session: Session, ids: list[str], embedding: list[float], scores: dict[str, dict[str, float]]
) -> list[Hit]:
    import numpy as np

    if not ids:
        return []
    found = {record.id: (record, vector) for record, vector in session.fetch_embeddings(ids=ids)}
    query = np.asarray(embedding, dtype=np.float32)
    hits: list[Hit] = []
    for cid in ids:
        if cid not in found:
            continue
        record, vector = found[cid]
        cosine = float(np.dot(np.asarray(vector, dtype=np.float32), query))
        hits.append(_hit(len(hits) + 1, record, cosine, scores.get(cid, {})))
    return hits


def hybrid_search(
    session: Session,
    question: str,
    embedding: list[float],
    k: int,
    depth: int | None = None,
    keyword: list[tuple[str, float]] | None = None,
) -> list[Hit]:
    """Dense and BM25 rankings fused by reciprocal rank. ``keyword`` is the BM25
    ranking when it was computed already (see :func:`candidate_depth`)."""
    depth = candidate_depth("hybrid", k, depth)
    # Ids and distances only: text and metadata are fetched for the winners alone.
    dense_ids = [cid for cid, _, _ in session.nearest(embedding, depth, records=False)]
    if keyword is None:
        keyword = session.keywords.search(question, depth)
    fused = fuse(dense_ids, [cid for cid, _ in keyword])
    bm25 = dict(keyword)
    best = sorted(fused, key=lambda cid: -fused[cid])[:k]
    scores: dict[str, dict[str, float]] = {}
    for cid in best:
        scores[cid] = {"fused": round(fused[cid], 6)}
        if cid in bm25:
            scores[cid]["bm25"] = round(bm25[cid], 6)
    return _hits_for(session, best, embedding, scores)


def fuse(
    dense: Sequence[str],
    keyword: Sequence[str],
    rrf_k: int = RRF_K,
    bm25_weight: float = HYBRID_WEIGHTS["bm25"],
) -> dict[str, float]:
    """Reciprocal rank fusion of two rankings (best first): each id scores the
    sum of weight / (rrf_k + rank) over the rankings it is in."""
    fused: dict[str, float] = {}
    for rank, cid in enumerate(dense, 1):
        fused[cid] = fused.get(cid, 0.0) + HYBRID_WEIGHTS["dense"] / (rrf_k + rank)
    for rank, cid in enumerate(keyword, 1):
        fused[cid] = fused.get(cid, 0.0) + bm25_weight / (rrf_k + rank)
    return fused


def candidate_depth(mode: str, k: int, depth: int | None = None) -> int:
    """How many BM25 candidates ``mode`` needs for ``k`` results."""
    return max(k, depth or HYBRID_DEPTH) if mode == "hybrid" else k


def search(
    session: Session,
    mode: str,
    question: str,
    embedding: list[float],
    k: int,
    depth: int | None = None,
    keyword: list[tuple[str, float]] | None = None,
) -> list[Hit]:
    if mode == "dense":
        return dense_search(session, embedding, k)
    if mode == "bm25":
        return keyword_search(session, question, embedding, k, keyword)
    if mode == "hybrid":
        return hybrid_search(session, question, embedding, k, depth, keyword)
    raise ValueError(f"unknown retrieval mode {mode!r}")
