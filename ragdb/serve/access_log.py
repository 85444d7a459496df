"""``--access-log``: one line on stderr per request, when it has been answered
in full (a stream when it ends): method, path, status, duration. Never the
query string (a token may travel in it), headers or bodies."""

from __future__ import annotations

import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AccessLog:
    """ASGI middleware writing the access log (outermost, so that the
    guard's refusals show too)."""

    def __init__(self, app: ASGIApp, stream: Any = None) -> None:
        self.app = app
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - started) * 1000
            client = scope.get("client") or ("-", 0)
            line = (
                f"ragdb: {client[0]} {scope['method']} {scope['path']} "
                f"{status[0] or '-'} {ms:.0f}ms"
            )
            print(line, file=self.stream or sys.stderr, flush=True)
