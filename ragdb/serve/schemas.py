"""The request bodies ``ragdb serve`` accepts, as pydantic models.

A body that does not fit is the request's :class:`~ragdb.errors.UsageError`
(HTTP 400, exit code 2) naming the field, never a 500. Unknown fields are
ignored, and ``null`` stands for "the default" wherever it did before.
Imported only by the service (pydantic comes with FastAPI).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragdb.errors import UsageError

# History a chat request may carry: enough for any conversation a person has,
# not enough to make one request cost the service gigabytes.
MAX_MESSAGES = 500

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A JSON object; fields it does not know are ignored."""

    model_config = ConfigDict(extra="ignore")


WHERE = (
    "filters, all of which a chunk must meet: 'tag=ml', 'year>=2020', 'type in pdf,docx', "
    "'source~notes/**' (see ragdb.query.filters)"
)


class SearchBody(Body):
    """``POST /v1/search``."""

    query: str | None = None
    k: int | None = Field(default=None, ge=1, le=1000)
    mode: str | None = None
    source: str | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    where: list[str] | None = Field(default=None, max_length=50, description=WHERE)
    kb: str | list[str] | None = Field(
        default=None,
        description="the knowledge base(s) to search, fused into one ranking ('*': every "
        "one); the server's own (or ?kb=) when absent",
    )

    def kbs(self) -> tuple[str, ...]:
        """The knowledge bases asked for (none: the request's own)."""
        if self.kb is None:
            return ()
        return (self.kb,) if isinstance(self.kb, str) else tuple(self.kb)


class AskBody(SearchBody):
    """``POST /v1/ask``."""

    question: str | None = None
    retrieve_only: bool | None = None
    show_thinking: bool | None = None
    context_tokens: int | None = Field(default=None, ge=16)
    stream: bool | None = None
    require_support: bool | None = Field(
        default=None,
        description="an answer with a sentence the chunks do not back is a 422 carrying it",
    )


class CheckBody(SearchBody):
    """``POST /v1/check``: an answer written elsewhere, checked."""

    question: str | None = None
    answer: str = Field(min_length=1, max_length=100_000)
    ids: list[str] | None = Field(
        default=None, max_length=1000, description="check against these chunks, in this order"
    )


class ChatOptions(Body):
    """The ``ragdb`` object of a chat request: how to retrieve."""

    k: int | None = Field(default=None, ge=1, le=1000)
    mode: str | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    sources: Literal["annotations", "openwebui"] | None = Field(
        default=None,
        description="how sources are sent: annotations (OpenAI's), or Open WebUI's events",
    )
    where: list[str] | None = Field(default=None, max_length=50, description=WHERE)


class StreamOptions(Body):
    """OpenAI's ``stream_options``."""

    include_usage: bool | None = None


class ChatBody(Body):
    """``POST /v1/chat/completions`` (OpenAI's shape; what ragdb reads of it)."""

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    ragdb: ChatOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class RemoveBody(Body):
    """``POST /v1/remove``."""

    sources: list[str] = Field(min_length=1)


class KbBody(Body):
    """``POST /v1/kbs`` and ``PATCH /v1/kbs/{name}``: the (new) name."""

    name: str = Field(min_length=1, max_length=64)


class WatchBody(Body):
    """``POST /v1/watches``."""

    path: str
    poll: bool | None = None


class TextItem(Body):
    """One text of ``POST /v1/ingest``."""

    name: str = Field(min_length=1)
    text: str
    metadata: dict[str, str | int | float | bool] | None = None


class IngestBody(Body):
    """``POST /v1/ingest``: texts and server-side paths, or a CLI's own plan
    (``inputs``, read by :meth:`ragdb.ingest.plan.IngestPlan.from_wire`)."""

    texts: list[TextItem] | None = Field(
        default=None, description='texts to store: [{"name", "text", "metadata"}]'
    )
    paths: list[str] | None = Field(
        default=None, description="files, folders or glob patterns under --allow-path roots"
    )
    include: list[str] | None = Field(
        default=None, description="a list of glob patterns: only files that match one"
    )
    exclude: list[str] | None = Field(
        default=None, description="a list of glob patterns: no file that matches one"
    )
    prune: bool | None = Field(default=None, description="also remove what left the folders")
    ocr: Literal["on", "images", "off"] | None = Field(
        default=None, description="what OCR reads of the paths: images and scanned PDF pages"
    )
    urls: list[str] | None = Field(
        default=None, description="web pages to fetch (http or https; in paths too)"
    )
    depth: int | None = Field(
        default=None, ge=0, le=20, description="links a crawl follows from each URL (0: none)"
    )
    max_pages: int | None = Field(default=None, ge=1, le=10_000, description="pages per crawl")
    delay: float | None = Field(
        default=None, ge=0, le=600, description="seconds between a crawl's requests"
    )
    replace: bool | None = Field(
        default=None, description="replace a stored file or record of a text's name"
    )
    # A plan a CLI made where its files are (IngestPlan.to_wire), instead of the above.
    inputs: list[dict[str, Any]] | None = Field(
        default=None, description="a CLI's ingest plan: inputs with their contents (base64)"
    )
    prune_dirs: list[str] | None = None
    prune_patterns: list[str] | None = None
    prune_records: bool | None = None
    pages: list[dict[str, Any]] | None = None
    prune_pages: bool | None = None


def parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or a one-line :class:`UsageError` naming the field
    (and what it should be, where the model says)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UsageError(describe(exc.errors(), model)) from None


def describe(errors: Any, model: type[BaseModel] | None = None) -> str:
    """The first validation error as one line: where, and what was wrong."""
    if not errors:
        return "the request is not valid"
    first = errors[0]
    loc = [p for p in first.get("loc", ()) if p not in ("body",)]
    where = ".".join(str(p) for p in loc)
    message = str(first.get("msg") or "is not valid")
    field = model.model_fields.get(str(loc[0])) if model is not None and loc else None
    if field is not None and field.description:
        message += f" ({field.description})"
    return f'"{where}": {message}' if where else message


# -- what the routes answer, for the published OpenAPI schema ---------------------------------
class ProblemDoc(BaseModel):
    """An error on ragdb's routes (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    exit_code: int | None = None
    ragdb: Any = None


class OpenAIErrorDoc(BaseModel):
    """An error on the OpenAI-compatible routes (OpenAI's envelope)."""

    error: dict[str, Any]
    ragdb: Any = None


_ERROR_CODES = (400, 401, 403, 404, 409, 413, 415, 500, 502, 503, 504, 507)


def errors_doc(openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers a router documents, in the envelope its routes use."""
    media, model = (
        ("application/json", OpenAIErrorDoc) if openai else ("application/problem+json", ProblemDoc)
    )
    schema = model.model_json_schema()
    return {
        code: {"description": "an error", "content": {media: {"schema": schema}}}
        for code in _ERROR_CODES
    }


# A route that answers JSON, or with "stream": true server-sent events.
STREAM_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the answer, or its events",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}
EVENTS: dict[int | str, dict[str, Any]] = {
    200: {"description": "server-sent events", "content": {"text/event-stream": {}}}
}
# An ingest: 202 with the job, or with ?wait=true the finished report.
JOB_OR_REPORT: dict[int | str, dict[str, Any]] = {
    200: {"description": "with ?wait=true: the finished report"},
    202: {"description": "the job, queued (Location: /v1/jobs/{id})"},
}
