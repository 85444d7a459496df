"""Settings, resolved one way: defaults, then environment, then explicit values.

One table, :data:`SETTINGS`, names each setting's option, environment
variables, default and help; it drives :meth:`Settings.resolve`, the CLI's
option help and the README's configuration table (a test checks that they
agree). The CLI passes only the options a user actually gave.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ragdb.errors import UsageError

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
DEFAULT_LLM_URL = "http://localhost:11434/v1"
DEFAULT_LLM_MODEL = "qwen3:4b"


def default_store_path() -> Path:
    """Where the store lives unless told otherwise: the user data directory."""
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
    """``'Name: value'`` strings as a header dict; a malformed one is a usage error."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"header {value!r} is not of the form 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def _seconds(name: str, raw: str, minimum: float, strict: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if value < minimum or (strict and value == minimum):
        bound = "a positive number of seconds" if strict else "zero or more seconds"
        raise UsageError(f"{name}={value:g} must be {bound}")
    return value


def _timeout(name: str, raw: str) -> float:
    return _seconds(name, raw, 0.0, strict=True)


def _wait(name: str, raw: str) -> float:
    return _seconds(name, raw, 0.0, strict=False)


def _max_tokens(name: str, raw: str) -> int:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if value < 1 or value != int(value):
        raise UsageError(f"{name}={value:g} must be a positive whole number")
    return int(value)


def _port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"{name}={raw!r} is not a port number (1-65535)")
    return int(raw)


# The knowledge base every command uses unless told another.
DEFAULT_KB = "default"
# A knowledge base's name is also a model's name (``ragdb/<kb>``) and part of
# a file name: no slashes, no spaces.
_KB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_kb_name(name: str) -> str:
    """``name`` if it can name a knowledge base, else a usage error saying why."""
    if name == "llm":  # `ragdb/llm` is the model itself, without retrieval
        raise UsageError("'llm' cannot name a knowledge base: the model ragdb/llm is taken")
    if not _KB_NAME.fullmatch(name) or name.endswith("."):
        raise UsageError(
            f"{name!r} cannot name a knowledge base: use 1-64 letters, digits, '_', '-' "
            "or '.', starting with a letter or digit"
        )
    return name


def _kb_name(raw: str) -> str:
    return check_kb_name(raw)


