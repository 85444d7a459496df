"""Token-aware chunking with semantic-text-splitter and the model's own tokenizer.

Chunks never exceed what the embedding model reads (its maximum sequence
length, special tokens included): anything longer would be silently truncated
when embedded. Splits fall at headings, paragraphs and sentences first.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# [CLS] and [SEP] (or their equivalents) take two of the model's positions.
SPECIAL_TOKENS = 2
DEFAULT_OVERLAP = 32

# The splitter searches a stretch without line breaks as a whole at each step:
# on a multi-megabyte one-line text that is quadratic (a 5 MB file took 15
# minutes). Longer stretches are cut into pieces first, at a sentence end or a
# space; text with ordinary lines is chunked exactly as before.
LONG_LINE = 16_000

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets into the source's extracted text
    end: int
    heading: str | None = None
    page: int | None = None
    section: str | None = None

    @property
    def hash(self) -> str:
        return content_hash(self.text)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Chunker:
    """Splits text into chunks of at most ``max_tokens`` model tokens.

    ``max_tokens`` counts the text's own tokens; the special tokens the model
    adds are accounted for by :func:`for_model`.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, overlap: int = DEFAULT_OVERLAP):
        from semantic_text_splitter import MarkdownSplitter, TextSplitter

        if max_tokens < 8:
            raise ValueError("chunks must hold at least 8 tokens")
        overlap = max(0, min(overlap, max_tokens // 2))
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.tokenizer = tokenizer
        self._text = TextSplitter.from_huggingface_tokenizer(tokenizer, max_tokens, overlap)
        self._markdown = MarkdownSplitter.from_huggingface_tokenizer(tokenizer, max_tokens, overlap)

    @classmethod
    def for_model(
        cls,
        tokenizer: Tokenizer,
        max_seq_length: int,
        chunk_tokens: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
    ) -> Chunker:
        limit = max_seq_length - SPECIAL_TOKENS
        size = limit if chunk_tokens is None else min(chunk_tokens, limit)
        return cls(tokenizer, size, overlap)

    @property
    def signature(self) -> str:
        """Changes whenever these settings would cut the same text differently."""
        return f"sts-v1:{self.max_tokens}:{self.overlap}"

    def split(
        self,
        text: str,
        markdown: bool = False,
        pages: list[int] | None = None,
        sections: list[tuple[int, str]] | None = None,
    ) -> list[Chunk]:
        """Chunks of ``text`` in order. ``pages`` holds the offset at which each
        page starts (PDF), ``sections`` where each located part starts and its
        label: each is split separately, so every chunk has one page or part."""
        if sections:
            ends = [start for start, _ in sections[1:]] + [len(text)]
            located: list[Chunk] = []
            for (start, label), end in zip(sections, ends, strict=True):
                for c in self._split(text[start:end], markdown):
                    located.append(
                        Chunk(c.text, c.start + start, c.end + start, c.heading, section=label)
                    )
            return located
        if pages:
            bounds = [*pages[1:], len(text)]
            out: list[Chunk] = []
            for number, (start, end) in enumerate(zip(pages, bounds, strict=True), 1):
                for c in self._split(text[start:end], markdown):
                    out.append(Chunk(c.text, c.start + start, c.end + start, c.heading, number))
            return out
        return self._split(text, markdown)

    def _split(self, text: str, markdown: bool) -> list[Chunk]:
        if self._fits(text):
            # One tokenizer pass instead of the splitter's many (a third of
            # ingest's overhead on short documents).
            start = len(text) - len(text.lstrip())
            piece = text.strip()
            if not piece:
                return []
            heading = None
            if markdown:
                found = [h for h in _headings(text) if h[0] <= start]
                heading = found[-1][1] if found else None
            return [Chunk(piece, start, start + len(piece), heading)]
        splitter = self._markdown if markdown else self._text
        headings = _headings(text) if markdown else []
        heading_starts = [h[0] for h in headings]
        chunks = []
        for start, piece in self._chunk_indices(splitter, text):
            if not piece.strip():
                continue
            heading = None
            if headings:
                i = bisect.bisect_right(heading_starts, start) - 1
                if i >= 0:
                    heading = headings[i][1]
            chunks.append(Chunk(piece, start, start + len(piece), heading))
        return chunks

    @staticmethod
    def _chunk_indices(splitter: Any, text: str) -> Iterator[tuple[int, str]]:
        """The splitter's (offset, chunk) pairs, run piece by piece over text
        whose line-free stretches were cut at LONG_LINE characters."""
        bounds = segments(text)
        if len(bounds) == 2:
            yield from splitter.chunk_indices(text)
            return
        for lo, hi in itertools.pairwise(bounds):
            for start, piece in splitter.chunk_indices(text[lo:hi]):
                yield lo + start, piece

    def _fits(self, text: str) -> bool:
        # Text runs about 4-5 characters a token: one this long will not fit, and
        # the splitter's answer is right either way.
        if len(text) > self.max_tokens * 12:
            return False
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) <= self.max_tokens

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=True).ids)


def segments(text: str, long_line: int = LONG_LINE) -> list[int]:
    """Offsets that cut ``text`` so that no piece holds more than ``long_line``
    characters without a line break: ``[0, len(text)]`` for ordinary text."""
    cuts = [0]
    n = len(text)
    line_start = 0
    while line_start < n:
        nl = text.find("\n", line_start)
        line_end = n if nl < 0 else nl
        while line_end - line_start > long_line:
            limit = line_start + long_line
            floor = line_start + long_line // 2
            cut = text.rfind(". ", floor, limit) + 2
            if cut < floor + 2:
                cut = text.rfind(" ", floor, limit) + 1
            if cut <= floor:
                cut = limit  # no space at all: a hard cut
            cuts.append(cut)
            line_start = cut
        if nl < 0:
            break
        line_start = nl + 1
    cuts.append(n)
    return cuts


def _headings(text: str) -> list[tuple[int, str]]:
    """(offset, title) of each Markdown ATX heading, outside fenced code."""
    found = []
    fenced = False
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            m = _HEADING.match(line.rstrip("\r\n"))
            if m:
                found.append((offset, m.group(2).strip()))
        offset += len(line)
    return found
