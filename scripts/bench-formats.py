"""Reading speed per format, beside plain text, and OCR's pages/s and word accuracy.

    scripts/bench formats [--docs 60] [--pages 4] [--json]

The first ``--docs`` SciFact documents are written as .txt, .md, .docx, .pptx
(a slide per paragraph), .xlsx and .xls (a row per sentence), .rtf and .epub (a
chapter per paragraph), and served as web pages by a loopback server (a crawl
from an index page, no delay), and each set is ingested into a fresh store by
one warm process:
chunks/s and documents/s, and the ratio to plain text. Then ``--pages`` pages
of SciFact text are written into a text PDF (11-point Helvetica), its pages
rendered at 200 dpi into a PDF of pictures (a scan, no text layer), ingested
with OCR (pages/s), and the OCR's words compared with the text PDF's own
(word accuracy: the share of its words found, in order, by difflib).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ragdb.ingest.plan import plan_paths
from tests.pdfgen import write_pdf  # root on the path: run-python
from tests.proofs.data import SCIFACT


def corpus(n: int) -> list[tuple[str, str]]:
    """(title, text) of the first ``n`` SciFact documents with text."""
    out = []
    with open(SCIFACT / "corpus.jsonl") as fh:
        for line in fh:
            doc = json.loads(line)
            if doc.get("text", "").strip():
                out.append((doc.get("title") or doc["_id"], doc["text"]))
            if len(out) == n:
                break
    return out


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def write_all(kind: str, folder: Path, docs: list[tuple[str, str]]) -> None:
    import docx
    import openpyxl
    import pptx
    from ebooklib import epub

    folder.mkdir(parents=True)
    for i, (title, text) in enumerate(docs):
        path = folder / f"doc{i}.{kind}"
        if kind == "txt":
            path.write_text(f"{title}\n\n{text}\n")
        elif kind == "md":
            path.write_text(
                f"---\ntitle: {json.dumps(title)}\ntags: [scifact]\n---\n# {title}\n\n{text}\n"
            )
        elif kind == "docx":
            d = docx.Document()
            d.add_heading(title, 1)
            for s in sentences(text):
                d.add_paragraph(s)
            d.save(str(path))
        elif kind == "pptx":
            deck = pptx.Presentation()
            for s in [title, *sentences(text)]:
                slide = deck.slides.add_slide(deck.slide_layouts[1])
                slide.shapes.title.text = s[:60]
                slide.placeholders[1].text = s
            deck.save(str(path))
        elif kind == "xlsx":
            book = openpyxl.Workbook()
            sheet = book.active
            sheet.append(["n", "sentence"])
            for n, s in enumerate(sentences(text), 1):
                sheet.append([n, s])
            book.save(str(path))
        elif kind == "xls":
            import xlwt

            workbook = xlwt.Workbook()
            ws = workbook.add_sheet("Sentences")
            for n, s in enumerate(["sentence", *sentences(text)]):
                ws.write(n, 0, s)
            workbook.save(str(path))
        elif kind == "rtf":
            body = "".join(f"{_rtf(s)}\\par " for s in [title, *sentences(text)])
            path.write_text("{\\rtf1\\ansi " + body + "}", encoding="ascii")
        elif kind == "epub":
            book = epub.EpubBook()
            book.set_identifier(f"doc{i}")
            book.set_title(title)
            book.set_language("en")
            chapters = []
            for n, s in enumerate(sentences(text)):
                ch = epub.EpubHtml(title=f"part {n}", file_name=f"c{n}.xhtml", lang="en")
                ch.content = f"<html><body><h1>Part {n}</h1><p>{s}</p></body></html>"
                book.add_item(ch)
                chapters.append(ch)
            book.toc = chapters
            book.add_item(epub.EpubNcx())
            book.add_item(epub.EpubNav())
            book.spine = chapters
            epub.write_epub(str(path), book)


def ingest(folder: Path, store: Path) -> tuple[Any, float]:
    from ragdb import KnowledgeBase

    kb = KnowledgeBase(store=store)
    t0 = time.perf_counter()
    report = kb.ingest([folder])
    return report, time.perf_counter() - t0


def scan(text_pdf_path: Path, path: Path) -> str:
    """The pages of a text PDF rendered at 200 dpi into a PDF of pictures (a scan
    of it, no text layer); returns the text PDF's own text, to compare with."""
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    pdf = pdfium.PdfDocument(text_pdf_path.read_bytes())
    images = [pdf[n].render(scale=200 / 72).to_pil().convert("RGB") for n in range(len(pdf))]
    pdf.close()
    images[0].save(path, save_all=True, append_images=images[1:], resolution=200)
    return " ".join(page.extract_text() or "" for page in PdfReader(text_pdf_path).pages)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def word_accuracy(drawn: str, read: str) -> float:
    want, got = words(drawn), words(read)
    matcher = difflib.SequenceMatcher(None, want, got, autojunk=False)
    return sum(b.size for b in matcher.get_matching_blocks()) / max(1, len(want))