def _text(name: str, raw: str) -> str:
    return raw


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str  # the Settings field
    option: str | None  # the CLI option ("--store"), None for environment-only ones
    env: tuple[str, ...]  # environment variables, the first set one wins
    default: str  # the default, in words
    help: str
    where: str = ""  # the command that takes the option, when not every one does
    # Turns an environment value into the setting's (raising UsageError).
    parse: Callable[[str, str], Any] = _text

    def option_help(self) -> str:
        """The option's help text, with its environment variables and default."""
        env = " or ".join(self.env)
        default = self.default.replace("`", "")  # Markdown in the README, not in --help
        return f"{self.help} [env {env}; default {default}]." if env else self.help


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store",
        "--store",
        ("RAGDB_STORE",),
        "the user data directory (`~/.local/share/ragdb/store` on Linux)",
        "Store directory",
    ),
    Setting(
        "kb",
        "--kb",
        ("RAGDB_KB",),
        "`default`",
        "Knowledge base within the store (`ragdb kb list` names them)",
        parse=lambda name, raw: _kb_name(raw),
    ),
    Setting(
        "chroma_url",
        "--chroma-url",
        ("RAGDB_CHROMA_URL",),
        "none (a local store)",
        "Use a Chroma server (http://HOST:PORT) instead of a local store",
    ),
    Setting(
        "chroma_headers",
        "--chroma-header",
        ("RAGDB_CHROMA_HEADERS",),
        "none",
        "HTTP header for the Chroma server, e.g. for an authenticating proxy (repeatable; "
        "in the environment, one per line)",
        parse=lambda name, raw: parse_headers(raw.splitlines()),
    ),
    Setting(
        "chroma_token",
        "--chroma-token",
        ("RAGDB_CHROMA_TOKEN",),
        "none",
        "Chroma's own API token (sent as X-Chroma-Token), for Chroma Cloud or a server with "
        "token auth",
    ),
    Setting(
        "chroma_max_batch",
        "--chroma-max-batch",
        ("RAGDB_CHROMA_MAX_BATCH",),
        "300 for Chroma Cloud (*.trychroma.com), else the server's own limit",
        "Most records one request to the Chroma server writes, deletes or reads",
        parse=lambda name, raw: _max_tokens(name, raw),
    ),
    Setting(
        "chroma_tenant",
        "--chroma-tenant",
        ("RAGDB_CHROMA_TENANT",),
        "Chroma's default tenant",
        "Tenant on the Chroma server",
    ),
    Setting(
        "chroma_database",
        "--chroma-database",
        ("RAGDB_CHROMA_DATABASE",),
        "Chroma's default database",
        "Database on the Chroma server",
    ),
    Setting(
        "embed_model",
        "--embed-model",
        ("RAGDB_EMBED_MODEL",),
        f"{DEFAULT_EMBED_MODEL} (new stores only)",
        "Embedding model for a new store; must match an existing store's",
    ),
    Setting(
        "embed_backend",
        "--embed-backend",
        ("RAGDB_EMBED_BACKEND",),
        "onnx-int8 for a new store on a CPU, torch on a GPU; an existing store's own",
        "What runs the embedding model: a new store records it, an existing store "
        "accepts only a compatible one (torch and onnx are)",
    ),
    Setting(
        "device",
        "--device",
        ("RAGDB_DEVICE",),
        "auto",
        "Where to run the embedding model",
        where="ingest, query, eval, reembed, doctor, serve",
    ),
    Setting(
        "wait",
        "--wait",
        ("RAGDB_WAIT",),
        "60",
        "Seconds to wait for a store another process holds",
        parse=_wait,
    ),
    Setting(
        "lease",
        None,
        ("RAGDB_LEASE",),
        "120",
        "Seconds a writer on a Chroma server may go unheard (it renews every third of "
        "that) before another process takes its write over",
        parse=lambda name, raw: _seconds(name, raw, 0.0, strict=True),
    ),
    Setting(
        "host_id",
        None,
        ("RAGDB_HOST_ID",),
        "hostname, boot id and pid namespace",
        "What tells this host's processes from other hosts' on a shared Chroma server "
        "(pids are trusted only within one); set it where /proc cannot tell",
    ),
    Setting(
        "llm_url",
        "--llm-url",
        ("RAGDB_LLM_URL", "OLLAMA_HOST"),
        DEFAULT_LLM_URL,
        "OpenAI-compatible API base URL",
        where="query, serve",
        parse=lambda name, raw: ollama_host_to_url(raw) if name == "OLLAMA_HOST" else raw,
    ),
    Setting(
        "llm_model",
        "--model",
        ("RAGDB_LLM_MODEL",),
        DEFAULT_LLM_MODEL,
        "Model to answer with",
        where="query, serve",
    ),
    Setting(
        "llm_timeout",
        "--timeout",
        ("RAGDB_LLM_TIMEOUT",),
        "120",
        "Seconds the whole answer may take; a longer one is cut and marked truncated",
        where="query, serve",
        parse=_timeout,
    ),
    Setting(
        "llm_max_tokens",
        "--max-tokens",
        ("RAGDB_LLM_MAX_TOKENS",),
        "1024",
        "Most tokens the answer may have",
        where="query, serve",
        parse=_max_tokens,
    ),
    Setting(
        "url",
        "--url",
        ("RAGDB_URL",),
        "the running `ragdb serve` a local store's serve.json names, if any",
        "A ragdb server for query, status, sources, ingest and remove (--no-server: in-process)",
    ),
    Setting(
        "serve_host",
        "--host",
        ("RAGDB_SERVE_HOST",),
        "127.0.0.1",
        "Address `ragdb serve` listens on; any but loopback needs an API key",
        where="serve",
    ),
    Setting(
        "serve_port",
        "--port",
        ("RAGDB_SERVE_PORT",),
        "7243",
        "Port `ragdb serve` listens on",
        where="serve",
        parse=lambda name, raw: _port(name, raw),
    ),
    Setting(
        "api_key",
        "--api-key",
        ("RAGDB_API_KEY",),
        "one generated at first start, kept (mode 0600) beside the store",
        "The token clients of `ragdb serve` must send (Bearer or X-API-Key)",
        where="serve",
    ),
    Setting(
        "api_key_file",
        "--api-key-file",
        ("RAGDB_API_KEY_FILE",),
        "none",
        "A file holding the API key (a mounted secret every replica shares)",
        where="serve",
    ),
    Setting(
        "llm_api_key",
        None,
        ("RAGDB_LLM_API_KEY", "OPENAI_API_KEY"),
        "none (Ollama needs none)",
        "API key for the language model's server",
    ),
)
SETTING = {s.name: s for s in SETTINGS}


def settings_table() -> str:
    """The README's configuration table (Markdown), made from :data:`SETTINGS`."""
    rows = ["| option | environment | default | what |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        option = f"`{s.option}`" + (f" ({s.where})" if s.where else "") if s.option else "—"
        env = ", ".join(f"`{e}`" for e in s.env)
        rows.append(f"| {option} | {env} | {s.default} | {s.help} |")
    return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the store is and which models answer (see :data:`SETTINGS`)."""

    store: Path = dataclasses.field(default_factory=default_store_path)
    kb: str = DEFAULT_KB
    chroma_url: str | None = None
    chroma_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    chroma_token: str | None = None
    # None: 300 against Chroma Cloud, else the server's reported limit.
    chroma_max_batch: int | None = None
    # None: Chroma's default tenant and database.
    chroma_tenant: str | None = None
    chroma_database: str | None = None
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
    # Seconds a writer on a server may go unheard; this host's identity (None: from /proc).
    lease: float = 120.0
    host_id: str | None = None
    # A running `ragdb serve` to use; None: the one a local store's serve.json names.
    url: str | None = None
    serve_host: str = "127.0.0.1"
    serve_port: int = 7243
    # None: generated at first start and kept beside the store.
    api_key: str | None = None
    api_key_file: str | None = None

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **options: Any) -> Settings:
        """Defaults, overridden by the environment, overridden by ``options``
        (keys whose value is None are ignored, as click passes unset options)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            for var in setting.env:  # the first one set wins
                raw = env.get(var)
                if raw:
                    values[setting.name] = setting.parse(var, raw)
                    break
        unknown = set(options) - set(SETTING)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in options.items() if v is not None})
        if "store" in values:
            if not str(values["store"]).strip():
                # An unset variable in `--store "$KB"` must not mean the current directory.
                raise UsageError("the store path is empty: give --store DIR (or RAGDB_STORE)")
            values["store"] = Path(os.path.expanduser(values["store"]))
        if "kb" in values:
            values["kb"] = _kb_name(str(values["kb"]))
        if values.get("embed_backend") is not None:
            from ragdb.embed.identity import check_backend

            check_backend(values["embed_backend"])
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)
