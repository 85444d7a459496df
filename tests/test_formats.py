"""Office documents, e-books and Markdown front matter, made here with the
libraries that read them, ingested into a real store with the real model: the
right text is retrieved, located where a user can open it, re-ingested
incrementally, and each bad input is a clear skip that loses nothing stored."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pptx
import pytest
from ebooklib import epub

from ragdb import KnowledgeBase

from .conftest import Ragdb

SLIDES = [
    ("Quarterly goals", "Ship the glacier monitoring app to three research stations."),
    ("Budget", "The telescope refurbishment costs 48,000 euros this year."),
    ("Risks", "Volcanic ash may ground the survey aircraft in March."),
]


def write_docx(path: Path) -> None:
    d = docx.Document()
    d.core_properties.title = "Harbour Annual Report"
    d.core_properties.author = "Ines Varga"
    d.add_heading("Harbour Annual Report", 0)
    # Sections longer than a chunk, so that chunks split at the headings.
    d.add_heading("Dredging", level=1)
    d.add_paragraph("The harbour channel was dredged to a depth of fourteen metres in June.")
    for n in range(12):
        d.add_paragraph(f"Survey boat {n} measured silt along buoy line {n} twice a week.")
    d.add_heading("Lighthouse", level=1)
    d.add_paragraph("The old lighthouse lens was replaced with a rotating LED beacon.")
    for n in range(12):
        d.add_paragraph(f"Keeper shift {n} logged the beacon's rotation at dusk and dawn.")
    d.add_paragraph("Replace the fog horn", style="List Bullet")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Berth", "Length"
    table.cell(1, 0).text, table.cell(1, 1).text = "North quay", "310 metres"
    d.save(str(path))


def write_pptx(path: Path, slides: list[tuple[str, str]] = SLIDES) -> None:
    deck = pptx.Presentation()
    deck.core_properties.author = "Tomas Berg"
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = f"Speaker note for {title.lower()}."
    deck.save(str(path))


def write_xlsx(path: Path, rows: int = 60) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Inventory"
    sheet.append(["Part", "Warehouse", "Count", "Checked"])
    for i in range(rows):
        part = "titanium propeller shaft" if i == 41 else f"bolt type {i}"
        sheet.append([part, f"Depot {i % 3}", i * 7, dt.date(2026, 1, 1 + i % 28)])
    book.properties.creator = "Stock Office"
    book.save(str(path))


def write_epub(path: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("ragdb-test-book")
    book.set_title("Weather of the North")
    book.set_language("en")
    book.add_author("Asta Lund")
    chapters = []
    for n, (title, text) in enumerate(
        [
            ("Storms", "Autumn storms in the fjord bring waves of up to nine metres."),
            ("Aurora", "The northern lights are brightest around the spring equinox."),
        ],
        1,
    ):
        ch = epub.EpubHtml(title=title, file_name=f"ch{n}.xhtml", lang="en")
        ch.content = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>"
        book.add_item(ch)
        chapters.append(ch)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)


FRONT = """---
title: Beekeeping log
tags: [bees, honey]
date: 2026-05-04
rating: 4
nested: {a: 1}
---
# Spring

The queen of hive seven was replaced after the swarm in April.
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("formats")
    docs = root / "docs"
    docs.mkdir()
    write_docx(docs / "report.docx")
    write_pptx(docs / "plan.pptx")
    write_xlsx(docs / "stock.xlsx")
    write_epub(docs / "weather.epub")
    (docs / "bees.md").write_text(FRONT)
    kb = KnowledgeBase(store=root / "store")
    report = kb.ingest([docs])
    return {"kb": kb, "docs": docs, "report": report, "root": root}


def top(kb: KnowledgeBase, question: str) -> Any:
    return kb.retrieve(question, k=1).hits[0]


