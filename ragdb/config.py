"""Settings, resolved one way: defaults, then environment, then explicit values.

The CLI passes only the options a user actually gave; everything else comes
from ``RAGDB_*`` / ``OLLAMA_HOST`` or the defaults below.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
DEFAULT_LLM_URL = "http://localhost:11434/v1"
DEFAULT_LLM_MODEL = "qwen3:4b"
DEFAULT_COLLECTION = "ragdb"


def default_store_path() -> Path:
    from platformdirs import user_data_path

    return user_data_path("ragdb", appauthor=False) / "store"


def ollama_host_to_url(host: str) -> str:
    """Turn an ``OLLAMA_HOST`` value (``127.0.0.1``, ``host:port``, ``http://h:p``) into
    the base URL of Ollama's OpenAI-compatible API."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    scheme, rest = host.split("://", 1)
    hostport = rest.split("/", 1)[0]
    # An IPv6 literal ([::1]) has colons of its own.
    has_port = "]:" in hostport if hostport.startswith("[") else ":" in hostport
    if not has_port:
        hostport += ":11434"
    if hostport.startswith("0.0.0.0"):  # a bind address, not one to connect to
        hostport = "127.0.0.1" + hostport[len("0.0.0.0") :]
    return f"{scheme}://{hostport}/v1"


def parse_headers(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"header {value!r} is not of the form 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the store is and which models answer."""

    store: Path = dataclasses.field(default_factory=default_store_path)
    chroma_url: str | None = None
    chroma_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    # None: the store's recorded model, or DEFAULT_EMBED_MODEL for a new store.
    embed_model: str | None = None
    # None: the store's recorded backend, or the default for a new store.
    embed_backend: str | None = None
    device: str = "auto"
    llm_url: str = DEFAULT_LLM_URL
    llm_model: str = DEFAULT_LLM_MODEL
    llm_api_key: str | None = None
    # Seconds for the whole answer (and for each read of it).
    llm_timeout: float = 120.0
    # Tokens an answer may have; a looping small model stops here at the latest.
    llm_max_tokens: int = 1024
    wait: float = 60.0

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **options: Any) -> Settings:
        """Defaults, overridden by the environment, overridden by ``options``
        (keys whose value is None are ignored, as click passes unset options)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("RAGDB_STORE"):
            values["store"] = env["RAGDB_STORE"]
        if env.get("RAGDB_CHROMA_URL"):
            values["chroma_url"] = env["RAGDB_CHROMA_URL"]
        if env.get("RAGDB_CHROMA_HEADERS"):
            # Several headers are separated by newlines.
            values["chroma_headers"] = parse_headers(env["RAGDB_CHROMA_HEADERS"].splitlines())
        if env.get("RAGDB_EMBED_MODEL"):
            values["embed_model"] = env["RAGDB_EMBED_MODEL"]
        if env.get("RAGDB_EMBED_BACKEND"):
            values["embed_backend"] = env["RAGDB_EMBED_BACKEND"]
        if env.get("RAGDB_DEVICE"):
            values["device"] = env["RAGDB_DEVICE"]
        if env.get("OLLAMA_HOST"):
            values["llm_url"] = ollama_host_to_url(env["OLLAMA_HOST"])
        if env.get("RAGDB_LLM_URL"):
            values["llm_url"] = env["RAGDB_LLM_URL"]
        if env.get("RAGDB_LLM_MODEL"):
            values["llm_model"] = env["RAGDB_LLM_MODEL"]
        if env.get("RAGDB_LLM_API_KEY") or env.get("OPENAI_API_KEY"):
            values["llm_api_key"] = env.get("RAGDB_LLM_API_KEY") or env.get("OPENAI_API_KEY")
        timeout = _float(env, "RAGDB_LLM_TIMEOUT")
        if timeout is not None:
            if timeout <= 0:
                raise UsageError(
                    f"RAGDB_LLM_TIMEOUT={timeout:g} must be a positive number of seconds"
                )
            values["llm_timeout"] = timeout
        max_tokens = _float(env, "RAGDB_LLM_MAX_TOKENS")
        if max_tokens is not None:
            if max_tokens < 1 or max_tokens != int(max_tokens):
                raise UsageError(
                    f"RAGDB_LLM_MAX_TOKENS={max_tokens:g} must be a positive whole number"
                )
            values["llm_max_tokens"] = int(max_tokens)
        wait = _float(env, "RAGDB_WAIT")
        if wait is not None:
            if wait < 0:
                raise UsageError(f"RAGDB_WAIT={wait:g} must be zero or more seconds")
            values["wait"] = wait
        values.update({k: v for k, v in options.items() if v is not None})
        if "store" in values:
            if not str(values["store"]).strip():
                # An unset variable in `--store "$KB"` must not mean the current directory.
                raise UsageError("the store path is empty: give --store DIR (or RAGDB_STORE)")
            values["store"] = Path(values["store"]).expanduser()
        if values.get("embed_backend") is not None:
            from .embeddings import check_backend

            check_backend(values["embed_backend"])
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
