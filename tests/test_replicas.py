"""A service tier on one `chroma run`: a query replica and the ingest worker
(each its own process, cache and host identity, one shared key file). A write
acknowledged by the worker is answered by the replica on the next request; a
write sent to the replica is refused naming the worker; a Chroma server that
goes away for a few seconds gets 503 with Retry-After from both, and both
answer again by themselves once it is back."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from .conftest import free_port, machine, wait_http

KEY = "tier-key-0123456789"


@contextlib.contextmanager
def chroma(path: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`chroma run` on ``port`` for the block."""
    import shutil

    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    cmd = [exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, 60, log)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def replica(tmp_path: Path, name: str, chroma_url: str, *args: str) -> Iterator[str]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    cmd = [sys.executable, "-m", "ragdb", "--chroma-url", chroma_url, "serve"]
    cmd += ["--port", str(port), "--api-key-file", str(tmp_path / "key"), *args]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=machine(tmp_path, name, host=True)
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, 180, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def search(url: str, query: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"query": query, "k": 1, "mode": "hybrid"}
    return httpx.post(f"{url}/v1/search", json=body, headers=headers, timeout=60)


def test_a_query_replica_and_the_worker_on_one_chroma(tmp_path: Path, facts_dir: Path) -> None:
    from ragdb import KnowledgeBase

    (tmp_path / "key").write_text(KEY + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db, log = tmp_path / "chroma", tmp_path / "chroma.log"
    with chroma(db, port, log):
        KnowledgeBase(chroma_url=url).ingest([facts_dir])
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(chroma(db, port, log))
        worker = stack.enter_context(replica(tmp_path, "worker", url, "--role", "ingest"))
        query = stack.enter_context(
            replica(tmp_path, "query", url, "--role", "query", "--ingest-url", worker)
        )
        auth = {"Authorization": f"Bearer {KEY}"}
        # Acknowledged by the worker, answered by the replica at once.
        body = {"texts": [{"name": "zeppelins", "text": "Zeppelins rest near Friedrichshafen."}]}
        done = httpx.post(f"{worker}/v1/ingest?wait=true", json=body, headers=auth, timeout=120)
        assert done.status_code == 200, done.text
        hit = search(query, "Friedrichshafen").json()["chunks"][0]
        assert hit["source"] == "zeppelins"
        # A write sent to the replica: refused, naming the worker.
        refused = httpx.post(f"{query}/v1/ingest", json=body, headers=auth, timeout=60)
        assert refused.status_code == 421 and worker in refused.json()["detail"]
        status = httpx.get(f"{query}/v1/status", headers=auth, timeout=60).json()
        assert status["service"]["role"] == "query"
        # Chroma away for a few seconds: 503 with Retry-After from both...
        server.terminate()
        server.wait(10)
        for replica_url in (query, worker):
            down = search(replica_url, "hangar")
            assert down.status_code == 503 and down.headers["Retry-After"], down.text
            assert "unavailable" in down.json()["detail"] or "reach" in down.json()["detail"]
        time.sleep(3)
        # ...and back by themselves once it returns.
        stack.enter_context(chroma(db, port, log))
        for replica_url in (query, worker):
            assert search(replica_url, "Friedrichshafen").json()["chunks"][0]["source"] == (
                "zeppelins"
            )
        again = httpx.post(
            f"{worker}/v1/ingest?wait=true",
            json={"texts": [{"name": "blimps", "text": "Blimps sleep in a barn in Akron."}]},
            headers=auth,
            timeout=120,
        )
        assert again.status_code == 200, again.text
        assert search(query, "Akron barn").json()["chunks"][0]["source"] == "blimps"


def test_replica_roles_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ragdb.cli import cli

    runner = CliRunner()
    url = "http://127.0.0.1:9"
    for args, message in [
        (["--role", "query", "--watch", str(tmp_path)], "--watch needs the ingest worker"),
        (["--role", "ingest", "--ingest-url", url], "--ingest-url is for --role query"),
        (["--role", "query", "--api-key", "k", "--api-key-file", "f"], "not both"),
    ]:
        result = runner.invoke(cli, ["--chroma-url", url, "serve", *args])
        assert result.exit_code == 2 and message in result.output, result.output