def test_each_format_is_retrieved_and_located(library: dict[str, Any]) -> None:
    kb, docs = library["kb"], library["docs"]
    assert library["report"].added == 5 and library["report"].skipped == 0
    hit = top(kb, "How deep was the harbour channel dredged?")
    assert hit.source == str(docs / "report.docx") and "fourteen metres" in hit.text
    assert hit.metadata["author"] == "Ines Varga"
    assert hit.metadata["title"] == "Harbour Annual Report"
    hit = top(kb, "What replaced the old lighthouse lens?")
    assert "rotating LED beacon" in hit.text and hit.metadata["heading"] == "Lighthouse"
    hit = top(kb, "What does the telescope refurbishment cost?")
    assert hit.source == str(docs / "plan.pptx") and "48,000 euros" in hit.text
    assert hit.metadata["section"] == "slide 2: Budget" and "slide 2: Budget" in hit.location
    assert "Speaker note for budget" in hit.text
    hit = top(kb, "titanium propeller shaft")
    assert hit.source == str(docs / "stock.xlsx") and "titanium propeller shaft" in hit.text
    assert hit.text.startswith("Part | Warehouse | Count | Checked")  # the header on each chunk
    assert hit.metadata["section"].startswith("sheet Inventory, rows ")
    first, last = map(int, hit.metadata["section"].rsplit(" ", 1)[1].split("-"))
    assert first <= 43 <= last  # the shaft is on row 43 (header on row 1)
    hit = top(kb, "When are the northern lights brightest?")
    assert hit.source == str(docs / "weather.epub") and "equinox" in hit.text
    assert hit.metadata["section"] == "chapter 2: Aurora" and hit.metadata["author"] == "Asta Lund"


def test_every_spreadsheet_chunk_carries_the_header(library: dict[str, Any]) -> None:
    chunks = library["kb"].chunks(str(library["docs"] / "stock.xlsx"))
    assert len(chunks) > 2
    assert all(c.text.startswith("Part | Warehouse | Count | Checked\n") for c in chunks)
    rows = [line for c in chunks for line in c.text.splitlines()[1:]]
    assert len(rows) == 60 and "2026-01-01" in rows[0]  # dates as ISO, every row once


def test_front_matter_is_metadata_not_text(library: dict[str, Any]) -> None:
    (chunk,) = library["kb"].chunks(str(library["docs"] / "bees.md"))
    assert "tags:" not in chunk.text and chunk.text.startswith("# Spring")
    extra = dict(chunk.extra)
    assert extra == {"tags": "bees, honey", "date": "2026-05-04", "rating": 4}
    assert chunk.title == "Beekeeping log" and chunk.heading == "Spring"
    # ... and the source's, as `sources --json` lists it.
    info = next(s for s in library["kb"].sources() if s.source.endswith("bees.md"))
    assert info.title == "Beekeeping log" and info.to_dict()["metadata"] == extra


def test_an_edited_slide_reembeds_only_its_chunks(tmp_path: Path) -> None:
    kb = KnowledgeBase(store=tmp_path / "store")
    deck = tmp_path / "deck.pptx"
    write_pptx(deck)
    assert kb.ingest([deck]).chunks_embedded == 3
    edited = [*SLIDES[:2], ("Risks", "Sea ice may close the northern port in February.")]
    write_pptx(deck, edited)
    again = kb.ingest([deck])
    assert again.updated == 1 and again.chunks_embedded == 1 and again.chunks_reused == 2
    hit = top(kb, "What may close the northern port?")
    assert hit.metadata["section"] == "slide 3: Risks" and "Sea ice" in hit.text


