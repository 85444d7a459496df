"""Answers from a language model behind an OpenAI-compatible API (Ollama by default)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ragdb.errors import LLMError, LLMTimeoutError

if TYPE_CHECKING:
    from ragdb.config import Settings
    from ragdb.query.retrieve import Hit

NOT_ENOUGH = "I don't have enough information to answer that."

SYSTEM_PROMPT = (
    "You are a helpful assistant that answers questions using only the numbered context "
    "passages you are given. Cite the passages you use by their numbers in square "
    "brackets, like [1] or [2][3]. If the context does not contain the answer, reply "
    f'exactly: "{NOT_ENOUGH}" Do not use outside knowledge.'
)

# Room kept for the instructions, the question and the answer beside the context.
DEFAULT_CONTEXT_TOKENS = 1500


@dataclasses.dataclass
class StreamState:
    """How an answer stream ended: whole, or cut (and why)."""

    truncated: bool = False
    # "max_tokens" (the server stopped at --max-tokens), "deadline" (--timeout
    # passed), "repetition" (the model was repeating itself), or "stream-ended"
    # (the server closed the stream without saying it had finished).
    reason: str | None = None

    def cut(self, reason: str) -> None:
        """Record that the answer was cut for ``reason``."""
        self.truncated = True
        self.reason = reason


class RepetitionGuard:
    """Tells when a model loops: the answer's last ``window`` characters have
    already appeared ``times`` times in its recent text. Small models asked for
    something they cannot do repeat a phrase until their token limit; ordinary
    answers don't repeat a 40-character stretch four times."""

    def __init__(self, window: int = 40, times: int = 4, span: int = 4000) -> None:
        self.window, self.times, self.span = window, times, span
        self.text = ""
        self._checked = 0

    def feed(self, piece: str) -> bool:
        """Add ``piece``; True once the text is looping."""
        self.text += piece
        if len(self.text) - self._checked < 20 or len(self.text) < self.window * self.times:
            return False
        self._checked = len(self.text)
        tail = self.text[-self.window :]
        if not tail.strip():
            return False
        return self.text[-self.span :].count(tail) >= self.times


@dataclasses.dataclass
class Prompt:
    messages: list[dict[str, str]]
    used: list[Hit]  # the passages that fit the budget, in the order given
    context_tokens: int


def build_prompt(
    question: str,
    hits: Sequence[Hit],
    budget: int,
    count_tokens: Callable[[str], int],
) -> Prompt:
    """The chat messages for ``question``: as many of ``hits`` as fit in
    ``budget`` tokens (an OpenAI-compatible server silently cuts what exceeds
    its context window, so ragdb cuts first, where it can say so). The
    question's own tokens count against the budget too."""
    budget = max(16, budget - count_tokens(question))
    parts: list[str] = []
    used: list[Hit] = []
    spent = 0
    for hit in hits:
        block = f"[{hit.rank}] (source: {hit.source})\n{hit.text}"
        cost = count_tokens(block)
        if spent + cost > budget:
            if not used:  # never send an empty context: trim the best passage to fit
                block = _trim_to(block, budget, count_tokens)
                cost = count_tokens(block)
                parts.append(block)
                used.append(hit)
                spent += cost
            break
        parts.append(block)
        used.append(hit)
        spent += cost
    context = "\n\n".join(parts)
    user = f"Context:\n{context}\n\nQuestion: {question}"
    return Prompt(
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ],
        used=used,
        context_tokens=spent,
    )


