"""Load on a running `ragdb serve`: lean clients of ``/v1/search`` (one, or many
at once), and another git revision of ragdb to run beside this tree, for the
benchmarks that compare the service's speed."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.proofs.data import ROOT


def searcher(port: int) -> Callable[[str], float]:
    """A client of ``/v1/search`` (k 10) on one keep-alive connection of the
    standard library's http.client, the leanest Python has: its CPU comes out
    of the same cores as the server's (httpx took 2.7 ms a request here, this
    0.3-0.7). Returns a search that gives its latency in seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def search(question: str) -> float:
        t = time.perf_counter()
        conn.request(
            "POST",
            "/v1/search",
            json.dumps({"query": question, "k": 10}),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/v1/search answered {response.status}: {body[:200]!r}")
        return time.perf_counter() - t

    return search


def concurrent_searches(port: int, questions: list[str], clients: int) -> tuple[list[float], float]:
    """``questions`` asked by ``clients`` clients at once, each its share in
    turn: every search's latency (s) and the run's wall time (s)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        search = searcher(port)
        mine = [search(q) for q in questions[i::clients]]
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0


def version_options(parser: argparse.ArgumentParser, docs: int, queries: int, rounds: int) -> None:
    """The options of a script that compares this tree with a git revision."""
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--docs", type=int, default=docs)
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--rounds", type=int, default=rounds)


@contextlib.contextmanager
def revision(rev: str, where: Path) -> Iterator[Path]:
    """Git revision ``rev`` of this repository checked out at ``where`` (a
    worktree, removed afterwards), its ``ragdb`` importable as itself: run it
    with that directory first on PYTHONPATH."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
    )
    # The package maps top-level migrations/ to ragdb.migrations; make the
    # revision's own importable as such, or it would get this tree's.
    (where / "ragdb" / "migrations").symlink_to(where / "migrations")
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            capture_output=True,
        )
