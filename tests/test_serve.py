"""`ragdb serve` as clients meet it: a real uvicorn on a free loopback port, the
real model, the real llama.cpp server, driven by the openai SDK and httpx."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from ragdb import Answer, Hit, KnowledgeBase
from ragdb.errors import LLMError, SourceNotFoundError, UsageError
from ragdb.remote import RemoteKnowledgeBase

from .conftest import Ragdb, free_port, serving
from .fakellm import fake_llm

KEY = "test-key-0123456789"


@contextlib.contextmanager
def ragdb_serve(store: Path, log: Path, *args: str) -> Iterator[str]:
    """`ragdb serve` of ``store`` with ``args`` on a free loopback port; its URL
    once it answers its health check."""
    port = free_port()
    cmd = [sys.executable, "-m", "ragdb", "--store", str(store), "serve", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with serving([*cmd, *args], f"{url}/healthz", log, 180):
        yield url


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, llm_server: str
) -> Iterator[dict[str, object]]:
    """A served store holding the four facts, and a folder it may read."""
    root = tmp_path_factory.mktemp("serve")
    store, docs = root / "store", root / "allowed"
    docs.mkdir()
    (docs / "kiwi.txt").write_text("Kiwi birds cannot fly and lay very large eggs.")
    from .conftest import FACTS

    facts = root / "facts"
    facts.mkdir()
    for i, fact in enumerate(FACTS):
        (facts / f"fact{i}.txt").write_text(fact + "\n")
    Ragdb(store)("ingest", str(facts))
    with ragdb_serve(
        store, root / "serve.log", "--api-key", KEY, "--allow-path", str(docs),
        "--llm-url", llm_server, "--model", "smollm2", "--max-tokens", "48",
    ) as url:  # fmt: skip
        yield {"url": url, "store": store, "docs": docs, "root": root}


def client(service: dict[str, object], key: str = KEY, v1: bool = True) -> openai.OpenAI:
    base = f"{service['url']}/v1" if v1 else str(service["url"])
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0)


def native(service: dict[str, object]) -> httpx.Client:
    return httpx.Client(base_url=str(service["url"]), headers={"X-API-Key": KEY}, timeout=120)


def test_models_with_and_without_v1(service: dict[str, object]) -> None:
    for v1 in (True, False):
        ids = [m.id for m in client(service, v1=v1).models.list()]
        assert ids == ["ragdb", "ragdb/default", "ragdb/llm"]


def test_chat_answers_with_sources_as_annotations(service: dict[str, object]) -> None:
    reply = client(service).chat.completions.create(
        model="ragdb",
        messages=[{"role": "user", "content": "When is the Innovation Summit held?"}],
        extra_body={"user": "someone", "unknown_field": {"ignored": True}},
    )
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    message = reply.choices[0].message
    assert message.content and reply.choices[0].finish_reason in ("stop", "length")
    annotations = message.annotations or []
    assert annotations and annotations[0].type == "url_citation"
    assert "fact0.txt" in annotations[0].url_citation.url
    extra = reply.model_extra or {}
    assert extra["ragdb"]["chunks"][0]["source"].endswith("fact0.txt")


def test_chat_stream_follows_the_spec(service: dict[str, object]) -> None:
    stream = client(service, v1=False).chat.completions.create(
        model="ragdb",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Where is the coffee machine?"}]},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    notes = [
        a
        for c in chunks
        if c.choices
        for a in (c.choices[0].delta.model_extra or {}).get("annotations", [])
    ]
    assert any("fact2.txt" in a["url_citation"]["url"] for a in notes)
    # One annotation per chunk, each its own URL, titled without ragdb's "[n]".
    urls = [a["url_citation"]["url"] for a in notes]
    assert len(set(urls)) == len(urls) and all("#chunk=" in u for u in urls)
    assert not any(a["url_citation"]["title"].startswith("[") for a in notes)
    # Then usage, and last ragdb's own account: the chunks, and whether it was cut.
    usage, last = chunks[-2], chunks[-1]
    assert usage.choices == [] and usage.usage is not None and usage.usage.prompt_tokens > 0
    account = (last.model_extra or {})["ragdb"]
    assert last.choices == [] and len(account["chunks"]) == len(notes)
    assert account["truncated_reason"] in (None, "max_tokens")


def events_of(response: httpx.Response) -> list[dict]:
    """The JSON events of a raw SSE response, [DONE] left out."""
    out = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line.removeprefix("data: ")))
    return out


def test_open_webui_gets_a_source_event_per_chunk_before_the_answer(
    service: dict[str, object],
) -> None:
    body = {
        "model": "ragdb",
        "messages": [{"role": "user", "content": "Where is the coffee machine?"}],
        "stream": True,
        "ragdb": {"sources": "openwebui", "k": 3},
    }
    with native(service).stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = events_of(response)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    sources = [e["event"]["data"] for e in events if "event" in e]
    # All three before the first word of the answer, each its own passage.
    first_text = next(
        i for i, e in enumerate(events) if e["choices"] and e["choices"][0]["delta"].get("content")
    )
    assert [i for i, e in enumerate(events) if "event" in e] == [1, 2, 3] and first_text > 3
    keys = [s["metadata"][0]["source"] for s in sources]
    assert len(set(keys)) == 3 and not any(k.startswith("http") for k in keys)
    assert all(s["document"][0] and s["distances"][0] > 0 for s in sources)
    assert "coffee machine" in sources[0]["document"][0]
    # ... and no annotations beside them: each source listed once.
    assert not any(e["choices"] and "annotations" in e["choices"][0]["delta"] for e in events)
    assert [c["source"] for c in events[-1]["ragdb"]["chunks"]] == [
        s["source"]["name"].split(" (")[0] for s in sources
    ]
    # The openai SDK reads the same stream.
    stream = client(service).chat.completions.create(
        model="ragdb", messages=body["messages"], stream=True, extra_body={"ragdb": body["ragdb"]}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()


def test_source_labels_are_short_and_unique_per_chunk() -> None:
    from ragdb.query.retrieve import Hit
    from ragdb.serve import citations

    home = Path(os.path.expanduser("~"))
    notes = home / "notes" / "harbour.md"
    assert citations.label(str(notes)) == "~/notes/harbour.md"
    assert citations.label("/srv/kb/docs/a/b.md", [Path("/srv/kb/docs")]) == "docs/a/b.md"
    assert citations.label("https://example.org/x") == "https://example.org/x"
    hits = [
        Hit(i + 1, f"id{i}", "/srv/kb/docs/a.md", 0.5, "text", {"chunk_index": i, "n_chunks": 2})
        for i in range(2)
    ]
    urls = [a["url_citation"]["url"] for a in citations.url_citations(hits)]
    assert urls == ["file:///srv/kb/docs/a.md#chunk=1", "file:///srv/kb/docs/a.md#chunk=2"]
    web = Hit(1, "w", "https://example.org/p", 0.5, "t", {"chunk_index": 0, "n_chunks": 1})
    [event] = citations.source_events([web])
    assert event["data"]["metadata"][0] == {
        "source": "https://example.org/p#chunk=1",
        "name": "https://example.org/p (chunk 1/1)",
        "external": True,
    }
    assert event["data"]["source"]["url"] == "https://example.org/p"


def test_a_citation_points_at_the_chunk_that_backs_it() -> None:
    from ragdb.query.retrieve import Hit
    from ragdb.query.support import SentenceSupport, Support
    from ragdb.serve import citations

    text = "Summits are in Lisbon [1]. Coffee is upstairs [2]."
    support = Support(
        [
            SentenceSupport("Summits are in Lisbon [1].", "supported", 0.9, [2], [1]),
            SentenceSupport("Coffee is upstairs [2].", "supported", 0.8, [2, 1], [2]),
        ],
        1.0,
        0,
    )
    spans = citations.citation_spans(text, support)
    # The first [1] is backed by chunk 2, not 1: chunk 2's annotation spans it.
    assert spans == {2: (22, 25)} and text[22:25] == "[1]"
    hits = [Hit(i, f"c{i}", f"/kb/{i}.md", 0.5, "t", {"chunk_index": 0}) for i in (1, 2)]
    notes = [a["url_citation"] for a in citations.url_citations(hits, spans=spans)]
    assert [(n["start_index"], n["end_index"]) for n in notes] == [(0, 0), (22, 25)]


def test_an_answer_the_llm_server_left_unfinished_is_reported_cut(
    tmp_path: Path, facts_dir: Path
) -> None:
    store = tmp_path / "store"
    Ragdb(store)("ingest", str(facts_dir))
    log = tmp_path / "serve.log"
    with (
        fake_llm("unfinished", pieces=["The summit ", "is in "]) as llm,
        ragdb_serve(store, log, "--api-key", KEY, "--llm-url", llm.url, "--access-log") as url,
    ):
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0).chat
        question = [{"role": "user", "content": "When is the Innovation Summit held?"}]
        chunks = list(chat.completions.create(model="ragdb", messages=question, stream=True))
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == "length"
        account = (chunks[-1].model_extra or {})["ragdb"]
        assert account["truncated"] is True and account["truncated_reason"] == "stream-ended"
        whole = chat.completions.create(model="ragdb", messages=question)
        assert whole.choices[0].finish_reason == "length"
        assert whole.choices[0].message.content == "The summit is in"
        assert (whole.model_extra or {})["ragdb"]["truncated_reason"] == "stream-ended"
        assert whole.usage is not None and whole.usage.prompt_tokens > 0
    # The access log: a line per request, never the key.
    lines = [line for line in log.read_text().splitlines() if "/chat/completions" in line]
    assert len(lines) == 2 and all(" POST /v1/chat/completions 200 " in line for line in lines)
    assert KEY not in log.read_text()


def test_two_chats_at_once_each_get_a_whole_answer(service: dict[str, object]) -> None:
    import concurrent.futures

    def ask(question: str) -> dict:
        stream = client(service).chat.completions.create(
            model="ragdb", messages=[{"role": "user", "content": question}], stream=True
        )
        return ((list(stream)[-1].model_extra) or {})["ragdb"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        accounts = list(pool.map(ask, ["Where is the coffee machine?", "What is the octopus?"]))
    # Cut only by --max-tokens, never by the other request (llama.cpp's default).
    assert all(a["truncated_reason"] in (None, "max_tokens") for a in accounts), accounts


def test_openai_errors(service: dict[str, object]) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(service, key="wrong").models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client(service).chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "hi"}]
        )
    assert "does not exist" in str(missing.value)
    with pytest.raises(openai.BadRequestError):
        client(service).chat.completions.create(model="ragdb", messages=[])


def test_passthrough_model_skips_retrieval(service: dict[str, object]) -> None:
    reply = client(service).chat.completions.create(
        model="ragdb/llm", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert reply.choices[0].message.content
    assert (reply.model_extra or {})["ragdb"]["chunks"] == []


def test_security_defaults(service: dict[str, object]) -> None:
    url = str(service["url"])
    assert httpx.get(f"{url}/healthz").status_code == 200  # no token needed
    missing = httpx.get(f"{url}/v1/status")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    ok = httpx.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.json()["chunks"] == 4
    rebinding = httpx.get(f"{url}/v1/status", headers={"X-API-Key": KEY, "Host": "evil.example"})
    assert rebinding.status_code == 403
    assert "access-control-allow-origin" not in ok.headers
    # Chroma's own API is not here.
    assert httpx.get(f"{url}/api/v2/heartbeat", headers={"X-API-Key": KEY}).status_code == 404


def test_native_api(service: dict[str, object], tmp_path: Path) -> None:
    with native(service) as http:
        hits = http.post("/v1/search", json={"query": "octopus", "k": 2}).json()["chunks"]
        assert hits[0]["source"].endswith("fact3.txt")
        folder = str(Path(hits[0]["source"]).parent)
        only = http.post("/v1/search", json={"query": "octopus", "source": folder + "/fact1"})
        assert [h["source"] for h in only.json()["chunks"]] == [folder + "/fact1.txt"]
        assert http.post("/v1/search", json={"query": "x", "source": 3}).status_code == 400
        # Filters, as the CLI's --where: the same conditions, a bad one a 400 naming it.
        glob = {"query": "octopus", "where": ["source~**/fact[12].txt", "type=text"]}
        kept = http.post("/v1/search", json=glob).json()["chunks"]
        assert sorted(Path(h["source"]).name for h in kept) == ["fact1.txt", "fact2.txt"]
        none = http.post("/v1/search", json={"query": "octopus", "where": ["type=pdf"]})
        assert none.json()["chunks"] == []
        bad = http.post("/v1/ask", json={"query": "octopus", "where": ["type"]})
        assert bad.status_code == 400 and "not a filter: 'type'" in bad.json()["detail"]
        chat = client(service).chat.completions.create(
            model="ragdb",
            messages=[{"role": "user", "content": "What is the octopus?"}],
            extra_body={"ragdb": {"where": ["source~**/fact0.txt"]}},
        )
        chunks = (chat.model_extra or {})["ragdb"]["chunks"]
        assert [Path(c["source"]).name for c in chunks] == ["fact0.txt"]
        assert http.post("/v1/search", content=b"{not json").status_code == 400
        listed = http.get("/v1/sources", params={"prefix": str(service["root"])}).json()
        assert listed["total"] == 4
        one = http.get(f"/v1/sources/{hits[0]['source']}").json()
        assert "octopus" in one["chunks"][0]["text"]
        unknown = http.delete("/v1/sources/no-such-source")
        assert unknown.status_code == 404 and unknown.json()["exit_code"] == 1
        added = http.post(
            "/v1/ingest?wait=true", json={"texts": [{"name": "note", "text": "Quokkas smile."}]}
        )
        assert added.json()["added"] == 1
        again = http.post(
            "/v1/ingest?wait=true", json={"texts": [{"name": "note", "text": "Quokkas grin."}]}
        )
        assert again.json()["updated"] == 1  # replaced, never duplicated
        gone = http.delete("/v1/sources/note").json()
        assert gone == {"removed_sources": 1, "removed_chunks": 1, "removed": ["note"]}
        # Paths only under --allow-path roots, symlinks out of them refused.
        docs = Path(str(service["docs"]))
        assert http.post("/v1/ingest?wait=true", json={"paths": [str(docs)]}).json()["added"] == 1
        outside = tmp_path / "secret.txt"
        outside.write_text("Not yours.")
        assert http.post("/v1/ingest", json={"paths": [str(outside)]}).status_code == 400
        assert http.post("/v1/ingest", json={"texts": [{"name": "x"}]}).status_code == 400
        link = docs / "escape.txt"
        link.symlink_to(outside)
        refused = http.post("/v1/ingest?wait=true", json={"paths": [str(link)]})
        assert refused.status_code == 400 and "--allow-path" in refused.json()["detail"]
        link.unlink()
        # reset is off unless the server was started with --allow-reset.
        refused = http.post("/v1/reset")
        assert refused.status_code == 403 and "--allow-reset" in refused.json()["detail"]
        assert http.get("/v1/status").json()["chunks"] == 5


def test_concurrent_searches_are_batched_and_each_gets_its_own_answer(
    service: dict[str, object],
) -> None:
    import asyncio

    questions = [
        "octopus", "When is the Innovation Summit held?", "coffee machine",
        "What is the Clarity Protocol?", "Which animal does the company like?",
    ] * 6  # fmt: skip
    with native(service) as http:
        alone = {
            q: http.post("/v1/search", json={"query": q, "k": 3}).json()["chunks"]
            for q in set(questions)
        }
        before = http.get("/v1/status").json()["service"]

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=str(service["url"]), headers={"X-API-Key": KEY}, timeout=120
        ) as http:
            return await asyncio.gather(
                *(http.post("/v1/search", json={"query": q, "k": 3}) for q in questions),
                http.post("/v1/search", json={"query": " ", "k": 3}),  # fails alone
            )

    *answers, empty = asyncio.run(together())
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    for question, answer in zip(questions, answers, strict=True):
        assert answer.status_code == 200
        assert answer.json()["chunks"] == alone[question]
    with native(service) as http:
        after = http.get("/v1/status").json()["service"]
    queries = after["retrieval_queries"] - before["retrieval_queries"]
    batches = after["retrieval_batches"] - before["retrieval_batches"]
    assert queries == len(questions) and batches < queries
    # Asked before, so their chunks came from what the service kept, not Chroma.
    kept = {k: after["chunks_kept"][k] - before["chunks_kept"][k] for k in ("asked", "found")}
    assert kept["found"] == kept["asked"] > 0
    # The status names the threads the CPU went to (the clock counts 10 ms ticks).
    cpu = after["cpu_seconds_by_thread"]
    assert {"MainThread", "ragdb-queries", "ragdb-encode"} <= set(cpu)
    assert sum(cpu.values()) > sum(before["cpu_seconds_by_thread"].values())


def test_search_answers_byte_for_byte_what_the_library_retrieves(
    service: dict[str, object],
) -> None:
    """The request path (guard, batching, JSON) adds nothing and changes nothing:
    ``/v1/search``'s body is, byte for byte, the in-process retrieval rendered,
    with the server's own timings."""
    from starlette.responses import JSONResponse

    local = KnowledgeBase(store=service["store"])
    with native(service) as http:
        for mode in ("dense", "hybrid", "bm25"):
            for question in ("octopus hearts", "When is the Innovation Summit held?"):
                body = {"query": question, "k": 3, "mode": mode}
                served = http.post("/v1/search", json=body)
                hits = local.retrieve(question, 3, mode).hits
                assert hits
                rendered = {
                    "query": question,
                    "chunks": [h.to_dict() for h in hits],
                    "timings": served.json()["timings"],
                }
                assert served.content == JSONResponse(rendered).body


