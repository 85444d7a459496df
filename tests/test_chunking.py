"""Chunking properties, with the bundled model's own tokenizer."""

from __future__ import annotations

import functools
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ragdb.chunking import Chunker
from ragdb.embeddings import get_embedder


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
