"""Filters on what a question may retrieve: a small language over each chunk's
metadata, applied to the stored records themselves and so identically to
dense, keyword and hybrid retrieval (a filtered query is the unfiltered one
with the other chunks left out).

One condition per string, ``FIELD OP VALUE``:

- ``tag=ml``: equal (a comma-separated list, as front matter's tags are
  stored, matches any of its items); ``tag!=ml``: not equal;
- ``year>=2020``, ``>``, ``<=``, ``<``: ranges, on numbers as numbers and on
  anything else (ISO dates) as text;
- ``type in pdf,docx``: one of several;
- ``source~notes/**``: a glob (``*`` within a path segment, ``**`` across).

Conditions all hold (AND). Fields: anything in a chunk's metadata (front
matter, document properties, mail headers, ``--meta``), and the built-in
``source``, ``type`` (its format: pdf, docx, markdown...), ``source_type``
(file, record, page, text), ``title``, ``heading``, ``section``, ``page``,
``origin``, ``ingested`` and ``modified`` (a file's time, ISO 8601). A chunk
without the field never matches (``!=`` included).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from ragdb.errors import UsageError

OPS = ("!=", ">=", "<=", "=", ">", "<", "~", " in ")


# Built-in names that read another metadata key.
ALIASES = {"type": "kind", "ingested": "ingested_at"}


_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(!=|>=|<=|=|>|<|~|\s+in\s+)\s*(.*?)\s*$")


@dataclasses.dataclass(frozen=True)
class Condition:
    """One ``FIELD OP VALUE`` condition."""

    field: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        """The condition ``text`` says, or a :class:`UsageError` naming what is wrong."""
        found = _CONDITION.match(text)
        if found is None or not found.group(3) or found.group(3)[0] in "=<>!~":
            raise UsageError(
                f"not a filter: {text!r} (FIELD=VALUE, !=, >=, <=, >, <, 'FIELD in A,B', "
                "FIELD~GLOB)"
            )
        field, op, value = found.group(1), found.group(2).strip() or "in", found.group(3)
        return cls(ALIASES.get(field, field), op, value.strip("'\""))

    def matches(self, meta: dict[str, Any]) -> bool:
        """Whether a chunk with metadata ``meta`` satisfies the condition."""
        if self.field not in meta or meta[self.field] is None:
            return False
        have = meta[self.field]
        if self.op == "~":
            from ragdb.ingest.paths import glob_matcher

            return bool(glob_matcher(self.value).fullmatch(str(have)))
        if self.op in ("=", "!="):
            equal = _equal(have, self.value)
            return equal if self.op == "=" else not equal
        if self.op == "in":
            return any(_equal(have, v.strip()) for v in self.value.split(","))
        return _compare(have, self.value, self.op)

    def __str__(self) -> str:
        return f"{self.field}{' in ' if self.op == 'in' else self.op}{self.value}"


def _equal(have: Any, want: str) -> bool:
    if isinstance(have, bool):
        return want.lower() == str(have).lower()
    if isinstance(have, (int, float)):
        number = _number(want)
        return number is not None and float(have) == number
    items = [item.strip() for item in str(have).split(",")]
    return str(have) == want or want in items


def _compare(have: Any, want: str, op: str) -> bool:
    number = _number(want)
    a: Any
    b: Any
    if isinstance(have, (int, float)) and not isinstance(have, bool) and number is not None:
        a, b = float(have), number
    else:
        a, b = str(have), want
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Filter:
    """Conditions a chunk must all meet to be retrieved."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(
        cls, where: Sequence[str] = (), source: str | None = None, kind: str | None = None
    ) -> Filter:
        """The filter of ``where`` conditions, a ``source`` glob and a ``kind``
        (format), as ``query --where --source --type`` give them."""
        if isinstance(where, str):
            raise UsageError("filters are a list of conditions, not one string")
        conditions = [Condition.parse(str(w)) for w in where]
        if source:
            conditions.append(Condition("source", "~", source))
        if kind:
            conditions.append(Condition("kind", "=", kind))
        return cls(tuple(conditions))

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def matches(self, meta: dict[str, Any]) -> bool:
        """Whether a chunk with metadata ``meta`` is one the filter keeps."""
        return all(c.matches(meta) for c in self.conditions)

    def chroma_where(self) -> dict[str, Any] | None:
        """What Chroma can narrow the records to before they are checked here:
        the equalities on fields whose values are single words (a source's
        name may hold commas, which ``=`` reads as a list), as Chroma's ``where``."""
        exact = [
            {c.field: c.value}
            for c in self.conditions
            if c.op == "=" and c.field in ("kind", "source_type")
        ]
        if not exact:
            return None
        return exact[0] if len(exact) == 1 else {"$and": exact}

    def to_wire(self) -> list[str]:
        """The conditions as strings (what ``where`` carries over HTTP)."""
        return [str(c) for c in self.conditions]

    def describe(self) -> str:
        """The filter in words, for messages."""
        return " and ".join(str(c) for c in self.conditions)
