"""Office Open XML: Word documents (read into Markdown, so chunks split at
headings and carry them), PowerPoint decks (one located part per slide, its
notes included) and Excel workbooks (rows in groups, each group headed by its
sheet's header row and located by sheet and row range)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from ragdb.ingest.formats.parts import located, row_groups
from ragdb.ingest.inputs import Document, Skipped

# What a broken package raises inside these readers (a zip with a missing or
# malformed part): each becomes a skip reason, never a crash.
BROKEN = (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, IndexError)


def _broken(what: str, exc: Exception) -> Skipped:
    return Skipped(f"corrupt {what} ({type(exc).__name__}: {str(exc)[:80]})")


def _properties(props: Any) -> tuple[str | None, dict[str, str | int | float | bool]]:
    """The title and metadata (author, dates, subject, keywords) of a package."""
    meta: dict[str, str | int | float | bool] = {}
    # python-docx and python-pptx say "author"; openpyxl says "creator".
    pairs = (("author", "author"), ("author", "creator"), ("subject", "subject"),
             ("keywords", "keywords"))  # fmt: skip
    for key, attr in pairs:
        value = getattr(props, attr, None)
        if value and key not in meta:
            meta[key] = str(value)
    for key, attr in (("created", "created"), ("modified", "modified")):
        value = getattr(props, attr, None)
        if isinstance(value, dt.datetime):
            meta[key] = value.isoformat()
    title = str(props.title).strip() if getattr(props, "title", None) else None
    return title or None, meta


def read_docx(source: str, data: bytes) -> Document:
    """A Word document as Markdown: headings as ``#``, lists as ``-``, tables as rows."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for block in document.iter_inner_content():
            lines += _table(block) if isinstance(block, Table) else [_paragraph(block)]
        title, meta = _properties(document.core_properties)
    except BROKEN as exc:
        raise _broken("Word document", exc) from None
    text = "\n\n".join(line for line in lines if line.strip())
    if not text.strip():
        raise Skipped("no text")
    return Document(source, text, "docx", title=title, markdown=True, meta=meta)


def _paragraph(paragraph: Any) -> str:
    text = paragraph.text.strip()
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        return f"# {text}"
    if style.startswith("Heading ") and style[8:].isdigit():
        return f"{'#' * min(6, int(style[8:]))} {text}"
    if style.startswith("List"):
        return f"- {text}"
    return text


def _table(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        rows.append(" | ".join(cells))
    return ["\n".join(rows)]


def read_pptx(source: str, data: bytes) -> Document:
    """A deck, one part per slide ("slide 3: its title"): its text, tables and notes."""
    import pptx

    try:
        deck = pptx.Presentation(io.BytesIO(data))
        slides = [_slide(slide) for slide in deck.slides]
        title, meta = _properties(deck.core_properties)
    except BROKEN as exc:
        raise _broken("PowerPoint deck", exc) from None
    parts = [(f"slide {n}" + (f": {name}" if name else ""), body) for n, (name, body) in
             enumerate(slides, 1) if body.strip()]  # fmt: skip
    return located(source, "pptx", parts, title, meta)


def _slide(slide: Any) -> tuple[str | None, str]:
    """A slide's title and its text (title first, then shapes, then notes)."""
    title = slide.shapes.title.text.strip() if slide.shapes.title is not None else None
    texts = [title] if title else []
    for shape in slide.shapes:
        if shape.has_text_frame and shape is not slide.shapes.title:
            texts.append(shape.text_frame.text.strip())
        elif getattr(shape, "has_table", False) and shape.has_table:
            texts += _table(shape.table)
    if slide.has_notes_slide:
        texts.append(slide.notes_slide.notes_text_frame.text.strip())
    return title, "\n\n".join(t for t in texts if t)


def read_xlsx(source: str, data: bytes) -> Document:
    """A workbook's sheets as groups of rows, each group headed by its sheet's
    header row ("sheet Sales, rows 2-18"): values, not formulas."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        parts = [part for sheet in book.worksheets for part in _sheet(sheet)]
        title, meta = _properties(book.properties)
        book.close()
    except BROKEN as exc:
        raise _broken("Excel workbook", exc) from None
    return located(source, "xlsx", parts, title, meta)


def _sheet(sheet: Any) -> Iterator[tuple[str, str]]:
    """(label, text) for each group of a sheet's rows, the header on each."""
    rows = ((n, _cells(values)) for n, values in enumerate(sheet.iter_rows(values_only=True), 1))
    return row_groups(sheet.title, ((n, cells) for n, cells in rows if any(cells)))


def _cells(values: Iterable[Any]) -> list[str]:
    out = []
    for value in values:
        if isinstance(value, dt.datetime) and value.time() == dt.time():
            value = value.date()  # a date cell: openpyxl reads it as midnight
        if isinstance(value, (dt.datetime, dt.date)):
            value = value.isoformat()
        out.append("" if value is None else " ".join(str(value).split()))
    while out and not out[-1]:
        out.pop()
    return out
