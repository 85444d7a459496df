"""Ingest through the CLI against real stores and the real embedding model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .conftest import FACTS, Ragdb
from .pdfgen import write_pdf


def test_ingest_then_reingest_embeds_nothing(ragdb: Ragdb, facts_dir: Path) -> None:
    first = ragdb.json("ingest", str(facts_dir))
    assert first["added"] == len(FACTS)
    assert first["chunks_embedded"] == len(FACTS)
    assert {
        "added",
        "updated",
        "unchanged",
        "removed",
        "skipped",
        "chunks_embedded",
        "seconds",
    } <= set(first)
    again = ragdb.json("ingest", str(facts_dir))
    assert again["chunks_embedded"] == 0
    assert again["unchanged"] == len(FACTS)
    assert again["added"] == again["updated"] == 0
    status = ragdb.json("status")
    assert status["chunks"] == len(FACTS)
    assert status["sources"] == len(FACTS)
    assert status["embed_model"] == "all-MiniLM-L6-v2"
    assert status["format_version"] >= 1


def test_summary_line_on_stdout(ragdb: Ragdb, facts_dir: Path) -> None:
    result = ragdb("ingest", str(facts_dir))
    out = result.stdout.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith(f"{len(FACTS)} added, 0 updated, 0 unchanged, 0 removed, 0 skipped")
    assert "chunks embedded" in out[0]


def test_progress_bar_goes_to_a_terminal_stderr(store: Path, tmp_path: Path) -> None:
    """The bar shows only where stderr is a terminal, and never on stdout."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"d{i}.txt").write_text(f"Paragraph {i} about kingfishers diving. " * 40)
    master, slave = pty.openpty()
    # A terminal 100 columns wide (a fresh pty is 0x0, where tqdm draws nothing).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragdb", "--store", str(store), "ingest", str(docs)],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    terminal = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        terminal += data
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    stderr = terminal.decode(errors="replace")
    assert "embedding" in stderr and "100%" in stderr and "chunk" in stderr
    assert out.decode().strip().startswith("6 added")
    assert "100%" not in out.decode() and "\r" not in out.decode()


def test_changed_file_replaces_all_its_chunks(ragdb: Ragdb, tmp_path: Path, store: Path) -> None:
    doc = tmp_path / "doc.md"
    old_sections = [
        f"## Part {i}\n\n" + f"Old sentence number {i} about llamas. " * 40 for i in range(4)
    ]
    doc.write_text("# Title\n\n" + "\n\n".join(old_sections))
    ragdb("ingest", str(doc))
    before = ragdb.chunks()
    assert len(before) > 2
    # Change only the last section: unchanged chunks keep their embeddings.
    new_sections = [*old_sections[:3], "## Part 3\n\n" + "Brand new text about octopus. " * 30]
    doc.write_text("# Title\n\n" + "\n\n".join(new_sections))
    report = ragdb.json("ingest", str(doc))
    assert report["updated"] == 1
    assert report["chunks_embedded"] < len(before)
    assert report["chunks_reused"] > 0
    after = ragdb.chunks()
    hashes = {c["source_hash"] for c in after}
    assert len(hashes) == 1 and hashes.isdisjoint({c["source_hash"] for c in before})
    assert sorted(c["chunk_index"] for c in after) == list(range(after[0]["n_chunks"]))
    assert not any("Old sentence number 3" in c["text"] for c in after)
    assert any("Brand new text" in c["text"] for c in after)
    # Offsets point into the new text.
    text = doc.read_text()
    for c in after:
        assert text[c["start"] : c["end"]] == c["text"]


