"""Leases on a shared Chroma server: a writer stalled past its lease (SIGSTOP)
is taken over and, when it wakes, deletes nothing; a writer whose wall clock is
an hour off cannot take over a live one's write; pids count only within one
host identity. Writers are real `ragdb` processes against a real `chroma run`,
one of them behind a proxy that stops it at the worst moment: right after its
new version is stored, before it deletes the old one."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import chromadb
import pytest

from ragdb import KnowledgeBase
from ragdb.store.leases import ServerClock, host_identity, writer_gone

from .conftest import clear_server, machine
from .relay import SKEWED, answer, read_body, relay
from .site import running

OLD = "\n\n".join(f"Paragraph {i} about llamas. " + "More on llamas. " * 30 for i in range(4))
NEW = OLD.replace("llamas", "octopus")


class StoppingProxy(http.server.ThreadingHTTPServer):
    """Forwards to a Chroma server; once its chunks (records with a chunk
    index) are stored, stops process :attr:`pid` (SIGSTOP) before it hears back."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlparse(upstream)
        self.pid = 0
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: StoppingProxy

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        data = read_body(self)
        status, payload, headers = relay(self, self.server.upstream, data)
        body = json.loads(data) if self.path.endswith("/add") and data else {}
        chunks = any("chunk_index" in (m or {}) for m in body.get("metadatas") or [])
        if chunks and not self.server.stopped.is_set():
            os.kill(self.server.pid, signal.SIGSTOP)
            self.server.stopped.set()
        answer(self, status, payload, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@pytest.fixture
def proxy(chroma_server: str) -> Iterator[StoppingProxy]:
    clear_server(chroma_server)
    server = StoppingProxy(chroma_server)
    with running(server):
        yield server


def _own_hostname() -> bool:
    """Whether a process can be given a hostname of its own (root, unshare)."""
    try:
        cmd = ["unshare", "--uts", "hostname", "probe"]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


OWN_HOSTNAME = _own_hostname()


def start(
    tmp_path: Path, host: str, url: str, text: str, lease: float, skew: float = 0.0, wait: int = 30
) -> subprocess.Popen[str]:
    """`ragdb ingest - --name doc` on host ``host`` (its own cache and host
    identity), with a wall clock ``skew`` seconds off."""
    env = {**machine(tmp_path, host, host=True), "RAGDB_LEASE": str(lease)}
    args = ["--chroma-url", url, "--wait", str(wait), "ingest", "-", "--name", "doc"]
    cmd = [sys.executable, "-c", SKEWED, str(skew), *args]
    if OWN_HOSTNAME:  # another machine's name too, where the test may give it one
        cmd = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "-", *cmd]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(text)
    proc.stdin.close()
    return proc


def stopped(proxy: StoppingProxy, proc: subprocess.Popen[str]) -> None:
    """Wait until the proxy has stopped ``proc`` after its chunks were stored."""
    deadline = time.monotonic() + 120
    while not proxy.stopped.wait(0.2):
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline, "the writer never stored its chunks"


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    assert proc.stderr is not None
    proc.wait(timeout=180)
    return proc.returncode, proc.stderr.read()


def stored(kb: KnowledgeBase) -> str:
    """Which text "doc" holds: one whole version, of llamas or of octopus."""
    chunks = kb.chunks("doc")
    assert chunks and len({c.source_hash for c in chunks}) == 1
    text = " ".join(c.text for c in chunks)
    assert ("llamas" in text) != ("octopus" in text)
    return "OLD" if "llamas" in text else "NEW"


def healthy(kb: KnowledgeBase) -> None:
    report = kb.doctor()
    assert report.healthy, report.findings
    with kb.store().session() as session:
        assert session.keywords.ids() == session.ids()


