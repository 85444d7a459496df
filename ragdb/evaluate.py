"""Retrieval evaluation on a question set with relevance judgements (BEIR layout).

Sources are ranked, not chunks: a source's rank is that of its best chunk.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.errors import InputError

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase

# Chunks fetched per query, enough for 100 distinct sources in practice.
CHUNK_DEPTH = 300


def load_queries(path: str | Path) -> dict[str, str]:
    """``{"_id", "text"}`` per JSONL line (``id`` works too)."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    qid = str(row.get("_id", row.get("id")))
                    out[qid] = str(row["text"])
                except (ValueError, KeyError, AttributeError):
                    raise InputError(
                        f'{path}:{lineno}: not a query object {{"_id": ..., "text": ...}}'
                    ) from None
    except OSError as exc:
        raise InputError(f"cannot read queries {path}: {exc.strerror or exc}") from None
    if not out:
        raise InputError(f"{path}: no queries")
    return out


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """``query-id corpus-id score`` per line, tab-separated, header optional."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise InputError(f"{path}:{lineno}: expected query-id, corpus-id, score")
                score_text = row[2].strip() if len(row) > 2 else "1"
                try:
                    score = int(float(score_text))
                except ValueError:
                    if lineno == 1:
                        continue  # the header
                    raise InputError(
                        f"{path}:{lineno}: score {score_text!r} is not a number"
                    ) from None
                qrels.setdefault(row[0].strip(), {})[row[1].strip()] = score
    except OSError as exc:
        raise InputError(f"cannot read qrels {path}: {exc.strerror or exc}") from None
    if not qrels:
        raise InputError(f"{path}: no judgements")
    return qrels


def ndcg(ranked: list[str], rels: dict[str, int], k: int) -> float:
    gains = [rels.get(doc, 0) for doc in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], rels: dict[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr(ranked: list[str], rels: dict[str, int], k: int) -> float:
    for i, doc in enumerate(ranked[:k]):
        if rels.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def _source_names(
    kb: KnowledgeBase, qrels: dict[str, dict[str, int]], qrels_path: Path
) -> tuple[dict[str, str], set[str]]:
    """Map each judged corpus id to a stored source: the id itself (records), or
    a path, taken as given or relative to the qrels file; and the judged ids
    that are not stored at all."""
    missing: set[str] = set()
    known = {s.source for s in kb.sources()}
    mapping: dict[str, str] = {}
    for rels in qrels.values():
        for doc in rels:
            if doc in mapping:
                continue
            if doc in known:
                mapping[doc] = doc
                continue
            for candidate in (Path(os.path.expanduser(doc)), qrels_path.parent / doc):
                resolved = str(candidate.resolve())
                if resolved in known:
                    mapping[doc] = resolved
                    break
            else:
                mapping[doc] = doc  # not in the store: counts as never retrieved
                missing.add(doc)
    return mapping, missing


def evaluate(
    kb: KnowledgeBase,
    queries_path: str | Path,
    qrels_path: str | Path,
    mode: str = "dense",
    k: int = 10,
    progress: Callable[[int, int], None] | None = None,
    exact_check: bool = True,
) -> dict[str, Any]:
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    judged = [qid for qid in queries if qid in qrels]
    if not judged:
        raise InputError("no query in the queries file has judgements in the qrels file")
    names, missing = _source_names(kb, qrels, Path(qrels_path))
    relevant = {d for qid in judged for d, r in qrels[qid].items() if r > 0}
    absent = sorted(relevant & missing)
    depth = max(CHUNK_DEPTH, 3 * k)
    per_query: dict[str, dict[str, Any]] = {}
    latencies: list[float] = []
    runs: dict[str, list[str]] = {}
    for i, qid in enumerate(judged):
        t0 = time.perf_counter()
        hits = kb.retrieve(queries[qid], k=depth, mode=mode).hits
        latencies.append(time.perf_counter() - t0)
        ranked = list(dict.fromkeys(h.source for h in hits))
        runs[qid] = ranked
        rels = {names[d]: r for d, r in qrels[qid].items()}
        per_query[qid] = {
            "question": queries[qid],
            f"ndcg@{k}": ndcg(ranked, rels, k),
            f"recall@{k}": recall(ranked, rels, k),
            "recall@100": recall(ranked, rels, 100),
            f"mrr@{k}": mrr(ranked, rels, k),
            # Each relevant document and the rank it was found at (None: not at all).
            "relevant": [
                {"doc": d, "rank": ranked.index(names[d]) + 1 if names[d] in ranked else None}
                for d, r in sorted(qrels[qid].items())
                if r > 0
            ],
        }
        if progress:
            progress(i + 1, len(judged))
    result: dict[str, Any] = {"mode": mode, "queries": len(judged)}
    # Judged relevant but never stored: scored as misses, so the figures are low
    # for a reason the user should see (an ingest that left documents out).
    result["relevant_docs_missing"] = len(absent)
    result["relevant_docs_judged"] = len(relevant)
    for metric in (f"ndcg@{k}", f"recall@{k}", "recall@100", f"mrr@{k}"):
        result[metric] = round(statistics.fmean(q[metric] for q in per_query.values()), 4)
    result["latency_ms_p50"] = round(percentile(latencies, 50) * 1000, 2)
    result["latency_ms_p95"] = round(percentile(latencies, 95) * 1000, 2)
    if exact_check and mode in ("dense", "hybrid"):
        result["hnsw_recall@10"] = hnsw_recall(kb, [queries[q] for q in judged])
    result["run"] = runs
    result["per_query"] = per_query
    return result


def hnsw_recall(
    kb: KnowledgeBase, questions: list[str], k: int = 10, max_chunks: int = 300_000
) -> float | None:
    """How much of exact cosine search's top ``k`` Chroma's HNSW index returns."""
    import numpy as np

    from ragdb.query.retrieve import dense_search

    store = kb.store()
    with store.session() as session:
        if session.count() > max_chunks:
            return None
        stored = [pair for page in session.pages(embeddings=True) for pair in page]
    ids = [record.id for record, _ in stored]
    matrix = np.asarray([vector for _, vector in stored], dtype=np.float32)
    vectors = kb.embedder.encode(questions)
    overlap = []
    for question_vec in vectors:
        exact = {ids[i] for i in np.argsort(-(matrix @ question_vec))[:k]}
        with store.session() as session:
            approx = {h.id for h in dense_search(session, [float(x) for x in question_vec], k)}
        overlap.append(len(exact & approx) / len(exact))
    return round(statistics.fmean(overlap), 4)