def test_markdown_headings_and_metadata(ragdb: Ragdb, tmp_path: Path, store: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\nIntro.\n\n## Install\n\n" + "Run the installer now. " * 150)
    ragdb("ingest", str(doc))
    chunks = ragdb.chunks()
    assert any(c.get("heading") == "Install" for c in chunks)
    for c in chunks:
        assert c["source"] == str(doc.resolve())
        for key in ("chunk_index", "start", "end", "chunk_hash", "source_hash", "ingested_at"):
            assert key in c
    ids = {c["id"] for c in chunks}
    # Deterministic ids: a fresh store gets the same ones.
    ragdb("reset", "--yes")
    ragdb("ingest", str(doc))
    assert {c["id"] for c in ragdb.chunks()} == ids


def test_formats_html_pdf_code_and_latin1(ragdb: Ragdb, tmp_path: Path, store: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "page.html").write_text(
        "<html><head><title>Zebra page</title><style>.x{color:red}</style>"
        "<script>var secretScript = 1;</script></head>"
        "<body><h1>Zebras</h1><p>Zebras have <b>black</b> and white stripes.</p></body></html>"
    )
    write_pdf(d / "report.pdf", ["Page one talks about llamas.", "Page two is about octopus."])
    (d / "tool.py").write_text("def greet(name):\n    return f'hello {name}'\n")
    (d / "notes.rst").write_text("Notes\n=====\n\nReStructuredText about giraffes.\n")
    (d / "latin.txt").write_bytes("Un café crème à Paris, très bon.".encode("latin-1"))
    report = ragdb.json("ingest", str(d))
    assert report["added"] == 5, report
    chunks = ragdb.chunks()
    by_source = {Path(c["source"]).name: c for c in chunks}
    html = by_source["page.html"]
    assert "black and white stripes" in " ".join(html["text"].split())
    assert "<" not in html["text"] and "secretScript" not in html["text"]
    assert "color:red" not in html["text"]
    assert html["title"] == "Zebra page"
    pdf_pages = {c["page"] for c in chunks if c["source"].endswith("report.pdf")}
    assert pdf_pages and pdf_pages <= {1, 2}
    assert "café crème" in by_source["latin.txt"]["text"]
    assert "def greet" in by_source["tool.py"]["text"]
    hits = ragdb.json("query", "animal with stripes", "--retrieve-only", "-k", "1")
    assert hits["chunks"][0]["source"].endswith("page.html")


def test_pdf_pages_are_located(ragdb: Ragdb, tmp_path: Path) -> None:
    write_pdf(
        tmp_path / "r.pdf", ["Llamas live in the Andes. " * 5, "The octopus has three hearts. " * 5]
    )
    ragdb("ingest", str(tmp_path / "r.pdf"))
    out = ragdb.json("query", "how many hearts does an octopus have", "--retrieve-only")
    assert out["chunks"][0]["metadata"]["page"] == 2


def test_identical_files_are_two_sources(ragdb: Ragdb, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("same text in both files")
    (tmp_path / "b.txt").write_text("same text in both files")
    report = ragdb.json("ingest", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    assert report["added"] == 2
    assert ragdb.json("status")["chunks"] == 2


def test_globs_and_stdin(ragdb: Ragdb, tmp_path: Path) -> None:
    for name in ("x.md", "y.md", "z.txt"):
        (tmp_path / name).write_text(f"content of {name}")
    report = ragdb.json("ingest", str(tmp_path / "*.md"))
    assert report["added"] == 2
    report = ragdb.json("ingest", "-", "--name", "clipboard", input="Text from a pipe.")
    assert report["added"] == 1
    sources = {s["source"] for s in ragdb.json("sources")}
    assert "clipboard" in sources
    assert str((tmp_path / "x.md").resolve()) in sources
    assert str((tmp_path / "z.txt").resolve()) not in sources
    # The same stdin again is unchanged; different text replaces it.
    assert (
        ragdb.json("ingest", "-", "--name", "clipboard", input="Text from a pipe.")["unchanged"]
        == 1
    )
    assert ragdb.json("ingest", "-", "--name", "clipboard", input="Other text.")["updated"] == 1


def test_prune_and_remove(ragdb: Ragdb, facts_dir: Path, tmp_path: Path) -> None:
    ragdb("ingest", str(facts_dir))
    (facts_dir / "fact0.txt").unlink()
    # Without --prune the deleted file's chunks stay.
    assert ragdb.json("ingest", str(facts_dir))["removed"] == 0
    assert ragdb.json("status")["sources"] == len(FACTS)
    report = ragdb.json("ingest", "--prune", str(facts_dir))
    assert report["removed"] == 1
    assert ragdb.json("status")["sources"] == len(FACTS) - 1
    out = ragdb.json("remove", str(facts_dir / "fact1.txt"))
    assert out["removed"] == [str((facts_dir / "fact1.txt").resolve())]
    assert ragdb.json("status")["sources"] == len(FACTS) - 2
    result = ragdb("remove", str(facts_dir / "nope.txt"), code=1)
    assert "not in the knowledge base" in result.stderr
    out = ragdb.json("remove", str(facts_dir))
    assert len(out["removed"]) == len(FACTS) - 2
    assert ragdb.json("status")["chunks"] == 0


# -- bad input ---------------------------------------------------------------------------
def test_missing_path_creates_nothing(ragdb: Ragdb, tmp_path: Path, store: Path) -> None:
    result = ragdb("ingest", str(tmp_path / "missing.txt"), code=1)
    assert "no such file or directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not store.exists()
    ragdb("status", code=1)  # no knowledge base was created, locally or on the server


def test_empty_file_binary_dir_corrupt_pdf(ragdb: Ragdb, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    result = ragdb("ingest", str(tmp_path / "empty.txt"), code=1)
    assert "skipped" in result.stderr and "empty" in result.stderr
    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "a.bin").write_bytes(bytes(range(256)) * 10)
    (bins / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100))
    result = ragdb("ingest", "--json", str(bins), code=1)
    assert '"skipped": 2' in result.stdout
    assert "a.bin" in result.stderr and "b.png" in result.stderr
    assert "binary" in result.stderr
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
    result = ragdb("ingest", str(tmp_path / "bad.pdf"), code=1)
    assert "bad.pdf" in result.stderr and "PDF" in result.stderr
    assert ragdb.json("status")["chunks"] == 0


def test_skipped_files_do_not_stop_the_others(ragdb: Ragdb, tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Useful text about llamas.")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01\x02" * 50)
    os.symlink(tmp_path / "gone.txt", tmp_path / "dangling.txt")
    report = ragdb.json("ingest", str(tmp_path))
    assert report["added"] == 1 and report["skipped"] == 2
    reasons = {Path(s["source"]).name: s["reason"] for s in report["skipped_sources"]}
    assert "binary" in reasons["junk.bin"]
    assert "cannot read" in reasons["dangling.txt"]


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_unreadable_file(ragdb: Ragdb, tmp_path: Path) -> None:
    f = tmp_path / "secret.txt"
    f.write_text("hidden")
    f.chmod(0)
    result = ragdb("ingest", str(f), code=1)
    assert "permission denied" in result.stderr


def test_empty_stdin(ragdb: Ragdb, store: Path) -> None:
    result = ragdb("ingest", "-", input="", code=1)
    assert "standard input is empty" in result.stderr
    assert not store.exists()
    ragdb("status", code=1)


def test_usage_errors_exit_2(ragdb: Ragdb, tmp_path: Path) -> None:
    ragdb("ingest", code=2)
    ragdb("ingest", "-", str(tmp_path), code=2)
    ragdb("query", "x", "-k", "0", code=2)
