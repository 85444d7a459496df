"""Server-sent events: one ``data:`` line per event, and the OpenAI chat
completion chunk every stream of the chat model is made of."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

DONE = "data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> str:
    """One event."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_response(events: Iterable[str]) -> StreamingResponse:
    """A stream of events, produced off the event loop."""
    return StreamingResponse(iterate_in_threadpool(iter(events)), media_type="text/event-stream")


class ChunkStream:
    """The chunks of one chat completion stream: one id, one creation time."""

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.base = {"id": cid, "object": "chat.completion.chunk", "created": created}
        self.base["model"] = model

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> str:
        """A chunk carrying ``delta`` (and the reason it finished, last)."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**self.base, "choices": [choice]})

    def usage(self, usage: dict[str, int]) -> str:
        """The usage chunk (no choices), when the client asked for it."""
        return self.extra({"usage": usage})

    def event(self, event: dict[str, Any]) -> str:
        """A chunk with no choices carrying an ``event`` (Open WebUI's sources)."""
        return self.extra({"event": event})

    def extra(self, fields: dict[str, Any]) -> str:
        """A chunk with no choices carrying ``fields`` beside the chunk's own."""
        return sse({**self.base, "choices": [], **fields})

    def whole(
        self,
        text: str,
        reason: str,
        usage: dict[str, int] | None,
        events: Iterable[dict[str, Any]] = (),
        extra: dict[str, Any] | None = None,
    ) -> Iterator[str]:
        """An answer known whole, as a stream: role, ``events``, text, finish,
        usage, ``extra`` fields, done."""
        yield self.delta({"role": "assistant", "content": ""})
        for event in events:
            yield self.event(event)
        yield self.delta({"content": text})
        yield self.delta({}, reason)
        if usage is not None:
            yield self.usage(usage)
        if extra:
            yield self.extra(extra)
        yield DONE
