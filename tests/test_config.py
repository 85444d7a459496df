from __future__ import annotations

from pathlib import Path

import pytest

from ragdb.config import DEFAULT_LLM_URL, Settings, ollama_host_to_url, parse_headers
from ragdb.errors import UsageError


def test_defaults_env_then_options() -> None:
    s = Settings.resolve(env={})
    assert s.llm_url == DEFAULT_LLM_URL and s.llm_model == "qwen3:4b" and s.wait == 60
    env = {
        "OLLAMA_HOST": "gpu-box:9999",
        "RAGDB_LLM_MODEL": "llama3",
        "RAGDB_STORE": "/x",
        "RAGDB_WAIT": "5",
    }
    s = Settings.resolve(env=env)
    assert s.llm_url == "http://gpu-box:9999/v1"
    assert s.llm_model == "llama3" and s.store == Path("/x") and s.wait == 5
    # RAGDB_LLM_URL beats OLLAMA_HOST; options beat both; None options are ignored.
    s = Settings.resolve(env={**env, "RAGDB_LLM_URL": "http://a/v1"}, llm_model=None)
    assert s.llm_url == "http://a/v1" and s.llm_model == "llama3"
    s = Settings.resolve(env=env, llm_url="http://b/v1", store="/y")
    assert s.llm_url == "http://b/v1" and s.store == Path("/y")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434/v1"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434/v1"),
        ("https://ollama.example.com", "https://ollama.example.com:11434/v1"),
        ("http://h:80/", "http://h:80/v1"),
        ("[::1]:5000", "http://[::1]:5000/v1"),
    ],
)
def test_ollama_host(host: str, url: str) -> None:
    assert ollama_host_to_url(host) == url


def test_bad_values() -> None:
    with pytest.raises(UsageError):
        Settings.resolve(env={"RAGDB_WAIT": "soon"})
    with pytest.raises(UsageError):
        parse_headers(["no colon"])
    assert parse_headers(["Authorization: Bearer x"]) == {"Authorization": "Bearer x"}
