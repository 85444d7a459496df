"""A tiny OpenAI-style HTTP server that fails on purpose: the faults a real server
cannot be made to produce on demand (404 model missing, 404 for a wrong path, 500,
hanging, slow and broken streams, a stream closed without a word, one ended
tidily but unfinished)."""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .site import running


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self.server.calls += 1
        mode = self.server.mode
        if mode == "404":
            body = {
                "error": {
                    "message": 'model "qwen3:4b" not found, try pulling it first',
                    "type": "api_error",
                }
            }
            self._json(404, body)
        elif mode == "path404":
            # What Ollama answers for its root URL without /v1: no JSON, no model.
            raw = b"404 page not found"
            self.send_response(404)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        elif mode == "500":
            self._json(500, {"error": {"message": "llama runner process has terminated"}})
        elif mode == "hang":
            time.sleep(self.server.hang_seconds)
            self._json(500, {"error": {"message": "too late"}})
        elif mode == "empty":
            # What llama.cpp does with a prompt over its context: a 200 stream
            # that ends at once, no token, no finish reason, no [DONE].
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self._chunk(b"")
        elif mode in ("broken", "think", "cut", "slow", "unfinished"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for piece in self.server.pieces:
                self._chunk(self._event(piece))
                if mode == "slow":
                    time.sleep(self.server.delay)
            if mode == "broken":
                self._chunk(b"data: {this is not json\n\n")
                self._chunk(b"")
            elif mode == "cut":
                # Close mid-stream without the terminating chunk.
                self.wfile.flush()
                self.close_connection = True
                return
            elif mode == "unfinished":
                # What llama.cpp does to an answer another request interrupts:
                # a tidy end, but no finish reason.
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            else:
                self._chunk(self._event("", finish="stop"))
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

    def _event(self, content: str, finish: str | None = None) -> bytes:
        data = {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up on a broken stream is the point of some modes:
        # no traceback on stderr (the CLI under test shares it in-process).
        pass


@contextmanager
def fake_llm(
    mode: str, pieces: list[str] | None = None, hang_seconds: float = 5.0, delay: float = 0.1
) -> Iterator[Any]:
    server: Any = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mode = mode
    server.pieces = pieces or ["Partial ", "answer "]
    server.hang_seconds = hang_seconds
    server.delay = delay
    server.calls = 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    with running(server):
        yield server
