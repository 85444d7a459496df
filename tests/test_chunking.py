"""Chunking properties, with the bundled model's own tokenizer."""

from __future__ import annotations

import functools
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ragdb.embed import get_embedder
from ragdb.ingest.chunking import Chunker


@functools.cache
def chunker(size: int | None = None) -> Chunker:
    e = get_embedder("all-MiniLM-L6-v2")
    return Chunker.for_model(e.tokenizer, e.max_seq_length, chunk_tokens=size)


words = st.sampled_from(
    [
        "the",
        "octopus",
        "café",
        "naïve",
        "日本語",
        "Zürich",
        "x" * 30,
        "supercalifragilistic",
        "1234567",
        "!",
        "—",
        "e=mc²",
        "ﬁne",
        "🙂",
        "lorem",
        "ipsum",
    ]
)
seps = st.sampled_from([" ", " ", " ", "\n", "\n\n", ". ", "\t", "\n# Heading\n", "  "])
texts = st.lists(st.tuples(words, seps), min_size=1, max_size=900).map(
    lambda pairs: "".join(w + s for w, s in pairs)
)


@settings(max_examples=60, deadline=None)
@given(texts, st.booleans(), st.sampled_from([None, 40]))
def test_chunks_fit_the_model_and_cover_the_text(
    text: str, markdown: bool, size: int | None
) -> None:
    c = chunker(size)
    chunks = c.split(text, markdown=markdown)
    limit = 256 if size is None else size + 2
    covered = [False] * len(text)
    for ch in chunks:
        # Never longer than the model reads (special tokens included).
        assert c.count_tokens(ch.text) <= limit
        assert text[ch.start : ch.end] == ch.text
        for i in range(ch.start, ch.end):
            covered[i] = True
    # Every non-space character lands in some chunk.
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    starts = [ch.start for ch in chunks]
    assert starts == sorted(starts)


@settings(max_examples=20, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_pages_split_apart(pages: list[str]) -> None:
    text = "\n\n".join(pages)
    starts = []
    offset = 0
    for p in pages:
        starts.append(offset)
        offset += len(p) + 2
    chunks = chunker().split(text, pages=starts)
    for ch in chunks:
        assert ch.page is not None
        page_start = starts[ch.page - 1]
        assert page_start <= ch.start and ch.end <= page_start + len(pages[ch.page - 1])


def test_overlap_between_neighbours() -> None:
    c = chunker()
    text = " ".join(f"Sentence number {i} says something about llamas." for i in range(300))
    chunks = c.split(text)
    assert len(chunks) > 3
    overlapping = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
    assert overlapping >= len(chunks) // 2


class RecordingSplitter:
    """The real splitter, noting how much text each call was handed."""

    def __init__(self, splitter: object) -> None:
        self.splitter = splitter
        self.calls: list[int] = []

    def chunk_indices(self, text: str) -> list[tuple[int, str]]:
        self.calls.append(len(text))
        return self.splitter.chunk_indices(text)  # type: ignore[attr-defined, no-any-return]


def test_text_without_line_breaks_is_chunked_in_bounded_pieces() -> None:
    import random

    from ragdb.ingest.chunking import LONG_LINE, segments

    rng = random.Random(0)
    vocab = "alpha beta gamma delta cell protein gene tumor immune market river".split()
    # 300,000 characters in one line: once quadratic in the splitter.
    text = " ".join(rng.choice(vocab) for _ in range(60_000))[:300_000]
    ordinary = "A line of text.\n" * 20_000
    assert segments(ordinary) == [0, len(ordinary)]  # ordinary text is cut as before
    c = Chunker.for_model(get_embedder("all-MiniLM-L6-v2").tokenizer, 256)
    recorder = RecordingSplitter(c._text)
    c._text = recorder  # type: ignore[assignment]
    chunks = c.split(text)
    # Work per splitter call is bounded, so the whole is linear in the text's size.
    assert max(recorder.calls) <= LONG_LINE
    assert len(recorder.calls) == len(segments(text)) - 1 <= 2 * len(text) // LONG_LINE + 1
    assert sum(recorder.calls) == len(text)
    starts = [ch.start for ch in chunks]
    assert starts == sorted(starts) and chunks[-1].end >= len(text.rstrip()) - 1
    for ch in chunks:
        assert text[ch.start : ch.end] == ch.text
        assert c.count_tokens(ch.text) <= 256
