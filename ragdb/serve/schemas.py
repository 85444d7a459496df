"""The request bodies ``ragdb serve`` accepts, as pydantic models.

A body that does not fit is the request's :class:`~ragdb.errors.UsageError`
(HTTP 400, exit code 2) naming the field, never a 500. Unknown fields are
ignored, and ``null`` stands for "the default" wherever it did before.
Imported only by the service (pydantic comes with FastAPI).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragdb.errors import UsageError

# History a chat request may carry: enough for any conversation a person has,
# not enough to make one request cost the service gigabytes.
MAX_MESSAGES = 500

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A JSON object; fields it does not know are ignored."""

    model_config = ConfigDict(extra="ignore")


class SearchBody(Body):
    """``POST /v1/search``."""

    query: str | None = None
    k: int | None = None
    mode: str | None = None
    source: str | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)


class AskBody(SearchBody):
    """``POST /v1/ask``."""

    question: str | None = None
    retrieve_only: bool | None = None
    show_thinking: bool | None = None
    context_tokens: int | None = Field(default=None, ge=16)
    stream: bool | None = None


class ChatOptions(Body):
    """The ``ragdb`` object of a chat request: how to retrieve."""

    k: int | None = None
    mode: str | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)


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
    """``POST /v1/ingest`` with texts and server-side paths (a CLI's own plan,
    with ``inputs``, is read by :meth:`ragdb.ingest.IngestPlan.from_wire`)."""

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
    replace: bool | None = Field(
        default=None, description="replace a stored file or record of a text's name"
    )


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
