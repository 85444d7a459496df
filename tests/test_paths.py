"""What path arguments cover: --prune with globs, remove with globs and its
confirmation, empty and symlinked directories."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from ragdb.ingest.paths import glob_matcher

from .conftest import Ragdb


def notes(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "a.md").write_text("Alpacas hum when they are content.")
    (d / "b.md").write_text("Beavers build dams from branches and mud.")
    (d / "c.txt").write_text("Cormorants dry their wings in the sun.")
    return d


def sources(ragdb: Ragdb) -> set[str]:
    return {Path(s["source"]).name for s in ragdb.json("sources")}


def test_prune_with_files_named_one_by_one_is_refused(local_ragdb: Ragdb, tmp_path: Path) -> None:
    d = notes(tmp_path)
    local_ragdb("ingest", str(d))
    # What the shell makes of `--prune notes/*.md`: the files that exist now.
    err = local_ragdb("ingest", "--prune", str(d / "a.md"), str(d / "b.md"), code=2).stderr
    assert "quote it" in err and "files named one by one cover nothing" in err
    assert sources(local_ragdb) == {"a.md", "b.md", "c.txt"}


def test_prune_with_a_quoted_glob_prunes_what_it_covers(local_ragdb: Ragdb, tmp_path: Path) -> None:
    d = notes(tmp_path)
    local_ragdb("ingest", str(d))
    (d / "b.md").unlink()
    (d / "c.txt").unlink()  # gone too, but outside the pattern: kept
    out = local_ragdb.json("ingest", "--prune", f"{d}/*.md")
    assert out["removed"] == 1 and out["unchanged"] == 1
    assert sources(local_ragdb) == {"a.md", "c.txt"}


def test_glob_matcher_keeps_star_inside_a_component() -> None:
    m = glob_matcher("/n/*.md")
    assert m.match("/n/a.md") and not m.match("/n/sub/a.md")
    assert glob_matcher("/n/**/*.md").match("/n/sub/deep/a.md")
    assert glob_matcher("/n/**/*.md").match("/n/a.md")
    assert not glob_matcher("/n/[!a]*.md").match("/n/a.md")


def test_remove_takes_globs(local_ragdb: Ragdb, tmp_path: Path) -> None:
    d = notes(tmp_path)
    local_ragdb("ingest", str(d))
    out = local_ragdb.json("remove", f"{d}/*.md")
    assert sorted(Path(s).name for s in out["removed"]) == ["a.md", "b.md"]
    assert sources(local_ragdb) == {"c.txt"}
    assert "not in the knowledge base" in local_ragdb("remove", f"{d}/*.md", code=1).stderr
    result = local_ragdb("remove", str(d / "c.txt"))
    assert result.stdout.strip().splitlines()[-1] == "1 source, 1 chunk removed"


def run_on_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """Runs ragdb with a pseudo-terminal as stdin, stdout and stderr, typing ``answer``."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragdb", *args], stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    seen = b""
    deadline = time.time() + 120
    answered = False
    poller = select.poll()  # not select(): it fails on a descriptor past 1023
    poller.register(master, select.POLLIN)
    while time.time() < deadline:
        if poller.poll(200):
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def test_removing_several_sources_asks_on_a_terminal(
    local_ragdb: Ragdb, tmp_path: Path, store: Path
) -> None:
    d = notes(tmp_path)
    local_ragdb("ingest", str(d))
    code, seen = run_on_terminal(["--store", str(store), "remove", str(d)], "n")
    assert "Remove 3 sources (3 chunks)?" in seen and code == 1
    assert sources(local_ragdb) == {"a.md", "b.md", "c.txt"}
    code, seen = run_on_terminal(["--store", str(store), "remove", str(d)], "y")
    assert code == 0 and "3 sources, 3 chunks removed" in seen
    local_ragdb("ingest", str(d))
    # --yes, or no terminal (a script), does not ask.
    code, seen = run_on_terminal(["--store", str(store), "remove", "--yes", str(d)], "n")
    assert code == 0 and "[y/N]" not in seen
    local_ragdb("ingest", str(d))
    assert len(local_ragdb.json("remove", str(d))["removed"]) == 3


def test_empty_and_symlinked_directories_are_reported(local_ragdb: Ragdb, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = local_ragdb("ingest", str(empty), code=1)
    assert "holds no files to ingest" in result.stderr and "nothing to ingest" in result.stderr
    d = notes(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "z.txt").write_text("Zebu have a hump of fat over their shoulders.")
    (d / "linked").symlink_to(elsewhere, target_is_directory=True)
    result = local_ragdb("ingest", str(d))
    assert f"skipped {d / 'linked'}: a symlinked directory (not followed" in result.stderr
    assert sources(local_ragdb) == {"a.md", "b.md", "c.txt"}
    assert "1 chunk embedded" not in result.stdout and "3 chunks embedded" in result.stdout


def test_hidden_files_and_git_are_skipped_and_double_star_globs(
    local_ragdb: Ragdb, tmp_path: Path
) -> None:
    d = notes(tmp_path)
    (d / ".secret.md").write_text("Hidden notes about herons.")
    (d / ".git").mkdir()
    (d / ".git" / "config").write_text("[core] repositoryformatversion = 0")
    (d / "deep" / "deeper").mkdir(parents=True)
    (d / "deep" / "deeper" / "d.md").write_text("Dingoes howl at dusk.")
    (d / "deep" / "e.txt").write_text("Egrets stalk the shallows.")
    local_ragdb("ingest", str(d))
    assert sources(local_ragdb) == {"a.md", "b.md", "c.txt", "d.md", "e.txt"}
    local_ragdb("reset", "--yes")
    # `**` crosses directories (quoted, so that ragdb expands it, not the shell).
    local_ragdb("ingest", f"{d}/**/*.md")
    assert sources(local_ragdb) == {"a.md", "b.md", "d.md"}
