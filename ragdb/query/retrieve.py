"""Retrieval: the nearest chunks to a question."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ragdb.config import DEFAULT_KB
from ragdb.errors import EmptyStoreError, UsageError
from ragdb.query.filters import Filter
from ragdb.store.records import ChunkRecord
from ragdb.wire import from_fields

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

# Bounds on one question: a request must not be able to cost the service
# gigabytes (a question is echoed back, tokenised, and scored word by word).
MAX_QUESTION_CHARS = 8000
MAX_K = 1000

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from ragdb.embed.base import Embedder
    from ragdb.store.session import Session
    from ragdb.store.store import Store


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
    kb: str = DEFAULT_KB  # the knowledge base it came from

    @property
    def location(self) -> str:
        """Where in its source the chunk lies, for people."""
        m = self.metadata
        parts = []
        if "page" in m:
            parts.append(f"page {m['page']}")
        if m.get("section"):
            parts.append(str(m["section"]))
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
            "kb": self.kb,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hit:
        """The hit :meth:`to_dict` wrote (a server's, say)."""
        return from_fields(cls, data)


@dataclasses.dataclass
class Retrieval:
    """The chunks retrieved for one question, best first, and what it took."""

    question: str
    hits: list[Hit]
    timings: dict[str, float]


def _hit(rank: int, record: ChunkRecord, score: float, scores: dict[str, float], kb: str) -> Hit:
    return Hit(
        rank=rank,
        id=record.id,
        source=record.source,
        score=round(score, 6),
        text=record.text,
        metadata=record.metadata(),
        scores=scores,
        kb=kb,
    )


@dataclasses.dataclass(frozen=True)
class Query:
    """One question to retrieve for: its ``k`` and retrieval ``mode``."""

    question: str
    k: int = 4
    mode: str = DEFAULT_MODE
    # Only sources whose names start with this (a folder, a records prefix).
    source_prefix: str | None = None
    # Only chunks these conditions keep (see ragdb.query.filters).
    filter: Filter | None = None
    # The knowledge bases to search ("*": every one); none: the store's own.
    kbs: tuple[str, ...] = ()

    @property
    def filtered(self) -> bool:
        """Whether the query searches only some of the chunks."""
        return self.source_prefix is not None or bool(self.filter)


def check_query(query: Query) -> None:
    """Refuse a query that cannot be answered, before any work is done for it."""
    if not query.question.strip():
        raise UsageError("the question is empty")
    if len(query.question) > MAX_QUESTION_CHARS:
        raise UsageError(
            f"the question is {len(query.question):,} characters; at most "
            f"{MAX_QUESTION_CHARS:,} are read (the model embeds only its first few hundred words)"
        )
    if not 1 <= query.k <= MAX_K:
        raise UsageError(f"-k must be between 1 and {MAX_K}")
    if query.mode not in MODES:
        raise UsageError(f"unknown mode {query.mode!r}: use one of {', '.join(MODES)}")


def retrieve_many(
    store: Store,
    embedder: Embedder,
    queries: Sequence[Query],
    embedded: Any = None,
) -> list[Retrieval]:
    """Each query's chunks, computed together: the questions are searched in one
    query of the vector index, their chunks read in one go, and embedded in one
    encoder call (how ``ragdb serve`` answers concurrent clients); the keyword
    searches run beside the encoder. ``embedded``: the questions' vectors, when
    computed already (one question asked of several knowledge bases)."""
    for query in queries:
        check_query(query)
    if not queries:
        return []
    if not embedder.loaded:
        # A cold process: say the store is empty before seconds of model loading.
        with store.session() as session:
            if session.count() == 0:
                raise empty_store(store)
    embedder.load()  # a first load takes seconds: never under the lock
    questions = [q.question for q in queries]
    t0 = time.perf_counter()
    with store.session() as session:
        keyword = _keyword_searches(session, queries)
        embeddings = embedder.encode_queries(questions) if embedded is None else embedded
        t1 = time.perf_counter()
        found = keyword.result() if keyword is not None else [None] * len(queries)
        hits = search_many(session, queries, [list(map(float, e)) for e in embeddings], found)
        # Counting costs a little on every query: only when nothing came back.
        if any(not h for h in hits) and session.count() == 0:
            raise empty_store(store)
    t2 = time.perf_counter()
    timings = {"embed_ms": _ms(t1 - t0), "search_ms": _ms(t2 - t1)}
    return [Retrieval(q, h, dict(timings)) for q, h in zip(questions, hits, strict=True)]


def retrieve_across(
    store: Store, embedder: Embedder, query: Query, kbs: Sequence[str]
) -> Retrieval:
    """``query`` over several knowledge bases, fused into one ranking: each is
    searched ``candidate_depth`` deep; the union is ranked by cosine similarity
    (``dense``: the same scale everywhere), BM25 score (``bm25``: each index's
    own statistics, so close but not exact) or both fused by reciprocal rank
    (``hybrid``). Each hit names its knowledge base. An empty one adds nothing."""
    check_query(query)
    deep = dataclasses.replace(query, k=candidate_depth("hybrid", query.k))
    found: list[Hit] = []
    embedder.load()
    t0 = time.perf_counter()
    vector = embedder.encode_queries([query.question])  # once, for every one searched
    timings: dict[str, float] = {"embed_ms": _ms(time.perf_counter() - t0)}
    for kb in dict.fromkeys(kbs):
        try:
            (part,) = retrieve_many(store.view(kb), embedder, [deep], embedded=vector)
        except EmptyStoreError:
            continue
        found += part.hits
        timings["search_ms"] = round(timings.get("search_ms", 0.0) + part.timings["search_ms"], 2)
    if not found:
        raise EmptyStoreError(
            f"the knowledge bases {', '.join(kbs)} at {store.location} are empty: "
            "add documents with `ragdb --kb NAME ingest PATH`"
        )
    best = _merge(found, query.mode)[: query.k]
    for rank, hit in enumerate(best, 1):
        hit.rank = rank
    return Retrieval(query.question, best, timings)


def _merge(hits: list[Hit], mode: str) -> list[Hit]:
    """Hits of several knowledge bases in one ranking, best first (see
    :func:`retrieve_across`)."""
    by_cosine = sorted(hits, key=lambda h: -h.score)
    if mode == "dense":
        return by_cosine
    by_bm25 = sorted((h for h in hits if "bm25" in h.scores), key=lambda h: -h.scores["bm25"])
    if mode == "bm25":
        return by_bm25
    key = {id(h): f"{h.kb}\x1f{h.id}" for h in hits}
    fused = fuse([key[id(h)] for h in by_cosine], [key[id(h)] for h in by_bm25])
    for hit in hits:
        hit.scores["fused"] = round(fused[key[id(hit)]], 6)
    # Ranks in the merged rankings, as for one knowledge base (see _fused).
    for ranking, name in ((by_cosine, "dense_rank"), (by_bm25, "bm25_rank")):
        for rank, hit in enumerate(ranking, 1):
            hit.scores[name] = rank
    return sorted(hits, key=lambda h: -h.scores["fused"])


def _keyword_searches(session: Session, queries: Sequence[Query]) -> Any:
    """The keyword searches ``queries`` need, started on a background thread (a
    future of their results, one per query), or None when none needs one."""
    if not any(q.mode != "dense" and not q.filtered for q in queries):
        return None
    index = session.keywords
    return _background().submit(
        lambda: [
            index.search(q.question, candidate_depth(q.mode, q.k))
            if q.mode != "dense" and not q.filtered
            else None
            for q in queries
        ]
    )


_executor: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        from concurrent.futures import ThreadPoolExecutor  # lazily: `ragdb --help` reads MODES

        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragdb-keywords")
    return _executor


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def empty_store(store: Store) -> EmptyStoreError:
    """The error for asking a store that holds nothing."""
    return EmptyStoreError(
        f"the knowledge base at {store.location} is empty: add documents with `ragdb ingest PATH`"
    )


def dense_search(session: Session, embedding: list[float], k: int) -> list[Hit]:
    """Chroma's cosine nearest neighbours; score = 1 - cosine distance."""
    return search_many(session, [Query("", k, "dense")], [embedding], [None])[0]


def search_many(
    session: Session,
    queries: Sequence[Query],
    embeddings: Sequence[Sequence[float]],
    keyword: Sequence[list[tuple[str, float]] | None],
) -> list[list[Hit]]:
    """The hits of several queries at once: their nearest neighbours in one
    Chroma query, their chunks in one read. ``keyword[i]`` is query i's BM25
    ranking when computed already (at least :func:`candidate_depth` deep), or
    None to compute it here.

    ``dense`` ranks by embedding (score = 1 - cosine distance), ``bm25`` by
    keywords, ``hybrid`` fuses both by reciprocal rank; every hit's score is its
    cosine similarity to the question, whatever the mode."""
    for query in queries:
        if query.mode not in MODES:
            raise ValueError(f"unknown retrieval mode {query.mode!r}")
    depths = [candidate_depth(q.mode, q.k) for q in queries]
    dense: dict[int, list[tuple[str, float]]] = {}
    keyword = list(keyword)
    for i, query in enumerate(queries):
        if query.filtered:
            # Filtered: searched alone, each retriever restricted to those chunks.
            dense[i], keyword[i] = _filtered(session, query, embeddings[i], depths[i])
    wants_dense = [i for i, q in enumerate(queries) if q.mode != "bm25" and not q.filtered]
    if wants_dense:
        # Ids and distances only: text and metadata are read for the winners alone.
        found = session.nearest_many(
            [embeddings[i] for i in wants_dense], max(depths[i] for i in wants_dense)
        )
        for i, ranking in zip(wants_dense, found, strict=True):
            dense[i] = ranking[: depths[i]]
    winners: list[list[tuple[str, dict[str, float]]]] = []
    for i, query in enumerate(queries):
        bm25 = keyword[i]
        if query.mode != "dense" and bm25 is None:
            bm25 = session.keywords.search(query.question, depths[i])
        if query.mode == "dense":
            winners.append([(cid, {}) for cid, _ in dense[i][: query.k]])
        elif query.mode == "bm25":
            winners.append([(cid, {"bm25": round(s, 6)}) for cid, s in (bm25 or [])[: query.k]])
        else:
            winners.append(_fused(dense[i], bm25 or [], query.k))
    wanted = sorted({cid for found in winners for cid, _ in found})
    # A dense hit's score is its distance: stored vectors are read only for the
    # other modes, whose winners may lack one (a third of a dense read's cost).
    chunks = session.read_chunks(wanted, vectors=any(q.mode != "dense" for q in queries))
    return [
        _hits(
            chunks,
            found,
            embeddings[i],
            dict(dense.get(i, [])) if q.mode == "dense" else None,
            session.kb,
        )
        for i, (q, found) in enumerate(zip(queries, winners, strict=True))
    ]


def _fused(
    dense: list[tuple[str, float]], bm25: list[tuple[str, float]], k: int
) -> list[tuple[str, dict[str, float]]]:
    """The ``k`` best of two rankings fused, each with its evidence: the fused
    score, its keyword score, and its rank in each ranking that has it (why
    it ranks where it does)."""
    fused = fuse([cid for cid, _ in dense], [cid for cid, _ in bm25])
    by_id = dict(bm25)
    dense_rank = {cid: rank for rank, (cid, _) in enumerate(dense, 1)}
    bm25_rank = {cid: rank for rank, (cid, _) in enumerate(bm25, 1)}
    out = []
    for cid in sorted(fused, key=lambda cid: -fused[cid])[:k]:
        scores: dict[str, float] = {"fused": round(fused[cid], 6)}
        if cid in by_id:
            scores["bm25"] = round(by_id[cid], 6)
            scores["bm25_rank"] = bm25_rank[cid]
        if cid in dense_rank:
            scores["dense_rank"] = dense_rank[cid]
        out.append((cid, scores))
    return out


def _filtered(
    session: Session, query: Query, embedding: Sequence[float], depth: int
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The dense and BM25 candidates of ``query`` among the chunks its source
    prefix and filter keep, decided on the stored records themselves (so the
    same for both retrievers): Chroma searches only those ids; the keyword
    ranking is read whole and kept to them (exact, and slower than an
    unfiltered search)."""
    prefix, keep = query.source_prefix or "", query.filter or Filter()
    records = session.fetch_records(where=keep.chroma_where(), text=False)
    ids = sorted(
        r.id for r in records if r.source.startswith(prefix) and keep.matches(r.metadata())
    )
    if not ids:
        return [], []
    dense: list[tuple[str, float]] = []
    if query.mode != "bm25":
        dense = session.nearest_many([embedding], min(depth, len(ids)), ids=ids)[0]
    bm25: list[tuple[str, float]] = []
    if query.mode != "dense":
        wanted = set(ids)
        ranked = session.keywords.search(query.question, max(depth, session.count()))
        bm25 = [(cid, score) for cid, score in ranked if cid in wanted][:depth]
    return dense, bm25


def _hits(
    chunks: dict[str, tuple[ChunkRecord, Any]],
    winners: list[tuple[str, dict[str, float]]],
    embedding: Sequence[float],
    distances: dict[str, float] | None,
    kb: str,
) -> list[Hit]:
    """Hits for ``winners`` (best first); a chunk deleted since it was ranked is
    left out. The score is 1 - distance when ``distances`` has it, else the
    cosine computed from the stored vector."""
    import numpy as np

    query = np.asarray(embedding, dtype=np.float32)
    hits: list[Hit] = []
    for cid, scores in winners:
        if cid not in chunks:
            continue
        record, vector = chunks[cid]
        if distances is not None and cid in distances:
            cosine = 1.0 - distances[cid]
        else:
            cosine = float(np.dot(np.asarray(vector, dtype=np.float32), query))
        hits.append(_hit(len(hits) + 1, record, cosine, scores, kb))
    return hits


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
