"""Text from pictures of text: images (PNG, JPEG, TIFF and the like, each frame
of a multi-page TIFF a page) and the pages of a scanned PDF.

Two engines, nothing downloaded by either: Tesseract (Debian's ``tesseract-ocr``,
through pytesseract) where it is installed, as scripts/setup-env does, and
`RapidOCR <https://github.com/RapidAI/RapidOCR>`_ (PP-OCR's models inside its
wheel, run by onnxruntime) where it is not. On print, Tesseract keeps the spaces
between words that RapidOCR's bundled (Chinese and English) model often drops
(`scripts/bench formats`: word accuracy 0.998 against 0.22 on 11-point
Helvetica). ``RAGDB_OCR_ENGINE`` chooses one. OCR costs seconds a page on a
CPU; it runs in the ingest pipeline's reading thread, beside the encoder, and
an unchanged file is never read again."""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ragdb.ingest.inputs import Document, Note, Skipped

# PDF pages are rendered at this resolution for OCR (dots per inch), the longest
# side bounded (a poster-sized page would cost minutes at 200 dpi).
RENDER_DPI = 200
MAX_SIDE = 3000

# A multi-page image's frames beyond this are left out (with a note): a file of
# a million tiny frames would otherwise cost days of OCR within the size bound.
MAX_FRAMES = 1000

# Who hears of each page read (see reporting): per thread, as each ingest reads
# its documents in a thread of its own.
_listener = threading.local()


@contextlib.contextmanager
def reporting(on_page: Callable[[int, int], None]) -> Iterator[None]:
    """Within the block, ``on_page(done, total)`` hears of each page this
    thread reads by OCR."""
    _listener.on_page = on_page
    try:
        yield
    finally:
        _listener.on_page = None


def _page_read(done: int, total: int) -> None:
    on_page = getattr(_listener, "on_page", None)
    if on_page is not None:
        on_page(done, total)


_engine: Any = None
_loading = threading.Lock()
_running = threading.Lock()  # one engine, one page at a time


def _ocr() -> Any:
    """The OCR engine, loaded once (its models take about half a second)."""
    global _engine
    with _loading:
        if _engine is None:
            import logging

            from rapidocr_onnxruntime import RapidOCR

            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
            _engine = RapidOCR()
    return _engine


ENGINES = ("tesseract", "rapidocr")
# Tesseract's languages (its traineddata names, "+"-joined): RAGDB_OCR_LANG.
DEFAULT_LANG = "eng"


def engine() -> str:
    """The OCR engine in use: ``RAGDB_OCR_ENGINE``, else Tesseract when installed."""
    import os
    import shutil

    chosen = os.environ.get("RAGDB_OCR_ENGINE", "").strip().lower()
    if chosen in ENGINES:
        return chosen
    return "tesseract" if shutil.which("tesseract") else "rapidocr"


def signature() -> str:
    """What decides what OCR reads: the engine, and Tesseract's languages."""
    import os

    chosen = engine()
    if chosen == "tesseract":
        return f"tesseract/{os.environ.get('RAGDB_OCR_LANG', DEFAULT_LANG)}"
    return chosen


def recognise(image: Any) -> str:
    """The text in a PIL image, line by line in reading order."""
    if engine() == "tesseract":
        return _tesseract(image)
    return _rapidocr(image)


def _tesseract(image: Any) -> str:
    import os

    import pytesseract

    lang = os.environ.get("RAGDB_OCR_LANG", DEFAULT_LANG)
    try:
        text = pytesseract.image_to_string(image.convert("RGB"), lang=lang)
    except pytesseract.TesseractError as exc:
        raise Skipped(f"OCR failed (tesseract: {str(exc)[:80]})") from None
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _rapidocr(image: Any) -> str:
    import numpy as np

    engine = _ocr()
    with _running:
        found, _ = engine(np.asarray(image.convert("RGB")))
    return "\n".join(_lines(found or []))


def _lines(found: Sequence[Any]) -> Iterable[str]:
    """Boxes of text joined into lines: top to bottom, then left to right, a box
    whose middle lies within the current line's height joining it."""
    boxes = sorted(
        ((min(p[1] for p in box), max(p[1] for p in box), min(p[0] for p in box), text)
         for box, text, _score in found),
    )  # fmt: skip
    line: list[tuple[float, str]] = []
    bottom = -1.0
    for top, low, left, text in boxes:
        if line and (top + low) / 2 > bottom:
            yield " ".join(t for _, t in sorted(line))
            line = []
        bottom = low if not line else max(bottom, low)
        line.append((left, text))
    if line:
        yield " ".join(t for _, t in sorted(line))


def read_image(source: str, data: bytes) -> Document:
    """An image's text by OCR; each frame of a multi-page TIFF is a page."""
    import itertools

    from PIL import Image, ImageSequence, UnidentifiedImageError

    started = time.perf_counter()
    try:
        with Image.open(io.BytesIO(data)) as image:
            frames = getattr(image, "n_frames", 1)
            pages = []
            for frame in itertools.islice(ImageSequence.Iterator(image), MAX_FRAMES):
                pages.append(recognise(frame.copy()))
                _page_read(len(pages), min(frames, MAX_FRAMES))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise Skipped(f"unreadable image ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not any(p.strip() for p in pages):
        raise Skipped("no text found by OCR in the image")
    doc = _paged(source, "image", pages)
    doc.notes.append(ocr_note(len(pages), started))
    if frames > len(pages):
        doc.notes.append(f"read the first {len(pages)} of its {frames} frames (the rest left out)")
    return doc


def read_pdf_pages(data: bytes, numbers: Sequence[int]) -> dict[int, str]:
    """The text OCR finds on the PDF's pages ``numbers`` (0-based), rendered."""
    import pypdfium2 as pdfium

    out = {}
    pdf = pdfium.PdfDocument(data)
    try:
        for n in numbers:
            page = pdf[n]
            width, height = page.get_size()
            scale = min(RENDER_DPI / 72, MAX_SIDE / max(width, height, 1))
            out[n] = recognise(page.render(scale=scale).to_pil())
            _page_read(len(out), len(numbers))
    finally:
        pdf.close()
    return out


def _paged(source: str, kind: str, pages: list[str]) -> Document:
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2
    return Document(
        source, "\n\n".join(pages), kind, page_starts=starts if len(pages) > 1 else None
    )


def ocr_note(pages: int, started: float) -> str:
    """What a user is told of an OCR read: pages, engine and time."""
    seconds = time.perf_counter() - started
    return Note(
        f"read {pages} page{'' if pages == 1 else 's'} by OCR ({engine()}) in {seconds:.1f}s"
    )
