"""Several processes on one embedded store: the lock, fresh reads, busy errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ragdb import KnowledgeBase

from .conftest import Ragdb


def run_py(code: str, *args: str, wait: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        proc.wait(120)
    return proc


HOLD = """
import sys, time
from ragdb import KnowledgeBase
kb = KnowledgeBase(store=sys.argv[1])
with kb.store().session():
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_busy_store_exits_4_naming_the_holder(
    local_ragdb: Ragdb, facts_dir: Path, store: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    holder = run_py(HOLD, str(store), "8", wait=False)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    try:
        t0 = time.monotonic()
        result = local_ragdb("--wait", "0.5", "query", "x", "--retrieve-only", code=4)
        assert time.monotonic() - t0 < 5
        assert "store is busy" in result.stderr
        assert f"process {holder.pid}" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (even killed), the store opens at once.
    local_ragdb("--wait", "2", "query", "x", "--retrieve-only")


def test_wait_option_order(local_ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    """A holder that lets go within --wait is waited for, not reported."""
    local_ragdb("ingest", str(facts_dir))
    holder = run_py(HOLD, str(store), "1.5", wait=False)
    assert holder.stdout is not None
    holder.stdout.readline()
    local_ragdb("--wait", "30", "query", "x", "--retrieve-only")
    holder.wait()


def test_reader_sees_writes_of_other_processes(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, tmp_path: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    kb = KnowledgeBase(store=store)
    before = kb.retrieve("zebra stripes", k=1)
    assert "zebra" not in before.hits[0].text.lower()
    new = tmp_path / "zebra.txt"
    new.write_text("Zebras have black and white stripes.")
    writer = run_py(
        "import sys\nfrom ragdb import KnowledgeBase\n"
        "KnowledgeBase(store=sys.argv[1]).ingest([sys.argv[2]])\n",
        str(store),
        str(new),
    )
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    after = kb.retrieve("zebra stripes", k=1)
    assert "Zebras" in after.hits[0].text
    assert kb.status().sources == 5
    # And a removal by yet another process.
    remover = run_py(
        "import sys\nfrom ragdb import KnowledgeBase\n"
        "KnowledgeBase(store=sys.argv[1]).remove([sys.argv[2]])\n",
        str(store),
        str(new),
    )
    assert remover.returncode == 0
    assert "Zebras" not in kb.retrieve("zebra stripes", k=1).hits[0].text


def test_concurrent_ingests_of_distinct_files(
    local_ragdb: Ragdb, tmp_path: Path, store: Path
) -> None:
    dirs = []
    for w in range(3):
        d = tmp_path / f"w{w}"
        d.mkdir()
        for i in range(5):
            (d / f"f{i}.txt").write_text(f"Writer {w} file {i}: " + "words about llamas. " * 30)
        dirs.append(d)
    procs = [
        run_py(
            "import sys\nfrom ragdb import KnowledgeBase\n"
            "KnowledgeBase(store=sys.argv[1]).ingest([sys.argv[2]])\n",
            str(store),
            str(d),
            wait=False,
        )
        for d in dirs
    ]
    for p in procs:
        p.wait(180)
        assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    status = local_ragdb.json("status")
    assert status["sources"] == 15
    chunks = local_ragdb.chunks()
    assert len({c["id"] for c in chunks}) == len(chunks) == status["chunks"]
    doctor = json.loads(local_ragdb("doctor", "--json").stdout)
    assert doctor["healthy"] is True


def test_lock_file_respects_group_umask(tmp_path: Path, facts_dir: Path) -> None:
    code = (
        "import os, sys\nos.umask(0o002)\nfrom ragdb import KnowledgeBase\n"
        "KnowledgeBase(store=sys.argv[1]).ingest([sys.argv[2]])\n"
    )
    store = tmp_path / "shared"
    proc = run_py(code, str(store), str(facts_dir))
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    for name in ("ragdb.lock", "ragdb.json", "chroma.sqlite3"):
        mode = (store / name).stat().st_mode
        assert mode & 0o060 == 0o060, (name, oct(mode))


HOLD_INGEST_TURN = """
import sys
from ragdb import KnowledgeBase
kb = KnowledgeBase(store=sys.argv[1])
with kb.store().ingest_turn():
    print("holding", flush=True)
    sys.stdin.readline()
    print(kb.ingest([sys.argv[2]]).added, flush=True)
"""


def test_second_ingest_of_same_files_waits_and_embeds_nothing(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, tmp_path: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))  # the store exists, the model is exported
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"d{i}.txt").write_text(f"Document {i} is about herons and their nests. " * 20)
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_INGEST_TURN, str(store), str(docs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline().strip() == "holding"
    second = subprocess.Popen(
        [sys.executable, "-m", "ragdb", "--store", str(store), "ingest", str(docs), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert second.stderr is not None
        line = second.stderr.readline()
        assert f"waiting for process {first.pid}" in line, line
        assert "to finish its ingest into this store" in line
        first.stdin.write("go\n")
        first.stdin.flush()
        assert first.wait(180) == 0, first.stderr.read() if first.stderr else ""
        assert first.stdout.readline().strip() == "12"
        out, _ = second.communicate(timeout=180)
    finally:
        first.kill()
        second.kill()
    assert second.returncode == 0
    report = json.loads(out)
    assert (report["unchanged"], report["added"], report["chunks_embedded"]) == (12, 0, 0)
    chunks = local_ragdb.chunks()
    assert len({c["id"] for c in chunks}) == len(chunks) == local_ragdb.json("status")["chunks"]


def test_what_a_reader_keeps_is_renewed_by_another_processs_write(
    local_ragdb: Ragdb, store: Path
) -> None:
    """A searching process keeps the chunks it read (see ragdb.store.kept): the
    same question again reads none from Chroma; once another process removes
    and re-adds the same text (the same chunk id, a new record), the reader
    keeps nothing of before and reports the new record."""
    text = "Zeppelins rest in a hangar by the lake."
    local_ragdb("ingest", "-", "--name", "zeppelins", input=text)
    kb = KnowledgeBase(store=store)
    first = kb.retrieve("zeppelin hangar", k=1).hits[0]
    before = kb.kept_chunks()
    again = kb.retrieve("zeppelin hangar", k=1).hits[0]
    after = kb.kept_chunks()
    assert again.to_dict() == first.to_dict()
    assert (after["asked"] - before["asked"], after["found"] - before["found"]) == (1, 1)
    rewrite = (
        "import sys\nfrom ragdb import KnowledgeBase\n"
        "kb = KnowledgeBase(store=sys.argv[1])\n"
        "kb.remove(['zeppelins'])\n"
        "kb.ingest_text('zeppelins', sys.argv[2])\n"
    )
    writer = run_py(rewrite, str(store), text)
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert kb.kept_chunks()["kept"] == 0
    renewed = kb.retrieve("zeppelin hangar", k=1).hits[0]
    assert renewed.id == first.id
    assert renewed.metadata["ingested_at"] > first.metadata["ingested_at"]
