"""The service: ``ragdb serve``, one long-running process that keeps the model
warm and offers the knowledge base over HTTP.

Two APIs over one :class:`~ragdb.KnowledgeBase`:
- ragdb's own, JSON under ``/v1`` (status, sources, ingest, search, ask with an
  SSE stream), errors as ``application/problem+json`` carrying ragdb's error
  type and the CLI's exit code;
- an OpenAI-compatible chat model (``/v1/models``, ``/v1/chat/completions``,
  both also without ``/v1``): model ``ragdb`` answers from the knowledge base
  with its sources as OpenAI ``url_citation`` annotations, ``ragdb/llm`` passes
  straight through to the language model. Errors use OpenAI's envelope.

Safe by default: it binds loopback, wants a token (generated at first start and
kept, mode 0600, beside the store), compares it in constant time, answers 403 to
a Host it does not serve (DNS rebinding), sends no CORS headers unless asked,
reads server-side paths only under ``--allow-path`` roots, and never exposes
Chroma's own API. This module only parses, calls the library and formats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

# FastAPI reads the routes' annotations at run time: these are module-level, and
# this module is imported only by `ragdb serve` (never by `ragdb --help`).
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import Response

from ragdb.errors import (
    LLMError,
    NotAllowedError,
    NotFoundError,
    RagdbError,
    SourceNotFoundError,
    StoreError,
    UnsupportedFormatError,
    UsageError,
    http_status,
)
from ragdb.ingest.extract import unsupported_format
from ragdb.ingest.plan import IngestPlan
from ragdb.query.retrieve import Query
from ragdb.serve.batching import QueryBatcher
from ragdb.serve.jobs import Job, JobQueue
from ragdb.serve.schemas import (
    AskBody,
    ChatBody,
    ChatOptions,
    IngestBody,
    M,
    RemoveBody,
    SearchBody,
    WatchBody,
    describe,
    parse,
)
from ragdb.serve.watch import Watcher

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase
    from ragdb.query.retrieve import Hit

MODELS = ("ragdb", "ragdb/llm")
# Chat UIs send their own housekeeping prompts (titles, tags, follow-ups) to the
# chosen model: those go straight to the language model, with no retrieval.
_TASK_PROMPT = re.compile(
    r"(generate a concise, 3-5 word title|create a concise, 3-5 word title|"
    r"generate 1-3 broad tags|suggest 3-5 relevant follow-up questions|### task:)",
    re.IGNORECASE,
)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """How ``ragdb serve`` listens and whom it lets in."""

    host: str = "127.0.0.1"
    port: int = 7243
    api_key: str | None = None  # None: no token needed (loopback only)
    allowed_hosts: tuple[str, ...] = ()
    cors: tuple[str, ...] = ()
    allow_paths: tuple[Path, ...] = ()
    max_upload_bytes: int = 100 * 2**20
    allow_reset: bool = False
    watch: tuple[Path, ...] = ()
    poll: bool = False
    # Written by `serve` for the store's CLI users; removed at shutdown.
    serve_file: Path | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, no_auth: bool) -> None:
    """Refuse to listen beyond loopback without a token."""
    if no_auth and not is_loopback(host):
        raise UsageError(f"--no-auth is allowed only on a loopback address, not {host}")


def token_path(kb: KnowledgeBase) -> Path:
    """Where the generated token is kept: beside a local store, or for a Chroma
    server in the user's configuration directory."""
    settings = kb.settings
    if settings.chroma_url is None:
        return settings.store.resolve() / "serve.token"
    from platformdirs import user_config_path

    key = hashlib.sha256(str(settings.chroma_url).encode()).hexdigest()[:16]
    return user_config_path("ragdb", appauthor=False) / f"serve-{key}.token"


def load_or_make_token(path: Path) -> str:
    """The token kept at ``path``, made (mode 0600) if there is none."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "rdb-" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def _text_of(content: Any) -> str:
    """A message's content: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def citations(hits: list[Hit]) -> list[dict[str, Any]]:
    """OpenAI ``url_citation`` annotations, one per retrieved chunk."""
    out = []
    for hit in hits:
        url = (
            hit.source
            if "://" in hit.source
            else Path(hit.source).as_uri()
            if hit.source.startswith("/")
            else f"ragdb:{hit.source}"
        )
        out.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "url": url,
                    "title": f"[{hit.rank}] {hit.source} ({hit.location})",
                    "start_index": 0,
                    "end_index": 0,
                },
            }
        )
    return out


