"""The OpenAI-compatible chat model: ``GET /models`` and ``POST
/chat/completions``, with and without ``/v1``. Model ``ragdb`` answers from
the knowledge base with its sources, one per chunk (see
:mod:`ragdb.serve.citations`: ``url_citation`` annotations, or Open WebUI's
source events), and the chunks in a ``ragdb`` field (the last chunk of a
stream); ``ragdb/llm`` passes straight through to the language model. Errors
use OpenAI's envelope (the routes' ``openai`` tag tells
:mod:`ragdb.serve.errors` so).
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ragdb.errors import LLMError, NotFoundError, UsageError
from ragdb.query.filters import Filter
from ragdb.query.generate import NOT_ENOUGH, StreamState, build_prompt, stream_answer
from ragdb.query.retrieve import DEFAULT_MODE, Query
from ragdb.query.support import Support, check_support
from ragdb.serve import citations
from ragdb.serve.deps import Service, ServiceDep
from ragdb.serve.errors import OPENAI_TAG
from ragdb.serve.schemas import STREAM_OR_JSON, ChatBody, ChatOptions, errors_doc
from ragdb.serve.sse import DONE, ChunkStream, sse, sse_response

if TYPE_CHECKING:
    from ragdb.query.retrieve import Hit

router = APIRouter(tags=[OPENAI_TAG], responses=errors_doc(openai=True))

MODELS = ("ragdb", "ragdb/llm")
# Chat UIs send their own housekeeping prompts (titles, tags, follow-ups) to the
# chosen model: those go straight to the language model, with no retrieval.
TASK_PROMPT = re.compile(
    r"(generate a concise, 3-5 word title|create a concise, 3-5 word title|"
    r"generate 1-3 broad tags|suggest 3-5 relevant follow-up questions|### task:)",
    re.IGNORECASE,
)


@router.get("/models")
async def models(service: ServiceDep) -> dict[str, Any]:
    """The models this server offers: ``ragdb`` (every knowledge base),
    ``ragdb/<kb>`` for each knowledge base, and ``ragdb/llm`` (no retrieval)."""
    now = int(time.time())
    names = await run_in_threadpool(_model_names, service)
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": now, "owned_by": "ragdb"} for m in names],
    }


def _model_names(service: Service) -> list[str]:
    kbs = service.kb.kb_names()
    return ["ragdb", *(f"ragdb/{kb}" for kb in kbs if f"ragdb/{kb}" not in MODELS), "ragdb/llm"]


def _kbs_of(service: Service, model: str) -> tuple[str, ...]:
    """The knowledge bases model ``model`` answers from (404 for no such model)."""
    if model == "ragdb":
        return ("*",)
    if model != "ragdb/llm" and model in _model_names(service):
        return (model.removeprefix("ragdb/"),)
    if model == "ragdb/llm":
        return ()
    raise NotFoundError(
        f"the model {model!r} does not exist: use ragdb, ragdb/<knowledge base> or ragdb/llm "
        "(GET /v1/models lists them)"
    )


@dataclasses.dataclass
class Turn:
    """What a chat request asks, read: the model, the question, the messages
    for the language model, the chunks they use, and how to answer."""

    model: str
    question: str
    messages: list[dict[str, str]]
    hits: list[Hit]
    stream: bool
    usage_wanted: bool
    max_tokens: int | None
    # Nothing retrieved reaches min_score: "not enough information", no model.
    abstain: bool = False
    # How sources are shown: "annotations" (OpenAI's) or "openwebui" (events).
    sources: str = "annotations"
    # Folders the service reads, from which source names are shown.
    roots: tuple[Path, ...] = ()
    # Which sentences of the answer the chunks back (ragdb.query.support).
    support: Support | None = None

    def check(self, service: Service, text: str) -> None:
        """Check the answer's sentences against the chunks it was given."""
        if self.hits and text:
            self.support = check_support(text, self.hits, service.kb.embedder.encode)

    def annotations(self, text: str = "") -> list[dict[str, Any]]:
        """The sources as annotations (none where they go as events): one per
        chunk in rank order, each spanning the ``[n]`` in ``text`` it backs."""
        if self.sources != "annotations":
            return []
        spans = citations.citation_spans(text, self.support)
        return citations.url_citations(self.hits, self.roots, spans)

    def ragdb(self, state: StreamState | None = None) -> dict[str, Any]:
        """ragdb's own account of the answer: the chunks, and whether it was cut."""
        out: dict[str, Any] = {"chunks": [h.to_dict() for h in self.hits]}
        if state is not None:
            out["truncated"], out["truncated_reason"] = state.truncated, state.reason
        if self.support is not None:
            out["support"] = self.support.to_dict()
        return out


def finish_reason(state: StreamState) -> str:
    """OpenAI's finish reason: "length" for any answer cut short (the token
    limit, the deadline, a loop, a stream the server ended unfinished)."""
    return "length" if state.truncated else "stop"