def test_ask_streams_chunks_then_deltas_then_done(service: dict[str, object]) -> None:
    events = []
    with (
        native(service) as http,
        http.stream(
            "POST", "/v1/ask", json={"query": "What is the Clarity Protocol?", "stream": True}
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "chunks" and kinds[-1] == "done" and "delta" in kinds
    assert events[0]["chunks"][0]["source"].endswith("fact1.txt")
    # The answer's support: one event after the last delta, and in the answer.
    last_delta = max(i for i, kind in enumerate(kinds) if kind == "delta")
    assert kinds[last_delta + 1 :] == ["support", "done"]
    support = events[-2]["support"]
    assert support == events[-1]["answer"]["support"]
    assert {s["verdict"] for s in support["sentences"]} <= {"supported", "weak", "unsupported"}


def test_answers_carry_their_support_and_answers_from_elsewhere_are_checked(
    service: dict[str, object],
) -> None:
    api = native(service)
    asked = api.post("/v1/ask", json={"query": "Where is the Innovation Summit held?"}).json()
    assert 0.0 <= asked["support"]["grounded"] <= 1.0 and "support_ms" in asked["timings"]
    reply = client(service).chat.completions.create(
        model="ragdb", messages=[{"role": "user", "content": "Where is the Innovation Summit?"}]
    )
    support = (reply.model_extra or {})["ragdb"]["support"]
    texts = " ".join(s["text"] for s in support["sentences"])
    assert all(word in (reply.choices[0].message.content or "") for word in texts.split()[:3])
    body = {
        "question": "What is the Clarity Protocol?",
        "answer": "It is a pizza recipe from 1931.",
    }
    checked = api.post("/v1/check", json=body).json()
    assert checked["support"]["unsupported"] == 1
    assert checked["support"]["sentences"][0]["novel"] == ["1931"]
    remote = RemoteKnowledgeBase(str(service["url"]), KEY).check(body["question"], body["answer"])
    assert remote.support is not None and remote.support.unsupported == 1
    assert api.post("/v1/check", json={"answer": "x"}).status_code == 400


def test_llm_down_is_502_with_the_chunks(tmp_path: Path, facts_dir: Path) -> None:
    store = tmp_path / "store"
    Ragdb(store)("ingest", str(facts_dir))
    dead = free_port()
    with ragdb_serve(
        store, tmp_path / "serve.log",
        "--llm-url", f"http://127.0.0.1:{dead}/v1", "--max-upload-mb", "1", "--allow-reset",
        "--mcp-write",
    ) as url:  # fmt: skip
        token_file = store / "serve.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        with pytest.raises(openai.APIStatusError) as down:
            openai.OpenAI(
                base_url=f"{url}/v1", api_key=token, max_retries=0
            ).chat.completions.create(
                model="ragdb", messages=[{"role": "user", "content": "octopus?"}]
            )
        assert down.value.status_code == 502
        body = down.value.response.json()
        assert "cannot reach a language model" in body["error"]["message"]
        assert body["ragdb"]["chunks"][0]["source"].endswith("fact3.txt")
        # Through RemoteKnowledgeBase the error carries an Answer, as in-process.
        for kb in (
            RemoteKnowledgeBase(url, token),
            KnowledgeBase(store=store, llm_url=f"http://127.0.0.1:{dead}/v1"),
        ):
            with pytest.raises(LLMError) as failed:
                kb.ask("octopus?", 2)
            assert isinstance(failed.value.answer, Answer), type(kb)
            assert failed.value.answer.hits[0].source.endswith("fact3.txt")
            assert failed.value.answer.error and failed.value.exit_code == 3
        big = httpx.post(
            f"{url}/v1/documents",
            files={"file": ("big.txt", b"x" * (2 * 2**20))},
            headers={"X-API-Key": token},
            timeout=60,
        )
        assert big.status_code == 413
        # An ingest sent by a CLI is capped the same way.
        too_big = subprocess.run(
            [sys.executable, "-m", "ragdb", "--store", str(store), "ingest", "-", "--name", "big"],
            input="word " * 300_000, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert too_big.returncode != 0 and "--max-upload-mb 1" in too_big.stderr
        # --mcp-write: agents get the write tools at /mcp too (the module's service,
        # started without it, lists the read tools alone).
        memo = {"name": "memo", "text": "The ferry leaves at noon."}
        tools, (added, removed) = mcp_over_http(
            url, token, [("ingest_text", memo), ("remove", {"sources": ["memo"]})]
        )
        assert {"ingest_text", "remove"} <= set(tools)
        assert added["added"] == 1 and removed["removed"] == ["memo"]
        # --allow-reset: a knowledge base may be deleted over HTTP, and the store emptied.
        api = httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=60)
        assert api.post("/v1/kbs", json={"name": "scratch"}).status_code == 201
        assert api.delete("/v1/kbs/scratch").json() == {"deleted": "scratch", "chunks": 0}
        assert api.delete("/v1/kbs/scratch").status_code == 404
        # POST /v1/reset empties the store, through the job queue.
        emptied = httpx.post(f"{url}/v1/reset", headers={"X-API-Key": token}, timeout=60)
        assert emptied.status_code == 200 and emptied.json() == {"removed_chunks": 4}
        assert httpx.get(f"{url}/v1/status", headers={"X-API-Key": token}).json()["chunks"] == 0
    log = (tmp_path / "serve.log").read_text()
    assert f"serving {store}" in log and "serve.token" in log and f"{url}/v1" in log


def test_non_loopback_without_a_key_refuses_to_start(tmp_path: Path, facts_dir: Path) -> None:
    store = tmp_path / "store"
    Ragdb(store)("ingest", str(facts_dir))
    env = {**os.environ, "RAGDB_API_KEY": ""}
    for args, message in (
        (["--host", "0.0.0.0"], "needs an API key"),
        (["--host", "0.0.0.0", "--no-auth"], "--no-auth is allowed only on a loopback address"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "ragdb", "--store", str(store), "serve", *args],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr


def cli(
    store: object, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ragdb", "--store", str(store), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "RAGDB_API_KEY": KEY, **(env or {})},
    )  # fmt: skip


def _same(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    a.pop("timings", None), b.pop("timings", None)
    assert a == b


def test_cli_uses_the_running_server_with_the_same_output(service: dict[str, object]) -> None:
    store = service["store"]
    assert json.loads((Path(str(store)) / "serve.json").read_text())["url"] == service["url"]
    for args in (
        ["query", "octopus", "--retrieve-only", "--json", "-k", "3"],
        ["query", "summit", "--retrieve-only", "--json", "--mode", "dense"],
        ["status", "--json"],
        ["sources", "--json"],
    ):
        served = cli(store, *args)
        alone = cli(store, "--no-server", *args)
        assert served.returncode == alone.returncode == 0, served.stderr + alone.stderr
        ours, theirs = json.loads(served.stdout), json.loads(alone.stdout)
        if isinstance(ours, dict):
            _same(ours, theirs)
        else:
            assert ours == theirs
        # Through the server, the CLI loads neither torch nor Chroma.
        imported = {line.split("|")[-1].strip() for line in served.stderr.splitlines()}
        assert "torch" not in imported and "chromadb" not in imported
        assert "chromadb" in {line.split("|")[-1].strip() for line in alone.stderr.splitlines()}
    # The human-readable form too, and the same errors with the same exit codes.
    served = cli(store, "query", "octopus", "--retrieve-only")
    alone = cli(store, "--no-server", "query", "octopus", "--retrieve-only")
    assert served.stdout == alone.stdout and "fact3.txt" in served.stdout
    bad = cli(store, "query", "octopus", "--retrieve-only", "-k", "0")
    assert bad.returncode == 2
    # A stale serve.json (a server that is gone) is ignored.
    wrong = cli(store, "status", "--json", env={"RAGDB_URL": "http://127.0.0.1:9"})
    assert wrong.returncode == 1 and "no ragdb server answers" in wrong.stderr.splitlines()[-1]


def test_remote_and_local_give_the_same_results(service: dict[str, object]) -> None:
    """RemoteKnowledgeBase and KnowledgeBase implement one interface and answer
    with the same dataclasses: what the CLI relies on to have no branches."""
    remote = RemoteKnowledgeBase(str(service["url"]), KEY)
    local = KnowledgeBase(store=service["store"])
    assert remote.status() == local.status()
    assert remote.sources() == local.sources() and remote.sources()
    for mode in ("hybrid", "dense", "bm25"):
        theirs = remote.ask("octopus hearts", 3, mode=mode, retrieve_only=True)
        ours = local.ask("octopus hearts", 3, mode=mode, retrieve_only=True)
        assert isinstance(theirs, Answer) and theirs.hits == ours.hits and theirs.hits
    streamed: list[list[Hit]] = []
    remote.ask("octopus hearts", 2, retrieve_only=True, on_hits=streamed.append)
    assert streamed == [local.ask("octopus hearts", 2, retrieve_only=True).hits]
    target = str(ours.hits[0].source)
    assert remote.matching_sources([target]) == local.matching_sources([target])
    for kb in (remote, local):
        with pytest.raises(SourceNotFoundError):
            kb.remove(["/nowhere/at/all.txt"])
        with pytest.raises(UsageError):
            kb.ask("   ", retrieve_only=True)


def test_cli_ingest_and_remove_through_the_server(
    service: dict[str, object], tmp_path: Path
) -> None:
    """The CLI's writes go through the running server (sending the files'
    contents) and store exactly what an in-process ingest stores."""
    store = service["store"]
    before = json.loads(cli(store, "status", "--json").stdout)["sources"]
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in {
        "a.md": "# Alpacas\nAlpacas hum.",
        "b.txt": "Bees dance.",
        "c.txt": "Cats.",
    }.items():
        (notes / name).write_text(text)
    (notes / "blob.txt").write_bytes(bytes(range(256)) * 8)  # skipped by the server's job
    served = cli(store, "ingest", str(notes), "--json")
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["added"] == 3
    skipped = [line for line in served.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(skipped) == 1 and "blob.txt" in skipped[0]
    imported = {line.split("|")[-1].strip() for line in served.stderr.splitlines()}
    assert "torch" not in imported and "chromadb" not in imported
    # In-process finds the very same sources and versions: nothing to do, no duplicates.
    alone = cli(store, "--no-server", "ingest", str(notes), "--json")
    again = json.loads(alone.stdout)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert again["chunks_embedded"] == 0 and again["skipped"] == 1
    (notes / "b.txt").write_text("Bees dance and hum.")
    (notes / "c.txt").unlink()
    pruned = json.loads(cli(store, "ingest", "--prune", str(notes), "--json").stdout)
    assert (pruned["updated"], pruned["removed"], pruned["unchanged"]) == (1, 1, 1)
    listed = json.loads(cli(store, "--no-server", "sources", "--json").stdout)
    under = sorted(s["source"] for s in listed if s["source"].startswith(str(notes)))
    assert under == [str(notes / "a.md"), str(notes / "b.txt")]
    # Standard input, and an error raised in the server's job: same message, same code.
    piped = subprocess.run(
        [sys.executable, "-m", "ragdb", "--store", str(store), "ingest", "-", "--name", "memo"],
        input="Memos matter.", capture_output=True, text=True, timeout=120,
        env={**os.environ, "RAGDB_API_KEY": KEY},
    )  # fmt: skip
    assert piped.returncode == 0 and "1 added" in piped.stdout
    records = tmp_path / "r.jsonl"
    records.write_text(json.dumps({"id": "memo", "text": "A record."}) + "\n")
    clash = cli(store, "ingest", "--records", str(records))
    clash_alone = cli(store, "--no-server", "ingest", "--records", str(records))
    assert clash.returncode == clash_alone.returncode == 1
    assert clash.stderr.splitlines()[-1] == clash_alone.stderr.splitlines()[-1]
    assert "memo" in clash.stderr.splitlines()[-1]
    # remove: matched here (a directory takes what is under it), removed there.
    gone = cli(store, "remove", str(notes), "memo", "--yes", "--json")
    assert gone.returncode == 0, gone.stderr
    assert sorted(json.loads(gone.stdout)["removed"]) == [*under, "memo"]
    missing = cli(store, "remove", str(notes))
    assert missing.returncode == 1 and "not in the knowledge base" in missing.stderr
    assert json.loads(cli(store, "status", "--json").stdout)["sources"] == before


def test_ingest_jobs_report_progress_and_can_be_cancelled(service: dict[str, object]) -> None:
    texts = [
        {"name": f"job-{i}", "text": f"Item {i}: " + "lichens grow slowly on bare rock. " * 60}
        for i in range(40)
    ]
    with native(service) as http:
        queued = http.post("/v1/ingest", json={"texts": texts[:4]})
        assert queued.status_code == 202
        job = queued.json()
        assert queued.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["state"] in ("queued", "running")
        events = []
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        kinds = [e["event"] for e in events]
        assert "progress" in kinds and kinds[-1] == "done"
        assert events[-1]["state"] == "succeeded" and events[-1]["report"]["added"] == 4
        done = http.get(f"/v1/jobs/{job['id']}").json()
        assert done["state"] == "succeeded" and done["chunks_done"] == done["chunks_total"] > 0
        assert http.get("/v1/jobs/nope").status_code == 404
        # A long job, cancelled: it stops between batches and the store stays whole.
        long = http.post("/v1/ingest", json={"texts": texts}).json()
        assert http.delete(f"/v1/jobs/{long['id']}").status_code == 200
        final = list(_events(http, long["id"]))[-1]
        assert final["state"] in ("cancelled", "succeeded")
        assert http.get(f"/v1/jobs/{long['id']}").json()["state"] == final["state"]
        listed = [j["id"] for j in http.get("/v1/jobs").json()["jobs"]]
        assert job["id"] in listed and long["id"] in listed
        status = http.get("/v1/status").json()
        assert status["service"]["queue"] == 0
    doctor = cli(service["store"], "--no-server", "doctor", "--json")
    assert json.loads(doctor.stdout)["healthy"] is True, doctor.stdout
    with native(service) as http:
        for t in texts:
            http.delete(f"/v1/sources/{t['name']}")


def _events(http: httpx.Client, job_id: str) -> Iterator[dict]:
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


def test_upload_a_document(service: dict[str, object]) -> None:
    with native(service) as http:
        sent = http.post(
            "/v1/documents?wait=true",
            files={"file": ("otters.md", b"# Otters\n\nSea otters hold hands while they sleep.")},
            data={"metadata": json.dumps({"team": "mammals", "year": 2026})},
        )
        assert sent.status_code == 200 and sent.json()["added"] == 1
        hits = http.post("/v1/search", json={"query": "otters sleep", "k": 1}).json()["chunks"]
        assert hits[0]["source"] == "otters.md"
        assert hits[0]["metadata"]["team"] == "mammals" and hits[0]["metadata"]["year"] == 2026
        assert http.post("/v1/documents", data={"name": "x"}).status_code == 400
        bad = http.post("/v1/documents", files={"file": ("y.txt", b"Y.")}, data={"metadata": "[1]"})
        assert bad.status_code == 400 and "JSON object" in bad.json()["detail"]
        nested = http.post(
            "/v1/ingest",
            json={"texts": [{"name": "z", "text": "Z.", "metadata": {"deep": {"no": 1}}}]},
        )
        assert nested.status_code == 400 and "metadata" in nested.json()["detail"]
        http.delete("/v1/sources/otters.md")
        assert http.get("/v1/sources/z").status_code == 404  # nothing was queued


def test_ingest_paths_with_include_and_exclude(service: dict[str, object]) -> None:
    docs = Path(str(service["docs"])) / "mixed"
    (docs / "sub").mkdir(parents=True)
    (docs / "keep.md").write_text("Puffins keep their burrows.")
    (docs / "sub" / "also.md").write_text("Gannets also dive.")
    (docs / "skip.txt").write_text("Skuas steal fish.")
    (docs / "sub" / "draft.md").write_text("A draft about terns.")
    with native(service) as http:
        got = http.post(
            "/v1/ingest?wait=true",
            json={"paths": [str(docs)], "include": ["*.md"], "exclude": ["sub/draft.*"]},
        )
        assert got.status_code == 200, got.text
        assert got.json()["added"] == 2
        listed = http.get("/v1/sources", params={"prefix": str(docs.resolve())}).json()
        names = sorted(Path(s["source"]).name for s in listed["sources"])
        assert names == ["also.md", "keep.md"]
        bad = http.post("/v1/ingest", json={"paths": [str(docs)], "include": "*.md"})
        assert bad.status_code == 400 and "glob patterns" in bad.json()["detail"]
        for source in listed["sources"]:
            http.delete(f"/v1/sources/{source['source']}")


def _names_under(url: str, folder: Path) -> set[str]:
    listed = httpx.get(
        f"{url}/v1/sources",
        params={"prefix": str(folder), "limit": 1000},
        headers={"X-API-Key": KEY},
    ).json()
    return {Path(s["source"]).name for s in listed["sources"]}


def _text_of(url: str, path: Path) -> str | None:
    got = httpx.get(f"{url}/v1/sources/{path}", headers={"X-API-Key": KEY})
    return got.json()["chunks"][0]["text"] if got.status_code == 200 else None


def _until(check: object, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the store did not converge in time"
        time.sleep(0.3)


def test_watched_folder_converges_to_ingest_prune(tmp_path: Path, facts_dir: Path) -> None:
    store, folder = tmp_path / "store", tmp_path / "watched"
    folder.mkdir()
    (folder / "a.txt").write_text("Auks dive for fish.")
    (folder / "b.txt").write_text("Bitterns boom in reed beds.")
    Ragdb(store)("ingest", str(facts_dir))  # sources outside the folder: never pruned
    resolved = folder.resolve()
    with ragdb_serve(
        store, tmp_path / "serve.log", "--api-key", KEY, "--watch", str(folder)
    ) as url:
        names = lambda: _names_under(url, resolved)  # noqa: E731
        _until(lambda: names() == {"a.txt", "b.txt"})  # the reconcile at start
        (folder / "c.txt").write_text("Cranes dance in spring.")  # create
        _until(lambda: "c.txt" in names())
        (folder / "a.txt").write_text("Auks nest on cliffs.")  # edit
        _until(lambda: _text_of(url, resolved / "a.txt") == "Auks nest on cliffs.")
        tmp = folder / ".b.txt.swp"  # an editor's save-by-rename
        tmp.write_text("Bitterns hide by pointing their bills up.")
        os.replace(tmp, folder / "b.txt")
        _until(lambda: (_text_of(url, resolved / "b.txt") or "").startswith("Bitterns hide"))
        (folder / "c.txt").unlink()  # delete
        _until(lambda: "c.txt" not in names())
        # A file still being written is read once it holds still, never half-way.
        slow, pieces, seen = (
            folder / "slow.txt",
            [f"Part {i} of the shrike report." for i in range(6)],
            set(),
        )
        for piece in pieces:
            with slow.open("a") as fh:
                fh.write(piece + " ")
            for _ in range(3):
                seen.add(_text_of(url, resolved / "slow.txt"))
                time.sleep(0.08)
        whole = " ".join(pieces)
        _until(lambda: _text_of(url, resolved / "slow.txt") == whole)
        assert seen <= {None, whole}, seen
        burst = folder / "burst"
        burst.mkdir()
        for i in range(500):
            (burst / f"n{i:03d}.txt").write_text(f"Note {i} on nightjars.")
        _until(lambda: len(names()) == 503, seconds=180)
        status = httpx.get(f"{url}/v1/status", headers={"X-API-Key": KEY}).json()
        watch = status["service"]["watches"][0]
        assert watch["path"] == str(resolved) and watch["reconciles"] >= 2
        assert watch["last_error"] is None
    # What the watch made is exactly what one `ingest --prune DIR` gives.
    again = Ragdb(store).json("ingest", "--prune", str(folder))
    assert (again["added"], again["updated"], again["removed"]) == (0, 0, 0)
    assert again["unchanged"] == 503
    assert len(Ragdb(store).json("sources")) == 503 + 4  # the facts are still there


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_server_stopped_during_a_job_leaves_a_healthy_store(
    tmp_path: Path, facts_dir: Path, signal_name: str
) -> None:
    import signal
    import time

    store = tmp_path / "store"
    Ragdb(store)("ingest", str(facts_dir))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragdb", "--store", str(store), "serve", "--port", str(port),
         "--api-key", KEY],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _until(lambda: _healthy(url), seconds=180)
        texts = [
            {"name": f"t{i}", "text": f"Text {i}: " + "terns migrate pole to pole. " * 80}
            for i in range(60)
        ]
        job = httpx.post(f"{url}/v1/ingest", json={"texts": texts}, headers={"X-API-Key": KEY})
        job_id = job.json()["id"]
        _until(
            lambda: (
                httpx.get(f"{url}/v1/jobs/{job_id}", headers={"X-API-Key": KEY}).json()[
                    "chunks_done"
                ]
                > 0
            )
        )
        proc.send_signal(getattr(signal, signal_name))
        code = proc.wait(60)
    finally:
        proc.kill()
        log.close()
    if signal_name == "SIGTERM":
        # A clean stop (uvicorn shuts down, then ends the process with the signal):
        # the job was cancelled between batches and serve.json is gone.
        assert code == -signal.SIGTERM
        assert not (store / "serve.json").exists()
    else:
        assert code == -9
        time.sleep(0.1)
    # The next ordinary command settles whatever was left, and the store is whole.
    local = Ragdb(store)
    status = local.json("status")  # a stale serve.json (dead server) is ignored
    report = json.loads(local("doctor", "--json").stdout)
    assert report["healthy"] is True and report["chunks"] == status["chunks"]
    chunks = local.chunks()
    by_source: dict[str, set[str]] = {}
    for c in chunks:
        by_source.setdefault(c["source"], set()).add(c["source_hash"])
    assert all(len(hashes) == 1 for hashes in by_source.values())


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _doc(i: int, version: str) -> str:
    filler = " ".join(f"w{i}{version}x{j}" for j in range(20))  # the version in every chunk
    return "\n\n".join(
        f"Document {i} {version} part {p}. Heron note {i}. {filler}" for p in range(2)
    )


def test_queries_while_a_job_and_a_cli_process_ingest(tmp_path: Path, facts_dir: Path) -> None:
    """8 clients search while the server's job replaces 120 two-chunk documents
    and another process ingests 80 more: no errors, each source whole-old or
    whole-new in every answer, and afterwards no chunk lost or duplicated."""
    import random
    import re
    import threading

    from ragdb import KnowledgeBase

    from .proofs.storecheck import compare

    store, served, other = tmp_path / "store", tmp_path / "served", tmp_path / "other"
    served.mkdir(), other.mkdir()
    for i in range(120):
        (served / f"d{i:03d}.txt").write_text(_doc(i, "v1"))
    for i in range(80):
        (other / f"o{i:03d}.txt").write_text(f"Other note {i} about herons and egrets.")
    Ragdb(store)("ingest", str(facts_dir), str(served))
    for i in range(120):
        (served / f"d{i:03d}.txt").write_text(_doc(i, "v2"))
    problems: list[str] = []
    answered = 0
    done = threading.Event()

    def searcher(seed: int) -> None:
        nonlocal answered
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120) as http:
            while not done.is_set():
                done.wait(0.2)  # users, not a load test: the writers get their turn
                i = rng.randrange(120)
                got = http.post("/v1/search", json={"query": f"Heron note {i}", "k": 10})
                if got.status_code != 200:
                    problems.append(f"{got.status_code}: {got.text[:200]}")
                    continue
                answered += 1
                tags: dict[str, set[str]] = {}
                for hit in got.json()["chunks"]:
                    if "/served/" in hit["source"]:
                        found = set(re.findall(r"w\d+(v\d)x", hit["text"]))
                        tags.setdefault(hit["source"], set()).update(found)
                problems.extend(
                    f"mixed versions of {s}: {t}" for s, t in tags.items() if len(t) > 1
                )

    log = tmp_path / "serve.log"
    with ragdb_serve(store, log, "--api-key", KEY, "--allow-path", str(served)) as url:
        threads = [threading.Thread(target=searcher, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=600) as http:
            job = http.post("/v1/ingest", json={"paths": [str(served)]})
            assert job.status_code == 202
            cli_process = subprocess.run(
                [sys.executable, "-m", "ragdb", "--store", str(store), "--no-server",
                 "ingest", str(other), "--json"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            for event in _events(http, job.json()["id"]):
                if event["event"] == "done":
                    assert event["state"] == "succeeded", event
                    assert event["report"]["updated"] == 120
        done.set()
        for t in threads:
            t.join()
    assert cli_process.returncode == 0, cli_process.stderr
    assert json.loads(cli_process.stdout)["added"] == 80
    assert not problems, problems[:5]
    assert answered > 50
    expected = {
        str(p.resolve()): p.read_text() for d in (facts_dir, served, other) for p in d.iterdir()
    }
    check = compare(KnowledgeBase(store=store), expected)
    assert check["chunks"] >= 4 + 2 * 120 + 80  # two chunks a document: a mix would show
    assert (check["lost_chunks"], check["duplicated_chunks"], check["unexpected_sources"]) == (
        0,
        0,
        0,
    ), check


def mcp_over_http(
    url: str, key: str, calls: list[tuple[str, dict[str, object]]]
) -> tuple[list[str], list[dict]]:
    """The official MCP client on ``url``/mcp with ``key``: the tools listed,
    and each call's structured result."""
    import anyio
    import httpx2  # the HTTP client the mcp SDK takes
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session() -> tuple[list[str], list[dict]]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
        async with (
            http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            tools = sorted(t.name for t in (await mcp.list_tools()).tools)
            results = []
            for name, arguments in calls:
                got = await mcp.call_tool(name, arguments)
                results.append(got.structured_content or {})
            return tools, results

    return anyio.run(session)


def test_agents_reach_the_read_tools_over_http_behind_the_token(
    service: dict[str, object],
) -> None:
    tools, (found,) = mcp_over_http(
        str(service["url"]), KEY, [("search", {"question": "octopus", "k": 1})]
    )
    # Read tools only: a server's writes go through its own API.
    assert tools == ["ask", "list_knowledge_bases", "list_sources", "read_source", "search"]
    assert found["chunks"][0]["source"].endswith("fact3.txt")
    refused = httpx.post(
        f"{service['url']}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert refused.status_code == 401


def test_knowledge_bases_over_http_and_as_chat_models(service: dict[str, object]) -> None:
    # (Last in this module: it leaves an empty knowledge base behind.)
    api = native(service)
    assert api.post("/v1/kbs", json={"name": "pets"}).status_code == 201
    again = api.post("/v1/kbs", json={"name": "pets"})
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    memo = {"texts": [{"name": "pets.md", "text": "Our cat is named Miso and sleeps all day."}]}
    assert api.post("/v1/ingest?kb=pets&wait=true", json=memo).json()["added"] == 1
    assert api.get("/v1/sources", params={"kb": "pets"}).json()["total"] == 1
    assert api.get("/v1/status", params={"kb": "pets"}).json()["chunks"] == 1
    assert api.get("/v1/status").json()["knowledge_bases"] == ["default", "pets"]
    # One question over several: each chunk names its knowledge base.
    every = api.post("/v1/search", json={"query": "cat named Miso", "k": 5, "kb": "*"}).json()
    assert every["chunks"][0]["kb"] == "pets"
    assert {c["kb"] for c in every["chunks"]} == {"default", "pets"}
    assert api.post("/v1/search", json={"query": "x", "kb": ["nope"]}).status_code == 404
    # A chat front-end picks a knowledge base by picking a model.
    chat = client(service)
    assert [m.id for m in chat.models.list()] == [
        "ragdb",
        "ragdb/default",
        "ragdb/pets",
        "ragdb/llm",
    ]
    reply = chat.chat.completions.create(
        model="ragdb/pets", messages=[{"role": "user", "content": "What is the cat called?"}]
    )
    chunks = (reply.model_extra or {})["ragdb"]["chunks"]
    assert chunks and {c["kb"] for c in chunks} == {"pets"}
    with pytest.raises(openai.NotFoundError):
        chat.chat.completions.create(
            model="ragdb/nope", messages=[{"role": "user", "content": "x"}]
        )
    # The remote client (what the CLI uses with a server running) asks one by name.
    remote = RemoteKnowledgeBase(str(service["url"]), KEY, "pets")
    assert [s.source for s in remote.sources()] == ["pets.md"]
    assert api.patch("/v1/kbs/pets", json={"name": "cats"}).status_code == 200
    assert [k.name for k in remote.knowledge_bases()] == ["cats", "default"]
    refused = api.delete("/v1/kbs/cats")
    assert refused.status_code == 403 and "--allow-reset" in refused.json()["detail"]
    removed = api.post("/v1/remove", params={"kb": "cats"}, json={"sources": ["pets.md"]})
    assert removed.json()["removed_chunks"] == 1
