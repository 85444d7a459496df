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
        return sse({**self.base, "choices": [], "usage": usage})

    def whole(self, text: str, reason: str, usage: dict[str, int] | None) -> Iterator[str]:
        """An answer known whole, as a stream: role and text, finish, usage, done."""
        yield self.delta({"role": "assistant", "content": text})
        yield self.delta({}, reason)
        if usage is not None:
            yield self.usage(usage)
        yield DONE