# The routes that carry documents: bounded by --max-upload-mb. Every other
# request body is bounded by MAX_REQUEST_BYTES.
UPLOAD_ROUTES = ("/v1/ingest", "/v1/documents")
MAX_REQUEST_BYTES = 2 * 2**20


def _title(status: int) -> str:
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Guard:
    """Host allow-list (DNS rebinding), API key, and a bound on every request
    body, before any route runs. Pure ASGI: responses, streams included, pass
    through untouched, and a body over its bound is refused (413) as soon as
    its length is known, never held whole beyond the bound."""

    def __init__(
        self,
        app: Any,
        hosts: frozenset[str],
        api_key: str | None,
        limit_for: Any,
        reject: Any,
    ) -> None:
        self.app, self.hosts, self.api_key = app, hosts, api_key
        self.limit_for, self.reject = limit_for, reject

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        refusal = self._refusal(path, headers)
        if refusal is None:
            receive, refusal = await self._bounded(path, headers, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, path: str, headers: dict[str, str]) -> Response | None:
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in self.hosts:
            message = f"host {host!r} is not served here (--allowed-host adds one)"
            return self.reject(path, 403, message, "forbidden")
        if path == "/healthz" or self.api_key is None:
            return None
        given = headers.get("x-api-key", "")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if hmac.compare_digest(given.encode(), self.api_key.encode()):
            return None
        message = "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key)"
        return self.reject(path, 401, message, "invalid_api_key")

    async def _bounded(
        self, path: str, headers: dict[str, str], receive: Any
    ) -> tuple[Any, Response | None]:
        """``receive`` bounded to the route's limit, or the 413 that refuses it."""
        limit, name = self.limit_for(path)
        too_large = self.reject(path, 413, f"the request body is over {name}", "too_large")
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                return receive, self.reject(path, 400, "a bad Content-Length", "bad_request")
            return receive, too_large if length > limit else None
        if "transfer-encoding" not in headers:
            return receive, None
        # A chunked body of unknown length: read it here, up to the limit, then
        # hand it on (bounded memory whatever the client sends).
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None
            body += message.get("body", b"")
            if len(body) > limit:
                return receive, too_large
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        return replayed, None


