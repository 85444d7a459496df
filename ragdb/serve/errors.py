"""One place that renders every error the service answers: a problem document
(``application/problem+json``, with ragdb's error type and the CLI's exit code)
on ragdb's routes, OpenAI's envelope on the OpenAI-compatible ones. Handlers
only raise; the envelope is chosen by the route that matched (its ``openai``
tag), or for the guard, which runs before routing, by the path.
"""

from __future__ import annotations

import http
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ragdb.errors import InputError, NotFoundError, RagdbError, UsageError, http_status
from ragdb.serve.schemas import describe

OPENAI_TAG = "openai"


class Problem(RagdbError):
    """An answer that is not one of ragdb's own errors (a job that failed or
    was cancelled, an upload part over its bound): its status and type."""

    def __init__(self, status: int, message: str, kind: str, extra: Any = None) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind
        self.extra = extra


def openai_path(path: str) -> bool:
    """Whether ``path`` is one of the OpenAI-compatible routes (for the guard)."""
    return path.rstrip("/").endswith(("/models", "/chat/completions"))


def is_openai(request: Request) -> bool:
    route = request.scope.get("route")
    if route is not None:
        return OPENAI_TAG in (getattr(route, "tags", None) or [])
    return openai_path(request.url.path)


def render(
    openai: bool,
    status: int,
    message: str,
    kind: str,
    extra: Any = None,
    exit_code: int | None = None,
) -> Response:
    """An error in the shape the caller's API uses."""
    body: dict[str, Any]
    if openai:
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


def reject(path: str, status: int, message: str, kind: str) -> Response:
    """The guard's refusals (before any route matched)."""
    return render(openai_path(path), status, message, kind)


def ragdb_error(openai: bool, exc: RagdbError) -> Response:
    """``exc`` answered: its status from the one table in :mod:`ragdb.errors`;
    an LLM failure carries the chunks retrieved, a problem its own extra."""
    if isinstance(exc, Problem):
        return render(openai, exc.status, str(exc), exc.kind, exc.extra)
    kind = type(exc).__name__
    if openai and isinstance(exc, (UsageError, InputError)):
        kind = "invalid_request_error"
    extra = exc.extra
    answer = getattr(exc, "answer", None)  # an LLMError's, an UnsupportedAnswerError's
    if extra is None and answer is not None:
        extra = answer.to_dict()
    return render(openai, http_status(exc), str(exc), kind, extra, exc.exit_code)


def install(app: FastAPI) -> None:
    """Register the handlers that turn raised errors into answers."""

    async def on_ragdb_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RagdbError)
        return ragdb_error(is_openai(request), exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        # A bad body or parameter: ragdb's 400, not FastAPI's own 422 body.
        assert isinstance(exc, RequestValidationError)
        message = describe(exc.errors(), _body_model(request))
        return ragdb_error(is_openai(request), UsageError(message))

    async def on_http(request: Request, exc: Exception) -> Response:
        # Starlette's own answers (no route matches: a name with a newline, an
        # unknown URL; a method not allowed) in ragdb's envelope too.
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        if status == 404:
            message = f"nothing is served at {request.url.path!r}"
            return ragdb_error(is_openai(request), NotFoundError(message))
        return render(is_openai(request), status, str(exc.detail), _title(status).replace(" ", ""))

    async def on_bug(request: Request, exc: Exception) -> Response:
        # A bug: logged with its traceback, answered in the caller's envelope.
        import logging

        logging.getLogger("ragdb.serve").error("unexpected error", exc_info=exc)
        message = f"ragdb failed unexpectedly ({type(exc).__name__}); the server's log has details"
        return render(is_openai(request), 500, message, "InternalError")

    app.add_exception_handler(RagdbError, on_ragdb_error)
    app.add_exception_handler(Exception, on_bug)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)


def _body_model(request: Request) -> Any:
    """The pydantic model of the matched route's body (for field descriptions)."""
    route = request.scope.get("route")
    params = getattr(getattr(route, "dependant", None), "body_params", None) or []
    if not params:
        return None
    annotation = getattr(getattr(params[0], "field_info", None), "annotation", None)
    return annotation if isinstance(annotation, type) else None


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
