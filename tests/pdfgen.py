"""Writes small, valid text PDFs for tests (no PDF library writes text on its own)."""

from __future__ import annotations

from pathlib import Path


def write_pdf(path: Path, pages: list[str], width: int | None = None) -> None:
    """A PDF of ``pages`` in Helvetica: each page's text on one line, or with
    ``width`` wrapped into lines of that many characters (11 point, 14 apart)."""
    objects: list[bytes] = []
    n = len(pages)
    # 1: catalog, 2: pages, 3: font, then a page and a content stream per page.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        content_ref = 5 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_ref} 0 R >>".encode()
        )
        stream = _content(text, width)
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for num, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{num} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    path.write_bytes(bytes(out))


def _content(text: str, width: int | None) -> bytes:
    def safe(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    if width is None:
        return f"BT /F1 12 Tf 72 720 Td ({safe(text)}) Tj ET".encode()
    import textwrap

    lines = " ".join(f"({safe(line)}) '" for line in textwrap.wrap(text, width))
    return f"BT /F1 11 Tf 14 TL 60 740 Td {lines} ET".encode()