def create_app(kb: KnowledgeBase, config: ServeConfig) -> FastAPI:
    """The ASGI application serving ``kb``."""
    from ragdb.query.generate import NOT_ENOUGH, StreamState, build_prompt, stream_answer
    from ragdb.query.retrieve import DEFAULT_MODE

    jobs = JobQueue()
    batcher = QueryBatcher(kb)

    def sync(path: Path) -> Job:
        """A watched directory's reconcile: `ingest --prune DIR`, as a job. It
        reads only under the server's roots (the watched folders given at start
        are roots too), and a name stored as text or a record is skipped with a
        warning instead of stopping the folder's sync."""

        def work(job: Job) -> Any:
            roots = (*config.allow_paths, *config.watch)
            plan = kb.plan_paths([path], prune=True, roots=roots, warn=job.warn)
            plan = dataclasses.replace(plan, skip_clashes=True)
            return kb.ingest_plan(plan, progress=job.progress, warn=job.warn)

        return jobs.submit("sync", work)

    watcher = Watcher(sync)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for path in config.watch:
            watcher.add(path, config.poll)
        yield
        # SIGTERM/SIGINT: a running job stops between batches; the store stays whole.
        await run_in_threadpool(watcher.stop)
        await run_in_threadpool(jobs.stop)
        await run_in_threadpool(batcher.stop)
        # Here, not after uvicorn returns: it re-raises SIGTERM/SIGINT once it has
        # shut down, and the process ends with the signal.
        if config.serve_file is not None:
            config.serve_file.unlink(missing_ok=True)

    app = FastAPI(title="ragdb", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.jobs = jobs

    def openai_route(path: str) -> bool:
        return path.rstrip("/").endswith(("/models", "/chat/completions"))

    def error(
        path: str,
        status: int,
        message: str,
        kind: str,
        extra: Any = None,
        exit_code: int | None = None,
    ) -> Response:
        """An error in the shape the caller's API uses: OpenAI's envelope on its
        routes, a problem document (with the CLI's exit code) on ragdb's."""
        body: dict[str, Any]
        if openai_route(path):
            body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
            media = "application/json"
        else:
            body = {"type": kind, "title": _title(status), "status": status, "detail": message}
            if exit_code is not None:
                body["exit_code"] = exit_code
            media = "application/problem+json"
        if extra is not None:
            body["ragdb"] = extra
        headers = {"Retry-After": "2"} if status == 503 else None
        return JSONResponse(body, status_code=status, media_type=media, headers=headers)

    def ragdb_error(path: str, exc: RagdbError, extra: Any = None) -> Response:
        kind = type(exc).__name__
        if openai_route(path) and isinstance(exc, UsageError):
            kind = "invalid_request_error"
        return error(path, http_status(exc), str(exc), kind, extra, exc.exit_code)

    def limit_for(path: str) -> tuple[int, str]:
        """A route's bound on its request body, and what the 413 calls it."""
        if path in UPLOAD_ROUTES:
            return config.max_upload_bytes, f"--max-upload-mb {config.max_upload_bytes // 2**20}"
        return MAX_REQUEST_BYTES, f"its limit of {MAX_REQUEST_BYTES // 2**20} MB"

    app.add_middleware(
        Guard,
        hosts=frozenset(h.lower() for h in (*LOOPBACK, config.host, *config.allowed_hosts)),
        api_key=config.api_key,
        limit_for=limit_for,
        reject=error,
    )

    if config.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "x-api-key", "content-type"],
        )

    @app.exception_handler(RagdbError)
    async def on_ragdb_error(request: Request, exc: RagdbError) -> Response:
        return ragdb_error(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        # A bad query or path parameter: ragdb's 400, not FastAPI's own 422 body.
        return ragdb_error(request.url.path, UsageError(describe(exc.errors())))

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise UsageError("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise UsageError("the request body must be a JSON object")
        return data

    async def parsed(request: Request, model: type[M]) -> M:
        return parse(model, await body_of(request))

    # -- ragdb's own API ----------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return {
            **(await run_in_threadpool(kb.status)).to_dict(),
            # What `ragdb status --json` does not have: the service's own state.
            "service": {
                "queue": jobs.pending(),
                "running": [j.id for j in jobs.all() if j.state == "running"],
                "watches": [w.to_dict() for w in watcher.all()],
                "retrieval_batches": batcher.batches,
                "retrieval_queries": batcher.queries,
            },
        }

    @app.get("/v1/sources")
    async def sources(prefix: str = "", offset: int = 0, limit: int = 100) -> dict[str, Any]:
        found = [s for s in await run_in_threadpool(kb.sources) if s.source.startswith(prefix)]
        page = found[max(0, offset) : max(0, offset) + max(1, min(limit, 1000))]
        return {"sources": [s.to_dict() for s in page], "total": len(found), "offset": offset}

    @app.get("/v1/sources/{source:path}")
    async def source(source: str) -> dict[str, Any]:
        chunks = await run_in_threadpool(kb.chunks, source)
        return {"source": source, "chunks": [c.to_dict() for c in chunks]}

    async def write(kind: str, work: Any) -> Any:
        """Run a short write through the job queue (every write goes through it,
        one at a time) and wait for it; its error is the request's."""
        job = jobs.submit(kind, lambda job: work())
        await run_in_threadpool(_wait_for, job)
        if job.state != "succeeded":
            raise job.exception()
        return job.report

    def removed(report: Any) -> dict[str, Any]:
        return {
            "removed_sources": len(report["removed"]),
            "removed_chunks": report["chunks_removed"],
            "removed": report["removed"],
        }

    async def remove_exactly(names: list[str]) -> dict[str, Any]:
        """Remove the sources of exactly these names (a 404 names the first
        unknown one), never a path's, directory's or pattern's matches."""

        def work() -> Any:
            known = {s.source for s in kb.sources()}
            missing = [n for n in names if n not in known]
            if missing:
                raise SourceNotFoundError(f"not in the knowledge base: {missing[0]}")
            return kb.remove(names)

        return removed(await write("remove", work))

    @app.delete("/v1/sources/{source:path}")
    async def delete_source(source: str) -> dict[str, Any]:
        return await remove_exactly([source])

    @app.post("/v1/remove")
    async def remove(request: Request) -> dict[str, Any]:
        body = await parsed(request, RemoveBody)
        return await remove_exactly(body.sources)

    @app.post("/v1/reset")
    async def reset() -> dict[str, Any]:
        if not config.allow_reset:
            raise NotAllowedError("reset over HTTP is off: start the server with --allow-reset")
        report = await write("reset", lambda: {"chunks": kb.reset()})
        return {"removed_chunks": report["chunks"]}

    async def answer_job(request: Request, job: Job) -> Response:
        """202 with the job, or with ?wait=true the finished report."""
        if request.query_params.get("wait") in ("1", "true", "yes"):
            await run_in_threadpool(_wait_for, job)
            if job.state == "succeeded":
                return JSONResponse(job.report)
            status = 409 if job.state == "cancelled" else 500
            return error(
                request.url.path,
                status,
                job.error or f"the job was {job.state}",
                "JobFailed",
                job.to_dict(),
            )
        return JSONResponse(
            job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
        )

    @app.post("/v1/ingest")
    async def ingest(request: Request) -> Response:
        # Its size is bounded by --max-upload-mb in the Guard, before it is read.
        data = await body_of(request)
        # Plans are made before queuing, so that bad input is this request's 400,
        # and off the event loop (decoding uploads, walking directories).
        plans = await run_in_threadpool(ingest_plans, data)
        for plan in plans:
            await run_in_threadpool(kb.check_plan, plan)

        def work(job: Job) -> Any:
            reports = [
                kb.ingest_plan(plan, progress=job.progress, warn=job.warn).to_dict()
                for plan in plans
            ]
            return _merge(reports)

        return await answer_job(request, jobs.submit("ingest", work))

    def ingest_plans(data: dict[str, Any]) -> list[IngestPlan]:
        """The ingest plans a POST /v1/ingest body asks for."""
        if "inputs" in data:
            # A plan made where the files are (the CLI's own ingest, sent here).
            return [IngestPlan.from_wire(data)]
        body = parse(IngestBody, data)
        if not (body.texts or body.paths):
            raise UsageError('give "texts": [{"name", "text"}], "paths": [...] or "inputs"')
        # A text never silently replaces a stored file or record of its name.
        plans = [
            kb.plan_text(t.name, t.text, replace=bool(body.replace), metadata=t.metadata)
            for t in body.texts or []
        ]
        if body.paths:
            allowed = [_allowed(p, config.allow_paths) for p in body.paths]
            plan = kb.plan_paths(allowed, prune=bool(body.prune), roots=config.allow_paths)
            plans.append(plan.select(body.include or (), body.exclude or ()))
        return plans

    @app.post("/v1/documents")
    async def upload(request: Request) -> Response:
        form = await request.form(max_part_size=config.max_upload_bytes)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UsageError('send the document as the multipart field "file"')
        data = await upload.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            return error(
                request.url.path,
                413,
                f"the upload is over --max-upload-mb {config.max_upload_bytes // 2**20}",
                "too_large",
            )
        name = str(form.get("name") or upload.filename or "").strip()
        if not name:
            raise UsageError('give the document a "name" (or a file name)')
        try:
            metadata = json.loads(str(form.get("metadata") or "{}"))
        except ValueError:
            raise UsageError('"metadata" must be a JSON object') from None
        if not isinstance(metadata, dict):
            raise UsageError('"metadata" must be a JSON object')
        why = unsupported_format(name, data)
        if why is not None:
            raise UnsupportedFormatError(f"{name}: {why}")
        replace = str(form.get("replace") or "").lower() in ("1", "true", "yes")
        plan = kb.plan_text(name, data, replace=replace, metadata=metadata)
        await run_in_threadpool(kb.check_plan, plan)

        def work(job: Job) -> Any:
            return kb.ingest_plan(plan, progress=job.progress, warn=job.warn)

        return await answer_job(request, jobs.submit("ingest", work))

    @app.get("/v1/watches")
    async def watches() -> dict[str, Any]:
        return {"watches": [w.to_dict() for w in watcher.all()]}

    @app.post("/v1/watches")
    async def add_watch(request: Request) -> Response:
        body = await parsed(request, WatchBody)
        path = _allowed(body.path, config.allow_paths)
        watch = await run_in_threadpool(watcher.add, Path(path), bool(body.poll))
        return JSONResponse(watch.to_dict(), status_code=201)

    @app.delete("/v1/watches")
    async def remove_watch(path: str) -> dict[str, Any]:
        watch = await run_in_threadpool(watcher.remove, Path(path))
        if watch is None:
            raise NotFoundError(f"{path} is not watched")
        return watch.to_dict()

    @app.get("/v1/jobs")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": [j.to_dict() for j in jobs.all()]}

    def job_or_404(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return job_or_404(job_id).to_dict()

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        jobs.cancel(job_id)
        return job.to_dict()

    @app.get("/v1/jobs/{job_id}/events")
    async def job_events(job_id: str) -> Response:
        job = job_or_404(job_id)
        return StreamingResponse(
            iterate_in_threadpool(_sse(e) for e in job.events()), media_type="text/event-stream"
        )

    @app.post("/v1/search")
    async def search(request: Request) -> Response:
        body = await parsed(request, SearchBody)
        question = body.query or ""
        k, mode = body.k or 4, body.mode or DEFAULT_MODE
        retrieval = await batcher.retrieve(Query(question, k, mode, body.source))
        hits = retrieval.hits
        if body.min_score is not None:
            hits = [h for h in hits if h.score >= body.min_score]
        # A JSONResponse of plain data: FastAPI's own encoder would walk it again.
        return JSONResponse(
            {"query": question, "chunks": [h.to_dict() for h in hits], "timings": retrieval.timings}
        )

    @app.post("/v1/ask")
    async def ask(request: Request) -> Response:
        body = await parsed(request, AskBody)
        question = body.query or body.question or ""
        options: dict[str, Any] = {
            "mode": body.mode or DEFAULT_MODE,
            "min_score": body.min_score,
            "retrieve_only": bool(body.retrieve_only),
            "show_thinking": bool(body.show_thinking),
        }
        if body.context_tokens:
            options["context_tokens"] = body.context_tokens
        k = body.k or 4
        options["retrieval"] = await batcher.retrieve(Query(question, k, options["mode"]))
        if not body.stream:
            try:
                answer = await run_in_threadpool(lambda: kb.ask(question, k, **options))
            except LLMError as exc:
                extra = exc.answer.to_dict() if exc.answer is not None else None
                return ragdb_error(request.url.path, exc, extra)
            return JSONResponse(answer.to_dict())
        return StreamingResponse(
            iterate_in_threadpool(_ask_events(kb, question, k, options)),
            media_type="text/event-stream",
        )

    # -- the OpenAI-compatible model ----------------------------------------------------------
    @app.get("/v1/models")
    @app.get("/models")
    async def models() -> dict[str, Any]:
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": now, "owned_by": "ragdb"} for m in MODELS
            ],
        }

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat(request: Request) -> Response:
        path = request.url.path
        data = await parsed(request, ChatBody)
        model = data.model or "ragdb"
        if model not in MODELS:
            return error(
                path,
                404,
                f"the model {model!r} does not exist: use {' or '.join(MODELS)}",
                "invalid_request_error",
            )
        turns = [
            {"role": str(m.get("role") or "user"), "content": _text_of(m.get("content"))}
            for m in data.messages
        ]
        users = [t for t in turns if t["role"] == "user"]
        if not users or not users[-1]["content"].strip():
            return error(path, 400, "there is no user message to answer", "invalid_request_error")
        question = users[-1]["content"]
        options = data.ragdb or ChatOptions()
        k, mode = options.k or 4, options.mode or DEFAULT_MODE
        min_score = options.min_score
        stream = bool(data.stream)
        usage_wanted = bool(data.stream_options and data.stream_options.include_usage)
        # The client's own bound on the answer, within the server's --max-tokens.
        asked = data.max_completion_tokens or data.max_tokens
        max_tokens = min(asked, kb.settings.llm_max_tokens) if asked else None

        def usage(messages: list[dict[str, str]], answer: str) -> dict[str, int]:
            # Counted with the embedding model's tokenizer: the language model's
            # stream does not report its own counts.
            prompt = sum(kb.count_tokens(m["content"]) for m in messages)
            completion = kb.count_tokens(answer)
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }

        passthrough = model == "ragdb/llm" or bool(_TASK_PROMPT.search(question))
        hits: list[Hit] = []
        if passthrough:
            llm_messages = turns
        else:
            try:
                retrieval = await batcher.retrieve(Query(question, k, mode))
            except RagdbError as exc:
                return ragdb_error(path, exc)
            hits = retrieval.hits
            usable = [h for h in hits if min_score is None or h.score >= min_score]
            if not usable:
                spent = usage([{"content": question}], NOT_ENOUGH)
                return _completion(model, NOT_ENOUGH, [], hits, stream, spent, usage_wanted)
            prompt = build_prompt(question, usable, 1500, kb.count_tokens)
            history = [
                t
                for t in turns[: len(turns) - 1 - turns[::-1].index(users[-1])]
                if t["role"] != "system"
            ]
            llm_messages = [prompt.messages[0], *history, prompt.messages[1]]
            hits = prompt.used
        state = StreamState()
        pieces = stream_answer(kb.settings, llm_messages, state=state, max_tokens=max_tokens)
        extra = {"chunks": [h.to_dict() for h in hits]}
        # The first piece decides between an answer and an error status.
        try:
            first = await run_in_threadpool(next, pieces, "")
        except LLMError as exc:
            return ragdb_error(path, exc, extra)
        if not stream:
            try:
                rest = await run_in_threadpool(lambda: "".join(pieces))
            except LLMError as exc:
                return ragdb_error(path, exc, extra)
            text = (first + rest).strip()
            return _completion(
                model,
                text,
                citations(hits),
                hits,
                False,
                usage(llm_messages, text),
                reason="length" if state.reason == "max_tokens" else "stop",
            )

        def chunks() -> Iterator[str]:
            cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

            def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
                return _sse(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                )

            yield chunk({"role": "assistant", "content": first})
            text = first
            try:
                for piece in pieces:
                    text += piece
                    yield chunk({"content": piece})
            except LLMError as exc:
                yield _sse(
                    {"error": {"message": str(exc), "type": "LLMError", "param": None, "code": 502}}
                )
                yield "data: [DONE]\n\n"
                return
            if hits:
                yield chunk({"annotations": citations(hits)})
            yield chunk({}, "length" if state.reason == "max_tokens" else "stop")
            if usage_wanted:
                yield _sse(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage(llm_messages, text),
                    }
                )
            yield "data: [DONE]\n\n"

        return StreamingResponse(iterate_in_threadpool(chunks()), media_type="text/event-stream")

    return app


