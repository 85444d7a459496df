"""The service of two versions of ragdb side by side in one run: this working
tree and a git revision (checked out into a temporary worktree) each serve the
same store in turns (A B A B ...), so that neither gets the quieter machine.

    scripts/run-python serve-versions.py --base e6cb998 [--docs 500] [--rounds 3]

Builds a store of the first N SciFact documents (int8 backend) unless --store
names one. Each turn starts `ragdb serve` from that version, asks every question
once (warming what a version keeps), then again one at a time (the one-client
p50) and three times over from 8 clients at once (the rate), on keep-alive
http.client connections. Prints each turn, each version's medians, and the
ratios of this tree to the base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.proofs.data import (  # root on the path: run-python
    ROOT,
    free_port,
    scifact_questions,
    scifact_store,
)
from tests.proofs.load import concurrent_searches, revision, searcher, version_options


def serve(tree: Path, store: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`ragdb serve` of the ragdb in ``tree`` on ``store``, once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ragdb", "--store", str(store), "serve", "--port", str(port),
         "--no-auth"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"ragdb serve from {tree} did not start; see {log}")


def turn(tree: Path, store: Path, questions: list[str], log: Path) -> dict[str, float]:
    """One version's turn: its one-client p50 (ms) and its 8-client rate (q/s)."""
    server, port = serve(tree, store, log)
    try:
        search = searcher(port)
        for q in questions:
            search(q)
        one = [search(q) for q in questions]
        many, elapsed = concurrent_searches(port, questions * 3, 8)
    finally:
        server.terminate()
        server.wait(30)
    return {
        "one_client_p50_ms": round(1000 * statistics.median(one), 1),
        "eight_clients_qps": round(len(many) / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    version_options(parser, docs=500, queries=150, rounds=3)
    parser.add_argument("--store", type=Path)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragdb-serve-versions-"))
    store = scifact_store(opts.store, opts.docs)
    questions = scifact_questions(opts.queries)
    with revision(opts.base, work / "base") as base:
        trees = {"base " + opts.base: base, "this tree": ROOT}
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for r in range(opts.rounds):
            for name, tree in trees.items():
                rows[name].append(turn(tree, store, questions, work / "serve.log"))
                print(f"round {r + 1}, {name}: {rows[name][-1]}", file=sys.stderr)
    summary = {
        name: {key: statistics.median(row[key] for row in got) for key in got[0]}
        for name, got in rows.items()
    }
    base_row, this_row = summary.values()
    ratio = {key: round(this_row[key] / base_row[key], 2) for key in base_row}
    print(json.dumps({"rounds": rows, "median": summary, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