def test_a_writer_stopped_past_its_lease_is_taken_over_and_deletes_nothing(
    chroma_server: str, proxy: StoppingProxy, tmp_path: Path
) -> None:
    kb = KnowledgeBase(chroma_url=chroma_server)
    kb.ingest_text("doc", OLD)
    lease = 3.0
    a = start(tmp_path, "host-a", proxy.url, NEW, lease)
    proxy.pid = a.pid
    try:
        stopped(proxy, a)
        time.sleep(lease + 2)  # A is stopped: its heartbeat is silent, its lease runs out
        # B, on another host, takes A's write over (A's new version was whole:
        # kept) and then writes the old text back: its ids are the ones A read
        # as "old" before it stopped.
        code, err = finish(start(tmp_path, "host-b", chroma_server, OLD, lease))
        assert code == 0, err
    finally:
        os.kill(a.pid, signal.SIGCONT)
    code, err = finish(a)
    # A noticed on waking that its write was taken over: it stops, deleting
    # nothing (before the fix it deleted B's chunks: the ids it had read).
    assert code == 4, err
    assert "3s lease" in err.strip().splitlines()[-1], err
    assert stored(kb) == "OLD"  # B's write, the last one acknowledged
    healthy(kb)


def test_a_skewed_clock_does_not_end_a_live_writers_lease(
    chroma_server: str, proxy: StoppingProxy, tmp_path: Path
) -> None:
    kb = KnowledgeBase(chroma_url=chroma_server)
    kb.ingest_text("doc", OLD)
    a = start(tmp_path, "host-a", proxy.url, NEW, lease=60)
    proxy.pid = a.pid
    try:
        stopped(proxy, a)
        # B's wall clock is an hour ahead: by it, A's lease ended long ago.
        b = start(tmp_path, "host-b", chroma_server, OLD, lease=60, skew=3600, wait=3)
        code, err = finish(b)
        assert code == 4 and "busy" in err, err
    finally:
        os.kill(a.pid, signal.SIGCONT)
    code, err = finish(a)
    assert code == 0, err
    assert stored(kb) == "NEW"
    healthy(kb)


def test_pids_count_only_within_one_host_identity(chroma_server: str) -> None:
    host, port = chroma_server.rsplit("//", 1)[1].split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    now = ServerClock().now(client)
    assert abs(now - time.time()) < 5  # one machine here: the server's clock is ours
    me = host_identity()
    assert host_identity("box-7") == "box-7" and me.count("|") >= 1  # boot id, pid namespace
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    live = {"pid": os.getpid(), "expires": now + 100}
    # Same identity: the pid decides, whatever the lease says.
    assert not writer_gone({**live, "hostid": me}, now, me)
    assert writer_gone({"hostid": me, "pid": dead_pid, "expires": now + 100}, now, me)
    # Another identity with the same hostname (a container): its pid says
    # nothing here, the lease on the server's clock decides.
    other = me.split("|")[0] + "|another-boot|4026531836"
    assert not writer_gone({**live, "hostid": other}, now, me)
    assert writer_gone({**live, "hostid": other, "expires": now - 1}, now, me)


def test_a_write_is_recorded_done_only_when_its_sources_are_whole(chroma_server: str) -> None:
    import dataclasses

    from ragdb.store.records import chunk_id
    from ragdb.store.server import LOG_COLLECTION

    clear_server(chroma_server)
    kb = KnowledgeBase(chroma_url=chroma_server)
    kb.ingest_text("doc", OLD)
    store = kb.store()
    with store.session() as session:
        found = session.fetch_embeddings(where={"source": "doc"})
        record, vector = next((r, v) for r, v in found if r.chunk_index == 0)
        # A stray first chunk of another version (what a lost concurrent write
        # leaves): the write that ends beside it must not be recorded done.
        stray = dataclasses.replace(
            record, source_hash="f" * 64, id=chunk_id("doc", "f" * 64, 0), ingested_at="2099"
        )
        session.begin_write(["doc"])
        session.add([stray], [vector])
        session.end_write(["doc"])
    host, port = chroma_server.rsplit("//", 1)[1].split(":")
    log = chromadb.HttpClient(host=host, port=int(port)).get_collection(LOG_COLLECTION)
    pending = log.get(where={"state": "pending"}, include=["metadatas"])["metadatas"]
    assert len(pending) == 1 and pending[0]["expires"] == 0.0  # left to the next reader
    assert stored(kb) == "OLD"  # which settles it: the stray is gone, the whole version kept
    assert not log.get(where={"state": "pending"})["ids"]
    healthy(kb)
