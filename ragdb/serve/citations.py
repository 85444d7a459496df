"""How a chat answer's sources are shown to chat clients, one per retrieved
chunk: OpenAI's ``url_citation`` annotations (the standard, read by the
``openai`` SDK and most clients), or the ``source`` events Open WebUI reads
(each opens to its passage and score there). Clients group sources by URL or
id, so each chunk gets one of its own (``file:///…/notes.md#chunk=6``), and
its label is short: a path under a folder the service reads (``--allow-path``,
``--watch``) is shown from that folder, one under the home directory from
``~``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.query.support import CITE

if TYPE_CHECKING:
    from ragdb.query.retrieve import Hit
    from ragdb.query.support import Support

FORMATS = ("annotations", "openwebui")


def is_web(source: str) -> bool:
    """Whether a source is a web page (its name its URL)."""
    return source.lower().startswith(("http://", "https://"))


def label(source: str, roots: Sequence[Path] = ()) -> str:
    """A source's name as a person reads it: the shortest of its path from a
    served folder's name, from ``~``, or whole; other names as they are."""
    if not source.startswith("/"):
        return source
    path = Path(source)
    names = [source]
    for root in roots:
        if path.is_relative_to(root):
            names.append(str(Path(root.name) / path.relative_to(root)))
    home = Path(os.path.expanduser("~"))
    if home != Path("/") and path.is_relative_to(home):
        names.append(str(Path("~") / path.relative_to(home)))
    return min(names, key=len)


def chunk_key(hit: Hit) -> str:
    """The chunk's own address: its source's, with the chunk's number."""
    number = int(hit.metadata.get("chunk_index", 0)) + 1
    if is_web(hit.source):
        base = hit.source
    elif hit.source.startswith("/"):
        base = Path(hit.source).as_uri()
    else:
        base = f"ragdb:{hit.source}"
    return f"{base.split('#', 1)[0]}#chunk={number}"


def title(hit: Hit, roots: Sequence[Path] = ()) -> str:
    """What a client shows for the chunk: its source's label and location."""
    return f"{label(hit.source, roots)} ({hit.location})"


def url_citations(
    hits: Sequence[Hit],
    roots: Sequence[Path] = (),
    spans: dict[int, tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """OpenAI ``url_citation`` annotations, one per chunk, in rank order (so
    the model's ``[n]`` is the n-th); each spans the citation it supports in
    the answer (``spans``, see :func:`citation_spans`), else 0-0."""
    return [
        {
            "type": "url_citation",
            "url_citation": {
                "url": chunk_key(hit),
                "title": title(hit, roots),
                "start_index": (spans or {}).get(hit.rank, (0, 0))[0],
                "end_index": (spans or {}).get(hit.rank, (0, 0))[1],
            },
        }
        for hit in hits
    ]


def citation_spans(text: str, support: Support | None) -> dict[int, tuple[int, int]]:
    """Where in the answer each chunk is cited, by rank: the first ``[n]`` whose
    sentence it backs best (the cited chunk when that backs it), so a citation
    points at the chunk that supports it, not merely the one named."""
    if support is None:
        return {}
    spans: dict[int, tuple[int, int]] = {}
    for sentence in support.sentences:
        start = text.find(sentence.text)
        if start < 0:
            continue
        for mark in CITE.finditer(sentence.text):
            for number in (int(n) for n in mark.group(1).split(",")):
                backs = number if number in sentence.best or not sentence.best else sentence.best[0]
                spans.setdefault(backs, (start + mark.start(), start + mark.end()))
    return spans


def source_events(hits: Sequence[Hit], roots: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """Open WebUI's ``source`` events, one per chunk, in rank order: the
    passage, a name with its location, and the similarity as its distance."""
    out = []
    for hit in hits:
        key, name, web = chunk_key(hit), title(hit, roots), is_web(hit.source)
        # Only a web page's key may look like a link: the UI opens those.
        key = key if web else key.removeprefix("file://")
        source: dict[str, Any] = {"id": key, "name": name}
        meta: dict[str, Any] = {"source": key, "name": name}
        if web:
            source["url"] = hit.source
            meta["external"] = True
        out.append(
            {
                "type": "source",
                "data": {
                    "source": source,
                    "document": [hit.text],
                    "metadata": [meta],
                    "distances": [round(hit.score, 4)],
                },
            }
        )
    return out
