"""Questions: ``POST /v1/search`` (the chunks) and ``POST /v1/ask`` (an answer
from them, whole or as SSE events). Concurrent questions are batched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ragdb.errors import RagdbError, UsageError
from ragdb.query.filters import Filter
from ragdb.query.retrieve import DEFAULT_MODE, Query
from ragdb.serve.deps import KbDep, ServiceDep
from ragdb.serve.schemas import STREAM_OR_JSON, AskBody, CheckBody, SearchBody, errors_doc
from ragdb.serve.sse import sse, sse_response

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase

router = APIRouter(tags=["search"], responses=errors_doc())


@router.post("/v1/search")
async def search(body: SearchBody, service: ServiceDep, kb: KbDep) -> Response:
    """The chunks nearest a question, as ``query --json`` gives them."""
    question = body.query or ""
    keep = Filter.parse(body.where or ())
    kbs = body.kbs() or (kb.name,)
    query = Query(question, body.k or 4, body.mode or DEFAULT_MODE, body.source, keep or None, kbs)
    retrieval = await service.batcher.retrieve(query)
    hits = retrieval.hits
    if body.min_score is not None:
        hits = [h for h in hits if h.score >= body.min_score]
    # A JSONResponse of plain data: FastAPI's own encoder would walk it again.
    return JSONResponse(
        {"query": question, "chunks": [h.to_dict() for h in hits], "timings": retrieval.timings}
    )


@router.post("/v1/ask", responses=STREAM_OR_JSON)
async def ask(body: AskBody, service: ServiceDep, kb: KbDep) -> Response:
    """An answer from the chunks retrieved (with ``stream``: SSE events)."""
    question = body.query or body.question or ""
    options: dict[str, Any] = {
        "mode": body.mode or DEFAULT_MODE,
        "min_score": body.min_score,
        "retrieve_only": bool(body.retrieve_only),
        "show_thinking": bool(body.show_thinking),
        "require_support": bool(body.require_support),
    }
    if body.context_tokens:
        options["context_tokens"] = body.context_tokens
    k = body.k or 4
    keep = Filter.parse(body.where or ())
    kbs = body.kbs() or (kb.name,)
    query = Query(question, k, options["mode"], body.source, keep or None, kbs)
    options["retrieval"] = await service.batcher.retrieve(query)
    if body.stream:
        return sse_response(ask_events(kb, question, k, options))
    answer = await run_in_threadpool(lambda: kb.ask(question, k, **options))
    return JSONResponse(answer.to_dict())


@router.post("/v1/check")
async def check(body: CheckBody, kb: KbDep) -> Response:
    """Which sentences of an answer written elsewhere the chunks retrieved for
    the question (or the chunks ``ids`` names) back: an answer object with
    ``support``."""
    question = body.query or body.question or ""
    if not question.strip() and not body.ids:
        raise UsageError("give the question the answer was to (or the chunk ids to check it by)")
    checked = await run_in_threadpool(
        lambda: kb.check(
            question,
            body.answer,
            body.k or 4,
            mode=body.mode or DEFAULT_MODE,
            where=body.where or (),
            kbs=body.kbs(),
            ids=body.ids or (),
        )
    )
    return JSONResponse(checked.to_dict())


def ask_events(kb: KnowledgeBase, question: str, k: int, options: dict[str, Any]) -> Iterator[str]:
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
            if answer.support is not None:  # one event after the last delta
                events.put({"event": "support", "support": answer.support.to_dict()})
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
            answered = getattr(exc, "answer", None)  # an LLMError's, an unsupported one's
            if answered is not None:
                event["ragdb"] = answered.to_dict()
            events.put(event)
        finally:
            events.put(None)

    threading.Thread(target=run, name="ragdb-ask", daemon=True).start()
    while (event := events.get()) is not None:
        yield sse(event)
