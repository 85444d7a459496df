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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ragdb import errors
from ragdb.config import DEFAULT_KB
from ragdb.errors import RagdbError, StoreError
from ragdb.store.leases import alive

if TYPE_CHECKING:
    from ragdb.ingest.plan import IngestPlan, IngestReport, Progress, Warn
    from ragdb.query.answer import Answer
    from ragdb.query.retrieve import Hit
    from ragdb.reports import KnowledgeBaseInfo, RemoveReport, Status
    from ragdb.store.records import ChunkRecord, SourceInfo

SERVE_FILE = "serve.json"
# How long a found server may take to answer its health check before it is
# taken for a stale serve.json (and the command runs in-process).
PROBE_SECONDS = 0.5


class RemoteKnowledgeBase:
    """ragdb's API at ``url``, with the token that opens it: a knowledge base
    like :class:`ragdb.KnowledgeBase` (:class:`ragdb.api.KnowledgeBaseAPI`),
    answering with the same dataclasses."""

    def __init__(self, url: str, token: str | None, kb: str = DEFAULT_KB) -> None:
        from urllib.parse import urlparse

        self.url = url.rstrip("/")
        # The knowledge base asked (sent as ``?kb=`` unless it is the default).
        self.name = kb
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
        path = self._with_kb(path)
        conn = self._connect(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn.getresponse()
        except OSError as exc:
            conn.close()
            raise StoreError(f"the ragdb server at {self.url} failed: {exc}") from None

    def _with_kb(self, path: str) -> str:
        """``path`` naming this client's knowledge base, unless it names one."""
        from urllib.parse import parse_qs, urlencode

        query = path.partition("?")[2]
        if self.name == DEFAULT_KB or not path.startswith("/v1/") or "kb" in parse_qs(query):
            return path
        return path + ("&" if query else "?") + urlencode({"kb": self.name})

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

    def status(self) -> Status:
        """The store's status (the service's own state aside)."""
        from ragdb.reports import Status

        return Status.from_dict(self._json("GET", "/v1/status"))

    def sources(self) -> list[SourceInfo]:
        """Every stored source, by name."""
        from ragdb.store.records import SourceInfo

        out: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", f"/v1/sources?offset={len(out)}&limit=1000")
            out += page["sources"]
            if len(out) >= page["total"] or not page["sources"]:
                return [SourceInfo.from_dict(item) for item in out]

    def chunks(self, source: str) -> list[ChunkRecord]:
        """A stored source's chunks with their text, in order; a
        SourceNotFoundError when ``source`` is not stored."""
        from urllib.parse import quote

        from ragdb.store.records import ChunkRecord

        found = self._json("GET", f"/v1/sources/{quote(source, safe='/')}")
        return [ChunkRecord.from_dict(c) for c in found.get("chunks", [])]

    def ask(
        self,
        question: str,
        k: int = 4,
        *,
        on_hits: Callable[[list[Hit]], None] | None = None,
        on_text: Callable[[str], None] | None = None,
        **options: Any,
    ) -> Answer:
        """The server's answer (``options`` as :meth:`KnowledgeBase.ask` takes
        them); with ``on_hits`` or ``on_text`` it streams, as in-process."""
        from ragdb.query.answer import Answer
        from ragdb.query.retrieve import Hit

        if "where" in options:
            options["where"] = list(options["where"])
        kbs = list(options.pop("kbs", None) or ())
        body = {"query": question, "k": k, **options, **({"kb": kbs} if kbs else {})}
        if on_hits is None and on_text is None:
            return Answer.from_dict(self._json("POST", "/v1/ask", body))
        for event in self._events("/v1/ask", {**body, "stream": True}):
            kind = event.get("event")
            if kind == "chunks" and on_hits is not None:
                on_hits([Hit.from_dict(h) for h in event["chunks"]])
            elif kind == "delta" and on_text is not None:
                on_text(event["text"])
            elif kind == "done":
                return Answer.from_dict(event.get("answer") or {})
            elif kind == "error":
                raise _error_from(event)
        raise StoreError(f"the ragdb server at {self.url} ended the answer's events early")

    def check(
        self,
        question: str,
        answer: str,
        k: int = 4,
        *,
        mode: str = "hybrid",
        where: Sequence[str] = (),
        kbs: Sequence[str] = (),
        ids: Sequence[str] = (),
    ) -> Answer:
        """The server's check of ``answer`` against the chunks for ``question``."""
        from ragdb.query.answer import Answer

        body: dict[str, Any] = {"question": question, "answer": answer, "k": k, "mode": mode}
        body |= {"where": list(where)} if where else {}
        body |= {"kb": list(kbs)} if kbs else {}
        body |= {"ids": list(ids)} if ids else {}
        return Answer.from_dict(self._json("POST", "/v1/check", body))

    def ingest_plan(
        self, plan: IngestPlan, *, progress: Progress | None = None, warn: Warn | None = None
    ) -> IngestReport:
        """Run ``plan`` (every file's bytes sent) as a job of the server's,
        following its events. Ctrl-C cancels the job (what was embedded before
        stays) and propagates."""
        from ragdb.ingest.inputs import Note
        from ragdb.ingest.plan import IngestReport

        job = self._json("POST", "/v1/ingest", plan.to_wire())
        try:
            for event in self._events(f"/v1/jobs/{job['id']}/events"):
                kind = event.get("event")
                if kind == "progress" and progress is not None:
                    progress(int(event["chunks_done"]), int(event["chunks_total"]))
                elif kind == "source_error" and warn is not None:
                    warn(str(event.get("message") or event.get("reason")))
                elif kind == "note" and warn is not None:
                    warn(Note(str(event.get("message"))))
                elif kind == "done":
                    return IngestReport.from_dict(_finished(event))
        except KeyboardInterrupt:
            with contextlib.suppress(RagdbError):
                self._json("DELETE", f"/v1/jobs/{job['id']}")
            raise
        raise StoreError(f"the ragdb server at {self.url} ended the ingest's events early")

    def matching_sources(self, targets: Sequence[str | Path]) -> dict[str, int]:
        """The server's sources ``targets`` name, matched here, where relative
        paths mean what the user meant."""
        from ragdb.ingest.paths import match_sources

        return match_sources(targets, {s.source: s.n_chunks for s in self.sources()})

    def remove(self, targets: Sequence[str | Path]) -> RemoveReport:
        """Remove the sources ``targets`` name (matched here, removed there by name)."""
        from ragdb.reports import RemoveReport

        doomed = list(self.matching_sources(targets))
        got = self._json("POST", "/v1/remove", {"sources": doomed})
        return RemoveReport(got["removed"], got["removed_chunks"])

    def using(self, name: str) -> Self:
        """Knowledge base ``name`` of the server's store."""
        from ragdb.config import check_kb_name

        twin = type(self)(self.url, None, check_kb_name(name))
        twin.headers = self.headers
        return twin

    def knowledge_bases(self) -> list[KnowledgeBaseInfo]:
        """The store's knowledge bases, with what each holds, by name."""
        from ragdb.reports import KnowledgeBaseInfo

        got = self._json("GET", "/v1/kbs?kb=default")
        return [KnowledgeBaseInfo.from_dict(item) for item in got["knowledge_bases"]]

    def create_kb(self, name: str) -> KnowledgeBaseInfo:
        """Make knowledge base ``name``, empty."""
        from ragdb.reports import KnowledgeBaseInfo

        return KnowledgeBaseInfo.from_dict(self._json("POST", "/v1/kbs?kb=default", {"name": name}))

    def rename_kb(self, old: str, new: str) -> None:
        """Call knowledge base ``old`` ``new``."""
        self._json("PATCH", f"/v1/kbs/{_quote(old)}?kb=default", {"name": new})

    def delete_kb(self, name: str) -> int:
        """Delete knowledge base ``name``; how many chunks it held."""
        return int(self._json("DELETE", f"/v1/kbs/{_quote(name)}?kb=default")["chunks"])

    def _events(self, path: str, body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        response = self._request("POST" if body is not None else "GET", path, body)
        if response.status >= 400:
            raise _error(response.status, response.read())
        while line := response.readline():
            text = line.decode("utf-8").rstrip("\r\n")
            if text.startswith("data: "):
                yield json.loads(text[6:])


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _finished(event: dict[str, Any]) -> dict[str, Any]:
    """A finished job's report, or the error (or Ctrl-C) it ended with."""
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
    answered = (errors.LLMError, errors.UnsupportedAnswerError)
    if isinstance(exc, answered) and isinstance(body.get("ragdb"), dict):
        from ragdb.query.answer import Answer

        exc.answer = Answer.from_dict(body["ragdb"])  # the answer so far, as in-process
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


def find_server(
    store: Path | None, url: str | None, api_key: str | None, kb: str = DEFAULT_KB
) -> RemoteKnowledgeBase | None:
    """The running server to use: ``url`` when given (an error if it does not
    answer), else the one a local store's serve.json names if it is alive."""
    if url:
        client = RemoteKnowledgeBase(url, api_key, kb)
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
    client = RemoteKnowledgeBase(str(info["url"]), token, kb)
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
    if info is None or not RemoteKnowledgeBase(str(info["url"]), None).alive():
        return None
    return str(info["url"]), int(info.get("pid") or 0)
