"""The text of one input, by its format.

Office documents and e-books go through :mod:`ragdb.ingest.formats`, HTML
through BeautifulSoup (visible text only; a web page's main text through
trafilatura), PDF through pypdf (text per page),
e-mail through the standard library's parser, Markdown's front matter through
python-frontmatter; everything else must be text: UTF-8, or an encoding that
charset-normalizer can tell. Formats ragdb
does not read, binary and unreadable inputs raise :class:`~ragdb.ingest.inputs.Skipped`
with a reason, which ingest reports and counts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ragdb.ingest import formats
from ragdb.ingest.inputs import Document, Input, Skipped
from ragdb.ingest.mailboxes import attachments_of, readable_attachment

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}


HTML_SUFFIXES = {".html", ".htm", ".xhtml"}


PDF_SUFFIXES = {".pdf"}


EMAIL_SUFFIXES = {".eml"}


# Formats people keep that ragdb does not read yet: named in the skip reason
# instead of "binary file", so nobody wonders what went wrong.
UNSUPPORTED = {
    ".doc": "a Word document",
    ".ppt": "a PowerPoint deck",
    ".mobi": "an e-book",
    ".zip": "a zip archive",
}


READABLE = (
    "ragdb reads text, Markdown, HTML, PDF, e-mail (.eml, .mbox, .msg), Word (.docx), "
    "PowerPoint (.pptx), Excel (.xlsx, .xls), OpenDocument, EPUB, RTF and images (by OCR)"
)


# Sniffing this much of a file decides whether it is text.
_SNIFF = 8192


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


# Bumped when a format is read differently, so that sources stored by the old
# reader are read again (their unchanged chunks keep their embeddings). Markdown
# 2: front matter became metadata instead of text.
READER_VERSIONS = {"markdown": "2"}


def reader_version(inp: Input) -> str:
    """What of the reader's version goes into an input's fingerprint."""
    version = READER_VERSIONS.get(kind_of(inp.source.removesuffix(".gz"), inp.kind_hint))
    return f"\0reader-{version}" if version else ""


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
    verdict = formats.judge(name, data)
    if verdict.claimed is not None or verdict.found is not None:
        return verdict.refusal
    what = UNSUPPORTED.get(suffix)
    if what is None and data.startswith(b"PK\x03\x04"):
        what = "a zip-based document or archive"
    if what is None and data.startswith(b"\xd0\xcf\x11\xe0"):
        what = "an Office document"
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
    read = formats.read(name, inp.source, data, inp.ocr)
    if read is not None:
        return read
    if kind == "pdf" or data.startswith(b"%PDF-"):
        return _pdf(inp.source, data, ocr=inp.ocr == "on")
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
    is_html = kind == "html" or (kind == "text" and _looks_like_html(text))
    if is_html and inp.fetched is not None:
        from ragdb.ingest.formats.webpage import read_page

        doc = read_page(inp.source, text) or _html(inp.source, text)
    elif is_html:
        doc = _html(inp.source, text)
    elif kind == "markdown":
        doc = _markdown(inp.source, text)
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


def _markdown(source: str, text: str) -> Document:
    """Markdown, its YAML front matter (if any) taken off the text and kept as
    metadata: scalars as they are, lists joined with ", ", dates as ISO 8601."""
    if not text.startswith("---"):
        return Document(source, text, "markdown")
    import frontmatter
    import yaml

    try:
        post = frontmatter.loads(text)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        doc = Document(source, text, "markdown")
        doc.notes.append(f"front matter unreadable ({type(exc).__name__}): kept as text")
        return doc
    meta = {
        str(k): v for k, v in ((k, _scalar(v)) for k, v in post.metadata.items()) if v is not None
    }
    title = meta.pop("title", None)
    return Document(
        source, post.content, "markdown", title=str(title) if title else None, meta=meta
    )


def _scalar(value: object) -> str | int | float | bool | None:
    """A front-matter value as chunk metadata can hold it."""
    import datetime as dt

    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value) or None
    return None  # nested mappings and the like: not metadata a filter can select on


def _email(source: str, data: bytes) -> Document:
    """An e-mail message (.eml): its headers that matter, then its text body
    (HTML turned into text), MIME decoded; attachments ragdb cannot read are named."""
    import email
    import email.policy

    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        head = [f"{h}: {msg[h]}" for h in ("Subject", "From", "To", "Date") if msg[h]]
        body = msg.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else ""
        is_html = body is not None and body.get_content_subtype() == "html"
    except (LookupError, ValueError, TypeError, AttributeError) as exc:
        raise Skipped(f"unreadable e-mail ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not head:
        raise Skipped("not an e-mail message (no Subject, From, To or Date header)")
    if not isinstance(content, str):
        content = ""
    if is_html:
        content = _html(source, content).text
    subject = str(msg["Subject"] or "").strip() or None
    doc = Document(source, "\n".join(head) + "\n\n" + content.strip(), "email", title=subject)
    doc.meta = _headers(msg)
    # Those in formats ragdb reads are sources of their own (ragdb.ingest.mailboxes).
    unread = [name for name, part in attachments_of(msg) if not readable_attachment(name, part)]
    if unread:
        doc.notes.append(f"attachments not read (not a format ragdb reads): {', '.join(unread)}")
    if not content.strip() and not head:
        raise Skipped("no text")
    return doc


def _headers(msg: Any) -> dict[str, str | int | float | bool]:
    """A message's sender, recipients and date (ISO 8601) as chunk metadata."""
    import email.utils

    meta: dict[str, str | int | float | bool] = {}
    for key in ("From", "To", "Cc"):
        if msg[key]:
            meta[key.lower()] = " ".join(str(msg[key]).split())
    try:
        when = email.utils.parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        when = None
    if when is not None:
        meta["date"] = when.isoformat()
    return meta


def _pdf(source: str, data: bytes, ocr: bool = True) -> Document:
    """A PDF's text, page by page; pages without any read by OCR (``ocr``)."""
    pages = _pdf_text(data)
    notes = []
    blank = [n for n, text in enumerate(pages) if not text.strip()]
    if blank and ocr:
        import time

        from ragdb.ingest.formats.ocr import ocr_note, read_pdf_pages

        started = time.perf_counter()
        for n, text in read_pdf_pages(data, blank).items():
            pages[n] = text
        notes.append(ocr_note(len(blank), started))
    starts = []
    offset = 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2
    text = "\n\n".join(pages)
    if not text.strip():
        why = "OCR found none either" if ocr else "scanned? --ocr on reads it"
        raise Skipped(f"PDF has no extractable text ({why})")
    return Document(source, text, "pdf", page_starts=starts, notes=notes)


def _pdf_text(data: bytes) -> list[str]:
    """The text pypdf extracts from each page ("" for a page of pictures)."""
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
        return [page.extract_text() or "" for page in reader.pages]
    except Skipped:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Skipped(f"corrupt PDF ({type(exc).__name__}: {str(exc)[:80]})") from None
