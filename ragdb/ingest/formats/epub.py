"""E-books (EPUB 2 and 3): one located part per chapter of the reading order,
named by its first heading ("chapter 4: Storms")."""

from __future__ import annotations

import io
import re
import zipfile

from ragdb.ingest.formats.parts import located
from ragdb.ingest.inputs import Document, Skipped


def read_epub(source: str, data: bytes) -> Document:
    """The book's chapters in reading order, with its title and author."""
    import warnings

    import ebooklib
    from ebooklib import epub

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib's notices about its own options
            book = epub.read_epub(io.BytesIO(data), {"ignore_ncx": True})
        items = [book.get_item_with_id(idref) for idref, _ in book.spine]
        pages = [
            item.get_content()
            for item in items
            # The navigation document (a table of contents) is not a chapter.
            if item is not None
            and item.get_type() == ebooklib.ITEM_DOCUMENT
            and not isinstance(item, epub.EpubNav)
        ]
        title = _first(book.get_metadata("DC", "title"))
        author = _first(book.get_metadata("DC", "creator"))
    except (epub.EpubException, zipfile.BadZipFile, KeyError, ValueError, AttributeError) as exc:
        raise Skipped(f"corrupt e-book ({type(exc).__name__}: {str(exc)[:80]})") from None
    parts: list[tuple[str, str]] = []
    for html in pages:
        heading, body = _chapter(html)
        if body.strip():
            label = f"chapter {len(parts) + 1}" + (f": {heading}" if heading else "")
            parts.append((label, body))
    meta: dict[str, str | int | float | bool] = {"author": author} if author else {}
    return located(source, "epub", parts, title, meta)


def _first(values: list[tuple[str, dict[str, str]]]) -> str | None:
    return str(values[0][0]).strip() or None if values else None


def _chapter(html: bytes) -> tuple[str | None, str]:
    """A chapter's first heading and its visible text."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    found = soup.find(re.compile(r"^h[1-6]$"))
    heading = " ".join(found.get_text(" ").split()) if found is not None else None
    for tag in soup(["script", "style", "head"]):
        tag.decompose()
    lines = [" ".join(line.split()) for line in soup.get_text("\n").splitlines()]
    return heading or None, re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
