"""The README's replica topology, run for real on loopback, with faults.

One `chroma run`, one ingest worker (`ragdb serve --role ingest`) and three
query replicas (`--role query --ingest-url ...`; the third with a wall clock an
hour ahead), each its own process with its own cache directory and host
identity, one shared key file and a 6 s lease; a small round-robin proxy in
front routes as the README tells a load balancer to.
For --seconds (default 60) three clients search through the proxy while a
writer ingests and removes documents through it; after each acknowledged
ingest every query replica is asked directly for the new document's unique
word and must answer it first. Faults on a schedule: a query replica killed
(SIGKILL) and restarted; the worker stopped (SIGSTOP) past its lease and
continued; the worker killed mid-write and restarted; `chroma run` stopped
for 5 s and started again.

At the end: `doctor` healthy; every acknowledged document stored once, whole,
with its last acknowledged text; every removed one gone; every replica's
keyword index holds exactly Chroma's chunk ids. Errors are counted by kind:
during the Chroma outage a 503 is the right answer; anything else is a failure.

    scripts/replicas [--seconds 60]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.server
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from tests.proofs.data import free_port  # scripts/run-python puts the root on the path
from tests.relay import SKEWED, answer, read_body, relay

KEY = "replicas-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
WRITES = ("/v1/ingest", "/v1/documents", "/v1/remove", "/v1/reset", "/v1/watches", "/v1/kbs")
READS = ("/v1/search", "/v1/ask", "/v1/check", "/v1/chat/completions", "/chat/completions")


class Balancer(http.server.ThreadingHTTPServer):
    """Round-robin over the query replicas for reads; the worker for writes."""

    daemon_threads = True

    def __init__(self, worker: str, replicas: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Route)
        self.worker, self.replicas = worker, replicas
        self.turn = itertools.cycle(range(len(replicas)))
        self.lock = threading.Lock()

    def target(self, method: str, path: str) -> str:
        bare = path.split("?")[0]
        write = (method == "POST" and bare not in READS) or method in ("PATCH", "DELETE")
        if write or bare.startswith(("/v1/jobs", "/v1/watches")):
            return self.worker
        with self.lock:
            return self.replicas[next(self.turn)]


class _Route(http.server.BaseHTTPRequestHandler):
    server: Balancer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        data = read_body(self)
        target = urlparse(self.server.target(self.command, self.path))
        try:
            answer(self, *relay(self, target, data))
        except OSError as exc:  # the replica is down: what a load balancer says
            answer(self, 502, json.dumps({"detail": str(exc)}).encode())

    do_GET = do_POST = do_DELETE = do_PATCH = _forward


class Cluster:
    """The processes: chroma, the worker, the replicas; started, killed, restarted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.chroma_port = free_port()
        self.chroma_url = f"http://127.0.0.1:{self.chroma_port}"
        (root / "key").write_text(KEY + "\n")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def start_chroma(self) -> None:
        exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        cmd = [exe, "run", "--path", str(self.root / "chroma"), "--host", "127.0.0.1"]
        self._start(
            "chroma", [*cmd, "--port", str(self.chroma_port)], f"{self.chroma_url}/api/v2/heartbeat"
        )

    def env(self, name: str) -> dict[str, str]:
        cache = self.root / f"cache-{name}"
        (cache / "ragdb").mkdir(parents=True, exist_ok=True)
        onnx = cache / "ragdb" / "onnx"
        if not onnx.exists():  # the model's export is shared; the keyword index is not
            from platformdirs import user_cache_path

            onnx.symlink_to(user_cache_path("ragdb", appauthor=False) / "onnx")
        return {
            **os.environ,
            "XDG_CACHE_HOME": str(cache),
            "RAGDB_HOST_ID": f"host-{name}",
            "RAGDB_LEASE": "6",
            "RAGDB_CHROMA_URL": self.chroma_url,
            "RAGDB_API_KEY_FILE": str(self.root / "key"),
        }

    def start_ragdb(self, name: str, *args: str) -> None:
        port = self.urls.get(name, "").rsplit(":", 1)[-1] or str(free_port())
        self.urls[name] = f"http://127.0.0.1:{port}"
        # q3's wall clock runs an hour ahead (an injected clock): leases are judged
        # on the Chroma server's clock, so it must take nothing over early.
        skew = "3600" if name == "q3" else "0"
        cmd = [sys.executable, "-c", SKEWED, skew, "serve", "--port", port, *args]
        self._start(name, cmd, f"{self.urls[name]}/healthz", self.env(name))

    def _start(self, name: str, cmd: list[str], health: str, env: Any = None) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{name} did not start: see {self.root / name}.log")

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.procs[name].wait(30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)


