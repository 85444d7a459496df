"""An answer's sentences checked against the chunks it was written from: the
verdicts, the citation checks, `ragdb check`, and `query --require-support`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdb import KnowledgeBase
from ragdb.embed import get_embedder
from ragdb.errors import UnsupportedAnswerError
from ragdb.query.retrieve import Hit
from ragdb.query.support import check_support

from .conftest import FACTS, Ragdb
from .fakellm import fake_llm

# What the bundled model answered in scripts/demo: fluent, and not what the
# documents say.
HALLUCINATED = (
    "The Clarity Protocol is a set of guidelines and practices that are used to improve "
    "the quality of life for people around the world."
)
CLARITY = (
    "The Clarity Protocol is our internal framework for transparent decision-making: every "
    "major decision is written down with its reasons and shared."
)


@pytest.fixture(scope="module")
def encode():  # type: ignore[no-untyped-def]
    return get_embedder("all-MiniLM-L6-v2", "cpu", "onnx-int8").encode


def hits(*texts: str) -> list[Hit]:
    return [Hit(i + 1, f"c{i}", f"fact{i}.txt", 0.5, t, {}) for i, t in enumerate(texts)]


def test_each_verdict_and_citation_check(encode) -> None:  # type: ignore[no-untyped-def]
    chunks = hits(CLARITY, FACTS[0])
    answer = (
        f"{HALLUCINATED} "
        "The Clarity Protocol is our internal framework for transparent decision-making [1]. "
        "The Innovation Summit is held every March in Lisbon [1]. "
        "The Innovation Summit is held in 2019 [2]. "
        "The summit takes place in Lisbon, Portugal [3]."
    )
    made_up, copied, miscited, swapped, phantom = check_support(answer, chunks, encode).sentences
    assert made_up.verdict == "unsupported" and made_up.text.startswith("The Clarity Protocol is a")
    assert copied.verdict == "supported" and copied.best[0] == 1 and not copied.problems
    # Backed, but by the chunk it does not cite: the better one is named.
    assert miscited.verdict == "supported" and miscited.best[0] == 2
    assert miscited.problems == ["cites [1], which does not back it; [2] does"]
    # A number no chunk holds.
    assert swapped.verdict == "unsupported" and swapped.novel == ["2019"]
    # A citation of a chunk that was never retrieved.
    assert phantom.cited == [3] and "cites [3], which no retrieved chunk is" in phantom.problems
    support = check_support(answer, chunks, encode)
    assert phantom.verdict != "unsupported"  # what it says is backed; its [3] is not
    backed = 2 + (phantom.verdict == "supported")
    assert support.unsupported == 2 and support.grounded == pytest.approx(backed / 5)


def test_check_an_answer_from_elsewhere(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    question = "What is the Clarity Protocol?"
    bad = local_ragdb("check", question, "--answer", HALLUCINATED, "--json", code=5)
    out = json.loads(bad.stdout)
    assert out["support"]["unsupported"] == 1 and out["support"]["grounded"] == 0.0
    assert out["chunks"][0]["source"].endswith("fact1.txt")
    good = local_ragdb(
        "check", question, "--answer-file", "-", "--json", input=CLARITY.split(":")[0] + "."
    )
    sentence = json.loads(good.stdout)["support"]["sentences"][0]
    assert sentence["verdict"] == "supported" and sentence["best"] == [1]
    text = local_ragdb("check", question, "--answer", HALLUCINATED, code=5).stdout
    assert "0 of 1 sentence(s) backed" in text and f"! {HALLUCINATED}" in text
    assert "--answer TEXT or --answer-file" in local_ragdb("check", question, code=2).stderr
    # The Python API, against chunks named by id.
    kb = KnowledgeBase(store=local_ragdb.store)
    ids = [h.id for h in kb.retrieve("coffee machine", k=1).hits]
    checked = kb.check("", "The coffee machine is on the third floor.", ids=ids)
    assert checked.support is not None and checked.support.sentences[0].verdict == "supported"


def test_require_support_exits_5_with_the_answer_kept(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    with fake_llm("slow", pieces=[HALLUCINATED[:40], HALLUCINATED[40:]], delay=0) as llm:
        args = ["query", "What is the Clarity Protocol?", "--llm-url", llm.url]
        plain = local_ragdb(*args)
        assert HALLUCINATED in plain.stdout and "! The Clarity Protocol is a set" in plain.stdout
        assert "1 of 1 sentence(s) of the answer are not backed" in plain.stderr
        strict = local_ragdb(*args, "--require-support", "--json", code=5)
        out = json.loads(strict.stdout)
        assert out["answer"] == HALLUCINATED and out["support"]["unsupported"] == 1
        assert "not backed by the retrieved chunks (--require-support)" in strict.stderr
        kb = KnowledgeBase(store=local_ragdb.store, llm_url=llm.url)
        with pytest.raises(UnsupportedAnswerError) as refused:
            kb.ask("What is the Clarity Protocol?", require_support=True)
        assert refused.value.answer.answer == HALLUCINATED
