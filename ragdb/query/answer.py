"""An answer from what was retrieved: the :class:`Answer` result and the
generation loop that makes it (the prompt and the model's stream come from
:mod:`ragdb.query.generate`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ragdb.errors import LLMError, UnsupportedAnswerError, UsageError
from ragdb.query.generate import NOT_ENOUGH, Prompt, StreamState, build_prompt, stream_answer
from ragdb.query.retrieve import Hit, Retrieval
from ragdb.query.support import Encode, Support, check_support
from ragdb.wire import from_fields

if TYPE_CHECKING:
    from ragdb.config import Settings


@dataclasses.dataclass
class Answer:
    """The model's answer to a question, with the chunks it was given."""

    question: str
    hits: list[Hit]
    answer: str | None
    enough_context: bool
    model: str | None
    timings: dict[str, float]
    error: str | None = None
    # Whether the answer was cut, and why: "max_tokens", "deadline", "repetition"
    # or "stream-ended"; the note says it in words, with the limit that applied.
    truncated: bool = False
    truncated_reason: str | None = None
    truncated_note: str | None = None
    # Which sentences the chunks back (see ragdb.query.support); None when the
    # model was not asked.
    support: Support | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb query --json`` prints."""
        out: dict[str, Any] = {
            "question": self.question,
            "chunks": [h.to_dict() for h in self.hits],
            "answer": self.answer,
            "enough_context": self.enough_context,
            "model": self.model,
            "timings": self.timings,
            "truncated": self.truncated,
        }
        if self.truncated:
            out["truncated_reason"] = self.truncated_reason
            out["truncated_note"] = self.truncated_note
        if self.error is not None:
            out["error"] = self.error
        if self.support is not None:
            out["support"] = self.support.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        """The answer :meth:`to_dict` wrote (a server's, say)."""
        hits = [Hit.from_dict(h) for h in data.get("chunks") or []]
        support = Support.from_dict(data["support"]) if data.get("support") else None
        return from_fields(cls, data, hits=hits, support=support)


def cut_note(reason: str | None, settings: Settings) -> str:
    """Why an answer was cut short, in words, with the limit that applied."""
    return {
        "max_tokens": f"it reached --max-tokens {settings.llm_max_tokens}",
        "deadline": f"it took longer than --timeout {settings.llm_timeout:g}s",
        "repetition": "the model was repeating itself",
        "stream-ended": "the language model's server closed the stream before it finished",
    }.get(reason or "", reason or "")


def check_options(min_score: float | None, context_tokens: int) -> None:
    """Refuse answer options out of range, before any work is done."""
    if context_tokens < 16:
        raise UsageError("--context-tokens must be at least 16")
    if min_score is not None and not -1.0 <= min_score <= 1.0:
        raise UsageError("--min-score must be between -1 and 1 (a cosine similarity)")


def answer(
    settings: Settings,
    retrieval: Retrieval,
    count_tokens: Callable[[str], int],
    *,
    started: float,
    min_score: float | None = None,
    context_tokens: int,
    show_thinking: bool = False,
    retrieve_only: bool = False,
    on_hits: Callable[[list[Hit]], None] | None = None,
    on_text: Callable[[str], None] | None = None,
    encode: Encode | None = None,
) -> Answer:
    """Answer ``retrieval``'s question from its chunks (see ``KnowledgeBase.ask``);
    ``started`` is when the work began (``time.perf_counter()``). With
    ``encode`` (the store's model) the answer's sentences are checked against
    the chunks it was given."""
    question, hits = retrieval.question, retrieval.hits
    timings = dict(retrieval.timings)
    if on_hits:
        on_hits(hits)
    enough = bool(hits) and (min_score is None or any(h.score >= min_score for h in hits))
    text = None if retrieve_only else NOT_ENOUGH
    if retrieve_only or not enough:
        if text and on_text:
            on_text(text)
        timings["total_ms"] = _ms(time.perf_counter() - started)
        return Answer(question, hits, text, enough, None, timings)
    usable = [h for h in hits if min_score is None or h.score >= min_score]
    prompt = build_prompt(question, usable, context_tokens, count_tokens)
    result = _generate(settings, retrieval, prompt, timings, started, show_thinking, on_text)
    if encode is not None and result.answer:
        result.support = check_support(result.answer, prompt.used, encode)
        result.timings["support_ms"] = result.support.ms
    return result


def _generate(
    settings: Settings,
    retrieval: Retrieval,
    prompt: Prompt,
    timings: dict[str, float],
    started: float,
    show_thinking: bool,
    on_text: Callable[[str], None] | None,
) -> Answer:
    """The model's stream, gathered (and passed on to ``on_text``) into an Answer."""
    question, hits, model = retrieval.question, retrieval.hits, settings.llm_model
    t1 = time.perf_counter()
    pieces: list[str] = []
    first: float | None = None
    state = StreamState()
    try:
        for piece in stream_answer(
            settings, prompt.messages, show_thinking=show_thinking, state=state
        ):
            first = first or time.perf_counter()
            pieces.append(piece)
            if on_text:
                on_text(piece)
    except LLMError as exc:
        # The retrieved passages are still worth having: they travel with the error.
        timings["total_ms"] = _ms(time.perf_counter() - started)
        exc.answer = Answer(question, hits, None, True, model, timings, error=str(exc))
        raise
    t2 = time.perf_counter()
    timings.update(
        first_token_ms=_ms((first or t2) - t1),
        generate_ms=_ms(t2 - t1),
        total_ms=_ms(t2 - started),
        context_tokens=prompt.context_tokens,
    )
    note = cut_note(state.reason, settings) if state.truncated else None
    text = "".join(pieces).strip()
    return Answer(
        question, hits, text, True, model, timings, None, state.truncated, state.reason, note
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def refuse_unsupported(result: Answer) -> None:
    """Raise :class:`UnsupportedAnswerError` (carrying ``result``) when the
    chunks do not back one of its sentences."""
    if result.support is not None and result.support.unsupported:
        exc = UnsupportedAnswerError(
            f"{result.support.unsupported} of {len(result.support.sentences)} sentence(s) of "
            "the answer are not backed by the retrieved chunks (--require-support)"
        )
        exc.answer = result
        raise exc