def bench_ocr(work: Path, n_pages: int) -> dict[str, Any]:
    from ragdb import KnowledgeBase

    text = " ".join(t for _, t in corpus(40))
    pages = [" ".join(text.split()[i * 230 : (i + 1) * 230]) for i in range(n_pages)]
    folder = work / "scans"
    folder.mkdir()
    write_pdf(work / "text.pdf", pages, width=90)
    drawn = scan(work / "text.pdf", folder / "scan.pdf")
    kb = KnowledgeBase(store=work / "store-ocr")
    from PIL import Image

    from ragdb.ingest.formats.ocr import engine, recognise

    recognise(Image.new("RGB", (64, 64), "white"))  # the OCR models loaded: not timed
    t0 = time.perf_counter()
    report = kb.ingest([folder])
    seconds = time.perf_counter() - t0
    read = " ".join(c.text for c in kb.chunks(str(folder / "scan.pdf")))
    return {
        "pages": n_pages,
        "seconds": round(seconds, 2),
        "pages_per_s": round(n_pages / seconds, 2),
        "chunks": report.chunks_embedded,
        "word_accuracy": round(word_accuracy(drawn, read), 3),
        "engine": engine(),
    }


def _rtf(text: str) -> str:
    """``text`` escaped for RTF: braces and backslashes, and non-ASCII as \\uN?."""
    out = []
    for ch in text:
        if ch in "\\{}":
            out.append("\\" + ch)
        elif ord(ch) > 127:
            out.append(f"\\u{ord(ch) if ord(ch) < 32768 else ord(ch) - 65536}?")
        else:
            out.append(ch)
    return "".join(out)


def bench_web(work: Path, docs: list[tuple[str, str]]) -> tuple[Any, float]:
    """The documents as pages of a site on a loopback server, crawled (no delay)."""
    from html import escape

    from ragdb import KnowledgeBase
    from ragdb.ingest.web import WebOptions
    from tests.site import Site, serve_site

    site = Site()
    links = "".join(f'<a href="/doc{i}.html">{escape(t)}</a> ' for i, (t, _) in enumerate(docs))
    site.html("/", "Index", f"<p>All documents.</p>{links}")
    for i, (title, text) in enumerate(docs):
        site.html(f"/doc{i}.html", escape(title), f"<p>{escape(text)}</p>")
    kb = KnowledgeBase(store=work / "store-web")
    with serve_site(site):
        web = WebOptions(depth=1, max_pages=len(docs) + 1, delay=0)
        t0 = time.perf_counter()
        report = kb.ingest_plan(plan_paths([f"{site.url}/"], web=web))
        return report, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    from ragdb import KnowledgeBase

    work = Path(tempfile.mkdtemp(prefix="ragdb-bench-formats-"))
    results: dict[str, Any] = {"docs": opts.docs, "formats": {}}
    try:
        docs = corpus(opts.docs)
        KnowledgeBase(store=work / "warm").ingest_text("warm", "warm up")  # the model loaded once
        for kind in ("txt", "md", "docx", "pptx", "xlsx", "xls", "rtf", "epub", "web"):
            if kind == "web":  # a site crawled from a loopback server
                report, seconds = bench_web(work, docs)
            else:
                write_all(kind, work / kind, docs)
                report, seconds = ingest(work / kind, work / f"store-{kind}")
            results["formats"][kind] = {
                "chunks": report.chunks_embedded,
                "chunks_per_s": round(report.chunks_embedded / seconds, 1),
                "docs_per_s": round(len(docs) / seconds, 1),
            }
        base = results["formats"]["txt"]["docs_per_s"]
        for row in results["formats"].values():
            row["docs_ratio_to_txt"] = round(row["docs_per_s"] / base, 2)
        results["ocr"] = bench_ocr(work, opts.pages)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if opts.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'format':<8} {'chunks':>7} {'chunks/s':>9} {'docs/s':>7}  docs/s vs .txt")
    for kind, row in results["formats"].items():
        print(
            f"{kind:<8} {row['chunks']:>7} {row['chunks_per_s']:>9} {row['docs_per_s']:>7}  "
            f"{row['docs_ratio_to_txt']}"
        )
    o = results["ocr"]
    print(
        f"OCR: {o['pages']} scanned pages in {o['seconds']} s = {o['pages_per_s']} pages/s; "
        f"word accuracy {o['word_accuracy']} against the text PDF's own words (engine "
        f"{o['engine']}; reference: 1.0 is every word, in order)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
