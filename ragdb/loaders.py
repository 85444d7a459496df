"""Finding input files and turning each into plain text.

HTML goes through BeautifulSoup (visible text only), PDF through pypdf (text
per page), everything else must be text: UTF-8, or an encoding that
charset-normalizer can tell. Binary and unreadable inputs raise
:class:`Skipped` with a reason, which ingest reports and counts.
"""

from __future__ import annotations

import base64
import dataclasses
import glob
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
EMAIL_SUFFIXES = {".eml"}
# Formats people keep that ragdb does not read yet: named in the skip reason
# instead of "binary file", so nobody wonders what went wrong.
UNSUPPORTED = {
    ".docx": "a Word document",
    ".doc": "a Word document",
    ".xlsx": "an Excel workbook",
    ".xls": "an Excel workbook",
    ".pptx": "a PowerPoint deck",
    ".ppt": "a PowerPoint deck",
    ".odt": "an OpenDocument text",
    ".ods": "an OpenDocument spreadsheet",
    ".odp": "an OpenDocument presentation",
    ".epub": "an e-book",
    ".mobi": "an e-book",
    ".rtf": "an RTF document",
    ".msg": "an Outlook message",
    ".mbox": "a mailbox",
    ".png": "an image",
    ".jpg": "an image",
    ".jpeg": "an image",
    ".tif": "an image",
    ".tiff": "an image",
    ".zip": "a zip archive",
}
READABLE = "ragdb reads text, Markdown, HTML, PDF and e-mail (.eml)"
# Sniffing this much of a file decides whether it is text.
_SNIFF = 8192
# A file larger than this is not a document ragdb reads whole (a disk image, a
# database, a log that never stops growing).
MAX_FILE_BYTES = 256 * 2**20


class Skipped(Exception):
    """An input that cannot be ingested; the message says why."""