def _ask_events(kb: KnowledgeBase, question: str, k: int, options: dict[str, Any]) -> Iterator[str]:
    """``kb.ask`` as SSE events: ``chunks`` (what was retrieved), ``delta``s of the
    answer, then ``done`` with the whole answer object, or ``error``."""
    import queue
    import threading

    events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def run() -> None:
        try:
            answer = kb.ask(
                question,
                k,
                on_hits=lambda hits: events.put(
                    {"event": "chunks", "chunks": [h.to_dict() for h in hits]}
                ),
                on_text=lambda text: events.put({"event": "delta", "text": text}),
                **options,
            )
            events.put(
                {
                    "event": "done",
                    "enough_context": answer.enough_context,
                    "model": answer.model,
                    "truncated": answer.truncated,
                    "citations": [
                        {"rank": h.rank, "source": h.source, "location": h.location}
                        for h in answer.hits
                    ],
                    "answer": answer.to_dict(),
                }
            )
        except RagdbError as exc:
            event: dict[str, Any] = {
                "event": "error",
                "type": type(exc).__name__,
                "message": str(exc),
                "exit_code": exc.exit_code,
            }
            if isinstance(exc, LLMError) and exc.answer is not None:
                event["ragdb"] = exc.answer.to_dict()
            events.put(event)
        finally:
            events.put(None)

    threading.Thread(target=run, name="ragdb-ask", daemon=True).start()
    while (event := events.get()) is not None:
        yield _sse(event)


