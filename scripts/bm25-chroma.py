"""Would Chroma's server-side hybrid keep ragdb's retrieval quality? Computed
offline on SciFact, over the very chunks of a ragdb store:

- Chroma's BM25 as its distributed deployment and Cloud run it: each chunk's
  sparse vector from ``ChromaBm25EmbeddingFunction`` (its tokenizer, stemmer,
  stop words and fixed average length), scored at query time by the query's
  terms weighted with the corpus IDF (Lucene's ln(1 + (N - df + .5)/(df + .5)));
- Chroma's fusion: ``Rrf`` over the dense and the sparse ranking, k = 60,
  equal weights (its defaults);
- beside ragdb's own keyword index (SQLite FTS5 BM25) and ragdb's hybrid
  (RRF k = 10, BM25 weighted 1.25, tuned on the train split).

nDCG@10 and recall@100 at the document level, on the split asked for.

    scripts/bm25-chroma [--store DIR] [--split test|train]

--store reuses (or builds, if absent) a store of the SciFact corpus with the
default backend; without it a temporary one is built (a few minutes).
"""

from __future__ import annotations

import argparse
import collections
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.proofs.data import SCIFACT  # scripts/run-python puts the root on the path

DEPTH = 100  # chunks each ranking offers


def chroma_bm25(texts: list[str]) -> tuple[dict[int, list[tuple[int, float]]], dict[int, float]]:
    """An inverted index of Chroma's BM25 chunk vectors and the corpus IDF."""
    from chromadb.utils.embedding_functions.chroma_bm25_embedding_function import (
        ChromaBm25EmbeddingFunction,
    )

    ef = ChromaBm25EmbeddingFunction()
    postings: dict[int, list[tuple[int, float]]] = collections.defaultdict(list)
    for i, vector in enumerate(ef(texts)):
        for token, value in zip(vector.indices, vector.values, strict=True):
            postings[token].append((i, value))
    n = len(texts)
    idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in postings.items()}
    return postings, idf


def chroma_search(
    query: str, postings: dict[int, list[tuple[int, float]]], idf: dict[int, float]
) -> list[int]:
    from chromadb.utils.embedding_functions.chroma_bm25_embedding_function import (
        ChromaBm25EmbeddingFunction,
    )

    (vector,) = ChromaBm25EmbeddingFunction().embed_query([query])
    scores: dict[int, float] = collections.defaultdict(float)
    for token in set(vector.indices):
        for chunk, value in postings.get(token, []):
            scores[chunk] += idf[token] * value
    return sorted(scores, key=lambda c: -scores[c])[:DEPTH]


def rrf(rankings: list[list[str]], k: int, weights: tuple[float, ...] = (1.0, 1.0)) -> list[str]:
    fused: dict[str, float] = collections.defaultdict(float)
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, 1):
            fused[item] += weight / (k + rank)
    return sorted(fused, key=lambda c: -fused[c])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store of the SciFact corpus (built if absent)")
    parser.add_argument("--split", choices=["test", "train"], default="test")
    args = parser.parse_args()
    from ragdb import KnowledgeBase
    from ragdb.evaluate import load_qrels, load_queries, ndcg, recall
    from ragdb.query.retrieve import HYBRID_WEIGHTS, RRF_K

    tmp = tempfile.TemporaryDirectory()
    store = Path(args.store or tmp.name + "/store")
    kb = KnowledgeBase(store=store)
    if not (store / "ragdb.json").exists():
        t0 = time.perf_counter()
        kb.ingest_records(
            SCIFACT / "corpus.jsonl", id_field="_id", text_field="text", title_field="title"
        )
        print(f"built the store in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    with kb.store().session() as session:
        chunks = [record for page in session.pages() for record, _ in page]
    ids = [c.id for c in chunks]
    source = {c.id: c.source for c in chunks}
    t0 = time.perf_counter()
    postings, idf = chroma_bm25([c.text for c in chunks])
    print(
        f"{len(chunks)} chunks; Chroma BM25 vectors in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    suffix = "" if args.split == "test" else "_train"
    queries = load_queries(SCIFACT / f"queries{suffix}.jsonl")
    qrels = load_qrels(SCIFACT / f"qrels{suffix}.tsv")
    judged = [q for q in queries if q in qrels]
    scores: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for qid in judged:
        question, rels = queries[qid], qrels[qid]
        runs = {
            mode: [h.id for h in kb.retrieve(question, k=DEPTH, mode=mode).hits]
            for mode in ("dense", "bm25", "hybrid")
        }
        runs["ragdb bm25 (FTS5)"], runs["ragdb hybrid"] = runs.pop("bm25"), runs.pop("hybrid")
        runs["chroma-bm25"] = [ids[i] for i in chroma_search(question, postings, idf)]
        runs["chroma-hybrid (Rrf k=60)"] = rrf([runs["dense"], runs["chroma-bm25"]], 60)
        runs["ragdb's fusion, Chroma's BM25"] = rrf(
            [runs["dense"], runs["chroma-bm25"]], RRF_K, (1.0, HYBRID_WEIGHTS["bm25"])
        )
        for name, ranked in runs.items():
            docs = list(dict.fromkeys(source[c] for c in ranked))
            scores[name].append((ndcg(docs, rels, 10), recall(docs, rels, 100)))
    print(f"SciFact {args.split} split, {len(judged)} queries, {len(chunks)} chunks")
    print(f"{'ranking':<30} {'nDCG@10':>8} {'recall@100':>11}")
    for name, rows in scores.items():
        n10 = statistics.fmean(r[0] for r in rows)
        r100 = statistics.fmean(r[1] for r in rows)
        print(f"{name:<30} {n10:>8.4f} {r100:>11.4f}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
