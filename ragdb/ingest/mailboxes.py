"""Mail read at plan time, as records files are: a mailbox (``.mbox``) is a
source per message, named by the mailbox and the message's Message-ID
(``mail.mbox#<id@host>``), so that ingesting it again embeds only new and
changed messages and prunes the messages deleted from it; and the attachments
of a message (``.eml``, Outlook's ``.msg``, or one of a mailbox) in formats ragdb reads are
sources of their own, named under it (``note.eml#report.docx``,
``mail.mbox#<id@host>/report.docx``). All of them have the file as their
origin, and go with it."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

from ragdb.ingest.inputs import Input, Skipped, read_file

SUFFIXES = (".mbox",)


MESSAGE_SUFFIXES = (".eml", ".msg")


# A message starts at a "From " line at the start of the file or after a line
# break (mbox's own separator; a body's "From " lines are quoted as ">From ").
_SEPARATOR = re.compile(rb"(?:\A|\n)From [^\n]*\n")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<?([^>\r\n]+)>?", re.IGNORECASE | re.MULTILINE)


# Attachments read as sources: what formats.judge recognises, and these.
_TEXT_SUFFIXES = {
    ".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".eml", ".csv", ".json",
}  # fmt: skip


@dataclasses.dataclass
class Mail:
    """What a mail file holds, as inputs; ``whole`` when all of it was read
    (so that what is stored of it and not among them is gone from it)."""

    inputs: list[Input]
    whole: bool


def read_mail(path: Path, roots: tuple[Path, ...] | None, ocr: str = "on") -> Mail | None:
    """The inputs of a mailbox or a message (``.eml``, ``.msg``: itself, a
    file read when its turn comes, and its attachments) at ``path``, read now
    under ``roots`` when given; None for a file that is neither."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES + MESSAGE_SUFFIXES:
        return None
    try:
        data = read_file(path, roots)
    except Skipped as exc:
        return Mail([Input(source=str(path), path=path, roots=roots, unreadable=str(exc))], False)
    if suffix in MESSAGE_SUFFIXES:
        # The message itself stays a file; its attachments are its records.
        message = Input(source=str(path), path=path, roots=roots, ocr=ocr)
        found = outlook_attachments(data) if suffix == ".msg" else attached(data)
        return Mail([message, *attachments(found, f"{path}#", str(path), ocr)], True)
    inputs: list[Input] = []
    taken: set[str] = set()
    for message_bytes in _SEPARATOR.split(data):
        if not message_bytes.strip():
            continue
        # The same message whatever its place: the last one in a file ends
        # without the blank line that precedes the next "From ".
        message_bytes = message_bytes.rstrip(b"\r\n") + b"\n"
        name = _name(message_bytes, taken)
        taken.add(name)
        source = f"{path}#{name}"
        inputs.append(
            Input(source=source, data=message_bytes, kind_hint="email", origin=str(path), ocr=ocr)
        )
        inputs += attachments(attached(message_bytes), source + "/", str(path), ocr)
    return Mail(inputs, True)


def _name(message: bytes, taken: set[str]) -> str:
    """A message's name in its mailbox: its Message-ID, or its content's hash
    when it has none; a repeated one gets a counter."""
    found = _MESSAGE_ID.search(message.split(b"\n\n", 1)[0])
    if found:
        base = found.group(1).decode("ascii", "replace").strip()
    else:
        base = "sha1-" + hashlib.sha1(message).hexdigest()[:16]
    return _unique(base, taken)


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}~{n}"
    return name


def attachments(found: list[tuple[str, bytes]], prefix: str, origin: str, ocr: str) -> list[Input]:
    """The attachments ``found`` (name, bytes) that ragdb reads, as inputs
    named ``prefix`` + their file name (never a path), of ``origin``."""
    out: list[Input] = []
    taken: set[str] = set()
    for name, data in found:
        # Only the name: a sender's path never becomes part of a source name.
        name = Path(name.replace("\\", "/")).name.replace("#", "_") or "unnamed"
        if readable_attachment(name, data):
            name = _unique(name, taken)
            taken.add(name)
            out.append(Input(source=prefix + name, data=data, origin=origin, ocr=ocr))
    return out


def outlook_attachments(data: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each file attached to an Outlook message; none
    when it cannot be read (its own skip says why)."""
    from ragdb.ingest.formats.outlook import msg_attachments

    try:
        return msg_attachments(data)
    except Skipped:
        return []


def attached(message: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each attachment of an e-mail ``message`` with a
    body; none when it cannot be parsed (its own skip says why)."""
    import email
    import email.policy

    try:
        msg: Any = email.message_from_bytes(message, policy=email.policy.default)
    except (LookupError, ValueError, TypeError, AttributeError):
        return []
    return attachments_of(msg)


def attachments_of(msg: Any) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each attachment with a body of a parsed message."""
    try:
        parts = list(msg.iter_attachments())
    except (LookupError, ValueError, TypeError, AttributeError):
        return []
    out = []
    for part in parts:
        try:
            data = part.get_payload(decode=True)
        except (LookupError, ValueError, TypeError, AttributeError):
            continue
        if isinstance(data, bytes) and data:
            out.append((str(part.get_filename() or "unnamed"), data))
    return out


def readable_attachment(name: str, data: bytes) -> bool:
    """Whether an attachment is a format ragdb reads (by content or by name),
    so that it is worth a source of its own."""
    from ragdb.ingest import formats

    if Path(name).suffix.lower() in _TEXT_SUFFIXES or data.startswith(b"%PDF-"):
        return True
    verdict = formats.judge(name, data)
    return verdict.found is not None and verdict.refusal is None
