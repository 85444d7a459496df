"""Where the shared datasets are (``../shared/data`` beside the repository), and
a Chroma server for the proofs that need one."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"


def scifact_head(dest: Path, docs: int) -> Path:
    """The first ``docs`` SciFact documents, as a records file at ``dest``."""
    with open(SCIFACT / "corpus.jsonl") as src, open(dest, "w") as out:
        for i, line in enumerate(src):
            if i >= docs:
                break
            out.write(line)
    return dest


def scifact_store(store: Path | None, docs: int) -> Path:
    """``store`` when given; else a store of the first ``docs`` SciFact documents
    (int8 backend, the CPU default), built in a new temporary directory."""
    if store is not None:
        return store
    from ragdb import KnowledgeBase

    work = Path(tempfile.mkdtemp(prefix="ragdb-scifact-"))
    print(f"building a store of {docs} SciFact documents...", file=sys.stderr)
    KnowledgeBase(store=work / "store", embed_backend="onnx-int8").ingest_records(
        scifact_head(work / "corpus.jsonl", docs),
        id_field="_id",
        text_field="text",
        title_field="title",
    )
    return work / "store"


def scifact_documents(n: int | None = None) -> dict[str, str]:
    """The first ``n`` SciFact documents (all with None), id -> title and
    abstract as one text (what an encoder is given of each)."""
    import json

    out: dict[str, str] = {}
    with open(SCIFACT / "corpus.jsonl") as fh:
        for line in fh:
            if n is not None and len(out) >= n:
                break
            doc = json.loads(line)
            out[doc["_id"]] = f"{doc['title']}\n{doc['text']}"
    return out


def scifact_questions(n: int) -> list[str]:
    """The first ``n`` SciFact questions."""
    import json

    lines = (SCIFACT / "queries.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["text"] for line in lines]


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def chroma_server() -> Iterator[str]:
    """A `chroma run` on a free loopback port, in a temporary directory; its URL."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ragdb-chroma-") as data:
        log = open(Path(data) / "server.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [chroma, "run", "--path", f"{data}/db", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"chroma run did not start; see {log.name}") from None
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def server_options(parser: argparse.ArgumentParser) -> None:
    """--chroma-url URL, and --server to start a `chroma run` for the run."""
    parser.add_argument("--chroma-url", default=None, help="a Chroma server to use")
    parser.add_argument("--server", action="store_true", help="start a chroma run for the run")


def run_with_server(opts: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """``run(opts)``, against a fresh `chroma run` when --server was given."""
    if not opts.server:
        return run(opts)
    with chroma_server() as url:
        opts.chroma_url = url
        return run(opts)


def print_summary(summary: dict[str, object], as_json: bool) -> None:
    """A proof's figures: one JSON object, or a line each."""
    import json

    if as_json:
        print(json.dumps(summary, indent=2))
        return
    width = max(len(k) for k in summary) + 2
    for key, value in summary.items():
        print(f"{key:>{width}}: {value}")