@router.post("/chat/completions", responses=STREAM_OR_JSON)
async def chat(body: ChatBody, service: ServiceDep) -> Response:
    """A chat completion, answered from the knowledge base (or passed through)."""
    turn = await _read(body, service)
    if turn.abstain:
        usage = _usage(service, [{"content": turn.question}], NOT_ENOUGH)
        return _whole(turn, NOT_ENOUGH, usage, "stop")
    state = StreamState()
    pieces = stream_answer(
        service.kb.settings, turn.messages, state=state, max_tokens=turn.max_tokens
    )
    if turn.stream:
        # The answer starts at once (role, sources); a failure of the language
        # model is then an error event in the stream.
        return sse_response(_stream(service, turn, pieces, state))
    try:
        text = await run_in_threadpool(lambda: "".join(pieces).strip())
    except LLMError as exc:
        exc.extra = {"chunks": [h.to_dict() for h in turn.hits]}
        raise
    await run_in_threadpool(turn.check, service, text)
    return _whole(turn, text, _usage(service, turn.messages, text), finish_reason(state), state)


async def _read(body: ChatBody, service: Service) -> Turn:
    """The request, read; the passages retrieved for its last user message
    (none for ``ragdb/llm`` and a chat UI's own housekeeping prompts)."""
    model = body.model or "ragdb"
    kbs = await run_in_threadpool(_kbs_of, service, model)
    turns = [
        {"role": str(m.get("role") or "user"), "content": _text_of(m.get("content"))}
        for m in body.messages
    ]
    users = [t for t in turns if t["role"] == "user"]
    if not users or not users[-1]["content"].strip():
        raise UsageError("there is no user message to answer")
    question = users[-1]["content"]
    asked = body.max_completion_tokens or body.max_tokens
    options = body.ragdb or ChatOptions()
    config = service.config
    turn = Turn(
        model,
        question,
        turns,
        [],
        bool(body.stream),
        bool(body.stream_options and body.stream_options.include_usage),
        # The client's own bound on the answer, within the server's --max-tokens.
        min(asked, service.kb.settings.llm_max_tokens) if asked else None,
        sources=options.sources or config.sources_format,
        roots=(*config.allow_paths, *config.watch),
    )
    if model == "ragdb/llm" or TASK_PROMPT.search(question):
        return turn
    history = turns[: len(turns) - 1 - turns[::-1].index(users[-1])]
    await _retrieve(service, turn, options, history, kbs)
    return turn


async def _retrieve(
    service: Service,
    turn: Turn,
    options: ChatOptions,
    history: list[dict[str, str]],
    kbs: tuple[str, ...],
) -> None:
    """Retrieve for ``turn`` from knowledge bases ``kbs`` and build its messages:
    the prompt with the usable passages and the history; or "not enough" when
    none is usable."""
    keep = Filter.parse(options.where or ())
    mode = options.mode or DEFAULT_MODE
    query = Query(turn.question, options.k or 4, mode, filter=keep or None, kbs=kbs)
    retrieval = await service.batcher.retrieve(query)
    turn.hits = retrieval.hits
    usable = [h for h in turn.hits if options.min_score is None or h.score >= options.min_score]
    if not usable:
        turn.abstain = True
        return
    prompt = build_prompt(turn.question, usable, 1500, service.kb.count_tokens)
    history = [t for t in history if t["role"] != "system"]
    turn.messages = [prompt.messages[0], *history, prompt.messages[1]]
    turn.hits = prompt.used


def _stream(
    service: Service, turn: Turn, pieces: Iterator[str], state: StreamState
) -> Iterator[str]:
    """The answer as a chat completion stream, per the spec: one id, the role
    at once (with Open WebUI's source events, before the first token), the
    text, annotations, the finish reason, usage when asked, then ragdb's own
    account (no choices) and [DONE]."""
    chunks = ChunkStream(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), turn.model)
    yield chunks.delta({"role": "assistant", "content": ""})
    if turn.sources == "openwebui":
        for event in citations.source_events(turn.hits, turn.roots):
            yield chunks.event(event)
    text = ""
    try:
        for piece in pieces:
            text += piece
            yield chunks.delta({"content": piece})
    except LLMError as exc:
        error = {"message": str(exc), "type": "LLMError", "param": None, "code": 502}
        yield sse({"error": error, "ragdb": turn.ragdb()})
        yield DONE
        return
    turn.check(service, text)  # (a generator the server runs in a thread)
    annotations = turn.annotations(text)
    if annotations:
        yield chunks.delta({"annotations": annotations})
    yield chunks.delta({}, finish_reason(state))
    if turn.usage_wanted:
        yield chunks.usage(_usage(service, turn.messages, text))
    yield chunks.extra({"ragdb": turn.ragdb(state)})
    yield DONE


def _whole(
    turn: Turn,
    text: str,
    usage: dict[str, int],
    reason: str,
    state: StreamState | None = None,
) -> Response:
    """An answer known whole: one completion, or the same as a stream."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if turn.stream:
        chunks = ChunkStream(cid, created, turn.model)
        openwebui = turn.sources == "openwebui"
        events = citations.source_events(turn.hits, turn.roots) if openwebui else []
        return sse_response(
            chunks.whole(
                text,
                reason,
                usage if turn.usage_wanted else None,
                events=events,
                extra={"ragdb": turn.ragdb(state)},
            )
        )
    message = {"role": "assistant", "content": text, "annotations": turn.annotations(text)}
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": turn.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": usage,
            "ragdb": turn.ragdb(state),
        }
    )


def _usage(service: Service, messages: list[dict[str, str]], answer: str) -> dict[str, int]:
    """Token counts with the embedding model's tokenizer: the language model's
    stream does not report its own."""
    prompt = sum(service.kb.count_tokens(m["content"]) for m in messages)
    completion = service.kb.count_tokens(answer)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


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
