"""Two versions of ragdb side by side in one run: this working tree and a git
revision (checked out into a temporary worktree), each ingesting the same SciFact
documents into a fresh store and answering the same queries warm, in turns
(A B A B) so that neither gets the quieter machine.

    scripts/run-python bench-versions.py --base 44e6468 [--docs 300] [--rounds 2]

Prints, per version, the ingest rate (chunks/s) and warm query latency p50/p95
for dense and hybrid retrieval, and the ratios of this tree to the base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from tests.proofs.data import (  # root on the path: run-python
    ROOT,
    scifact_head,
    scifact_questions,
)
from tests.proofs.load import revision, version_options

RUN = """
import json, statistics, sys, time
from ragdb import KnowledgeBase
store, corpus, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
kb = KnowledgeBase(store=store)
kb.ingest_text("seed", "A seed so that the store and the model are ready.")
kb.embedder.load()
t0 = time.perf_counter()
kb.ingest_records(corpus, id_field="_id", text_field="text", title_field="title")
ingest_s = time.perf_counter() - t0
status = kb.status()
out = {"chunks": status["chunks"] if isinstance(status, dict) else status.chunks,
       "ingest_s": ingest_s}
for mode in ("dense", "hybrid"):
    kb.retrieve(queries[0], k=10, mode=mode)
    lat = []
    for q in queries:
        t = time.perf_counter()
        kb.retrieve(q, k=10, mode=mode)
        lat.append(time.perf_counter() - t)
    lat.sort()
    out[mode + "_p50_ms"] = 1000 * statistics.median(lat)
    out[mode + "_p95_ms"] = 1000 * lat[int(0.95 * (len(lat) - 1))]
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    version_options(parser, docs=300, queries=100, rounds=2)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragdb-versions-"))
    corpus = scifact_head(work / "corpus.jsonl", opts.docs)
    queries = scifact_questions(opts.queries)
    with revision(opts.base, work / "base") as base:
        trees = {"base " + opts.base: base, "this tree": ROOT}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for r in range(opts.rounds):
            for name, tree in trees.items():
                store = work / f"store-{r}-{name.split()[0]}"
                proc = subprocess.run(
                    [sys.executable, "-c", textwrap.dedent(RUN), str(store), str(corpus),
                     json.dumps(queries)],
                    cwd=tree,
                    env={**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"},
                    capture_output=True,
                    text=True,
                )  # fmt: skip
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                results[name].append(row)
                print(f"round {r + 1}, {name}: {row}", file=sys.stderr)
    summary = {}
    for name, rows in results.items():
        chunks = rows[0]["chunks"]
        summary[name] = {
            "chunks": chunks,
            "ingest_chunks_per_s": round(
                chunks / statistics.median(r["ingest_s"] for r in rows), 1
            ),
            **{
                key: round(statistics.median(r[key] for r in rows), 1)
                for key in ("dense_p50_ms", "dense_p95_ms", "hybrid_p50_ms", "hybrid_p95_ms")
            },
        }
    names = list(summary)
    ratios = {
        key: round(summary[names[1]][key] / summary[names[0]][key], 2)
        for key in summary[names[0]]
        if key != "chunks"
    }
    print(
        json.dumps({"docs": opts.docs, "rounds": opts.rounds, **summary, "ratio": ratios}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
