"""What an ingest is to do (:class:`IngestPlan`: made where the files are, run
where the store is, and sent between them as JSON) and what it did
(:class:`IngestReport`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.errors import InputError
from ragdb.ingest.inputs import Input
from ragdb.ingest.paths import glob_matcher

if TYPE_CHECKING:
    pass


Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


Warn = Callable[[str], None]


@dataclasses.dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    skipped_sources: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed, {self.skipped} skipped; "
            f"{self.chunks_embedded} chunk{'' if self.chunks_embedded == 1 else 's'} embedded "
            f"in {self.seconds:.1f}s"
        )


@dataclasses.dataclass
class IngestPlan:
    """What an ingest is to do: its inputs, and what it prunes (see
    :func:`run_ingest`). Made where the files are, run where the store is."""

    inputs: list[Input]
    prune_dirs: list[Path] = dataclasses.field(default_factory=list)
    prune_patterns: list[str] = dataclasses.field(default_factory=list)
    prune_records: bool = False
    replace: bool = False
    # A name stored as something else is skipped (with a warning) instead of
    # failing the whole ingest: a watched folder keeps syncing around it.
    skip_clashes: bool = False

    def select(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> IngestPlan:
        """The plan with only the inputs that match an ``include`` glob (when any
        is given) and no ``exclude`` glob: a pattern without ``/`` is matched
        against the file's name, one with it against the end of its path."""

        def matcher(pattern: str) -> Callable[[str], bool]:
            if "/" not in pattern:
                name = glob_matcher(pattern)
                return lambda source: bool(name.fullmatch(source.rsplit("/", 1)[-1]))
            tail = glob_matcher(pattern if pattern.startswith("/") else "**/" + pattern)
            return lambda source: bool(tail.fullmatch(source))

        keep, drop = [matcher(p) for p in include], [matcher(p) for p in exclude]
        inputs = [
            inp
            for inp in self.inputs
            if (not keep or any(m(inp.source) for m in keep))
            and not any(m(inp.source) for m in drop)
        ]
        return dataclasses.replace(self, inputs=inputs)

    def to_wire(self) -> dict[str, Any]:
        """The plan as JSON, every input's bytes read (``POST /v1/ingest``)."""
        return {
            "inputs": [inp.to_wire() for inp in self.inputs],
            "prune_dirs": [str(d) for d in self.prune_dirs],
            "prune_patterns": list(self.prune_patterns),
            "prune_records": self.prune_records,
            "replace": self.replace,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> IngestPlan:
        """The plan :meth:`to_wire` described (an :class:`InputError` if not one)."""
        inputs = data.get("inputs")
        dirs, patterns = data.get("prune_dirs"), data.get("prune_patterns")
        if not isinstance(inputs, list) or not all(
            isinstance(x, list) for x in (dirs or [], patterns or [])
        ):
            raise InputError('"inputs", "prune_dirs" and "prune_patterns" must be lists')
        return cls(
            inputs=[Input.from_wire(item) for item in inputs],
            prune_dirs=[Path(str(d)) for d in dirs or []],
            prune_patterns=[str(p) for p in patterns or []],
            prune_records=bool(data.get("prune_records")),
            replace=bool(data.get("replace")),
        )


@dataclasses.dataclass
class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest, after every batch embedded so far was written."""

    def __init__(self, sources: int, chunks: int) -> None:
        super().__init__()
        self.sources, self.chunks = sources, chunks

    def summary(self) -> str:
        """What was saved, for the user."""
        return (
            f"{self.sources} source{'' if self.sources == 1 else 's'} "
            f"({self.chunks} chunk{'' if self.chunks == 1 else 's'}) were saved before "
            "the interruption; run the same command again to finish"
        )
