"""Which files a list of paths names (files, directories walked, glob patterns),
and which stored sources a list of targets names (for ``remove``).

Hidden files and folders are left out of walks; symlinked directories inside
one are not followed; with ``roots`` (a server reading for a client) nothing
outside them is walked.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragdb.errors import InputError, SourceNotFoundError
from ragdb.ingest.inputs import under_roots


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


@dataclasses.dataclass
class Expansion:
    """What a list of path arguments names."""

    files: list[Path]
    dirs: list[Path]  # directories given (or matched): --prune covers what is under them
    patterns: list[str]  # glob patterns given, made absolute: --prune covers what they match
    notes: list[str]  # what was left out and why (empty directories, symlinked ones)


def expand_paths(args: list[str], roots: tuple[Path, ...] | None = None) -> Expansion:
    """Files named by ``args`` (files, directories walked recursively, glob
    patterns), and the directories and patterns given, for ``--prune``.

    Hidden files and directories inside a given directory are left out, as
    version-control and tool folders are not documents; symlinked directories
    inside one are not followed (a note says so), and with ``roots`` neither
    is a directory a glob reaches outside them. A path that matches nothing
    is an error before anything is ingested.
    """
    files: dict[Path, None] = {}
    dirs: list[Path] = []
    patterns: list[str] = []
    notes: list[str] = []

    def walk(root: Path) -> None:
        if roots is not None and not under_roots(root, roots):
            notes.append(f"skipped {root}: outside the server's --allow-path roots")
            return
        found = list(_walk(root, notes))
        if not found:
            notes.append(f"{root} holds no files to ingest")
        files.update(dict.fromkeys(found))

    for arg in args:
        path = Path(os.path.expanduser(arg))
        if glob.has_magic(arg) and not path.exists():
            pattern = os.path.abspath(os.path.expanduser(arg))
            patterns.append(pattern)
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"no files match {arg!r}")
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    if roots is not None and not under_roots(mp, roots):
                        notes.append(f"skipped {mp}: outside the server's --allow-path roots")
                        continue
                    dirs.append(mp.resolve())
                    walk(mp.resolve())
                else:
                    files[mp.resolve()] = None
            continue
        if not path.exists() and not path.is_symlink():
            raise InputError(f"no such file or directory: {arg}")
        if path.is_dir():
            root = path.resolve()
            dirs.append(root)
            walk(root)
        else:
            files[path.absolute() if path.is_symlink() else path.resolve()] = None
    return Expansion(list(files), dirs, patterns, notes)


def _walk(root: Path, notes: list[str]) -> Iterator[Path]:
    def unreadable(exc: OSError) -> None:
        notes.append(f"skipped {exc.filename}: {exc.strerror or exc} (its files were not read)")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        for d in dirnames:
            if not d.startswith(".") and os.path.islink(os.path.join(dirpath, d)):
                notes.append(
                    f"skipped {os.path.join(dirpath, d)}: a symlinked directory (not followed; "
                    "give its path to ingest it)"
                )
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def glob_matcher(pattern: str) -> re.Pattern[str]:
    """A regular expression matching what the glob ``pattern`` matches:
    ``*`` and ``?`` within one path component, ``**`` across components."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("!")
                # Escaped, so that "[[a]" or "[\\]" is a set of characters, never
                # a nested set (which Python's re warns about) or a broken escape.
                body = "".join(re.escape(ch) if ch in "[]\\^&~|" else ch for ch in body[negate:])
                out.append(f"[{'^' if negate else ''}{body}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def match_sources(targets: Sequence[str | Path], known: dict[str, int]) -> dict[str, int]:
    """The sources of ``known`` (name: chunks) that ``targets`` name, as
    :meth:`KnowledgeBase.matching_sources` finds them; paths are taken from
    where this process stands."""
    found: dict[str, int] = {}
    for target in targets:
        matched = _match_sources(str(target), known)
        if not matched:
            raise SourceNotFoundError(f"not in the knowledge base: {target}")
        for m in matched:
            found.setdefault(m, known[m])
    return found


def _match_sources(target: str, known: dict[str, Any]) -> list[str]:
    if target in known:
        return [target]
    path = Path(os.path.expanduser(target))
    # A stored file whose name holds glob characters ("[draft].txt") is itself.
    exact = [c for c in (str(path.absolute()), str(path.resolve())) if c in known]
    if exact:
        return exact[:1]
    if glob.has_magic(target):
        # Against stored names as given, and against paths made absolute.
        named = glob_matcher(target)
        pathlike = glob_matcher(os.path.abspath(os.path.expanduser(target)))
        return sorted(s for s in known if named.match(s) or pathlike.match(s))
    path = Path(os.path.expanduser(target))
    candidates = {str(path.absolute()), str(path.resolve())}
    hits = [c for c in candidates if c in known]
    if hits:
        return hits[:1]
    prefixes = tuple(c.rstrip("/") + "/" for c in candidates)
    return sorted(s for s in known if s.startswith(prefixes))
