"""OpenDocument (LibreOffice): text documents read into Markdown (headings
kept), spreadsheets in row groups headed by the header row like Excel's, and
presentations one part per slide, all through odfpy."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from ragdb.ingest.formats.parts import located, row_groups
from ragdb.ingest.inputs import Document, Skipped

# A run of identical cells or rows is stored once with a repeat count (the
# empty tail of a sheet claims a million rows): a repeat is honoured up to this.
MAX_REPEAT = 1000


def _load(data: bytes, what: str) -> Any:
    from xml.parsers.expat import ExpatError

    from odf.opendocument import load

    try:
        return load(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, ExpatError) as exc:
        raise Skipped(f"corrupt {what} ({type(exc).__name__}: {str(exc)[:80]})") from None


def _meta(doc: Any) -> tuple[str | None, dict[str, str | int | float | bool]]:
    from odf import dc, meta, teletype

    def first(kind: Any) -> str | None:
        found = doc.meta.getElementsByType(kind)
        return teletype.extractText(found[0]).strip() or None if found else None

    out: dict[str, str | int | float | bool] = {}
    for key, kind in (("author", meta.InitialCreator), ("subject", dc.Subject)):
        if (value := first(kind)) is not None:
            out[key] = value
    if (created := first(meta.CreationDate)) is not None:
        out["created"] = created
    return first(dc.Title), out


def read_odt(source: str, data: bytes) -> Document:
    """A text document as Markdown: headings as ``#`` at their outline level."""
    from odf import teletype

    doc = _load(data, "OpenDocument text")
    lines = []
    for element in doc.text.childNodes:
        kind = getattr(element, "qname", ("", ""))[1]
        text = teletype.extractText(element).strip()
        if kind == "h":
            level = int(element.getAttribute("outlinelevel") or 1)
            text = f"{'#' * min(6, level)} {text}"
        if text:
            lines.append(text)
    title, meta = _meta(doc)
    if not lines:
        raise Skipped("no text")
    return Document(source, "\n\n".join(lines), "odt", title=title, markdown=True, meta=meta)


def read_ods(source: str, data: bytes) -> Document:
    """A spreadsheet's sheets as groups of rows under their header row."""
    from odf import table

    doc = _load(data, "OpenDocument spreadsheet")
    parts: list[tuple[str, str]] = []
    for sheet in doc.spreadsheet.getElementsByType(table.Table):
        parts += list(row_groups(str(sheet.getAttribute("name")), _rows(sheet)))
    title, meta = _meta(doc)
    return located(source, "ods", parts, title, meta)


def _rows(sheet: Any) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of a sheet, repeats expanded (up to MAX_REPEAT)."""
    from odf import table, teletype

    number = 0
    for row in sheet.getElementsByType(table.TableRow):
        cells: list[str] = []
        for cell in row.getElementsByType(table.TableCell):
            text = " ".join(teletype.extractText(cell).split())
            repeat = int(cell.getAttribute("numbercolumnsrepeated") or 1)
            cells += [text] * min(repeat, MAX_REPEAT)
        while cells and not cells[-1]:
            cells.pop()
        for _ in range(min(int(row.getAttribute("numberrowsrepeated") or 1), MAX_REPEAT)):
            number += 1
            if cells:
                yield number, cells


def read_odp(source: str, data: bytes) -> Document:
    """A presentation, one part per slide ("slide 2: its name")."""
    from odf import draw, teletype

    doc = _load(data, "OpenDocument presentation")
    parts: list[tuple[str, str]] = []
    for n, page in enumerate(doc.presentation.getElementsByType(draw.Page), 1):
        texts = [teletype.extractText(f).strip() for f in page.getElementsByType(draw.Frame)]
        body = "\n\n".join(t for t in texts if t)
        if body:
            title = texts[0].splitlines()[0][:80] if texts and texts[0] else ""
            parts.append((f"slide {n}" + (f": {title}" if title else ""), body))
    title, meta = _meta(doc)
    return located(source, "odp", parts, title, meta)
