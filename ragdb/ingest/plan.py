"""What an ingest is to do (:class:`IngestPlan`: made where the files are, run
where the store is, and sent between them as JSON) and what it did
(:class:`IngestReport`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragdb.errors import InputError, UsageError
from ragdb.ingest.inputs import Input, check_ocr
from ragdb.ingest.mailboxes import read_mail
from ragdb.ingest.paths import expand_paths, glob_matcher
from ragdb.ingest.record_files import read_records
from ragdb.ingest.web import WebOptions, WebTarget, is_url
from ragdb.wire import from_fields

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


Warn = Callable[[str], None]


@dataclasses.dataclass
class IngestReport:
    """What an ingest did: sources added, updated, unchanged, removed and
    skipped (each skip with its reason), and the chunks embedded."""

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
        """What ``ragdb ingest --json`` prints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> IngestReport:
        """The report :meth:`to_dict` wrote (a server's, say)."""
        return from_fields(cls, data)

    def summary(self) -> str:
        """The report in one line, for people."""
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
    # Records gone from their records file (the origin of an input) go.
    prune_records: bool = False
    # Files read whole (mailboxes, messages with attachments): what is stored of
    # them (as its origin) and not among the inputs went from them, and goes.
    complete_origins: list[str] = dataclasses.field(default_factory=list)
    # Web pages and crawls, fetched where the plan runs.
    pages: list[WebTarget] = dataclasses.field(default_factory=list)
    prune_pages: bool = False
    replace: bool = False
    # A name stored as something else is skipped (with a warning) instead of
    # failing the whole ingest: a watched folder keeps syncing around it.
    skip_clashes: bool = False

    @property
    def pruning(self) -> bool:
        """Whether the user asked to prune (``--prune``): then a stored source
        that can no longer be read goes too."""
        return bool(
            self.prune_dirs or self.prune_patterns or self.prune_records or self.prune_pages
        )

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
            "complete_origins": list(self.complete_origins),
            "pages": [t.to_wire() for t in self.pages],
            "prune_pages": self.prune_pages,
            "replace": self.replace,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> IngestPlan:
        """The plan :meth:`to_wire` described (an :class:`InputError` if not one)."""
        inputs = data.get("inputs")
        dirs, patterns = data.get("prune_dirs"), data.get("prune_patterns")
        pages, complete = data.get("pages"), data.get("complete_origins")
        if not isinstance(inputs, list) or not all(
            isinstance(x, list) for x in (dirs or [], patterns or [], pages or [], complete or [])
        ):
            raise InputError(
                '"inputs", "prune_dirs", "prune_patterns", "complete_origins" and "pages" '
                "must be lists"
            )
        try:
            targets = [WebTarget.from_wire(t) for t in pages or []]
        except UsageError as exc:
            raise InputError(str(exc)) from None
        return cls(
            inputs=[Input.from_wire(item) for item in inputs],
            prune_dirs=[Path(str(d)) for d in dirs or []],
            prune_patterns=[str(p) for p in patterns or []],
            prune_records=bool(data.get("prune_records")),
            complete_origins=[str(o) for o in complete or []],
            pages=targets,
            prune_pages=bool(data.get("prune_pages")),
            replace=bool(data.get("replace")),
        )


