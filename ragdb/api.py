"""The one interface the CLI works through: a :class:`~ragdb.KnowledgeBase`
in-process, or a :class:`~ragdb.remote.RemoteKnowledgeBase` asking a running
``ragdb serve``. Both return the same dataclasses, so no caller branches on
which one it holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from ragdb.ingest.plan import IngestPlan, IngestReport, Progress, Warn
    from ragdb.query.answer import Answer
    from ragdb.query.retrieve import Hit
    from ragdb.reports import KnowledgeBaseInfo, RemoveReport, Status
    from ragdb.store.records import ChunkRecord, SourceInfo


class KnowledgeBaseAPI(Protocol):
    """What a knowledge base answers, wherever it runs."""

    def ingest_plan(
        self, plan: IngestPlan, *, progress: Progress | None = None, warn: Warn | None = None
    ) -> IngestReport:
        """Carry out ``plan`` (made where the files are, by :mod:`ragdb.ingest.plan`)."""
        ...

    def ask(
        self,
        question: str,
        k: int = 4,
        *,
        mode: str = ...,
        min_score: float | None = None,
        context_tokens: int = ...,
        show_thinking: bool = False,
        retrieve_only: bool = False,
        on_hits: Callable[[list[Hit]], None] | None = None,
        on_text: Callable[[str], None] | None = None,
        where: Sequence[str] = (),
        kbs: Sequence[str] = (),
        require_support: bool = False,
    ) -> Answer:
        """Retrieve (only chunks meeting ``where``, from knowledge bases ``kbs``:
        ``"*"`` all, none this one), then answer; an ``LLMError`` carries the
        :class:`Answer` so far, an ``UnsupportedAnswerError`` (with
        ``require_support``) the whole one."""
        ...

    def check(
        self,
        question: str,
        answer: str,
        k: int = 4,
        *,
        mode: str = ...,
        where: Sequence[str] = (),
        kbs: Sequence[str] = (),
        ids: Sequence[str] = (),
    ) -> Answer:
        """Which sentences of ``answer`` (written elsewhere) the chunks
        retrieved for ``question`` (or those ``ids`` names) back."""
        ...

    def matching_sources(self, targets: Sequence[str | Path]) -> dict[str, int]:
        """The stored sources ``targets`` name, with their chunk counts."""
        ...

    def remove(self, targets: Sequence[str | Path]) -> RemoveReport:
        """Remove the sources ``targets`` name."""
        ...

    def status(self) -> Status:
        """Where the store is, what it holds and how it was made."""
        ...

    def sources(self) -> list[SourceInfo]:
        """Every stored source, by name."""
        ...

    def chunks(self, source: str) -> list[ChunkRecord]:
        """A stored source's chunks with their text, in order; a
        SourceNotFoundError when ``source`` is not stored."""
        ...

    def using(self, name: str) -> Self:
        """Knowledge base ``name`` of the same store."""
        ...

    def knowledge_bases(self) -> list[KnowledgeBaseInfo]:
        """The store's knowledge bases, with what each holds, by name."""
        ...

    def create_kb(self, name: str) -> KnowledgeBaseInfo:
        """Make knowledge base ``name``, empty."""
        ...

    def rename_kb(self, old: str, new: str) -> None:
        """Call knowledge base ``old`` ``new``."""
        ...

    def delete_kb(self, name: str) -> int:
        """Delete knowledge base ``name``; how many chunks it held."""
        ...