@dataclasses.dataclass
class Document:
    source: str
    text: str
    kind: str  # "text", "markdown", "html", "pdf", "email"
    page_starts: list[int] | None = None  # offsets at which PDF pages start
    title: str | None = None
    # What a user should know of how it was read (an encoding guessed, parts left out).
    notes: list[str] = dataclasses.field(default_factory=list)


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
    # Why a file sent from elsewhere could not be read there.
    unreadable: str | None = None
    # Read on someone else's behalf (a request to `ragdb serve`): the file opened
    # must lie under one of these directories, whatever path led to it.
    roots: tuple[Path, ...] | None = None

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
        records file, or ``text`` given directly (standard input, the API)."""
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
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"not an input ({{source, data (base64), ...}}): {exc}") from None

    def describe(self) -> str:
        """What, beside its bytes, decides how this input is stored."""
        return repr((self.kind_hint, self.title, self.meta))


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


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


@dataclasses.dataclass
class Expansion:
    """What a list of path arguments names."""

    files: list[Path]
    dirs: list[Path]  # directories given (or matched): --prune covers what is under them
    patterns: list[str]  # glob patterns given, made absolute: --prune covers what they match
    notes: list[str]  # what was left out and why (empty directories, symlinked ones)


def expand_paths(args: list[str], roots: tuple[Path, ...] | None = None) -> Expansion:
    """Files named by ``args`` (files, directories walked recursively, glob
    patterns), and the directories and patterns given, for ``--prune``.

    Hidden files and directories inside a given directory are left out, as
    version-control and tool folders are not documents; symlinked directories
    inside one are not followed (a note says so), and with ``roots`` neither
    is a directory a glob reaches outside them. A path that matches nothing
    is an error before anything is ingested.
    """
    files: dict[Path, None] = {}
    dirs: list[Path] = []
    patterns: list[str] = []
    notes: list[str] = []

    def walk(root: Path) -> None:
        if roots is not None and not under_roots(root, roots):
            notes.append(f"skipped {root}: outside the server's --allow-path roots")
            return
        found = list(_walk(root, notes))
        if not found:
            notes.append(f"{root} holds no files to ingest")
        files.update(dict.fromkeys(found))

    for arg in args:
        path = Path(arg).expanduser()
        if glob.has_magic(arg) and not path.exists():
            pattern = os.path.abspath(os.path.expanduser(arg))
            patterns.append(pattern)
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"no files match {arg!r}")
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    if roots is not None and not under_roots(mp, roots):
                        notes.append(f"skipped {mp}: outside the server's --allow-path roots")
                        continue
                    dirs.append(mp.resolve())
                    walk(mp.resolve())
                else:
                    files[mp.resolve()] = None
            continue
        if not path.exists() and not path.is_symlink():
            raise InputError(f"no such file or directory: {arg}")
        if path.is_dir():
            root = path.resolve()
            dirs.append(root)
            walk(root)
        else:
            files[path.absolute() if path.is_symlink() else path.resolve()] = None
    return Expansion(list(files), dirs, patterns, notes)


def _walk(root: Path, notes: list[str]) -> Iterator[Path]:
    def unreadable(exc: OSError) -> None:
        notes.append(f"skipped {exc.filename}: {exc.strerror or exc} (its files were not read)")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        for d in dirnames:
            if not d.startswith(".") and os.path.islink(os.path.join(dirpath, d)):
                notes.append(
                    f"skipped {os.path.join(dirpath, d)}: a symlinked directory (not followed; "
                    "give its path to ingest it)"
                )
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def glob_matcher(pattern: str) -> re.Pattern[str]:
    """A regular expression matching what the glob ``pattern`` matches:
    ``*`` and ``?`` within one path component, ``**`` across components."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("!")
                # Escaped, so that "[[a]" or "[\\]" is a set of characters, never
                # a nested set (which Python's re warns about) or a broken escape.
                body = "".join(re.escape(ch) if ch in "[]\\^&~|" else ch for ch in body[negate:])
                out.append(f"[{'^' if negate else ''}{body}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def kind_of(source: str, hint: str | None = None) -> str:
    if hint:
        return hint
    suffix = Path(source).suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    if suffix in EMAIL_SUFFIXES:
        return "email"
    return "text"


# Decompressed text beyond this is not a document (a gzip bomb, a database dump).
MAX_GUNZIPPED = 256 * 1024 * 1024


def gunzip(data: bytes) -> bytes:
    """The contents of gzip-compressed ``data`` (docs and man pages ship so)."""
    import zlib

    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, MAX_GUNZIPPED)
    except zlib.error as exc:
        raise Skipped(f"corrupt gzip file ({exc})") from None
    if inflater.unconsumed_tail:
        raise Skipped(f"compressed file expands beyond {MAX_GUNZIPPED // 2**20} MB")
    if not inflater.eof:
        raise Skipped("corrupt gzip file (truncated)")
    return out


def unsupported_format(name: str, data: bytes) -> str | None:
    """Why ``data`` (named ``name``) is a format ragdb does not read, or None."""
    suffix = Path(name).suffix.lower()
    what = UNSUPPORTED.get(suffix)
    if what is None and data.startswith(b"PK\x03\x04"):
        what = "a zip-based document or archive"
    if what is None and data.startswith((b"\xd0\xcf\x11\xe0", b"{\\rtf")):
        what = "an Office document" if data[0] == 0xD0 else "an RTF document"
    if what is None:
        return None
    return f"unsupported format: {what} ({suffix or 'no extension'}); {READABLE}"


def extract(inp: Input, data: bytes) -> Document:
    """The text of one input; raises :class:`Skipped` when there is none to take."""
    if not data:
        raise Skipped("empty")
    name = inp.source
    if data.startswith(b"\x1f\x8b"):
        data = gunzip(data)
        if not data:
            raise Skipped("empty (compressed)")
        name = name.removesuffix(".gz")
    kind = kind_of(name, inp.kind_hint)
    if kind == "pdf" or data.startswith(b"%PDF-"):
        return _pdf(inp.source, data)
    why = unsupported_format(name, data) if inp.kind_hint is None else None
    if why is not None:
        raise Skipped(why)
    if kind == "email":
        return _email(inp.source, data)
    notes: list[str] = []
    text = decode_text(data, notes)
    if inp.title:
        # As BEIR and MTEB do: the title leads the text it names.
        text = f"{inp.title}\n\n{text}"
        return Document(inp.source, text, kind, title=inp.title)
    if kind == "html" or (kind == "text" and _looks_like_html(text)):
        doc = _html(inp.source, text)
    else:
        doc = Document(inp.source, text, kind)
    if not doc.text.strip():
        raise Skipped("no text")
    doc.notes += notes
    return doc


