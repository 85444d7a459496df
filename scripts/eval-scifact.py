"""SciFact retrieval figures: ingests ../shared/data/scifact/corpus.jsonl into a
fresh store and evaluates dense, BM25 and hybrid retrieval on the *test* split,
beside the published reference figures.

    scripts/eval-scifact [--embed-backend B]... [--store DIR] [--json]

With several ``--embed-backend`` (default: torch and the CPU default,
onnx-int8) it builds one store per backend and prints their figures side by
side: the comparison that chose the default backend.

It also rebuilds the dense reference the way MTEB measures it (each document cut
to the model's 256-token window, one vector per document) to check the whole
embedding + store + ranking path against the published 0.6451.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.proofs.data import SCIFACT  # scripts/run-python puts the root on the path

ROOT = Path(__file__).resolve().parent.parent
DATA = SCIFACT
REFERENCE = {
    "dense": (0.6451, "MTEB, all-MiniLM-L6-v2"),
    "bm25": (0.6874, "MTEB bm25s baseline"),
    "hybrid": (0.70, "target"),
}


def truncated_corpus(path: Path, out: Path) -> None:
    """Each document as MTEB embeds it: title + text, cut where the model cuts."""
    from ragdb.embed import get_embedder

    tok = get_embedder("all-MiniLM-L6-v2").tokenizer
    with open(path) as src, open(out, "w") as dst:
        for line in src:
            doc = json.loads(line)
            text = f"{doc['title']} {doc['text']}".strip()
            enc = tok.encode(text, add_special_tokens=False)
            if len(enc.ids) > 254:
                text = text[: enc.offsets[253][1]]
            dst.write(json.dumps({"_id": doc["_id"], "text": text}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="store to build (default: a temporary one)")
    parser.add_argument(
        "--skip-reference", action="store_true", help="skip the MTEB-style truncated dense check"
    )
    parser.add_argument(
        "--embed-backend",
        action="append",
        choices=["torch", "onnx", "onnx-int8"],
        help="backend of the store(s) to build (repeatable; default torch and onnx-int8)",
    )
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    backends = opts.embed_backend or ["torch", "onnx-int8"]
    if opts.store and len(backends) > 1:
        parser.error("--store builds one store: give one --embed-backend with it")
    work = Path(tempfile.mkdtemp(prefix="ragdb-scifact-"))
    results = {}
    try:
        for backend in backends:
            store = Path(opts.store) if opts.store else work / f"store-{backend}"
            results[backend] = run(backend, store, work, opts.skip_reference)
    finally:
        if not opts.store:
            shutil.rmtree(work, ignore_errors=True)
    if opts.json:
        print(json.dumps(results, indent=2))
        return 0
    print("SciFact test split (300 queries), sources ranked by their best chunk")
    print(
        f"{'backend':<10} {'mode':<18} {'nDCG@10':>8} {'reference':>10}  {'recall@100':>10} "
        f"{'MRR@10':>7} {'p50 ms':>7} {'p95 ms':>7}  HNSW recall@10"
    )
    for backend, out in results.items():
        for mode, row in out["modes"].items():
            ref, what = REFERENCE[mode]
            print(
                f"{backend:<10} {mode:<18} {row['ndcg@10']:>8.4f} {ref:>10.4f}  "
                f"{row['recall@100']:>10.4f} {row['mrr@10']:>7.4f} {row['latency_ms_p50']:>7.1f} "
                f"{row['latency_ms_p95']:>7.1f}  {row.get('hnsw_recall@10', '-')}   ({what})"
            )
        if out["dense_mteb_style"]:
            r = out["dense_mteb_style"]
            print(
                f"{backend:<10} {'dense, MTEB-style':<18} {r['ndcg@10']:>8.4f} {0.6451:>10.4f}  "
                f"{r['recall@100']:>10.4f} {r['mrr@10']:>7.4f} {r['latency_ms_p50']:>7.1f} "
                f"{r['latency_ms_p95']:>7.1f}  {r.get('hnsw_recall@10', '-')}   "
                "(one vector per document, cut at 256 tokens)"
            )
        print(
            f"{backend:<10} ingest {out['ingest_seconds']} s, {out['chunks']} chunks",
            file=sys.stderr,
        )
    return 0


def run(backend: str, store: Path, work: Path, skip_reference: bool) -> dict:
    """Build a store with ``backend`` and evaluate it in every mode."""
    from ragdb import KnowledgeBase
    from ragdb.evaluate import evaluate

    kb = KnowledgeBase(store=store, embed_backend=backend)
    t0 = time.perf_counter()
    report = kb.ingest_records(
        DATA / "corpus.jsonl", id_field="_id", text_field="text", title_field="title"
    )
    ingest_s = time.perf_counter() - t0
    print(
        f"ingested {report.added + report.updated + report.unchanged} documents "
        f"({report.chunks_embedded} chunks embedded) in {ingest_s:.0f}s",
        file=sys.stderr,
    )
    rows = {}
    for mode in ("dense", "bm25", "hybrid"):
        rows[mode] = evaluate(kb, DATA / "queries.jsonl", DATA / "qrels.tsv", mode=mode)
        rows[mode].pop("run")
        rows[mode].pop("per_query")
        print(f"{backend} {mode}: nDCG@10 {rows[mode]['ndcg@10']}", file=sys.stderr)
    reference_check = None
    if not skip_reference:
        flat = work / "corpus-truncated.jsonl"
        if not flat.exists():
            truncated_corpus(DATA / "corpus.jsonl", flat)
        ref_kb = KnowledgeBase(store=work / f"store-truncated-{backend}", embed_backend=backend)
        ref_kb.ingest_records(flat, id_field="_id", text_field="text")
        reference_check = evaluate(ref_kb, DATA / "queries.jsonl", DATA / "qrels.tsv", mode="dense")
        reference_check.pop("run")
        reference_check.pop("per_query")
    return {
        "ingest_seconds": round(ingest_s, 1),
        "chunks": kb.status().chunks,
        "modes": rows,
        "dense_mteb_style": reference_check,
    }


if __name__ == "__main__":
    sys.exit(main())
