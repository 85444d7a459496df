"""Which sentences of an answer the retrieved chunks back, and by which chunks.

An answer is split into sentences (sentencex, Wikimedia's rule-based
segmenter); each is scored against every retrieved chunk with what ragdb has
offline: the embedding model already loaded (the sentence against the chunk
and against each of its sentences) and the overlap of content words. A number
or a name the sentence states that no chunk holds is a strong sign of an
invention and costs the sentence its support. The best chunk's score gives the
verdict (supported, weak, unsupported) at thresholds chosen on SciFact's train
split by ``scripts/eval-grounding``; the ``[n]`` a sentence cites is checked
against the chunk that supports it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ragdb.store.keywords import STOP_WORDS
from ragdb.wire import from_fields

if TYPE_CHECKING:
    import numpy as np

    from ragdb.query.retrieve import Hit

Encode = Callable[[list[str]], "np.ndarray"]

# How the two signals mix, what a number or name no chunk holds takes off, and
# the line of a supported sentence: chosen on SciFact's train split by
# scripts/eval-grounding (README, "Grounding"), which checks they still agree.
EMBED_WEIGHT = 0.5
NOVEL_PENALTY = 0.3
SUPPORTED = 0.725
# Below the line, a band of "weak" support before "unsupported": set by hand,
# since the benchmark's sentences are plainly backed or plainly not.
WEAK_BAND = 0.15
WEAK = round(SUPPORTED - WEAK_BAND, 3)
# Sentences with fewer content words than this state nothing to check.
MIN_WORDS = 2
VERDICTS = ("supported", "weak", "unsupported")

# A citation marker: [2], [1, 3].
CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[^\W_]+(?:[.'-][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclasses.dataclass
class SentenceSupport:
    """One sentence of an answer and how the retrieved chunks back it."""

    text: str
    verdict: str  # supported, weak or unsupported
    score: float
    # Ranks of the chunks that back it best, best first.
    best: list[int]
    # The [n] it cites, and what is wrong with them (a cited chunk that is not
    # there, or one that does not back the sentence while another does).
    cited: list[int] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    # Numbers and names it states that no chunk holds.
    novel: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Support:
    """An answer's support: its sentences, and the fraction the chunks back."""

    sentences: list[SentenceSupport]
    grounded: float  # supported sentences / sentences checked (1.0 when none)
    unsupported: int
    ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """What ``--json`` and the API carry as ``support``."""
        return {
            "sentences": [s.to_dict() for s in self.sentences],
            "grounded": self.grounded,
            "unsupported": self.unsupported,
            "ms": self.ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Support:
        """The support :meth:`to_dict` wrote (a server's, say)."""
        sentences = [from_fields(SentenceSupport, s) for s in data.get("sentences") or []]
        return from_fields(cls, data, sentences=sentences)


def split_sentences(text: str) -> list[str]:
    """``text``'s sentences, stripped (a lone citation joins the sentence before)."""
    from sentencex import segment

    out: list[str] = []
    for line in text.splitlines():
        for piece in segment("en", line):
            piece = piece.strip()
            if not piece:
                continue
            if out and CITE.sub("", piece).strip(" .") == "":
                out[-1] += " " + piece
            else:
                out.append(piece)
    return out


def content_words(text: str) -> set[str]:
    """The words that carry meaning: lower-cased, stop words and citations out,
    crudely stemmed (a plural or -ed, -ing ending dropped)."""
    words = _WORD.findall(CITE.sub(" ", text).lower())
    return {_stem(w) for w in words if w not in STOP_WORDS and len(w) > 1}


def _stem(word: str) -> str:
    for ending in ("ing", "ed", "es", "s"):
        if len(word) > len(ending) + 3 and word.endswith(ending):
            return word[: -len(ending)]
    return word


def novel_facts(sentence: str, chunks: Sequence[str]) -> list[str]:
    """Numbers and names (capitalised words past a sentence's first) that
    ``sentence`` states and none of ``chunks`` holds."""
    bare = CITE.sub(" ", sentence)
    held = " ".join(chunks).lower()
    found = [n for n in _NUMBER.findall(bare) if n not in held]
    words = _WORD.findall(bare)
    for word in words[1:]:
        if word[:1].isupper() and word.lower() not in STOP_WORDS and word.lower() not in held:
            found.append(word)
    return list(dict.fromkeys(found))


def lexical(sentence_words: set[str], chunk_words: set[str]) -> float:
    """The share of a sentence's content words a chunk holds."""
    return len(sentence_words & chunk_words) / len(sentence_words) if sentence_words else 0.0


@dataclasses.dataclass
class Evidence:
    """What backs each of some sentences in each of some chunks: embedding
    similarity (the better of sentence-to-best-sentence and sentence-to-chunk,
    the chunk being the mean of its sentences),
    content-word overlap, and the numbers and names no chunk holds."""

    dense: np.ndarray  # sentences x chunks
    words: np.ndarray  # sentences x chunks
    novel: list[list[str]]

    def scores(self, weight: float = EMBED_WEIGHT) -> np.ndarray:
        """Each sentence's support by each chunk (before the novelty penalty)."""
        return weight * self.dense + (1 - weight) * self.words


def evidence(sentences: Sequence[str], texts: Sequence[str], encode: Encode) -> Evidence:
    """The :class:`Evidence` of ``sentences`` in ``texts``, in one encoder call."""
    import numpy as np

    pieces = [split_sentences(t) or [t] for t in texts]
    flat = [p for ps in pieces for p in ps]
    bare = [CITE.sub("", s) for s in sentences]
    # Short sentences only: a whole chunk (hundreds of tokens) costs the encoder
    # several times more, and the mean of its sentences stands in for it.
    vectors = np.asarray(encode([*bare, *flat]), dtype=np.float32)
    mine, parts = vectors[: len(sentences)], vectors[len(sentences) :]
    owner = np.repeat(np.arange(len(texts)), [len(ps) for ps in pieces])
    by_part = mine @ parts.T
    dense = np.full((len(sentences), len(texts)), -1.0, dtype=np.float32)
    for j in range(len(texts)):
        mean = parts[owner == j].mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-9)
        dense[:, j] = np.maximum(by_part[:, owner == j].max(axis=1), mine @ mean)
    held = [content_words(t) for t in texts]
    words = np.asarray(
        [[lexical(content_words(s), h) for h in held] for s in sentences], dtype=np.float32
    ).reshape(len(sentences), len(texts))
    return Evidence(dense, words, [novel_facts(s, texts) for s in sentences])


