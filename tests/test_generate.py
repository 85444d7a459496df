"""Answers from a real llama.cpp server, and the faults a user can meet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragdb.config import Settings
from ragdb.errors import LLMError
from ragdb.query.generate import (
    NOT_ENOUGH,
    ThinkFilter,
    build_prompt,
    stream_answer,
    strip_thinking,
)
from ragdb.query.retrieve import Hit

from .conftest import Ragdb
from .fakellm import fake_llm


@pytest.fixture
def filled(ragdb: Ragdb, facts_dir: Path) -> Ragdb:
    ragdb("ingest", str(facts_dir))
    return ragdb


def test_answer_from_real_llm(filled: Ragdb, llm_server: str) -> None:
    result = filled(
        "query",
        "When is the Innovation Summit held?",
        "--llm-url",
        llm_server,
        "--model",
        "smollm2",
    )
    out = result.stdout
    assert out.startswith("[1] ")
    assert "Answer:" in out
    answer = out.split("Answer:", 1)[1].strip()
    assert answer  # the model said something


def test_answer_json_from_real_llm(filled: Ragdb, llm_server: str) -> None:
    out = filled.json(
        "query",
        "What is the Clarity Protocol?",
        "--llm-url",
        llm_server,
        "--model",
        "smollm2",
        "-k",
        "2",
    )
    assert isinstance(out["answer"], str) and out["answer"]
    assert out["enough_context"] is True
    assert out["model"] == "smollm2"
    assert len(out["chunks"]) == 2
    assert out["timings"]["generate_ms"] > 0


def test_llm_settings_from_environment(filled: Ragdb, llm_server: str) -> None:
    env = {"RAGDB_LLM_URL": llm_server, "RAGDB_LLM_MODEL": "smollm2"}
    out = filled.json("query", "Where is the best coffee machine?", env=env)
    assert out["model"] == "smollm2" and out["answer"]


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("404", "ollama pull qwen3:4b"),
        ("500", "HTTP 500"),
        ("broken", "broke off"),
        ("cut", "broke off"),
    ],
)
def test_llm_faults_exit_3_with_context(filled: Ragdb, mode: str, needle: str) -> None:
    with fake_llm(mode) as server:
        result = filled(
            "query", "When is the Innovation Summit held?", "--llm-url", server.url, code=3
        )
    assert "[1] " in result.stdout  # the retrieved context is still shown
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], result.stderr


def test_llm_timeout(filled: Ragdb) -> None:
    with fake_llm("hang", hang_seconds=5) as server:
        result = filled("query", "When?", "--llm-url", server.url, "--timeout", "0.5", code=3)
    assert "did not answer within 0.5s" in result.stderr


def test_llm_down(filled: Ragdb) -> None:
    from .conftest import free_port

    result = filled("query", "When?", "--llm-url", f"http://127.0.0.1:{free_port()}/v1", code=3)
    assert "ollama serve" in result.stderr and "--llm-url" in result.stderr
    assert "[1] " in result.stdout


def test_llm_fault_json_keeps_chunks(filled: Ragdb) -> None:
    with fake_llm("404") as server:
        result = filled("query", "When?", "--llm-url", server.url, "--json", code=3)
    out = json.loads(result.stdout)
    assert out["answer"] is None and out["chunks"] and "ollama pull" in out["error"]


def test_think_blocks_hidden_unless_asked(filled: Ragdb) -> None:
    pieces = ["<thi", "nk>secret reasoning</th", "ink>The summit is in March [1]."]
    with fake_llm("think", pieces=pieces) as server:
        hidden = filled.json("query", "When?", "--llm-url", server.url)
        shown = filled.json("query", "When?", "--llm-url", server.url, "--show-thinking")
    assert hidden["answer"] == "The summit is in March [1]."
    assert "secret reasoning" in shown["answer"]


@given(
    st.lists(
        st.sampled_from(["<think>", "</think>", "a", "b ", "<", "think", ">", "/"]), max_size=12
    ),
    st.data(),
)
def test_think_filter_matches_whole_text_regex(parts: list[str], data: st.DataObject) -> None:
    text = "".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=5)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    f = ThinkFilter()
    streamed = "".join(f.feed(p) for p in pieces) + f.flush()
    assert streamed.strip() == strip_thinking(text)


def test_context_budget_limits_the_prompt() -> None:
    hits = [Hit(i + 1, str(i), f"s{i}", 0.5, "word " * 100, {}) for i in range(5)]

    def count(t: str) -> int:
        return len(t.split())

    prompt = build_prompt("q?", hits, 250, count)
    assert [h.rank for h in prompt.used] == [1, 2]
    assert prompt.context_tokens <= 250
    tiny = build_prompt("q?", hits, 20, count)
    assert len(tiny.used) == 1 and tiny.context_tokens <= 20
    assert NOT_ENOUGH in prompt.messages[0]["content"]


def test_context_tokens_option(filled: Ragdb, llm_server: str) -> None:
    out = filled.json(
        "query",
        "When is the Innovation Summit held?",
        "--llm-url",
        llm_server,
        "--model",
        "smollm2",
        "--context-tokens",
        "40",
    )
    assert out["timings"]["context_tokens"] <= 40


def test_stream_answer_raises_llm_error_for_404() -> None:
    with fake_llm("404") as server:
        settings = Settings(llm_url=server.url)
        with pytest.raises(LLMError, match="not found"):
            list(stream_answer(settings, [{"role": "user", "content": "hi"}]))


def test_answer_bounded_by_max_tokens_real_llm(filled: Ragdb, llm_server: str) -> None:
    args = ["query", "Write the word octopus three hundred times."]
    args += ["--llm-url", llm_server, "--model", "smollm2", "--max-tokens", "3"]
    out = filled.json(*args)
    # Whatever SmolLM2 says (it is told to answer from the context only), it
    # needs more than three tokens: the server stops there and ragdb says so.
    assert out["truncated"] is True and out["truncated_reason"] == "max_tokens"
    assert 0 < len(out["answer"]) < 60
    # Without --json the cut is said on stderr, the answer still on stdout.
    result = filled(*args)
    assert "the answer was cut short: it reached --max-tokens 3" in result.stderr
    assert "Answer:" in result.stdout


def test_whole_answer_deadline(filled: Ragdb) -> None:
    # 40 pieces, 0.1 s apart: every read is quick, the whole answer is not.
    with fake_llm("slow", pieces=[f"word{i} " for i in range(40)], delay=0.1) as server:
        out = filled.json("query", "When?", "--llm-url", server.url, "--timeout", "1")
    assert out["truncated"] is True and out["truncated_reason"] == "deadline"
    assert out["answer"].startswith("word0 word1") and "word39" not in out["answer"]


def test_looping_model_is_stopped() -> None:
    loop = ["The octopus is the company's favourite animal. "] * 200
    with fake_llm("slow", pieces=loop, delay=0.0) as server:
        from ragdb.query.generate import StreamState

        state = StreamState()
        text = "".join(
            stream_answer(
                Settings(llm_url=server.url), [{"role": "user", "content": "hi"}], state=state
            )
        )
    assert state.truncated and state.reason == "repetition"
    assert text.count("favourite animal") <= 6


def test_url_without_v1_says_so(filled: Ragdb) -> None:
    with fake_llm("path404") as server:
        root = server.url.removesuffix("/v1")
        result = filled("query", "When?", "--llm-url", root, code=3)
    err = result.stderr.strip()
    assert f"try {root}/v1" in err and "ollama pull" not in err


def test_bad_llm_settings_are_usage_errors(filled: Ragdb) -> None:
    err = filled("query", "When?", code=2, env={"RAGDB_LLM_TIMEOUT": "-5"}).stderr
    assert "RAGDB_LLM_TIMEOUT=-5 must be a positive number" in err
    err = filled("query", "When?", code=2, env={"RAGDB_LLM_MAX_TOKENS": "0"}).stderr
    assert "RAGDB_LLM_MAX_TOKENS=0" in err
    err = filled("query", "When?", "--llm-url", "localhost:11434", code=2).stderr
    assert "is not an http(s)://HOST[:PORT]/v1 URL" in err
