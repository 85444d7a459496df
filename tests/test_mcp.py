"""`ragdb mcp` as an agent meets it: the official `mcp` client SDK starts it
over stdio, lists its tools and calls each on a real store (the real model,
and the real llama.cpp server for `ask`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

from .conftest import Ragdb


def session_of(
    store: Path,
    calls: list[tuple[str, dict[str, Any]]],
    *args: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start `ragdb mcp ARGS` on ``store``, list its tools and make ``calls``:
    the tool names, and each call's (is_error, structured result or text)."""

    async def run() -> dict[str, Any]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "ragdb", "--store", str(store), "mcp", *args],
            env={**os.environ, **(env or {})},
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            results = []
            for name, arguments in calls:
                if name.startswith("ragdb://"):  # a resource, read
                    read = await session.read_resource(name)
                    results.append((False, "".join(getattr(c, "text", "") for c in read.contents)))
                    continue
                got = await session.call_tool(name, arguments)
                text = "".join(getattr(c, "text", "") for c in got.content)
                results.append((got.is_error, got.structured_content or text))
            return {"tools": tools, "results": results}

    return anyio.run(run)


def test_an_agent_searches_reads_and_asks(facts_dir: Path, tmp_path: Path, llm_server: str) -> None:
    store = tmp_path / "store"
    Ragdb(store)("ingest", str(facts_dir))
    Ragdb(store)("--kb", "pets", "ingest", "-", "--name", "pets.md", input="Our cat is named Miso.")
    fact3 = str(facts_dir / "fact3.txt")
    animal = "What is the company's favorite animal?"
    out = session_of(
        store,
        [
            ("search", {"question": animal, "k": 2}),
            ("search", {"question": "summit", "where": ["source~**/fact0.txt"]}),
            ("list_sources", {}),
            ("read_source", {"source": fact3}),
            ("read_source", {"source": "/no/such/file.txt"}),
            ("search", {"question": "x", "where": ["type"]}),
            ("ask", {"question": animal, "k": 2}),
            ("list_knowledge_bases", {}),
            ("search", {"question": "cat name", "k": 1, "knowledge_bases": ["pets"]}),
            ("search", {"question": "cat named Miso", "k": 5, "knowledge_bases": ["*"]}),
            ("read_source", {"source": "pets.md", "knowledge_base": "pets"}),
            ("search", {"question": "x", "knowledge_bases": ["nope"]}),
            ("ragdb://sources/" + fact3.replace("/", "%2F"), {}),
        ],
        env={
            "RAGDB_LLM_URL": llm_server,
            "RAGDB_LLM_MODEL": "smollm2",
            "RAGDB_LLM_MAX_TOKENS": "32",
        },
    )
    read_tools = ["ask", "list_knowledge_bases", "list_sources", "read_source", "search"]
    assert out["tools"] == read_tools  # no write tools
    found, only, listed, read, missing, bad, answer, kbs, pets, every, pet, nope, whole = out[
        "results"
    ]
    assert not found[0] and found[1]["chunks"][0]["source"] == fact3
    assert "octopus" in found[1]["chunks"][0]["text"]
    assert "chunk 1/1" in found[1]["chunks"][0]["location"]
    assert [Path(c["source"]).name for c in only[1]["chunks"]] == ["fact0.txt"]
    assert listed[1]["total"] == 4 and fact3 in {s["source"] for s in listed[1]["sources"]}
    assert "octopus" in read[1]["chunks"][0]["text"] and read[1]["total_chunks"] == 1
    # ragdb's errors are tool errors with its one-line message, not tracebacks.
    assert missing[0] and "not in the knowledge base: /no/such/file.txt" in missing[1]
    assert bad[0] and "not a filter: 'type'" in bad[1] and "Traceback" not in bad[1]
    assert not answer[0] and answer[1]["answer"] and answer[1]["chunks"][0]["source"] == fact3
    # Several knowledge bases: listed, searched one at a time or all at once.
    assert {k["name"]: k["chunks"] for k in kbs[1]["knowledge_bases"]} == {"default": 4, "pets": 1}
    assert [(c["knowledge_base"], c["source"]) for c in pets[1]["chunks"]] == [("pets", "pets.md")]
    assert {c["knowledge_base"] for c in every[1]["chunks"]} == {"default", "pets"}
    assert every[1]["chunks"][0]["source"] == "pets.md"
    assert "Miso" in pet[1]["chunks"][0]["text"]
    assert nope[0] and "no knowledge base 'nope'" in nope[1]
    # A source as a resource: its whole text.
    assert "octopus" in whole[1]


def test_write_tools_only_when_asked(facts_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    Ragdb(store)("ingest", str(facts_dir))
    memo = {"name": "memo", "text": "The boat leaves at dawn on Friday."}
    # (Without --write they are not listed: see the test above.)
    out = session_of(
        store,
        [
            ("ingest_text", memo),
            ("search", {"question": "When does the boat leave?", "k": 1}),
            ("remove", {"sources": ["memo"]}),
        ],
        "--write",
    )
    assert out["tools"] == [
        "ask",
        "ingest_text",
        "list_knowledge_bases",
        "list_sources",
        "read_source",
        "remove",
        "search",
    ]
    added, found, removed = (result for _, result in out["results"])
    assert added["added"] == 1 and found["chunks"][0]["source"] == "memo"
    assert removed["removed"] == ["memo"] and removed["chunks_removed"] == 1
    assert "memo" not in {s["source"] for s in Ragdb(store).json("sources")}