def check_support(answer: str, hits: Sequence[Hit], encode: Encode) -> Support:
    """How ``hits`` (the chunks the answer was written from) back each sentence
    of ``answer``; ``encode`` is the store's embedding model."""
    started = time.perf_counter()
    sentences = [s for s in split_sentences(answer) if len(content_words(s)) >= MIN_WORDS]
    if not sentences or not hits:  # nothing to check, or nothing to back them
        return _summary([_unbacked(s) for s in sentences], started)
    found = evidence(sentences, [h.text for h in hits], encode)
    scores = found.scores()
    out = [
        _judge(sentence, hits, [float(x) for x in scores[i]], found.novel[i])
        for i, sentence in enumerate(sentences)
    ]
    return _summary(out, started)


def _judge(
    sentence: str, hits: Sequence[Hit], scores: list[float], novel: list[str]
) -> SentenceSupport:
    order = sorted(range(len(hits)), key=lambda j: -scores[j])
    score = scores[order[0]] - (NOVEL_PENALTY if novel else 0.0)
    verdict = _verdict(score)
    best = [hits[j].rank for j in order[:2] if _verdict(scores[j]) != "unsupported"]
    cited = cited_ranks(sentence)
    problems = []
    by_rank = {h.rank: scores[j] for j, h in enumerate(hits)}
    for n in cited:
        if n not in by_rank:
            problems.append(f"cites [{n}], which no retrieved chunk is")
        elif _verdict(by_rank[n]) == "unsupported" and best and best[0] != n:
            problems.append(f"cites [{n}], which does not back it; [{best[0]}] does")
    if novel:
        problems.append("states what no chunk holds: " + ", ".join(novel))
    return SentenceSupport(sentence, verdict, round(score, 4), best, cited, problems, novel)


def _unbacked(sentence: str) -> SentenceSupport:
    problems = ["no chunk was retrieved"]
    return SentenceSupport(sentence, "unsupported", 0.0, [], cited_ranks(sentence), problems)


def cited_ranks(sentence: str) -> list[int]:
    """The chunk numbers a sentence cites, as ``[2]`` or ``[1, 3]``."""
    found = [int(n) for group in CITE.findall(sentence) for n in group.split(",")]
    return list(dict.fromkeys(found))


def _verdict(score: float) -> str:
    if score >= SUPPORTED:
        return "supported"
    return "weak" if score >= WEAK else "unsupported"


def _summary(sentences: list[SentenceSupport], started: float) -> Support:
    backed = sum(s.verdict == "supported" for s in sentences)
    bad = sum(s.verdict == "unsupported" for s in sentences)
    grounded = round(backed / len(sentences), 4) if sentences else 1.0
    ms = round((time.perf_counter() - started) * 1000.0, 2)
    return Support(sentences, grounded, bad, ms)
