"""The CLI's way to a running ``ragdb serve``: found through the ``serve.json``
a server leaves in its local store's directory (or named with ``--url`` /
``RAGDB_URL``), it answers ``query``, ``status`` and ``sources`` with the model
already warm, so a cold command costs an HTTP request instead of seconds of
imports and model loading; ``ingest`` sends its plan with the files' contents
(the server need not see the same disks) and ``remove`` the exact names it
matched here. Output and exit codes are the same either way.

Only the standard library's http.client is imported here (httpx alone costs a
cold command 0.13 s): no torch, no model, no Chroma.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ragdb import errors
from ragdb.errors import RagdbError, StoreError
from ragdb.store.backend import alive

SERVE_FILE = "serve.json"
# How long a found server may take to answer its health check before it is
# taken for a stale serve.json (and the command runs in-process).
PROBE_SECONDS = 0.5


class ServiceClient:
    """ragdb's API at ``url``, with the token that opens it."""

    def __init__(self, url: str, token: str | None) -> None:
        from urllib.parse import urlparse

        self.url = url.rstrip("/")
        parsed = urlparse(self.url)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if self.https else 80)
        self.headers = {"X-API-Key": token} if token else {}

    def _connect(self, timeout: float | None) -> Any:
        import http.client

        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def _request(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, "Content-Type": "application/json"} if data else self.headers
        conn = self._connect(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn.getresponse()
        except OSError as exc:
            conn.close()
            raise StoreError(f"the ragdb server at {self.url} failed: {exc}") from None

    def alive(self) -> bool:
        """Whether the server answers its health check, quickly."""
        try:
            return bool(self._request("GET", "/healthz", timeout=PROBE_SECONDS).status == 200)
        except StoreError:
            return False

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._request(method, path, body)
        raw = response.read()
        if response.status >= 400:
            raise _error(response.status, raw)
        return json.loads(raw)

    def status(self) -> dict[str, Any]:
        """What ``ragdb status --json`` prints (the service's own state aside)."""
        info = dict(self._json("GET", "/v1/status"))
        info.pop("service", None)
        return info

    def sources(self) -> list[dict[str, Any]]:
        """Every source, as ``ragdb sources --json`` prints them."""
        out: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", f"/v1/sources?offset={len(out)}&limit=1000")
            out += page["sources"]
            if len(out) >= page["total"] or not page["sources"]:
                return out

    def ask(
        self,
        question: str,
        options: dict[str, Any],
        on_hits: Callable[[list[dict[str, Any]]], None] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """The answer object ``query --json`` prints; with ``on_hits`` and
        ``on_text`` it streams, as the in-process query does."""
        body = {"query": question, **options}
        if on_hits is None and on_text is None:
            return dict(self._json("POST", "/v1/ask", body))
        answer: dict[str, Any] = {}
        for event in self._events("/v1/ask", {**body, "stream": True}):
            kind = event.get("event")
            if kind == "chunks" and on_hits is not None:
                on_hits(event["chunks"])
            elif kind == "delta" and on_text is not None:
                on_text(event["text"])
            elif kind == "done":
                answer = event.get("answer") or {}
            elif kind == "error":
                raise _error_from(event)
        return answer

    def ingest(
        self,
        plan: dict[str, Any],
        on_progress: Callable[[int, int], None] | None = None,
        on_warn: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Run an ingest plan (``IngestPlan.to_wire()``) as a job of the server's,
        following its events; the report ``ingest --json`` prints. Ctrl-C cancels
        the job (what was embedded before stays) and propagates."""
        job = self._json("POST", "/v1/ingest", plan)
        try:
            for event in self._events(f"/v1/jobs/{job['id']}/events"):
                kind = event.get("event")
                if kind == "progress" and on_progress is not None:
                    on_progress(int(event["chunks_done"]), int(event["chunks_total"]))
                elif kind == "source_error" and on_warn is not None:
                    on_warn(str(event.get("message") or event.get("reason")))
                elif kind == "done":
                    if event.get("state") == "succeeded":
                        return dict(event.get("report") or {})
                    if event.get("state") == "cancelled":
                        raise KeyboardInterrupt
                    raise _error_from(
                        {
                            "type": event.get("error_type"),
                            "detail": event.get("error"),
                            "exit_code": event.get("exit_code"),
                        }
                    )
        except KeyboardInterrupt:
            with contextlib.suppress(RagdbError):
                self._json("DELETE", f"/v1/jobs/{job['id']}")
            raise
        raise StoreError(f"the ragdb server at {self.url} ended the ingest's events early")

    def remove(self, sources: list[str]) -> dict[str, Any]:
        """Remove exactly these stored sources; ``{removed, chunks_removed}``."""
        got = self._json("POST", "/v1/remove", {"sources": sources})
        return {"removed": got["removed"], "chunks_removed": got["removed_chunks"]}

    def _events(self, path: str, body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        response = self._request("POST" if body is not None else "GET", path, body)
        if response.status >= 400:
            raise _error(response.status, response.read())
        while line := response.readline():
            text = line.decode("utf-8").rstrip("\r\n")
            if text.startswith("data: "):
                yield json.loads(text[6:])


def _error(status: int, raw: bytes) -> RagdbError:
    if status == 401:
        return errors.UsageError(
            "the ragdb server refused this command's API key: set RAGDB_API_KEY to the key "
            "it was started with, or add --no-server to work in-process"
        )
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"detail": raw.decode(errors="replace").strip()[:300], "type": "RagdbError"}
    return _error_from(body)


def _error_from(body: dict[str, Any]) -> RagdbError:
    """The ragdb error a problem document (or error event) describes."""
    cls = getattr(errors, str(body.get("type") or ""), None)
    if not (isinstance(cls, type) and issubclass(cls, RagdbError)):
        cls = RagdbError
    exc = cls(str(body.get("detail") or body.get("message") or "the ragdb server failed"))
    if isinstance(body.get("exit_code"), int) and body["exit_code"] != exc.exit_code:
        exc.exit_code = body["exit_code"]
    if isinstance(exc, errors.LLMError) and isinstance(body.get("ragdb"), dict):
        exc.answer = body["ragdb"]  # the answer object so far, as a dict
    return exc


def write_serve_file(
    store: Path, url: str, token_file: Path | None, needs_key: bool = False
) -> Path:
    """Tell this store's CLI users where its server is (mode 0600), and whether
    it wants a key they must bring themselves (``--api-key`` given to serve)."""
    path = store / SERVE_FILE
    info = {
        "url": url,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "token_file": str(token_file) if token_file else None,
        "needs_key": needs_key,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    return path


def find_server(store: Path | None, url: str | None, api_key: str | None) -> ServiceClient | None:
    """The running server to use: ``url`` when given (an error if it does not
    answer), else the one a local store's serve.json names if it is alive."""
    if url:
        client = ServiceClient(url, api_key)
        if not client.alive():
            raise StoreError(f"no ragdb server answers at {url} (drop --url to work in-process)")
        return client
    if store is None:
        return None
    info = _serve_info(store)
    if info is None:
        return None
    token = api_key
    if info.get("needs_key") and not api_key:
        import sys

        print(
            f"ragdb: the server at {info['url']} wants its API key (set RAGDB_API_KEY to use "
            "it); working in-process",
            file=sys.stderr,
        )
        return None
    if info.get("token_file"):
        try:
            token = Path(info["token_file"]).read_text().strip()
        except OSError:
            return None  # not ours to read: work in-process
    client = ServiceClient(str(info["url"]), token)
    return client if client.alive() else None


def _serve_info(store: Path) -> dict[str, Any] | None:
    """What a local store's serve.json says, unless a server that is gone left it."""
    try:
        info = json.loads((store / SERVE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or "url" not in info:
        return None
    if info.get("host") == socket.gethostname() and not alive(int(info.get("pid") or 0)):
        return None  # left by a server that is gone
    return info


def running_server(store: Path) -> tuple[str, int] | None:
    """The URL and pid of a live ``ragdb serve`` of this local store, if any."""
    info = _serve_info(store)
    if info is None or not ServiceClient(str(info["url"]), None).alive():
        return None
    return str(info["url"]), int(info.get("pid") or 0)
