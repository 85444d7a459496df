"""One thing to ingest (:class:`Input`: a file, or bytes given directly), what
was read of it (:class:`Document`), and reading a file safely: only regular
files, with a size bound, never blocking on a FIFO or a device, and where a
server reads for a client, only under its roots as the open file really is.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

from ragdb.errors import InputError

# A file larger than this is not a document ragdb reads whole (a disk image, a
# database, a log that never stops growing).
MAX_FILE_BYTES = 256 * 2**20


class Skipped(Exception):
    """An input that cannot be ingested; the message says why."""


class Note(str):
    """A message of an ingest that tells how it goes (OCR's pages), not of
    anything wrong: shown as it is, never as a warning or a source's error."""


@dataclasses.dataclass
class Document:
    source: str
    text: str
    kind: str  # "text", "markdown", "html", "pdf", "email", "docx", "pptx", "xlsx", "epub"
    page_starts: list[int] | None = None  # offsets at which PDF pages start
    title: str | None = None
    # Where each located part starts, and its location in words ("slide 3:
    # Results", "sheet Sales, rows 2-18", "chapter 4: Storms"): every chunk lies
    # in one part and carries its label. Formats without such parts have none.
    sections: list[tuple[int, str]] | None = None
    # Split at Markdown headings (Markdown itself, and formats read into it).
    markdown: bool = False
    # The document's own metadata (front matter, document properties): scalar
    # values, stored on each chunk beside the user's own.
    meta: dict[str, str | int | float | bool] = dataclasses.field(default_factory=dict)
    # What a user should know of how it was read (an encoding guessed, parts left out).
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Fetched:
    """How a web page's bytes were had (see :mod:`ragdb.ingest.web`): its
    validators for the next conditional request, whether the server said it
    had not changed (304: no bytes), and whether a failure may pass."""

    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    # A timeout, a refused connection, a 5xx: the stored version stays, --prune or not.
    transient: bool = False


@dataclasses.dataclass(frozen=True)
class Input:
    """One source to ingest: a file on disk, or bytes given directly (stdin, records)."""

    source: str
    path: Path | None = None
    data: bytes | None = None
    kind_hint: str | None = None
    title: str | None = None
    # Extra metadata stored on every chunk (record fields given with --meta-field).
    meta: tuple[tuple[str, str | int | float | bool], ...] = ()
    # The records file a record came from, so --prune can find records that left it.
    origin: str | None = None
    # A file's bytes read elsewhere (by a CLI sending them to `ragdb serve`): still
    # a file, as if read here.
    from_file: bool = False
    # What OCR reads: "on" (images and PDF pages without text), "images" (images
    # only) or "off". Not part of the fingerprint: a file stored is not re-read.
    ocr: str = "on"
    # Why a file sent from elsewhere could not be read there.
    unreadable: str | None = None
    # Read on someone else's behalf (a request to `ragdb serve`): the file opened
    # must lie under one of these directories, whatever path led to it.
    roots: tuple[Path, ...] | None = None
    # A file's modification time (ISO 8601), as found when it was planned.
    modified: str | None = None
    # A web page (its source is its URL), fetched where the store is: never sent
    # between processes, so not part of the wire form.
    fetched: Fetched | None = None

    def read_bytes(self) -> bytes:
        """The input's bytes (:class:`Skipped` when they cannot be had)."""
        if self.unreadable is not None:
            raise Skipped(self.unreadable)
        if self.data is not None:
            return self.data
        assert self.path is not None
        return read_file(self.path, self.roots)

    @property
    def source_type(self) -> str:
        """What kind of thing the source is: a ``file``, a ``record`` of a
        records file, a web ``page``, or ``text`` given directly (standard
        input, the API)."""
        if self.fetched is not None:
            return "page"
        if self.origin:
            return "record"
        return "file" if self.path is not None or self.from_file else "text"

    def to_wire(self) -> dict[str, Any]:
        """This input as JSON, its bytes read (how a CLI hands it to a server);
        a file that cannot be read goes as the reason why."""
        try:
            data: str | None = base64.b64encode(self.read_bytes()).decode("ascii")
            unreadable = None
        except Skipped as exc:
            data, unreadable = None, str(exc)
        return {
            "source": self.source,
            "data": data,
            "unreadable": unreadable,
            "from_file": self.source_type == "file",
            "kind_hint": self.kind_hint,
            "title": self.title,
            "meta": [list(pair) for pair in self.meta],
            "origin": self.origin,
            "ocr": self.ocr,
            "modified": self.modified,
        }

    @classmethod
    def from_wire(cls, data: Any) -> Input:
        """The input :meth:`to_wire` described; an :class:`InputError` when it is
        not one."""
        try:
            meta = tuple((str(k), v) for k, v in data.get("meta") or ())
            if not all(isinstance(v, (str, int, float, bool)) for _, v in meta):
                raise ValueError("metadata values are strings, numbers or booleans")
            source = data["source"]
            if not isinstance(source, str) or not source.strip():
                raise ValueError("a source name must not be empty")
            unreadable = data.get("unreadable")
            return cls(
                source=source,
                data=None if unreadable else base64.b64decode(data["data"], validate=True),
                unreadable=str(unreadable) if unreadable else None,
                kind_hint=data.get("kind_hint"),
                title=data.get("title"),
                meta=meta,
                origin=data.get("origin"),
                from_file=bool(data.get("from_file")),
                ocr=check_ocr(str(data.get("ocr") or "on")),
                modified=str(data["modified"]) if data.get("modified") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"not an input ({{source, data (base64), ...}}): {exc}") from None

    def describe(self) -> str:
        """What, beside its bytes, decides how this input is stored."""
        return repr((self.kind_hint, self.title, self.meta))


OCR_MODES = ("on", "images", "off")


def check_ocr(mode: str) -> str:
    """``mode`` when it is one of :data:`OCR_MODES` (else a ValueError)."""
    if mode not in OCR_MODES:
        raise ValueError(f"ocr is one of {', '.join(OCR_MODES)}, not {mode!r}")
    return mode


def read_file(path: Path, roots: tuple[Path, ...] | None = None) -> bytes:
    """A regular file's bytes, at most :data:`MAX_FILE_BYTES`. Never blocks on a
    FIFO or a device (they are skipped); with ``roots``, the file actually
    opened (symlinks resolved at open time) must lie under one of them."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except PermissionError:
        raise Skipped("permission denied") from None
    except IsADirectoryError:
        raise Skipped("is a directory") from None
    except OSError as exc:
        raise Skipped(f"cannot read: {exc.strerror or exc}") from None
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Skipped(f"not a regular file ({_file_type(st.st_mode)})")
        if roots is not None and not under_roots(_opened_path(fd, path), roots):
            raise Skipped("outside the server's --allow-path roots (a symlink leads out)")
        if st.st_size > MAX_FILE_BYTES:
            raise Skipped(f"larger than {MAX_FILE_BYTES // 2**20} MB")
        try:
            data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise Skipped(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise Skipped(f"larger than {MAX_FILE_BYTES // 2**20} MB")
    return data


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "a special file"


def _opened_path(fd: int, path: Path) -> str:
    """Where the open file ``fd`` really is: the kernel's word on Linux, where
    no symlink swapped in after a check can fool it."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def under_roots(path: str | Path, roots: tuple[Path, ...]) -> bool:
    """Whether ``path`` (symlinks resolved) is one of ``roots`` or lies under one."""
    real = Path(os.path.realpath(path))
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return True
    return False
