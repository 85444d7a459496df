"""Crash test: start `ragdb ingest --prune` (or `ragdb remove`) on a known corpus,
SIGKILL it at a random moment, check the store with `ragdb doctor` and a query,
change the corpus, and again, N times; then a final ingest must leave exactly the
corpus in the store, each document whole and once.

    scripts/crashtest --kills 20 [--docs 300] [--server | --chroma-url URL]

After each kill an ordinary command (a query) runs first, then `ragdb doctor`
checks what it left: a killed writer must be settled by whoever comes next, with
no repair. --server runs the same against a `chroma run` started for the run.
The corpus is SciFact's first documents from ../shared/data when present, else
generated text.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.proofs.data import SCIFACT as SCIFACT_DIR
from tests.proofs.data import print_summary, run_with_server, server_options

SCIFACT = SCIFACT_DIR / "corpus.jsonl"


def corpus_texts(n: int) -> list[str]:
    texts = []
    if SCIFACT.is_file():
        with open(SCIFACT) as fh:
            for line in fh:
                doc = json.loads(line)
                texts.append(f"{doc['title']}\n\n{doc['text']}")
                if len(texts) >= n * 2:
                    break
    rng = random.Random(7)
    words = [
        "cell",
        "protein",
        "gene",
        "tumor",
        "immune",
        "response",
        "patient",
        "trial",
        "dose",
        "risk",
    ]
    while len(texts) < n * 2:
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(50, 400))))
    return texts


def ragdb(args: list[str], base: list[str], **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ragdb", *base, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )  # type: ignore[call-overload]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--docs", type=int, default=300)
    server_options(parser)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    return run_with_server(parser.parse_args(), run)


def write_in_flight(store: Path, chroma_url: str | None) -> bool:
    """Whether a ragdb write is in flight: its note beside a local store, a
    pending entry in a server's write log."""
    if chroma_url is None:
        return (store / "ragdb.pending.json").exists()
    import chromadb

    host, port = chroma_url.rsplit("//", 1)[1].split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    try:
        log = client.get_collection("ragdb-writes")
    except Exception:
        return False
    return bool(log.get(where={"state": "pending"}, include=[])["ids"])