def plan_paths(
    paths: Sequence[str | Path],
    *,
    prune: bool = False,
    replace: bool = False,
    roots: Sequence[Path] | None = None,
    warn: Warn | None = None,
    ocr: str = "on",
    web: WebOptions | None = None,
    metadata: dict[str, Any] | None = None,
) -> IngestPlan:
    """The plan to ingest ``paths`` (files, directories, globs, web addresses),
    decided where the files are: nothing is read yet. With ``roots``, only files
    under one of them (when found and when opened) are read; ``prune`` also
    removes stored files gone from the directories or glob patterns given, and
    pages a crawl no longer reaches; ``ocr`` says what OCR reads ("on": images
    and PDF pages without text, "images", "off"); ``web``, how URLs are fetched
    (the page alone, or a crawl); ``metadata`` goes on every file's chunks."""
    bound = tuple(Path(r) for r in roots) if roots is not None else None
    meta = check_meta(metadata)
    try:
        check_ocr(ocr)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    urls = [str(p) for p in paths if is_url(str(p))]
    pages = [(web or WebOptions()).target(url, ocr, meta) for url in urls]
    found = expand_paths([str(p) for p in paths if not is_url(str(p))], bound)
    if prune and not found.dirs and not found.patterns and not pages:
        raise UsageError(
            "--prune removes stored files that are gone from the directories or quoted "
            "glob patterns given; files named one by one cover nothing (to prune "
            "notes/*.md, quote it: 'notes/*.md')"
        )
    for note in found.notes:
        if warn:
            warn(note)
    if not found.files and not prune and not pages:
        raise InputError("nothing to ingest: no files under the paths given")
    inputs: list[Input] = []
    complete: list[str] = []
    for f in found.files:
        # Mail is read now, like a records file: each message of a mailbox and
        # each attachment a source of its own, all of which the file holds.
        mail = read_mail(f, bound, ocr)
        if mail is not None and mail.whole:
            complete.append(str(f))
        own = mail.inputs if mail is not None else [Input(str(f), path=f, roots=bound, ocr=ocr)]
        # The user's metadata, and the file's time, on whatever the file holds.
        stamp = modified(f)
        inputs += [dataclasses.replace(i, meta=meta, modified=stamp) for i in own]
    return IngestPlan(
        inputs,
        prune_dirs=list(found.dirs) if prune else [],
        prune_patterns=list(found.patterns) if prune else [],
        complete_origins=complete,
        pages=pages,
        prune_pages=prune,
        replace=replace,
    )


def modified(path: Path) -> str | None:
    """A file's modification time, ISO 8601 in UTC (None if it cannot be had)."""
    import datetime as dt

    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="seconds")


def parse_meta(pairs: Sequence[str]) -> dict[str, str | int | float | bool]:
    """``KEY=VALUE`` pairs as metadata: integers, numbers and true/false typed,
    the rest strings (a :class:`UsageError` for a pair without ``=``)."""
    out: dict[str, str | int | float | bool] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--meta takes KEY=VALUE, not {pair!r}")
        out[key.strip()] = _typed(value.strip())
    return out


def _typed(value: str) -> str | int | float | bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def check_meta(metadata: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """``metadata`` as an input carries it, or an :class:`InputError`."""
    meta = tuple((metadata or {}).items())
    for key, value in meta:
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise InputError(f"metadata {key!r}: values are strings, numbers or booleans")
    return meta


def plan_text(
    name: str,
    data: bytes | str,
    *,
    kind: str | None = None,
    replace: bool = False,
    metadata: dict[str, Any] | None = None,
) -> IngestPlan:
    """The plan to ingest one source given directly (standard input, say) under
    ``name``; ``metadata`` (strings, numbers, booleans) goes on each chunk."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not name.strip():
        raise UsageError("a source name must not be empty")
    meta = check_meta(metadata)
    return IngestPlan([Input(source=name, data=data, kind_hint=kind, meta=meta)], replace=replace)


def plan_records(
    path: str | Path,
    *,
    id_field: str = "id",
    text_field: str = "text",
    title_field: str | None = None,
    meta_fields: Sequence[str] = (),
    prune: bool = False,
    id_prefix: str = "",
    replace: bool = False,
) -> IngestPlan:
    """The plan to ingest each record of a JSONL or CSV file as a source named
    by ``id_prefix`` and its id (the file is read now)."""
    inputs = read_records(path, id_field, text_field, title_field, tuple(meta_fields))
    if id_prefix:
        inputs = [dataclasses.replace(i, source=id_prefix + i.source) for i in inputs]
    return IngestPlan(inputs, prune_records=prune, replace=replace)


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
