"""One settings table drives Settings.resolve, the options' help and the README."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest

from ragdb.cli import cli
from ragdb.config import SETTINGS, Settings, settings_table
from ragdb.errors import UsageError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_settings_are_documented_in_the_readme() -> None:
    assert settings_table() in README.read_text()


def test_every_field_has_a_row_and_every_row_a_field() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {s.name for s in SETTINGS} == fields


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {opt: p for p in command.params for opt in getattr(p, "opts", [])}


def test_options_carry_the_tables_help() -> None:
    assert isinstance(cli, click.Group)
    for setting in SETTINGS:
        if setting.option is None:
            continue
        commands = [c.strip() for c in setting.where.split(",")] if setting.where else [None]
        for name in commands:
            command = cli if name is None else cli.commands[name]
            param = _params(command).get(setting.option)
            assert param is not None, f"{setting.option} missing from {name or 'ragdb'}"
            assert isinstance(param, click.Option) and param.help == setting.option_help()
            for var in setting.env:
                assert var in param.help


def test_commands_have_help() -> None:
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"


def test_precedence_default_env_option(tmp_path: Path) -> None:
    assert Settings.resolve(env={}).llm_timeout == 120.0
    env = {
        "RAGDB_LLM_TIMEOUT": "30",
        "OLLAMA_HOST": "0.0.0.0:9999",
        "RAGDB_CHROMA_HEADERS": "X-A: 1\nX-B: 2",
        "RAGDB_CHROMA_TENANT": "team",
        "RAGDB_WAIT": "0",
    }
    s = Settings.resolve(env=env)
    assert s.llm_timeout == 30.0 and s.llm_url == "http://127.0.0.1:9999/v1"
    assert s.chroma_headers == {"X-A": "1", "X-B": "2"} and s.chroma_tenant == "team"
    assert s.wait == 0.0
    # RAGDB_LLM_URL wins over OLLAMA_HOST; an option over both.
    env["RAGDB_LLM_URL"] = "http://h:1/v1"
    assert Settings.resolve(env=env).llm_url == "http://h:1/v1"
    assert Settings.resolve(env=env, llm_url="http://o:2/v1").llm_url == "http://o:2/v1"
    for var, value, message in [
        ("RAGDB_LLM_TIMEOUT", "-1", "must be a positive number of seconds"),
        ("RAGDB_LLM_MAX_TOKENS", "1.5", "must be a positive whole number"),
        ("RAGDB_WAIT", "soon", "is not a number"),
    ]:
        with pytest.raises(UsageError, match=message):
            Settings.resolve(env={var: value})