def run(opts: argparse.Namespace) -> int:

    from ragdb import KnowledgeBase
    from tests.proofs.storecheck import compare

    rng = random.Random(opts.seed)
    work = Path(tempfile.mkdtemp(prefix="ragdb-crash-"))
    corpus = work / "corpus"
    corpus.mkdir()
    store = work / "store"
    base = ["--store", str(store)] + (["--chroma-url", opts.chroma_url] if opts.chroma_url else [])
    pool = corpus_texts(opts.docs)
    for i in range(opts.docs):
        (corpus / f"doc{i:04d}.txt").write_text(pool[i])
    if opts.chroma_url:
        kb = KnowledgeBase(store=store, chroma_url=opts.chroma_url)
        kb.store(create=True)
        kb.reset()

    # How long a full ingest takes, so that kills land anywhere inside one.
    t0 = time.monotonic()
    proc = ragdb(["ingest", "--prune", str(corpus)], base)
    proc.communicate()
    full = time.monotonic() - t0
    t0 = time.monotonic()
    ragdb(["ingest", "--prune", str(corpus)], base).communicate()
    noop = time.monotonic() - t0  # imports, model load, hashing: nothing to write
    print(
        f"full ingest of {opts.docs} docs: {full:.1f}s; unchanged re-ingest {noop:.1f}s",
        file=sys.stderr,
    )

    unusable = unhealthy = killed = 0
    problems: list[str] = []
    # How long a run takes, per command, learnt from runs that ended before their kill.
    # Each round edits 30% of the corpus; aim the kills past the start-up.
    estimate = {"ingest": noop + 0.3 * (full - noop), "remove": noop}
    round_no = -1
    while killed < opts.kills and round_no < 3 * opts.kills:
        round_no += 1
        # Change the corpus: edit, delete and add a few documents.
        files = sorted(corpus.iterdir())
        for path in rng.sample(files, k=max(1, len(files) * 3 // 10)):
            path.write_text(rng.choice(pool) + f"\n\nEdited in round {round_no}.")
        for path in rng.sample(files, k=2):
            path.unlink(missing_ok=True)
        for _ in range(2):
            (corpus / f"new{round_no:03d}-{rng.randrange(10**6)}.txt").write_text(rng.choice(pool))
        if round_no % 5 == 4:
            victims = [str(p) for p in rng.sample(sorted(corpus.iterdir()), k=3)]
            kind, proc = "remove", ragdb(["remove", *victims], base)
        else:
            kind, proc = "ingest", ragdb(["ingest", "--prune", str(corpus)], base)
        started = time.monotonic()
        if round_no % 2 == 0:
            # Every other round: kill while a write is in flight (ragdb's write
            # note or log entry exists), at a random point of it.
            while proc.poll() is None and not write_in_flight(store, opts.chroma_url):
                time.sleep(0.005 if opts.chroma_url is None else 0.02)
            time.sleep(rng.uniform(0, 0.25))
        else:
            delay = rng.uniform(min(0.7 * noop, estimate[kind]), estimate[kind])
            try:
                proc.wait(delay)
                # It finished first: aim earlier next time.
                estimate[kind] = max(0.5, 0.95 * (time.monotonic() - started))
            except subprocess.TimeoutExpired:
                pass
        delay = time.monotonic() - started
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.communicate()
        # The next ordinary command first: it must settle what the kill left...
        query = subprocess.run(
            [
                sys.executable,
                "-m",
                "ragdb",
                *base,
                "query",
                "tumor cells",
                "--retrieve-only",
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        # ...so that doctor, looking after it, finds nothing to repair.
        doctor = subprocess.run(
            [sys.executable, "-m", "ragdb", *base, "doctor", "--json"],
            capture_output=True,
            text=True,
        )
        if query.returncode != 0 or doctor.returncode not in (0, 1):
            unusable += 1
            problems.append(f"round {round_no}: {query.stderr.strip() or doctor.stderr.strip()}")
        elif doctor.returncode == 1:
            unhealthy += 1
            problems.append(f"round {round_no}: {doctor.stdout.strip()[:500]}")
        print(
            f"round {round_no + 1}: {kind} {'killed' if proc.returncode == -9 else 'ended'} "
            f"after {delay:.1f}s ({killed}/{opts.kills} kills), doctor exit "
            f"{doctor.returncode}, query exit {query.returncode}",
            file=sys.stderr,
        )

    final = ragdb(["ingest", "--prune", str(corpus)], base)
    _, err = final.communicate()
    expected = {str(p.resolve()): p.read_text() for p in corpus.iterdir()}
    # Files removed by `ragdb remove` in the last rounds but still on disk come back here.
    check = compare(KnowledgeBase(store=store, chroma_url=opts.chroma_url), expected)
    summary = {
        "mode": "server" if opts.chroma_url else "embedded",
        "rounds": round_no + 1,
        "killed": killed,
        "unusable_stores": unusable,
        "unhealthy_after_kill": unhealthy,
        "final_ingest_exit": final.returncode,
        "lost_chunks": check["lost_chunks"],
        "duplicated_chunks": check["duplicated_chunks"],
        "missing_sources": check["missing_sources"],
        "unexpected_sources": check["unexpected_sources"],
        "sources": check["sources_found"],
    }
    for p in problems:
        print(p, file=sys.stderr)
    if final.returncode != 0:
        print(err.decode(errors="replace"), file=sys.stderr)
    print_summary(summary, opts.json)
    shutil.rmtree(work, ignore_errors=True)
    ok = (
        killed == opts.kills
        and unusable == 0
        and unhealthy == 0
        and final.returncode == 0
        and check["lost_chunks"] == 0
        and check["duplicated_chunks"] == 0
        and check["missing_sources"] == 0
        and check["unexpected_sources"] == 0
    )
    print("crashtest: PASS" if ok else "crashtest: FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
