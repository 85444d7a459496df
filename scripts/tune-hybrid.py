"""Tunes hybrid retrieval's fusion on SciFact's *train* split (never the test split).

    scripts/run-python tune-hybrid.py --store STORE

STORE must hold SciFact's corpus (scripts/eval-scifact builds one and keeps it
with --keep). Each train query's dense and BM25 rankings are computed once; the
fusion settings are then compared offline, and the best is printed.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

from tests.proofs.data import SCIFACT  # scripts/run-python puts the root on the path

ROOT = Path(__file__).resolve().parent.parent
DATA = SCIFACT


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--depth", type=int, default=100)
    opts = parser.parse_args()

    from ragdb import KnowledgeBase
    from ragdb.evaluate import load_qrels, load_queries, ndcg
    from ragdb.query.retrieve import dense_search, fuse

    kb = KnowledgeBase(store=opts.store)
    queries = load_queries(DATA / "queries_train.jsonl")
    qrels = load_qrels(DATA / "qrels_train.tsv")
    judged = [q for q in queries if q in qrels]
    rankings = []
    store = kb.store()
    for qid in judged:
        vec = kb.embedder.encode_query(queries[qid])
        with store.session() as session:
            dense = [(h.id, h.source) for h in dense_search(session, vec, opts.depth)]
            keyword = session.keywords.search(queries[qid], opts.depth)
            sources = dict(dense)
            missing = [cid for cid, _ in keyword if cid not in sources]
            if missing:
                found = session.fetch_records(ids=missing, text=False)
                sources.update({r.id: r.source for r in found})
        rankings.append((qid, [c for c, _ in dense], [c for c, _ in keyword], sources))

    def score(rrf_k: int, w_bm25: float) -> float:
        values = []
        for qid, dense, keyword, sources in rankings:
            fused = fuse(dense, keyword, rrf_k, w_bm25)
            order = sorted(fused, key=lambda c: -fused[c])
            ranked = list(dict.fromkeys(sources[c] for c in order))
            values.append(ndcg(ranked, qrels[qid], 10))
        return statistics.fmean(values)

    results = []
    for rrf_k, w in itertools.product([5, 10, 20, 40, 60, 100], [0.5, 0.75, 1.0, 1.25, 1.5]):
        results.append((score(rrf_k, w), rrf_k, w))
    results.sort(reverse=True)
    print(
        f"train queries: {len(judged)}; dense-only nDCG@10 "
        f"{score(60, 0.0):.4f}; bm25-weighted extremes shown below"
    )
    print(f"{'nDCG@10':>8} {'rrf_k':>6} {'w_bm25':>7}")
    for value, rrf_k, w in results[:8]:
        print(f"{value:8.4f} {rrf_k:6d} {w:7.2f}")
    best = results[0]
    print(f"best on train: RRF_K={best[1]}, bm25 weight={best[2]} (nDCG@10 {best[0]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
