"""Skip reasons that are true: encrypted and scanned PDFs, compressed text,
UTF-16 with and without a byte-order mark."""

from __future__ import annotations

import gzip
from pathlib import Path

from .conftest import Ragdb
from .pdfgen import write_pdf


def encrypted_pdf(path: Path, text: str, user_password: str) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = path.with_suffix(".plain.pdf")
    write_pdf(plain, [text])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    plain.unlink()


def test_skip_reasons_name_the_real_cause(local_ragdb: Ragdb, tmp_path: Path) -> None:
    d = tmp_path / "docs"
    d.mkdir()
    encrypted_pdf(d / "locked.pdf", "The vault code is 4711.", user_password="secret")
    write_pdf(d / "scanned.pdf", [""])
    out = local_ragdb.json("ingest", str(d), code=1)
    reasons = {Path(s["source"]).name: s["reason"] for s in out["skipped_sources"]}
    assert reasons == {
        "locked.pdf": "encrypted PDF (needs a password)",
        "scanned.pdf": "PDF has no extractable text (OCR found none either)",
    }


def test_copy_protected_pdf_with_empty_password_is_read(local_ragdb: Ragdb, tmp_path: Path) -> None:
    encrypted_pdf(tmp_path / "protected.pdf", "Walruses use their tusks to climb.", "")
    local_ragdb("ingest", str(tmp_path / "protected.pdf"))
    hit = local_ragdb.json("query", "walrus tusks", "--retrieve-only", "-k", "1")["chunks"][0]
    assert "tusks to climb" in hit["text"]


def test_compressed_and_utf16_text_is_read(local_ragdb: Ragdb, tmp_path: Path) -> None:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "manual.txt.gz").write_bytes(gzip.compress(b"Narwhals have one long spiral tusk.\n"))
    (d / "notes.md.gz").write_bytes(gzip.compress(b"# Okapi\n\nOkapis are related to giraffes.\n"))
    (d / "le.txt").write_bytes("Quokkas live on Rottnest Island.\n".encode("utf-16-le"))
    (d / "be.txt").write_bytes("Axolotls regrow their limbs.\n".encode("utf-16-be"))
    (d / "bom.txt").write_bytes("Pangolins roll into a ball.\n".encode("utf-16"))
    (d / "broken.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    out = local_ragdb.json("ingest", str(d))
    assert out["added"] == 5
    assert [s["reason"] for s in out["skipped_sources"]] == ["corrupt gzip file (truncated)"]
    for question, needle in [
        ("narwhal tusk", "spiral tusk"),
        ("okapi giraffe", "related to giraffes"),
        ("quokka island", "Rottnest"),
        ("axolotl limbs", "regrow"),
        ("pangolin ball", "roll into a ball"),
    ]:
        hit = local_ragdb.json("query", question, "--retrieve-only", "-k", "1")["chunks"][0]
        assert needle in hit["text"], (question, hit)
    md = next(s for s in local_ragdb.json("sources") if s["source"].endswith("notes.md.gz"))
    assert md["kind"] == "markdown"


def test_a_stored_file_that_can_no_longer_be_read_is_not_kept_silently(
    local_ragdb: Ragdb, tmp_path: Path
) -> None:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "keep.txt").write_text("Ibises probe the mud with curved bills.")
    (d / "gone.txt").write_text("Tapirs have a short prehensile snout.")
    write_pdf(d / "report.pdf", ["Meerkats take turns standing guard."])
    local_ragdb("ingest", str(d))
    (d / "gone.txt").write_text("")
    (d / "report.pdf").write_bytes(b"%PDF-1.4 this is not a PDF any more")
    result = local_ragdb("ingest", str(d))
    assert "its previous version (1 chunk) is still stored" in result.stderr
    assert f"ragdb remove {d / 'gone.txt'}" in result.stderr
    # Stored, and said to be: the rule is to keep it until --prune or remove.
    names = {Path(s["source"]).name for s in local_ragdb.json("sources")}
    assert names == {"keep.txt", "gone.txt", "report.pdf"}
    out = local_ragdb.json("ingest", "--prune", str(d))
    assert out["removed"] == 2 and out["unchanged"] == 1
    assert {s["stored_version"] for s in out["skipped_sources"]} == {"removed (--prune)"}
    names = {Path(s["source"]).name for s in local_ragdb.json("sources")}
    assert names == {"keep.txt"}
    hits = local_ragdb.json("query", "tapir snout", "--retrieve-only", "--mode", "bm25")
    assert all("Tapirs" not in h["text"] for h in hits["chunks"])
