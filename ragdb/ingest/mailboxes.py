"""Mailboxes (``.mbox``): each message a source of its own, named by the
mailbox and the message's Message-ID (``mail.mbox#<id@host>``), so that
ingesting the mailbox again embeds only new and changed messages and prunes
the messages deleted from it (they are records of the mailbox, as records are
of a records file)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ragdb.ingest.inputs import Input, read_file

SUFFIXES = (".mbox",)
# A message starts at a "From " line at the start of the file or after a line
# break (mbox's own separator; a body's "From " lines are quoted as ">From ").
_SEPARATOR = re.compile(rb"(?:\A|\n)From [^\n]*\n")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<?([^>\r\n]+)>?", re.IGNORECASE | re.MULTILINE)


def is_mailbox(path: Path) -> bool:
    """Whether ``path`` names a mailbox (by its extension)."""
    return path.suffix.lower() in SUFFIXES


def read_mailbox(path: Path, roots: tuple[Path, ...] | None, ocr: str = "on") -> list[Input]:
    """One input per message of the mailbox at ``path`` (read now, under
    ``roots`` when given); an unreadable mailbox is one input that says why."""
    from ragdb.ingest.inputs import Skipped

    try:
        data = read_file(path, roots)
    except Skipped as exc:
        return [Input(source=str(path), path=path, roots=roots, unreadable=str(exc))]
    inputs: list[Input] = []
    taken: set[str] = set()
    for message in _SEPARATOR.split(data):
        if not message.strip():
            continue
        # The same message whatever its place: the last one in a file ends
        # without the blank line that precedes the next "From ".
        message = message.rstrip(b"\r\n") + b"\n"
        name = _name(message, taken)
        taken.add(name)
        inputs.append(
            Input(
                source=f"{path}#{name}", data=message, kind_hint="email", origin=str(path), ocr=ocr
            )
        )
    return inputs


def _name(message: bytes, taken: set[str]) -> str:
    """A message's name in its mailbox: its Message-ID, or its content's hash
    when it has none; a repeated one gets a counter."""
    found = _MESSAGE_ID.search(message.split(b"\n\n", 1)[0])
    if found:
        base = found.group(1).decode("ascii", "replace").strip()
    else:
        base = "sha1-" + hashlib.sha1(message).hexdigest()[:16]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}~{n}"
    return name
