"""Records files: each record of a JSONL or CSV file is a source named by its id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ragdb.errors import InputError
from ragdb.ingest.inputs import Input


def _csv_rows(fh: Any, path: str | Path, delimiter: str) -> list[tuple[int, dict[str, object]]]:
    """A CSV file's rows with the line each starts on. A quote left open would
    swallow the rest of the file into one field: that is an error, not a record."""
    import csv

    rows: list[tuple[int, dict[str, object]]] = []
    reader = csv.DictReader(fh, delimiter=delimiter, strict=True)
    start = 2
    try:
        for row in reader:
            rows.append((start, dict(row)))
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise InputError(
                f"{path}:{start}: a quote opened in this record is never closed "
                "(it would swallow the rest of the file)"
            ) from None
        # Other strictness errors (text after a closing quote): read leniently.
        fh.seek(0)
        lenient = csv.DictReader(fh, delimiter=delimiter)
        return [(i + 2, dict(row)) for i, row in enumerate(lenient)]
    return rows


def read_records(
    path: str | Path,
    id_field: str,
    text_field: str,
    title_field: str | None = None,
    meta_fields: tuple[str, ...] = (),
) -> list[Input]:
    """Each record of a JSONL or CSV file as an :class:`Input` named by its id."""
    import json

    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise InputError(f"no such records file: {path}")
    origin = str(file.resolve())
    suffix = file.suffix.lower()
    rows: list[tuple[int, dict[str, object]]] = []
    try:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            if suffix in (".csv", ".tsv"):
                rows = _csv_rows(fh, path, "\t" if suffix == ".tsv" else ",")
            elif suffix in (".jsonl", ".ndjson", ".json"):
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise InputError(f"{path}:{lineno}: not a JSON object ({exc})") from None
                    if not isinstance(row, dict):
                        raise InputError(f"{path}:{lineno}: not a JSON object")
                    rows.append((lineno, row))
            else:
                raise InputError(f"{path}: records files must be .jsonl, .ndjson, .csv or .tsv")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    out: list[Input] = []
    seen: set[str] = set()
    for lineno, row in rows:
        for field in (id_field, text_field):
            if field not in row:
                raise InputError(f"{path}:{lineno}: record has no field {field!r}")
        rid = str(row[id_field]).strip()
        if not rid:
            raise InputError(f"{path}:{lineno}: empty id in field {id_field!r}")
        if rid in seen:
            raise InputError(f"{path}:{lineno}: duplicate id {rid!r}")
        seen.add(rid)
        text = "" if row[text_field] is None else str(row[text_field])
        title = str(row.get(title_field) or "").strip() or None if title_field else None
        meta: list[tuple[str, str | int | float | bool]] = []
        for field in meta_fields:
            value = row.get(field)
            if isinstance(value, (str, int, float, bool)):
                meta.append((field, value))
            elif value is not None:
                meta.append((field, json.dumps(value, ensure_ascii=False)))
        out.append(
            Input(
                source=rid,
                data=text.encode("utf-8") if text.strip() else b"",
                kind_hint="text",
                title=title,
                meta=tuple(meta),
                origin=origin,
            )
        )
    return out