def _trim_to(text: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


class ThinkFilter:
    """Drops ``<think>…</think>`` blocks from a stream of text pieces, even when a
    tag is split between pieces."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False

    def feed(self, piece: str) -> str:
        self._buf += piece
        out = []
        while self._buf:
            tag = self.CLOSE if self._inside else self.OPEN
            i = self._buf.find(tag)
            if i >= 0:
                if not self._inside:
                    out.append(self._buf[:i])
                self._buf = self._buf[i + len(tag) :]
                self._inside = not self._inside
                continue
            # Keep a possible partial tag at the end for the next piece.
            keep = _partial_suffix(self._buf, tag)
            if not self._inside:
                out.append(self._buf[: len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep :] if keep else ""
            break
        return "".join(out)

    def flush(self) -> str:
        rest, self._buf = ("" if self._inside else self._buf), ""
        return rest


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def strip_thinking(text: str) -> str:
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    return re.sub(r"<think>.*\Z", "", text, flags=re.DOTALL).strip()


def check_llm_url(url: str) -> None:
    """A usage error unless ``url`` is an http(s) URL with a host: found before
    anything slow happens (loading the model, searching)."""
    from urllib.parse import urlparse

    from ragdb.errors import UsageError

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(
            f"--llm-url {url!r} is not an http(s)://HOST[:PORT]/v1 URL "
            "(Ollama's is http://localhost:11434/v1)"
        )


def _client(settings: Settings) -> Any:
    import openai

    return openai.OpenAI(
        base_url=settings.llm_url,
        # Ollama ignores the key, but the client insists on one.
        api_key=settings.llm_api_key or "ragdb",
        timeout=settings.llm_timeout,
        max_retries=0,
    )


def stream_answer(
    settings: Settings,
    messages: list[dict[str, str]],
    show_thinking: bool = False,
    state: StreamState | None = None,
    max_tokens: int | None = None,
) -> Iterator[str]:
    """The answer's text as it arrives, bounded by ``max_tokens`` (default
    ``settings.llm_max_tokens``), by ``settings.llm_timeout`` for the whole
    answer, and by a repetition guard; ``state`` learns whether and why it was
    cut. Any failure is an :class:`LLMError` that says what to do, and so is a
    stream that ends without a word or a reason to stop (llama.cpp closes one
    so when the prompt is over its context)."""

    url, model = settings.llm_url, settings.llm_model
    state = state if state is not None else StreamState()
    think = ThinkFilter()
    guard = RepetitionGuard()
    deadline = time.monotonic() + settings.llm_timeout
    started = False  # once the server has answered, a failure is a broken stream
    try:
        stream = _client(settings).chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            temperature=0.1,
            max_tokens=max_tokens or settings.llm_max_tokens,
        )
        started = True
        said = ended = False
        for event in stream:
            if time.monotonic() > deadline:
                state.cut("deadline")
                stream.close()
                break
            if not getattr(event, "choices", None):
                continue
            if event.choices[0].finish_reason:
                ended = True
            if event.choices[0].finish_reason == "length":
                state.cut("max_tokens")
            delta = event.choices[0].delta
            extra = getattr(delta, "model_extra", None) or {}
            reasoning = extra.get("reasoning_content") or extra.get("reasoning")
            if reasoning and show_thinking:
                yield reasoning
            content = delta.content or ""
            said = said or bool(content or reasoning)
            if content:
                text = content if show_thinking else think.feed(content)
                if text:
                    yield text
                if guard.feed(content):
                    state.cut("repetition")
                    stream.close()
                    break
        rest = think.flush()
        if rest and not show_thinking:
            yield rest
        if not said and not ended and not state.truncated:
            raise LLMError(
                f"the language model at {url} closed the answer stream without a word (the "
                "prompt may be longer than its context window: lower --context-tokens or -k, "
                "or ask a shorter question)"
            )
        if not ended and not state.truncated:
            state.cut("stream-ended")
    except Exception as exc:
        failure = _failure(exc, settings, started)
        if failure is None:
            raise
        raise failure from None


def _failure(exc: BaseException, settings: Settings, started: bool) -> LLMError | None:
    """What to tell the user of the language model's failure ``exc`` (None:
    not the model's, a bug to raise as it is). ``started``: the server had
    answered, so a broken connection is a broken stream."""
    import openai

    url, model = settings.llm_url, settings.llm_model
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError(
            f"the language model at {url} did not answer within {settings.llm_timeout:g}s: "
            "raise --timeout, or use a smaller --model"
        )
    if isinstance(exc, openai.APIConnectionError):
        if started:
            return LLMError(
                f"the answer stream from {url} broke off ({_cause(exc)}); "
                "try again, or check the server's log"
            )
        return LLMError(
            f"cannot reach a language model at {url} ({_cause(exc)}): start Ollama with "
            "`ollama serve`, or point --llm-url at a running OpenAI-compatible server"
        )
    if isinstance(exc, openai.NotFoundError):
        return LLMError(_not_found(url, model, exc))
    if isinstance(exc, openai.AuthenticationError):
        return LLMError(f"the language model at {url} refused the API key: set RAGDB_LLM_API_KEY")
    if isinstance(exc, openai.APIStatusError):
        return LLMError(
            f"the language model at {url} failed with HTTP {exc.status_code}: {_message(exc)}"
        )
    broken = isinstance(exc, (openai.APIError, ValueError, KeyError, AttributeError))
    if broken or type(exc).__module__.startswith(("httpx", "httpcore", "h11")):
        detail = f"{type(exc).__name__}: {_message(exc)}" if broken else type(exc).__name__
        return LLMError(
            f"the answer stream from {url} broke off ({detail}); "
            "try again, or check the server's log"
        )
    return None


def _not_found(url: str, model: str, exc: BaseException) -> str:
    """A 404 means a missing model only when the server says so; otherwise the
    URL has no chat endpoint (most often: Ollama's root URL without ``/v1``)."""
    message = _message(exc)
    if "model" in message.lower() or model in message:
        return (
            f"model {model!r} was not found at {url}: run `ollama pull {model}`, "
            "or choose an available one with --model"
        )
    hint = (
        f"; try {url.rstrip('/')}/v1"
        if not url.rstrip("/").endswith("/v1")
        else ": check --llm-url"
    )
    return f"no OpenAI-compatible chat API at {url} (HTTP 404 for /chat/completions){hint}"


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    while cause is not None and (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    text = str(cause) if cause is not None else str(exc)
    return text.strip().splitlines()[0][:120] if text.strip() else "connection failed"


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:200]
        if isinstance(err, str):
            return err[:200]
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
