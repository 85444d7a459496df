"""Where a `/v1/search` request's time goes, one client at a time.

    scripts/run-python search-path.py [--docs 500] [--queries 200] [--store S]

Builds a store of the first N SciFact documents (int8 backend) unless --store
names one, then, side by side in one run:
- the encoder alone, one question a call (the floor of any search);
- a store session opened and closed with nothing in it (what every search pays
  for its lock and its check that the store is unchanged);
- the in-process retrieval (``kb.retrieve``): its own embed and search timings;
- HTTP through a running `ragdb serve`: the client's latency, and the
  server's embed and search timings from each answer; what is left is the
  request's path around them (HTTP, the guard, body parsing, the hand-off to
  the batching thread and back, JSON).
Prints medians (ms) of each part for the same questions, in both modes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.proofs.data import free_port, scifact_questions, scifact_store


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store", type=Path)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragdb-search-path-"))
    store = scifact_store(opts.store, opts.docs)
    questions = scifact_questions(opts.queries)
    print(f"{opts.docs} SciFact documents, {len(questions)} questions, one at a time")
    print(f"a store session opened and closed: {session_ms(store):.2f} ms (median)")
    for mode in ("dense", "hybrid"):
        rows = {
            "encoder alone": encoder_alone(store, questions),
            "in-process kb.retrieve": in_process(store, questions, mode),
            "HTTP /v1/search": over_http(store, questions, mode, work),
        }
        print(f"\nmode {mode}")
        print(f"{'path':<24} {'total':>7} {'embed':>7} {'search':>7} {'the rest':>9}")
        for name, (total, embed, search) in rows.items():
            rest = total - embed - search
            print(f"{name:<24} {total:>7.2f} {embed:>7.2f} {search:>7.2f} {rest:>9.2f}")
    return 0


def encoder_alone(store: Path, questions: list[str]) -> tuple[float, float, float]:
    from ragdb import KnowledgeBase

    embedder = KnowledgeBase(store=store).embedder
    embedder.encode(questions[:5])
    times = []
    for q in questions:
        t0 = time.perf_counter()
        embedder.encode([q])
        times.append(1000 * (time.perf_counter() - t0))
    median = statistics.median(times)
    return median, median, 0.0


def session_ms(store: Path, rounds: int = 200) -> float:
    from ragdb import KnowledgeBase

    opened = KnowledgeBase(store=store).store()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with opened.session():
            pass
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def in_process(store: Path, questions: list[str], mode: str) -> tuple[float, float, float]:
    from ragdb import KnowledgeBase

    kb = KnowledgeBase(store=store)
    kb.retrieve(questions[0], mode=mode)
    total, embed, search = [], [], []
    for q in questions:
        t0 = time.perf_counter()
        found = kb.retrieve(q, mode=mode)
        total.append(1000 * (time.perf_counter() - t0))
        embed.append(found.timings["embed_ms"])
        search.append(found.timings["search_ms"])
    return statistics.median(total), statistics.median(embed), statistics.median(search)


def over_http(
    store: Path, questions: list[str], mode: str, work: Path
) -> tuple[float, float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ragdb", "--store", str(store), "serve", "--port", str(port)]
    with open(work / f"serve-{mode}.log", "wb") as log:
        proc = subprocess.Popen([*cmd, "--no-auth"], stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(600):
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            http.post("/v1/search", json={"query": questions[0], "mode": mode})
            total, embed, search = [], [], []
            for q in questions:
                t0 = time.perf_counter()
                answer = http.post("/v1/search", json={"query": q, "mode": mode}).json()
                total.append(1000 * (time.perf_counter() - t0))
                embed.append(answer["timings"]["embed_ms"])
                search.append(answer["timings"]["search_ms"])
    finally:
        proc.terminate()
        proc.wait(10)
    return statistics.median(total), statistics.median(embed), statistics.median(search)


if __name__ == "__main__":
    sys.exit(main())
