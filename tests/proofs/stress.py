"""Stress test: W writer processes ingest, change and remove their own files in a
loop while R reader processes query, all on one store; at the end the store must
hold exactly the chunks of every writer's current files.

    scripts/stress --writers 4 --readers 4 --seconds 60 [--server | --chroma-url URL]
    scripts/stress --server --writers 3 --readers 3 --shared 2 --machines --seconds 60

--shared N makes the first N writers work on one folder (the same sources);
--machines gives every process a cache of its own, as separate machines have
(each keeps its own keyword index of a server's store).

Prints errors, lost and duplicated chunks, stale keyword answers (a keyword
index holding a chunk Chroma lacks, or lacking one it holds, once the writers
have stopped), and query latency (p50/p95) measured while the writers run.
Exits 1 if anything was lost, duplicated, stale or failed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tests.proofs.data import print_summary, run_with_server, server_options

WORDS = [
    "llama",
    "octopus",
    "coffee",
    "summit",
    "protocol",
    "zebra",
    "river",
    "mountain",
    "library",
    "engine",
    "garden",
    "theory",
    "signal",
    "market",
    "winter",
    "harbor",
    "castle",
    "planet",
    "violin",
    "forest",
]
QUESTIONS = [
    "Where is the coffee?",
    "What do llamas eat?",
    "octopus hearts",
    "winter harbor",
    "the theory of signals",
    "mountain river",
    "violin music in the castle",
]


def paragraph(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) + "."


def kb_for(args: dict[str, Any], role: str) -> Any:
    if args["machines"]:
        # Before ragdb is imported: this process is a machine of its own.
        cache = Path(args["work"]) / f"cache-{role}"
        cache.mkdir(exist_ok=True)
        os.environ["XDG_CACHE_HOME"] = str(cache)
        if args["onnx_cache"]:
            # The exported model is the same everywhere: copy it, don't export it again.
            shutil.copytree(args["onnx_cache"], cache / "ragdb" / "onnx", dirs_exist_ok=True)
    from ragdb import KnowledgeBase

    return KnowledgeBase(store=args["store"], chroma_url=args["chroma_url"], wait=120)


def writer(i: int, args: dict[str, Any], ready: Any, start: Any, out: Any) -> None:
    rng = random.Random(i)
    kb = kb_for(args, f"writer{i}")
    kb.embedder.encode(["warm up"])
    folder = Path(args["work"]) / ("shared" if i < args["shared"] else f"writer{i}")
    folder.mkdir(exist_ok=True)
    ready.put(i)
    start.wait()
    deadline = time.monotonic() + args["seconds"]
    ops = errors = 0
    error_lines: list[str] = []
    while time.monotonic() < deadline:
        name = folder / f"doc{rng.randrange(args['files'])}.txt"
        action = rng.random()
        try:
            if action < 0.65:
                name.write_text("\n\n".join(paragraph(rng) for _ in range(rng.randint(1, 6))))
                kb.ingest([folder], prune=True)
            elif action < 0.85 and name.exists():
                name.unlink()
                kb.ingest([folder], prune=True)
            elif name.exists():
                kb.remove([name])
                name.unlink()
            ops += 1
        except Exception:
            errors += 1
            error_lines.append(traceback.format_exc(limit=3))
    try:  # settle this writer's folder into the store
        settle(kb, folder)
    except Exception:
        errors += 1
        error_lines.append(traceback.format_exc(limit=3))
    # A shared folder's final state is read by the parent, once every writer stopped.
    expected = {str(p.resolve()): p.read_text() for p in folder.iterdir()}
    if i < args["shared"]:
        expected = {}
    out.put(
        {
            "role": "writer",
            "ops": ops,
            "errors": errors,
            "expected": expected,
            "error_lines": error_lines[:3],
        }
    )


def settle(kb: Any, folder: Path) -> None:
    """Bring the store in line with ``folder``."""
    if any(folder.iterdir()):
        kb.ingest([folder], prune=True)
    else:
        existing = [s.source for s in kb.sources() if s.source.startswith(str(folder))]
        if existing:
            kb.remove(existing)


def stale_keywords(kb: Any) -> int:
    """Chunks the keyword index holds that Chroma lacks, and the reverse."""
    with kb.store().session() as session:
        return len(session.keywords.ids() ^ session.ids())


def reader(
    i: int, args: dict[str, Any], ready: Any, start: Any, stop: Any, done: Any, out: Any
) -> None:
    rng = random.Random(1000 + i)
    kb = kb_for(args, f"reader{i}")
    kb.embedder.encode(["warm up"])
    ready.put(i)
    start.wait()
    latencies: list[float] = []
    errors = 0
    error_lines: list[str] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            kb.retrieve(rng.choice(QUESTIONS), k=4)
            latencies.append(time.perf_counter() - t0)
        except Exception:
            errors += 1
            error_lines.append(traceback.format_exc(limit=3))
    done.wait()  # every writer, and the parent's final ingest, finished
    out.put(
        {
            "role": "reader",
            "latencies": latencies,
            "errors": errors,
            "error_lines": error_lines[:3],
            "stale_keywords": stale_keywords(kb),
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--files", type=int, default=5, help="files per writer")
    parser.add_argument("--shared", type=int, default=0, help="writers sharing one folder")
    parser.add_argument("--machines", action="store_true", help="a cache per process")
    server_options(parser)
    parser.add_argument("--store", default=None, help="store directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    return run_with_server(parser.parse_args(), run)


def run(opts: argparse.Namespace) -> int:

    from ragdb import KnowledgeBase
    from ragdb.evaluate import percentile
    from tests.proofs.storecheck import compare

    work = Path(tempfile.mkdtemp(prefix="ragdb-stress-"))
    store = Path(opts.store) if opts.store else work / "store"
    args = {
        "store": str(store),
        "chroma_url": opts.chroma_url,
        "seconds": opts.seconds,
        "files": opts.files,
        "work": str(work),
        "shared": opts.shared,
        "machines": opts.machines,
    }
    seed = work / "seed.txt"
    seed.write_text("The coffee machine is on the third floor. " * 5)
    kb = KnowledgeBase(store=store, chroma_url=opts.chroma_url)
    if opts.chroma_url:
        kb.store(create=True)
        kb.reset()
    kb.ingest([seed])
    from platformdirs import user_cache_path

    onnx_cache = user_cache_path("ragdb", appauthor=False) / "onnx"
    args["onnx_cache"] = str(onnx_cache) if onnx_cache.is_dir() else None

    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    start, stop, done = ctx.Event(), ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=writer, args=(i, args, ready, start, out)) for i in range(opts.writers)
    ]
    procs += [
        ctx.Process(target=reader, args=(i, args, ready, start, stop, done, out))
        for i in range(opts.readers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    print(
        f"{opts.writers} writers and {opts.readers} readers on {opts.chroma_url or store} "
        f"for {opts.seconds:g}s...",
        file=sys.stderr,
    )
    t0 = time.monotonic()
    start.set()
    results = []
    for _ in range(opts.writers):
        results.append(out.get(timeout=opts.seconds + 600))
    stop.set()
    if opts.shared:
        settle(kb, work / "shared")  # the shared folder as the writers left it
    done.set()
    for _ in range(opts.readers):
        results.append(out.get(timeout=600))
    for p in procs:
        p.join(60)
    elapsed = time.monotonic() - t0

    expected = {str(seed.resolve()): seed.read_text()}
    for r in results:
        expected.update(r.get("expected", {}))
    if opts.shared:
        expected.update({str(p.resolve()): p.read_text() for p in (work / "shared").iterdir()})
    stale = sum(r.get("stale_keywords", 0) for r in results) + stale_keywords(kb)
    check = compare(kb, expected)
    latencies = [x for r in results for x in r.get("latencies", [])]
    errors = sum(r["errors"] for r in results)
    summary = {
        "writers": opts.writers,
        "readers": opts.readers,
        "seconds": round(elapsed, 1),
        "mode": "server" if opts.chroma_url else "embedded",
        "write_ops": sum(r.get("ops", 0) for r in results),
        "queries": len(latencies),
        "errors": errors,
        "lost_chunks": check["lost_chunks"],
        "duplicated_chunks": check["duplicated_chunks"],
        "stale_keywords": stale,
        "sources": check["sources_found"],
        "query_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "query_ms_p95": round(percentile(latencies, 95) * 1000, 1),
    }
    for r in results:
        for line in r.get("error_lines", []):
            print(line, file=sys.stderr)
    print_summary(summary, opts.json)
    shutil.rmtree(work, ignore_errors=True)
    ok = errors == 0 and check["lost_chunks"] == 0 and check["duplicated_chunks"] == 0
    ok = ok and check["unexpected_sources"] == 0 and check["missing_sources"] == 0
    ok = ok and stale == 0
    print("stress: PASS" if ok else "stress: FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