class Traffic:
    """The clients, and what they saw."""

    def __init__(self, lb: str, replicas: list[str]) -> None:
        self.lb, self.replicas = lb, replicas
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, str] = {}  # the first answer of each kind of error
        self.requests = 0
        self.latencies: list[float] = []
        # Per document, the states it may end in: the last acknowledged one
        # (a text, or None once removed), and any attempted after it whose
        # answer was lost to a fault (it may have landed).
        self.valid: dict[str, set[str | None]] = {}
        self.stale_reads: list[str] = []
        self.disturbed = threading.Event()  # a fault in progress (and a short grace)
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def note(self, response: httpx.Response | None, what: str) -> bool:
        with self.lock:
            self.requests += 1
            if response is not None and response.status_code < 300:
                return True
            status = "no answer" if response is None else str(response.status_code)
            expected = self.disturbed.is_set() and status in ("503", "no answer", "502")
            kind = f"{what} {status}{' (during a fault: expected)' if expected else ''}"
            self.errors[kind] += 1
            if response is not None and kind not in self.samples:
                self.samples[kind] = response.text[:300]
            return False

    def outcome(self, name: str, state: str | None, acknowledged: bool) -> None:
        """Record a write of ``name`` to ``state`` (None: removed)."""
        with self.lock:
            if acknowledged:
                self.valid[name] = {state}
            else:
                self.valid.setdefault(name, {None}).add(state)

    def post(self, url: str, path: str, body: dict[str, Any], what: str) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            response = httpx.post(url + path, json=body, headers=AUTH, timeout=120)
        except httpx.HTTPError:
            response = None
        if what == "search" and response is not None and response.status_code == 200:
            self.latencies.append(time.perf_counter() - t0)
        return response if self.note(response, what) else None

    def remove(self, name: str) -> bool:
        """Remove ``name``; True when it is gone (404: it was not stored)."""
        try:
            response = httpx.post(
                self.lb + "/v1/remove", json={"sources": [name]}, headers=AUTH, timeout=120
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 404:
            with self.lock:
                self.requests += 1
            return True
        return self.note(response, "remove")

    def searcher(self) -> None:
        words = ["octopus", "llama", "glacier", "volcano", "document", "harbour"]
        while not self.stop.is_set():
            self.post(self.lb, "/v1/search", {"query": random.choice(words), "k": 3}, "search")

    def writer(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            name = f"doc-{i % 12}"
            word = f"zq{i}x{random.randrange(10**6)}"
            text = f"Document {name}, version {i}, about the harbour. Its marker word is {word}."
            body = {"texts": [{"name": name, "text": text}], "replace": True}
            done = self.post(self.lb, "/v1/ingest?wait=true", body, "ingest") is not None
            self.outcome(name, text, done)
            if not done:
                continue
            for replica in self.replicas:  # answerable everywhere at the next request
                query = {"query": word, "k": 1, "mode": "bm25"}
                got = self.post(replica, "/v1/search", query, "read-back")
                hits = got.json()["chunks"] if got is not None else []
                if got is not None and (not hits or word not in hits[0]["text"]):
                    self.stale_reads.append(f"{replica}: {name} v{i}")
            if i % 7 == 6:
                doomed = f"doc-{(i + 3) % 12}"
                gone = self.remove(doomed)
                self.outcome(doomed, None, gone)


def faults(cluster: Cluster, traffic: Traffic, seconds: float, log: list[str]) -> None:
    """The schedule, spread over the run."""

    def disturbing(action: Any) -> Any:
        def run() -> None:
            traffic.disturbed.set()
            try:
                action()
                time.sleep(3)  # requests cut by the fault come back meanwhile
            finally:
                traffic.disturbed.clear()

        return run

    steps = [
        (
            "SIGKILL query replica q1, then restart it",
            lambda: (
                cluster.signal("q1", signal.SIGKILL),
                cluster.start_ragdb("q1", *query_args(cluster)),
            ),
        ),
        (
            "SIGSTOP the worker for 8 s (past its 6 s lease), then SIGCONT",
            lambda: (
                cluster.signal("worker", signal.SIGSTOP),
                time.sleep(8),
                cluster.signal("worker", signal.SIGCONT),
            ),
        ),
        ("stop chroma run for 5 s, then start it again", lambda: chroma_outage(cluster, traffic)),
        (
            "SIGKILL the worker mid-write, then restart it",
            lambda: (
                cluster.signal("worker", signal.SIGKILL),
                cluster.start_ragdb("worker", "--role", "ingest"),
            ),
        ),
    ]
    gap = seconds / (len(steps) + 1)
    for what, action in steps:
        time.sleep(gap)
        log.append(f"{time.strftime('%H:%M:%S')} {what}")
        disturbing(action)()


def chroma_outage(cluster: Cluster, traffic: Traffic) -> None:
    cluster.signal("chroma", signal.SIGTERM)
    time.sleep(5)
    cluster.start_chroma()


def query_args(cluster: Cluster) -> list[str]:
    return ["--role", "query", "--ingest-url", cluster.urls["worker"]]


def check(cluster: Cluster, traffic: Traffic) -> list[str]:
    """What the store and the replicas hold after the run; problems found."""
    from ragdb import KnowledgeBase
    from ragdb.store.keywords import KeywordIndex

    problems = []
    kb = KnowledgeBase(chroma_url=cluster.chroma_url)
    report = kb.doctor()
    if not report.healthy:
        problems.append(f"doctor: {report.findings}")
    stored = {s.source for s in kb.sources()}
    for name, valid in traffic.valid.items():
        chunks = kb.chunks(name) if name in stored else []
        if len({c.source_hash for c in chunks}) > 1:
            problems.append(f"{name}: two versions stored")
        state = " ".join(c.text for c in chunks) if chunks else None
        normal = {" ".join(v.split()) if v else None for v in valid}
        if (" ".join(state.split()) if state else None) not in normal:
            problems.append(f"{name}: holds neither its last acknowledged state nor a later try")
    with kb.store().session() as session:
        ids, manifest = session.ids(), session.manifest
        backend = session.backend
    for name in ["worker", "q1", "q2", "q3"]:
        traffic.post(cluster.urls[name], "/v1/search", {"query": "harbour", "k": 1}, "final")
        saved = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = str(cluster.root / f"cache-{name}")
        try:
            path = backend.keywords_path(manifest, "default")
        finally:
            if saved is None:
                os.environ.pop("XDG_CACHE_HOME")
            else:
                os.environ["XDG_CACHE_HOME"] = saved
        index = KeywordIndex(path)
        held = index.ids()
        index.close()
        if held != ids:
            problems.append(f"{name}'s keyword index: {len(held ^ ids)} ids differ from Chroma's")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    from ragdb import KnowledgeBase
    from ragdb.config import DEFAULT_EMBED_MODEL
    from ragdb.embed import get_embedder

    # The ONNX export, made once here, before the replicas share it.
    get_embedder(DEFAULT_EMBED_MODEL, "cpu", "onnx-int8").load()
    root = Path(tempfile.mkdtemp(prefix="ragdb-replicas-"))
    cluster = Cluster(root)
    fault_log: list[str] = []
    try:
        cluster.start_chroma()
        seed = KnowledgeBase(chroma_url=cluster.chroma_url)
        seed.ingest_text("octopus", "The octopus is clever and has eight arms.")
        seed.ingest_text("llama", "The llama lives high in the Andes.")
        cluster.start_ragdb("worker", "--role", "ingest")
        for name in ("q1", "q2", "q3"):
            cluster.start_ragdb(name, *query_args(cluster))
        replicas = [cluster.urls[n] for n in ("q1", "q2", "q3")]
        lb = Balancer(cluster.urls["worker"], replicas)
        threading.Thread(target=lb.serve_forever, daemon=True).start()
        traffic = Traffic(f"http://127.0.0.1:{lb.server_address[1]}", replicas)
        threads = [threading.Thread(target=traffic.searcher) for _ in range(3)]
        threads.append(threading.Thread(target=traffic.writer))
        for t in threads:
            t.start()
        started = time.monotonic()
        chaos = threading.Thread(target=faults, args=(cluster, traffic, args.seconds, fault_log))
        chaos.start()
        chaos.join()  # every fault, however long restarts take
        time.sleep(max(0.0, args.seconds - (time.monotonic() - started)))
        traffic.stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        problems = check(cluster, traffic)
    finally:
        cluster.stop_all()
    lat = sorted(traffic.latencies)
    print(
        f"{elapsed:.0f} s; {traffic.requests} requests; searches p50 "
        f"{lat[len(lat) // 2] * 1000:.0f} ms"
        if lat
        else "no search answered"
    )
    print(f"documents written {len(traffic.valid)}")
    for line in fault_log:
        print(f"fault: {line}")
    for kind, n in sorted(traffic.errors.items()):
        print(f"answers not 2xx: {kind}: {n}")
    unexpected = [k for k in traffic.errors if "expected" not in k]
    for kind in unexpected:
        print(f"  e.g. {traffic.samples.get(kind, '')}")
    for line in traffic.stale_reads:
        print(f"stale read (an acknowledged ingest not answered by a replica): {line}")
    for line in problems:
        print(f"PROBLEM: {line}")
    ok = not (problems or unexpected or traffic.stale_reads)
    print("OK: nothing lost, duplicated, mixed or stale" if ok else "FAILED")
    shutil.rmtree(root, ignore_errors=True) if ok else print(f"logs kept in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