def decode_text(data: bytes, notes: list[str] | None = None) -> str:
    """Text from bytes, or :class:`Skipped` for binary content; ``notes``
    learns the encoding when it had to be guessed."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise Skipped("binary file (invalid UTF-16)") from None
    head = data[:_SNIFF]
    if b"\x00" in head:
        text = _utf16_without_bom(data)
        if text is not None:
            return text
        raise Skipped("binary file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise Skipped("binary file (not text in any known encoding)")
    text, encoding = str(best), best.encoding
    western = _western(data)
    if western is not None:
        text, encoding = western, "cp1252"
    if notes is not None:
        notes.append(f"not UTF-8: read as {encoding} (guessed)")
    # Control characters beyond whitespace mean a binary file that happened to decode.
    controls = sum(1 for ch in text[:_SNIFF] if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if controls > len(text[:_SNIFF]) * 0.01:
        raise Skipped("binary file")
    return text


def _utf16_without_bom(data: bytes) -> str | None:
    """Text if ``data`` is UTF-16 with no byte-order mark: ASCII-range text then
    has a zero in every other byte, all on the same side."""
    head = data[: _SNIFF - _SNIFF % 2]
    if len(head) < 4 or len(data) % 2:
        return None
    even, odd = head[0::2], head[1::2]
    for zeros, encoding in ((odd, "utf-16-le"), (even, "utf-16-be")):
        if zeros.count(0) >= len(zeros) * 0.6:
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                return None
            controls = sum(1 for ch in text[:_SNIFF] if ord(ch) < 32 and ch not in "\t\n\r\f\v")
            return text if controls <= len(text[:_SNIFF]) * 0.01 else None
    return None


def _western(data: bytes) -> str | None:
    """``data`` as Windows-1252 (a superset of Latin-1) when it reads as mostly
    ASCII letters with a few accented ones: short Western-European notes fit
    a dozen code pages equally well to a detector (Latin-1 "naïve café" came
    out garbled as cp775), and this one is by far the likeliest. A
    Cyrillic or Greek single-byte text is nearly all non-ASCII letters."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    letters = [ch for ch in text if ch.isalpha()]
    accented = sum(1 for ch in letters if ord(ch) > 127)
    if not letters or accented > len(letters) * 0.3:
        return None
    return text


_HTML_START = re.compile(r"^\s*(<!doctype html|<html[\s>])", re.IGNORECASE)


def _looks_like_html(text: str) -> bool:
    return bool(_HTML_START.match(text[:1024]))


def _html(source: str, text: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "template", "head", "svg"]):
        tag.decompose()
    visible = soup.get_text("\n")
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in visible.splitlines()]
    # Keep paragraph breaks (one blank line) so the splitter still sees them.
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return Document(source, out, "html", title=title or None)


