"""Documents made of located parts (slides, a sheet's groups of rows, chapters),
as every reader of such a format builds them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ragdb.ingest.inputs import Document, Skipped

# A spreadsheet's rows are grouped until a group's text reaches this many
# characters: with the header, under the default model's 256 tokens even for
# rows of numbers and dates (about three characters a token), so the chunker
# does not cut a group and leave a part without its header.
GROUP_CHARS = 400

Meta = dict[str, str | int | float | bool]


def located(
    source: str, kind: str, parts: list[tuple[str, str]], title: str | None, meta: Meta
) -> Document:
    """One document of ``parts`` (label, text), each starting where its label says."""
    if not parts:
        raise Skipped("no text")
    sections, texts, offset = [], [], 0
    for label, body in parts:
        sections.append((offset, label))
        texts.append(body)
        offset += len(body) + 2
    return Document(source, "\n\n".join(texts), kind, title=title, sections=sections, meta=meta)


def row_groups(sheet: str, rows: Iterable[tuple[int, list[str]]]) -> Iterator[tuple[str, str]]:
    """A sheet's rows ((row number, cells), empty rows left out) as parts of
    about :data:`GROUP_CHARS`, each headed by the first row and located as
    ``sheet NAME, rows A-B``; a sheet of one row is that row."""
    header: str | None = None
    group: list[tuple[int, str]] = []
    for number, cells in rows:
        line = " | ".join(cells)
        if header is None:
            header = line
            continue
        if group and sum(len(t) for _, t in group) + len(line) > GROUP_CHARS:
            yield _group(sheet, header, group)
            group = []
        group.append((number, line))
    if group and header is not None:
        yield _group(sheet, header, group)
    elif header is not None:
        yield f"sheet {sheet}", header


def _group(sheet: str, header: str, rows: list[tuple[int, str]]) -> tuple[str, str]:
    first, last = rows[0][0], rows[-1][0]
    span = f"row {first}" if first == last else f"rows {first}-{last}"
    return f"sheet {sheet}, {span}", "\n".join([header, *(line for _, line in rows)])
