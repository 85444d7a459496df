"""Older formats people still keep: Excel 97-2003 workbooks (``.xls``, by
xlrd, as groups of rows like ``.xlsx``) and RTF documents (by striprtf)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from ragdb.ingest.formats.parts import located, row_groups
from ragdb.ingest.inputs import Document, Skipped


def read_xls(source: str, data: bytes) -> Document:
    """A legacy workbook's sheets as groups of rows, each headed by its sheet's
    header row ("sheet Sales, rows 2-18")."""
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
        parts = [part for sheet in book.sheets() for part in _sheet(sheet, book.datemode)]
        book.release_resources()
    except xlrd.XLRDError as exc:
        message = str(exc)
        if "encrypted" in message.lower():
            message = "an Excel workbook that is password-protected: save it unprotected"
            raise Skipped(message) from None
        raise Skipped(f"corrupt Excel workbook ({message[:80]})") from None
    except (ValueError, IndexError, KeyError, AssertionError, OSError) as exc:
        raise Skipped(f"corrupt Excel workbook ({type(exc).__name__})") from None
    return located(source, "xls", parts, None, {})


def _sheet(sheet: Any, datemode: int) -> Iterator[tuple[str, str]]:
    rows = ((n + 1, _cells(sheet.row(n), datemode)) for n in range(sheet.nrows))
    return row_groups(sheet.name, ((n, cells) for n, cells in rows if any(cells)))


def _cells(row: list[Any], datemode: int) -> list[str]:
    import xlrd

    out = []
    for cell in row:
        value = cell.value
        if cell.ctype == xlrd.XL_CELL_DATE:
            when = xlrd.xldate_as_datetime(value, datemode)
            value = when.date().isoformat() if when.time() == dt.time() else when.isoformat()
        elif cell.ctype == xlrd.XL_CELL_NUMBER and float(value).is_integer():
            value = int(value)  # xlrd reads every number as a float
        elif cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
            value = ""
        out.append(" ".join(str(value).split()))
    while out and not out[-1]:
        out.pop()
    return out


def read_rtf(source: str, data: bytes) -> Document:
    """An RTF document's text (control words and groups such as the font
    table dropped, escaped characters decoded)."""
    from striprtf.striprtf import rtf_to_text

    try:
        # RTF is 7-bit text; bytes beyond ASCII are read as its default code page.
        text = rtf_to_text(data.decode("cp1252", errors="replace"), errors="replace")
    except (ValueError, IndexError, LookupError) as exc:
        raise Skipped(f"corrupt RTF document ({type(exc).__name__})") from None
    if not text.strip():
        raise Skipped("no text")
    return Document(source, text.strip(), "rtf")
