"""Readers for the formats beyond plain text, one module per family behind one
interface: a :class:`Format` names the extensions it claims, how its content is
recognised, and the function (``read(source, data) -> Document``) that reads it.
A new format is one module and one line in :data:`FORMATS`.

The decision uses content as well as the name: a ``.docx`` that is really HTML
is read as HTML, with a note; one that is neither gets a clear skip reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

from ragdb.ingest.inputs import Document, Skipped

# Compound File Binary: the legacy .doc/.xls/.ppt, and any encrypted Office file.
OLE = b"\xd0\xcf\x11\xe0"


ZIP = b"PK\x03\x04"

# A content test: the data's first bytes, and a zip's member names or a
# Compound File's stream names (empty when it is neither, or one whose
# directory cannot be read).
Sniff = Callable[[bytes, set[str]], bool]


def _zip_member(name: str) -> Sniff:
    """Recognises an Office Open XML package by the part it must hold."""
    return lambda data, names: name in names


def _zip_mimetype(mimetype: str) -> Sniff:
    """Recognises an OpenDocument or EPUB package by its leading mimetype file."""
    needle = b"mimetype" + mimetype.encode()
    return lambda data, names: data.startswith(ZIP) and needle in data[:200]


def _ole_stream(*names: str) -> Sniff:
    """Recognises a Compound File Binary document by a stream it must hold."""
    return lambda data, streams: data.startswith(OLE) and any(n in streams for n in names)


def _rtf(data: bytes, names: set[str]) -> bool:
    return data.startswith(b"{\\rtf")


def _ole_streams(data: bytes) -> set[str]:
    """A Compound File Binary document's stream names ("a/b" below storages);
    empty when it is not one or cannot be read."""
    import olefile

    try:
        with olefile.OleFileIO(data) as ole:
            return {"/".join(entry) for entry in ole.listdir(streams=True, storages=False)}
    except (OSError, ValueError, IndexError, TypeError):
        return set()


def _zip_infos(data: bytes) -> list[zipfile.ZipInfo] | None:
    """A zip's directory (read once per input), or None when it cannot be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None


# The first bytes of the image formats OCR reads.
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF8")


def _image(data: bytes, names: set[str]) -> bool:
    webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(IMAGE_MAGIC) or webp


@dataclasses.dataclass(frozen=True)
class Format:
    """One readable format: its kind, extensions, content test and reader."""

    kind: str
    what: str  # in words, for skip reasons: "a Word document"
    suffixes: tuple[str, ...]
    sniff: Sniff
    module: str  # the reader's module under ragdb.ingest.formats
    function: str
    ocr: bool = False  # read by OCR: skipped when OCR is off
    ole: bool = False  # a Compound File Binary format (legacy Office)

    @property
    def name(self) -> str:
        """What it is without its article: "Word document"."""
        return self.what.split(" ", 1)[1]

    def read(self, source: str, data: bytes) -> Document:
        """The document's text, located, with its metadata; Skipped if none."""
        module = importlib.import_module(f"{__name__}.{self.module}")
        reader: Callable[[str, bytes], Document] = getattr(module, self.function)
        return reader(source, data)


FORMATS = (
    Format("docx", "a Word document", (".docx", ".docm"), _zip_member("word/document.xml"),
           "office", "read_docx"),
    Format("pptx", "a PowerPoint deck", (".pptx", ".pptm"), _zip_member("ppt/presentation.xml"),
           "office", "read_pptx"),
    Format("xlsx", "an Excel workbook", (".xlsx", ".xlsm"), _zip_member("xl/workbook.xml"),
           "office", "read_xlsx"),
    Format("epub", "an e-book", (".epub",), _zip_mimetype("application/epub+zip"),
           "epub", "read_epub"),
    Format("odt", "an OpenDocument text", (".odt",),
           _zip_mimetype("application/vnd.oasis.opendocument.text"), "opendocument", "read_odt"),
    Format("ods", "an OpenDocument spreadsheet", (".ods",),
           _zip_mimetype("application/vnd.oasis.opendocument.spreadsheet"), "opendocument",
           "read_ods"),
    Format("odp", "an OpenDocument presentation", (".odp",),
           _zip_mimetype("application/vnd.oasis.opendocument.presentation"), "opendocument",
           "read_odp"),
    Format("xls", "an Excel 97-2003 workbook", (".xls",), _ole_stream("Workbook", "Book"),
           "legacy", "read_xls", ole=True),
    Format("msg", "an Outlook message", (".msg",), _ole_stream("__properties_version1.0"),
           "outlook", "read_msg", ole=True),
    Format("rtf", "an RTF document", (".rtf",), _rtf, "legacy", "read_rtf"),
    Format("image", "an image", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp",
           ".gif"), _image, "ocr", "read_image", ocr=True),
)  # fmt: skip


# A package that expands beyond this is not a document (a zip bomb).
MAX_EXPANDED = 512 * 2**20


def by_name(name: str) -> Format | None:
    """The format a name's extension claims."""
    suffix = Path(name).suffix.lower()
    return next((f for f in FORMATS if suffix in f.suffixes), None)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a name claims, what the content is, and why it cannot be read."""

    claimed: Format | None
    found: Format | None
    refusal: str | None
    expanded: int  # bytes a zip's members take, unpacked (0 when not a zip)


def judge(name: str, data: bytes) -> Verdict:
    """The formats ``name`` claims and ``data`` is (judged from its first bytes
    and zip directory alone, read once), and why it cannot be read as the one
    its name claims: legacy or encrypted Office, a damaged zip, the wrong zip.
    Text or HTML under an Office name is no refusal: it is read as what it is."""
    infos = _zip_infos(data) if data.startswith(ZIP) else None
    names = {info.filename for info in infos or ()}
    if data.startswith(OLE):
        names = _ole_streams(data)
    claimed = by_name(name)
    found = next((f for f in FORMATS if f.sniff(data, names)), None)
    expanded = sum(info.file_size for info in infos or ())
    why = None
    if claimed is not None and found is None:
        if data.startswith(OLE) and claimed.ole:
            why = f"corrupt {claimed.name} (its streams cannot be read)"
        elif data.startswith(OLE):
            why = (
                f"{claimed.what} that is password-protected or in the old binary format: "
                f"save it unprotected as {claimed.suffixes[0]}"
            )
        elif data.startswith(ZIP):
            why = (
                f"not {claimed.what}: a zip archive without its parts"
                if infos
                else f"corrupt {claimed.name} (a damaged or truncated zip)"
            )
    return Verdict(claimed, found, why, expanded)


def read(name: str, source: str, data: bytes, ocr: str = "on") -> Document | None:
    """The document when ``data`` is one of these formats, by content first;
    None when it is none of them (text, HTML, PDF, e-mail: read elsewhere).
    A name that claims a format its content is not gets a note, or a skip
    (see :func:`judge`)."""
    verdict = judge(name, data)
    claimed, found = verdict.claimed, verdict.found
    if verdict.refusal is not None:
        raise Skipped(verdict.refusal)
    if found is not None and found.ocr and ocr == "off":
        raise Skipped(f"{found.what}: OCR is off (--ocr on reads its text)")
    if found is not None:
        if verdict.expanded > MAX_EXPANDED:
            limit = MAX_EXPANDED // 2**20
            raise Skipped(f"{found.what} that expands beyond {limit} MB: not read")
        doc = found.read(source, data)
        if claimed is not None and claimed is not found:
            doc.notes.append(f"named as {claimed.what} but is {found.what}: read as such")
        return doc
    return None