def _email(source: str, data: bytes) -> Document:
    """An e-mail message (.eml): its headers that matter, then its text body
    (HTML turned into text), MIME decoded; attachments are named, not read."""
    import email
    import email.policy

    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        head = [f"{h}: {msg[h]}" for h in ("Subject", "From", "To", "Date") if msg[h]]
        body = msg.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else ""
        is_html = body is not None and body.get_content_subtype() == "html"
        attached = [p.get_filename() or "unnamed" for p in msg.iter_attachments()]
    except (LookupError, ValueError, TypeError, AttributeError) as exc:
        raise Skipped(f"unreadable e-mail ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(content, str):
        content = ""
    if is_html:
        content = _html(source, content).text
    subject = str(msg["Subject"] or "").strip() or None
    doc = Document(source, "\n".join(head) + "\n\n" + content.strip(), "email", title=subject)
    if attached:
        doc.notes.append(f"attachments not read: {', '.join(attached)}")
    if not content.strip() and not head:
        raise Skipped("no text")
    return doc


def _pdf(source: str, data: bytes) -> Document:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs recoverable damage as warnings; the skip message covers the rest.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from pypdf import PasswordType

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are encrypted with an empty user password (copy protection
            # only): those open; one that needs a password is skipped as such.
            try:
                opened = reader.decrypt("")
            except Exception as exc:
                raise Skipped(f"encrypted PDF (cannot decrypt: {type(exc).__name__})") from None
            if opened == PasswordType.NOT_DECRYPTED:
                raise Skipped("encrypted PDF (needs a password)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except Skipped:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Skipped(f"corrupt PDF ({type(exc).__name__}: {str(exc)[:80]})") from None
    starts = []
    parts = []
    offset = 0
    for text in pages:
        starts.append(offset)
        parts.append(text)
        offset += len(text) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        raise Skipped("PDF has no extractable text (scanned?)")
    return Document(source, text, "pdf", page_starts=starts)


def _csv_rows(fh: Any, path: str | Path, delimiter: str) -> list[tuple[int, dict[str, object]]]:
    """A CSV file's rows with the line each starts on. A quote left open would
    swallow the rest of the file into one field: that is an error, not a record."""
    import csv

    rows: list[tuple[int, dict[str, object]]] = []
    reader = csv.DictReader(fh, delimiter=delimiter, strict=True)
    start = 2
    try:
        for row in reader:
            rows.append((start, dict(row)))
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise InputError(
                f"{path}:{start}: a quote opened in this record is never closed "
                "(it would swallow the rest of the file)"
            ) from None
        # Other strictness errors (text after a closing quote): read leniently.
        fh.seek(0)
        lenient = csv.DictReader(fh, delimiter=delimiter)
        return [(i + 2, dict(row)) for i, row in enumerate(lenient)]
    return rows


def read_records(
    path: str | Path,
    id_field: str,
    text_field: str,
    title_field: str | None = None,
    meta_fields: tuple[str, ...] = (),
) -> list[Input]:
    """Each record of a JSONL or CSV file as an :class:`Input` named by its id."""
    import json

    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"no such records file: {path}")
    origin = str(file.resolve())
    suffix = file.suffix.lower()
    rows: list[tuple[int, dict[str, object]]] = []
    try:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            if suffix in (".csv", ".tsv"):
                rows = _csv_rows(fh, path, "\t" if suffix == ".tsv" else ",")
            elif suffix in (".jsonl", ".ndjson", ".json"):
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise InputError(f"{path}:{lineno}: not a JSON object ({exc})") from None
                    if not isinstance(row, dict):
                        raise InputError(f"{path}:{lineno}: not a JSON object")
                    rows.append((lineno, row))
            else:
                raise InputError(f"{path}: records files must be .jsonl, .ndjson, .csv or .tsv")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    out: list[Input] = []
    seen: set[str] = set()
    for lineno, row in rows:
        for field in (id_field, text_field):
            if field not in row:
                raise InputError(f"{path}:{lineno}: record has no field {field!r}")
        rid = str(row[id_field]).strip()
        if not rid:
            raise InputError(f"{path}:{lineno}: empty id in field {id_field!r}")
        if rid in seen:
            raise InputError(f"{path}:{lineno}: duplicate id {rid!r}")
        seen.add(rid)
        text = "" if row[text_field] is None else str(row[text_field])
        title = str(row.get(title_field) or "").strip() or None if title_field else None
        meta: list[tuple[str, str | int | float | bool]] = []
        for field in meta_fields:
            value = row.get(field)
            if isinstance(value, (str, int, float, bool)):
                meta.append((field, value))
            elif value is not None:
                meta.append((field, json.dumps(value, ensure_ascii=False)))
        out.append(
            Input(
                source=rid,
                data=text.encode("utf-8") if text.strip() else b"",
                kind_hint="text",
                title=title,
                meta=tuple(meta),
                origin=origin,
            )
        )
    return out
