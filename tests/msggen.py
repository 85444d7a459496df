"""Outlook messages (.msg) for the tests, written as Outlook lays them out
([MS-OXMSG]: properties as streams of a Compound File, attachments as
storages) by cfbwrite, since no library writes them."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

from cfbwrite import Entry, write_ole


def _stream(name: str, data: bytes) -> Entry:
    return Entry(name=name, is_storage=False, size=len(data), read=lambda: data)


def _storage(name: str, children: list[Entry]) -> Entry:
    return Entry(name=name, is_storage=True, size=0, read=None, children=children)


def _text(tag: str, value: str) -> Entry:
    return _stream(f"__substg1.0_{tag}001F", value.encode("utf-16-le"))  # PT_UNICODE


def write_msg(
    path: Path, subject: str, sender: str, body: str, attach: dict[str, bytes], sent: dt.datetime
) -> None:
    """A message with ``subject``, ``sender``, ``body``, its submit time and
    the files ``attach`` (name -> bytes)."""
    filetime = int((sent - dt.datetime(1601, 1, 1)).total_seconds() * 10**7)
    # The top level's property stream: a 32-byte header counting attachments,
    # then PR_CLIENT_SUBMIT_TIME (0x0039, PT_SYSTIME).
    props = b"\0" * 8 + struct.pack("<IIII", 0, len(attach), 0, len(attach)) + b"\0" * 8
    props += struct.pack("<IIQ", 0x00390040, 6, filetime)
    children = [
        _text("0037", subject),
        _text("1000", body),
        _text("0C1A", sender),
        _text("001A", "IPM.Note"),
        _stream("__properties_version1.0", props),
        _storage("__nameid_version1.0", [_stream(f"__substg1.0_000{i}0102", b"") for i in "234"]),
    ]
    for n, (name, data) in enumerate(attach.items()):
        method = b"\0" * 8 + struct.pack("<IIQ", 0x37050003, 6, 1)  # attached by value
        children.append(
            _storage(
                f"__attach_version1.0_#{n:08X}",
                [
                    _stream("__substg1.0_37010102", data),
                    _text("3707", name),
                    _stream("__properties_version1.0", method),
                ],
            )
        )
    write_ole(str(path), children)