def test_bad_office_files_are_clear_skips_and_lose_nothing(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_docx(docs / "report.docx")
    kb = KnowledgeBase(store=tmp_path / "store")
    kb.ingest([docs])
    good = (docs / "report.docx").read_bytes()
    # The stored report is damaged on disk: it is skipped, its chunks stay.
    (docs / "report.docx").write_bytes(good[: len(good) // 2])
    (docs / "locked.xlsx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    empty_zip = io.BytesIO()
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("readme.txt", "not a deck")
    (docs / "deck.pptx").write_bytes(empty_zip.getvalue())
    (docs / "page.docx").write_text("<html><body><p>Herons nest in tall alders.</p></body></html>")
    write_pptx(docs / "renamed.docx")  # a deck under a Word name
    warnings: list[str] = []
    report = kb.ingest([docs], warn=warnings.append)
    reasons = {Path(s["source"]).name: s["reason"] for s in report.skipped_sources}
    assert set(reasons) == {"report.docx", "locked.xlsx", "deck.pptx"}, reasons
    assert reasons["report.docx"].startswith("corrupt Word document")
    assert "password-protected or in the old binary format" in reasons["locked.xlsx"]
    assert reasons["deck.pptx"].startswith("not a PowerPoint deck")
    assert report.added == 2
    assert "fourteen metres" in " ".join(c.text for c in kb.chunks(str(docs / "report.docx")))
    assert top(kb, "Where do herons nest?").source == str(docs / "page.docx")
    assert any("named as a Word document but is a PowerPoint deck" in w for w in warnings)
    assert kb.chunks(str(docs / "renamed.docx"))[0].section == "slide 1: Quarterly goals"


def test_query_shows_the_slide(tmp_path: Path) -> None:
    deck = tmp_path / "plan.pptx"
    write_pptx(deck)
    ragdb = Ragdb(tmp_path / "store")
    ragdb("ingest", str(deck))
    out = ragdb("query", "telescope refurbishment cost", "--retrieve-only", "-k", "1").stdout
    assert "slide 2: Budget" in out


def test_an_upload_is_judged_by_its_content() -> None:
    """What `POST /v1/documents` refuses up front (415) and what it takes."""
    from ragdb.ingest.extract import unsupported_format

    deck = io.BytesIO()
    pptx.Presentation().save(deck)
    assert unsupported_format("deck.pptx", deck.getvalue()) is None
    assert unsupported_format("deck.bin", deck.getvalue()) is None  # by content
    assert unsupported_format("page.docx", b"<html><p>hi</p></html>") is None
    locked = unsupported_format("book.xlsx", b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    assert locked is not None and "password-protected" in locked
    assert "unsupported format: a Word document (.doc)" in str(
        unsupported_format("old.doc", b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    )


def scanned(lines: list[str]) -> Any:
    """A picture of text, as a scanner makes it: black on white, no text layer."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1240, 120 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    for i, line in enumerate(lines):
        draw.text((60, 60 + i * 70), line, fill="black", font=font)
    return image


KEEPER = ["The lighthouse keeper counted forty-two ships", "passing the northern cape in 1987."]
FERRY = ["The night ferry to the islands", "leaves the pier at half past ten."]


def test_scanned_pdfs_and_images_are_read_by_ocr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragdb.ingest import pipeline
    from ragdb.ingest.inputs import Note

    monkeypatch.setattr(pipeline, "OCR_EVERY", 0.0)  # a note for every page
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned(KEEPER).save(docs / "log.pdf")  # a PDF of one image: no text layer
    first, second = scanned(["Page one is about tides."]), scanned(FERRY)
    first.save(docs / "timetable.tiff", save_all=True, append_images=[second])
    scanned([]).save(docs / "blank.png")
    (docs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    kb = KnowledgeBase(store=tmp_path / "store")
    warnings: list[str] = []
    report = kb.ingest([docs], warn=warnings.append)
    reasons = {Path(s["source"]).name: s["reason"] for s in report.skipped_sources}
    assert reasons["blank.png"] == "no text found by OCR in the image"
    assert reasons["broken.png"].startswith("unreadable image")
    assert report.added == 2, reasons
    hit = top(kb, "How many ships did the lighthouse keeper count?")
    assert hit.source == str(docs / "log.pdf") and hit.metadata["page"] == 1
    assert "forty-two ships" in hit.text and "1987" in hit.text
    hit = top(kb, "When does the night ferry leave?")
    assert hit.source == str(docs / "timetable.tiff") and hit.metadata["page"] == 2
    assert "half past ten" in hit.text
    assert any("log.pdf: read 1 page by OCR" in w for w in warnings), warnings
    # A long read says how it goes, page by page, as notes (not warnings).
    [page] = [w for w in warnings if "timetable.tiff: read page" in w]
    assert page.endswith("read page 1 of 2 by OCR") and isinstance(page, Note)
    # Unchanged, nothing is read again: neither what was stored nor the blank
    # image OCR found nothing in (remembered, skipped as before, said so).
    again: list[str] = []
    second = kb.ingest([docs], warn=again.append)
    assert second.chunks_embedded == 0 and second.skipped == 2
    assert not any("page by OCR" in w or "pages by OCR" in w for w in again), again
    blank = next(s for s in second.skipped_sources if s["source"].endswith("blank.png"))
    assert blank["reason"] == (
        "no text found by OCR in the image (unchanged since it was read; not read again)"
    )
    scanned(["A new notice: the pier is closed."]).save(docs / "blank.png")  # now it has text
    assert kb.ingest([docs]).added == 1


def test_ocr_can_be_turned_off_or_kept_to_images(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned(KEEPER).save(docs / "log.pdf")
    scanned(FERRY).save(docs / "ferry.png")
    ragdb = Ragdb(tmp_path / "store")
    off = ragdb.json("ingest", str(docs), "--no-ocr", code=1)  # nothing ingested: exit 1
    reasons = {Path(s["source"]).name: s["reason"] for s in off["skipped_sources"]}
    assert reasons == {
        "log.pdf": "PDF has no extractable text (scanned? --ocr on reads it)",
        "ferry.png": "an image: OCR is off (--ocr on reads its text)",
    }
    images = ragdb.json("ingest", str(docs), "--ocr", "images")
    assert images["added"] == 1 and images["skipped_sources"][0]["source"].endswith("log.pdf")


def write_mbox(path: Path, messages: list[tuple[str | None, str, str]]) -> None:
    """A real mbox (the standard library writes it) of (Message-ID, subject, body)."""
    import email.message
    import mailbox

    box = mailbox.mbox(str(path))
    for msg_id, subject, body in messages:
        msg = email.message.EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, "Kari <kari@example.org>", "team@x.org"
        msg["Date"] = "Tue, 03 Nov 2026 09:30:00 +0100"
        if msg_id:
            msg["Message-ID"] = f"<{msg_id}>"
        msg.set_content(body)
        box.add(msg)
    box.flush()
    box.close()


MAIL = [
    ("m1@x.org", "Boat trip", "The boat trip to the seal colony is on Saturday at nine."),
    ("m2@x.org", "Canteen", "From now on the canteen serves soup on Thursdays."),
    (None, "Parking", "The north car park closes for resurfacing next week."),
]


def test_a_mailbox_is_a_source_per_message_kept_in_step(tmp_path: Path) -> None:
    box = tmp_path / "inbox.mbox"
    write_mbox(box, MAIL)
    with open(box, "ab") as fh:  # a message that is only noise
        fh.write(b"From nobody Thu Jan  1 00:00:00 2026\n\n\xff\xfe\x00\x01\n\n")
    kb = KnowledgeBase(store=tmp_path / "store")
    first = kb.ingest([box])
    names = sorted(s.source for s in kb.sources())
    assert names[:2] == [f"{box}#m1@x.org", f"{box}#m2@x.org"] and len(names) == 3
    assert names[2].startswith(f"{box}#sha1-")
    assert first.added == 3 and first.skipped == 1  # the noise, named, the rest stored
    assert first.skipped_sources[0]["source"].startswith(f"{box}#sha1-")
    hit = top(kb, "When is the boat trip to the seal colony?")
    assert hit.source == f"{box}#m1@x.org" and hit.text.startswith("Subject: Boat trip")
    assert hit.metadata["from"] == "Kari <kari@example.org>"
    assert hit.metadata["date"] == "2026-11-03T09:30:00+01:00"
    assert "soup on Thursdays" in top(kb, "What does the canteen serve?").text
    # A message deleted from the mailbox goes; the others are not embedded again.
    box.unlink()
    write_mbox(box, [MAIL[0], MAIL[2]])
    again = kb.ingest([box])
    assert again.removed == 1 and again.unchanged == 2 and again.chunks_embedded == 0
    assert f"{box}#m2@x.org" not in {s.source for s in kb.sources()}


def test_opendocument_text_sheets_and_slides(tmp_path: Path) -> None:
    from odf import dc, draw, style, table, text
    from odf.opendocument import (
        OpenDocumentPresentation,
        OpenDocumentSpreadsheet,
        OpenDocumentText,
    )

    docs = tmp_path / "docs"
    docs.mkdir()
    odt = OpenDocumentText()
    odt.meta.addElement(dc.Title(text="Garden notes"))
    odt.text.addElement(text.H(outlinelevel=1, text="Compost"))
    odt.text.addElement(text.P(text="Turn the compost heap every second week in summer."))
    odt.save(str(docs / "garden.odt"))
    ods = OpenDocumentSpreadsheet()
    sheet = table.Table(name="Birds")
    for cells in (["Bird", "Seen"], ["wren", "3"], ["kingfisher by the weir", "1"]):
        row = table.TableRow()
        for value in cells:
            cell = table.TableCell()
            cell.addElement(text.P(text=value))
            row.addElement(cell)
        sheet.addElement(row)
    sheet.addElement(table.TableRow(numberrowsrepeated=1048570))  # the empty tail
    ods.spreadsheet.addElement(sheet)
    ods.save(str(docs / "birds.ods"))
    odp = OpenDocumentPresentation()
    layout = style.PageLayout(name="L")
    odp.automaticstyles.addElement(layout)
    master = style.MasterPage(name="M", pagelayoutname=layout)
    odp.masterstyles.addElement(master)
    for title, body in (("Welcome", "Hello all."), ("Ferries", "The ferry runs hourly.")):
        page = draw.Page(masterpagename=master)
        for words in (title, body):
            frame = draw.Frame(width="20cm", height="3cm", x="1cm", y="1cm")
            box = draw.TextBox()
            box.addElement(text.P(text=words))
            frame.addElement(box)
            page.addElement(frame)
        odp.presentation.addElement(page)
    odp.save(str(docs / "talk.odp"))
    kb = KnowledgeBase(store=tmp_path / "store")
    assert kb.ingest([docs]).added == 3
    hit = top(kb, "How often should the compost heap be turned?")
    assert hit.source.endswith("garden.odt") and hit.metadata["heading"] == "Compost"
    assert hit.metadata["title"] == "Garden notes"
    hit = top(kb, "kingfisher by the weir")
    assert hit.source.endswith("birds.ods") and hit.text.startswith("Bird | Seen\n")
    assert hit.metadata["section"] == "sheet Birds, rows 2-3"
    hit = top(kb, "How often does the ferry run?")
    assert hit.source.endswith("talk.odp") and hit.metadata["section"] == "slide 2: Ferries"


@pytest.mark.parametrize("engine", ["tesseract", "rapidocr"])
def test_each_ocr_engine_reads_print(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tesseract where it is installed (scripts/setup-env installs it), RapidOCR
    (inside its wheel) where it is not: both read a clear line of print."""
    import shutil

    from ragdb.ingest.formats import ocr

    if engine == "tesseract" and shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (scripts/setup-env installs it as root)")
    monkeypatch.setenv("RAGDB_OCR_ENGINE", engine)
    assert ocr.engine() == engine
    text = ocr.recognise(scanned(FERRY))
    assert "ferry" in text.lower() and "half past ten" in text.lower(), text


def test_a_deleted_mailbox_goes_with_prune(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_mbox(docs / "inbox.mbox", MAIL)
    (docs / "note.txt").write_text("Bring boots to the seal colony.")
    kb = KnowledgeBase(store=tmp_path / "store")
    assert kb.ingest([docs]).added == 4
    (docs / "inbox.mbox").unlink()
    assert kb.ingest([docs]).removed == 0  # without --prune nothing goes
    pruned = kb.ingest([docs], prune=True)
    assert pruned.removed == 3 and [s.source for s in kb.sources()] == [str(docs / "note.txt")]


def write_xls(path: Path) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Tides")
    day = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for col, name in enumerate(("Harbour", "Date", "High water (m)")):
        sheet.write(0, col, name)
    for row in range(1, 31):
        sheet.write(row, 0, "Kestrel Bay" if row == 23 else f"Harbour {row}")
        sheet.write(row, 1, dt.date(2026, 3, row), day)
        sheet.write(row, 2, 3 + row / 10)
    book.save(str(path))


RTF = (
    r"{\rtf1\ansi\deff0{\fonttbl{\f0\fswiss Helvetica;}}\f0\pard"
    r" The ferry to Skerry Island leaves at {\b seven} each morning from the caf\'e9 pier.\par"
    r" Tickets are sold on board.\par}"
)


def test_legacy_workbooks_and_rtf_documents(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_xls(docs / "tides.xls")
    (docs / "ferry.rtf").write_text(RTF, encoding="ascii")
    (docs / "broken.xls").write_bytes((docs / "tides.xls").read_bytes()[:3000])
    kb = KnowledgeBase(store=tmp_path / "store")
    report = kb.ingest([docs])
    assert report.added == 2
    [skip] = report.skipped_sources
    assert skip["reason"] == "corrupt Excel 97-2003 workbook (its streams cannot be read)"
    hit = top(kb, "Kestrel Bay high water")
    assert hit.source == str(docs / "tides.xls") and "Kestrel Bay | 2026-03-23 | 5.3" in hit.text
    assert hit.text.startswith("Harbour | Date | High water (m)\n")
    first, last = map(int, hit.metadata["section"].rsplit(" ", 1)[1].split("-"))
    assert hit.metadata["section"].startswith("sheet Tides, rows ") and first <= 24 <= last
    hit = top(kb, "When does the ferry to Skerry Island leave?")
    assert hit.source == str(docs / "ferry.rtf")
    assert "leaves at seven each morning from the café pier" in hit.text
    assert "fonttbl" not in hit.text and "Helvetica" not in hit.text


def write_eml(path: Path, attach: dict[str, bytes]) -> None:
    import email.message

    msg = email.message.EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "Harbour report", "ines@x.org", "board@x.org"
    msg["Date"] = "Wed, 04 Nov 2026 10:00:00 +0100"
    msg.set_content("Attached is this year's harbour report, and the raw survey data.")
    for name, data in attach.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    path.write_bytes(bytes(msg))


def test_attachments_are_sources_named_under_their_message(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_docx(tmp_path / "report.docx")
    report = (tmp_path / "report.docx").read_bytes()
    # Filenames as a sender may write them: a path is never part of the name.
    write_eml(docs / "note.eml", {"C:\\Users\\ines\\report.docx": report, "survey.bin": b"\0" * 99})
    write_pptx(tmp_path / "plan.pptx")
    box = docs / "inbox.mbox"
    write_mbox(box, MAIL[:1])
    with open(box, "ab") as fh:  # a second message, with a deck attached
        fh.write(b"From kari Tue Nov  3 09:30:00 2026\n")
        msg = tmp_path / "deck.eml"
        write_eml(msg, {"plan.pptx": (tmp_path / "plan.pptx").read_bytes()})
        fh.write(msg.read_bytes().replace(b"Subject:", b"Message-ID: <m9@x.org>\nSubject:", 1))
    kb = KnowledgeBase(store=tmp_path / "store")
    warnings: list[str] = []
    first = kb.ingest([docs], warn=warnings.append)
    names = {s.source for s in kb.sources()}
    assert {f"{docs}/note.eml#report.docx", f"{box}#m9@x.org/plan.pptx"} <= names, names
    assert first.added == len(names) == 5 and first.skipped == 0
    assert any("attachments not read (not a format ragdb reads): survey.bin" in w for w in warnings)
    hit = top(kb, "How deep was the harbour channel dredged?")
    assert hit.source == f"{docs}/note.eml#report.docx" and "fourteen metres" in hit.text
    hit = top(kb, "What does the telescope refurbishment cost?")
    assert hit.source == f"{box}#m9@x.org/plan.pptx"
    assert hit.metadata["section"] == "slide 2: Budget"
    # The attachment taken off the message goes with it; the message stays a file.
    write_eml(docs / "note.eml", {})
    again = kb.ingest([docs])
    assert (again.removed, again.updated, again.unchanged) == (1, 1, 3), again
    assert f"{docs}/note.eml#report.docx" not in {s.source for s in kb.sources()}


def test_outlook_messages_and_their_attachments(tmp_path: Path) -> None:
    from .msggen import write_msg

    docs = tmp_path / "docs"
    docs.mkdir()
    write_xls(tmp_path / "tides.xls")
    attach = {"tides.xls": (tmp_path / "tides.xls").read_bytes(), "blob.bin": b"\0" * 64}
    sent = dt.datetime(2026, 11, 4, 9, 0)
    body = "The dredger arrives on Monday and works the north channel for nine days."
    write_msg(docs / "dredging.msg", "Dredging schedule", "Ines Varga", body, attach, sent)
    (docs / "broken.msg").write_bytes((docs / "dredging.msg").read_bytes()[:1500])
    kb = KnowledgeBase(store=tmp_path / "store")
    report = kb.ingest([docs])
    assert report.added == 2, report
    [skip] = report.skipped_sources
    assert skip["source"].endswith("broken.msg") and skip["reason"].startswith("corrupt Outlook")
    hit = top(kb, "How long does the dredger work the north channel?")
    assert hit.source == str(docs / "dredging.msg") and hit.text.startswith("Subject: Dredging")
    assert hit.metadata["from"] == "Ines Varga" and hit.metadata["date"].startswith("2026-11-04")
    hit = top(kb, "Kestrel Bay high water")
    assert hit.source == f"{docs}/dredging.msg#tides.xls" and "Kestrel Bay" in hit.text


def test_packages_and_images_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragdb.ingest import formats
    from ragdb.ingest.formats import ocr

    # The bounds made small, so that the test need not build a real bomb.
    monkeypatch.setattr(formats, "MAX_EXPANDED", 2**20)
    monkeypatch.setattr(ocr, "MAX_FRAMES", 1)
    docs = tmp_path / "docs"
    docs.mkdir()
    write_docx(docs / "bomb.docx")
    with zipfile.ZipFile(docs / "bomb.docx", "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/media/zeros.bin", b"\0" * (2 * 2**20))  # 2 MB, a few KB packed
    assert (docs / "bomb.docx").stat().st_size < 100_000
    first, second = scanned(["Page one is about tides."]), scanned(FERRY)
    first.save(docs / "timetable.tiff", save_all=True, append_images=[second])
    kb = KnowledgeBase(store=tmp_path / "store")
    warnings: list[str] = []
    report = kb.ingest([docs], warn=warnings.append)
    [skip] = report.skipped_sources
    assert skip["reason"] == "a Word document that expands beyond 1 MB: not read"
    assert any("read the first 1 of its 2 frames" in w for w in warnings), warnings
    text = " ".join(c.text for c in kb.chunks(str(docs / "timetable.tiff")))
    assert "tides" in text and "ferry" not in text


def test_the_skip_memory_is_a_cache_that_never_misleads(tmp_path: Path) -> None:
    from ragdb.ingest.skips import SkipMemory

    path = tmp_path / "skips.json"
    memory = SkipMemory(path)
    memory.remember("a.png", "k1", "no text found by OCR in the image")
    memory.save()
    again = SkipMemory(path)
    assert again.recall("a.png", "k1") == "no text found by OCR in the image"
    assert again.recall("a.png", "k2") is None  # changed: read again, and forgotten
    assert again.recall("a.png", "k1") is None
    path.write_text("{not json")  # damaged: as if empty
    assert SkipMemory(path).recall("a.png", "k1") is None