def _wait_for(job: Job) -> None:
    for event in job.events():
        if event["event"] == "done":
            return


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Ingest reports added up: counters summed, lists joined."""
    total: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if isinstance(value, list):
                total[key] = [*total.get(key, []), *value]
            elif isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return total


def _allowed(path: str, roots: tuple[Path, ...]) -> str:
    """``path`` (symlinks resolved) when it lies under one of ``roots``."""
    from ragdb.errors import InputError
    from ragdb.ingest.inputs import under_roots

    if not under_roots(path, roots):
        raise InputError(f"{path} is not under an --allow-path root of this server")
    return os.path.realpath(path)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _completion(
    model: str,
    text: str,
    annotations: list[dict[str, Any]],
    hits: list[Hit],
    stream: bool,
    usage: dict[str, int],
    usage_wanted: bool = False,
    reason: str = "stop",
) -> Response:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if stream:

        async def events() -> AsyncIterator[str]:
            base = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
            yield _sse(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": text},
                            "finish_reason": None,
                        }
                    ],
                }
            )
            yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
            if usage_wanted:
                yield _sse({**base, "choices": [], "usage": usage})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    body = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "annotations": annotations},
                "finish_reason": reason,
            }
        ],
        "usage": usage,
        "ragdb": {"chunks": [h.to_dict() for h in hits]},
    }
    return JSONResponse(body)


def bind(host: str, port: int) -> Any:
    """The listening socket, bound before anything is printed: a busy port is a
    one-line error, not a server that announces itself and dies."""
    import socket

    from ragdb.errors import AddressInUseError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"port {port} on {host} is in use: stop what listens there, or choose "
                "another with --port"
            ) from None
        raise AddressInUseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_not_served(kb: KnowledgeBase) -> None:
    """Refuse to serve a local store that another live ``ragdb serve`` serves
    (its serve.json would be overwritten, and its CLI users sent here)."""
    from ragdb.remote import running_server

    if kb.settings.chroma_url is not None:
        return
    other = running_server(kb.settings.store.resolve())
    if other is not None:
        url, pid = other
        raise StoreError(
            f"another ragdb serve (pid {pid}) already serves this store at {url}: "
            "stop it first, or use that one"
        )


def serve(kb: KnowledgeBase, config: ServeConfig, token_file: Path | None) -> None:
    """Load the model, then serve until SIGINT/SIGTERM (uvicorn stops cleanly:
    requests in flight finish, and every write is a whole session)."""
    import uvicorn

    kb.store()
    check_not_served(kb)
    sock = bind(config.host, config.port)
    kb.embedder.load()  # warm before the first request, not during it
    url = f"http://{config.host if ':' not in config.host else f'[{config.host}]'}:{config.port}"
    where = f"in {token_file}" if token_file else "given by --api-key / RAGDB_API_KEY"
    lines = [f"ragdb: serving {kb.store().location} at {url}"]
    if config.api_key is None:
        lines.append("ragdb: no API key needed (--no-auth, loopback only)")
    else:
        lines.append(f"ragdb: API key {where}")
    lines.append(
        f"ragdb: OpenAI-compatible settings: base URL {url}/v1, model ragdb, API key "
        + ("any" if config.api_key is None else f"$(cat {token_file})" if token_file else "yours")
    )
    print("\n".join(lines), file=sys.stderr, flush=True)
    serve_file = None
    if kb.settings.chroma_url is None:
        from ragdb.remote import write_serve_file

        # The store's CLI users find this server here (removed on the way out).
        reach = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(config.host)
        local_url = f"http://{reach}:{config.port}" if reach else url
        serve_file = write_serve_file(
            kb.settings.store.resolve(),
            local_url,
            token_file,
            needs_key=config.api_key is not None and token_file is None,
        )
    config = dataclasses.replace(config, serve_file=serve_file)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(kb, config),
            log_level="warning",
            access_log=False,
            # Open streams (a job's events, an answer) get this long at SIGTERM.
            timeout_graceful_shutdown=5,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if serve_file is not None:
            serve_file.unlink(missing_ok=True)
