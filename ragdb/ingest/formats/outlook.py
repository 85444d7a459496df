"""Outlook messages (``.msg``, read by extract-msg): the subject, sender,
recipients and date lead the text as an ``.eml``'s do, and are metadata; the
body is the plain one, or the HTML one turned into text."""

from __future__ import annotations

import logging
from typing import Any

from ragdb.ingest.inputs import Document, Skipped


def open_msg(data: bytes) -> Any:
    """The message in ``data`` (extract-msg's object), or :class:`Skipped`."""
    import extract_msg

    # extract-msg logs what it could not parse; the skip reason says what matters.
    logging.getLogger("extract_msg").setLevel(logging.ERROR)
    try:
        return extract_msg.openMsg(data, delayAttachments=True)
    except Exception as exc:  # it raises many kinds, its own and olefile's
        raise Skipped(f"corrupt Outlook message ({type(exc).__name__})") from None


def read_msg(source: str, data: bytes) -> Document:
    """An Outlook message's headers and body."""
    msg = open_msg(data)
    try:
        subject = str(msg.subject or "").strip()
        fields = {"From": msg.sender, "To": msg.to, "Cc": msg.cc}
        when = msg.date
        body = msg.body or ""
        if not body.strip() and msg.htmlBody:
            from bs4 import BeautifulSoup

            body = BeautifulSoup(msg.htmlBody, "html.parser").get_text("\n")
    except Exception as exc:
        raise Skipped(f"corrupt Outlook message ({type(exc).__name__})") from None
    finally:
        msg.close()
    head = [f"Subject: {subject}"] if subject else []
    head += [f"{k}: {v}" for k, v in fields.items() if v]
    if when is not None:
        head.append(f"Date: {when.isoformat()}")
    if not head and not body.strip():
        raise Skipped("no text")
    meta: dict[str, str | int | float | bool] = {
        k.lower(): " ".join(str(v).split()) for k, v in fields.items() if v
    }
    if when is not None:
        meta["date"] = when.isoformat()
    text = "\n".join(head) + "\n\n" + str(body).strip()
    return Document(source, text.strip(), "email", title=subject or None, meta=meta)


def msg_attachments(data: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each attached file of an Outlook message."""
    msg = open_msg(data)
    out = []
    try:
        for att in msg.attachments:
            payload = getattr(att, "data", None)
            if isinstance(payload, bytes) and payload:
                name = att.getFilename() if hasattr(att, "getFilename") else None
                out.append((str(name or att.longFilename or "unnamed"), payload))
    except Exception:  # a damaged attachment table: the message itself still reads
        pass
    finally:
        msg.close()
    return out
