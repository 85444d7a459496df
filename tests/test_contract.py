"""The published contract: `GET /openapi.json` describes every route, and
schemathesis sends generated requests (bounded per operation) to a real
`ragdb serve` on a free port: no 5xx, no response outside the schema, and
nothing read or stored from outside the `--allow-path` root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from .conftest import FACTS, Ragdb
from .test_serve import KEY, ragdb_serve

# Generated requests per operation: enough to find what the wire contract misses,
# few enough for the suite (about 15 operations). The suite replays one fixed
# sequence so CI judges the code, not the draw; scripts/contract explores fresh
# draws, many more of them (RAGDB_CONTRACT_EXAMPLES, RAGDB_CONTRACT_RANDOM=1).
EXAMPLES = int(os.environ.get("RAGDB_CONTRACT_EXAMPLES", "25"))
RANDOM = os.environ.get("RAGDB_CONTRACT_RANDOM") == "1"
# Requests the schema allows but ragdb rightly refuses (an ingest of nothing, an
# empty question, a path outside the roots): the schema cannot say all of that.
SEMANTIC = [checks.positive_data_acceptance]
SECRET = "The hangar code outside the root is 27-18-28."


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory, llm_server: str) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("contract")
    store, root, outside = base / "store", base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "inside.txt").write_text("Ospreys hunt fish by diving feet first.")
    (root / "out.txt").symlink_to(outside / "secret.txt")
    facts = base / "facts"
    facts.mkdir()
    for i, fact in enumerate(FACTS):
        (facts / f"fact{i}.txt").write_text(fact + "\n")
    Ragdb(store)("ingest", str(facts))
    with ragdb_serve(
        store, base / "serve.log", "--api-key", KEY, "--allow-path", str(root),
        "--llm-url", llm_server, "--model", "smollm2", "--max-tokens", "4",
    ) as url:  # fmt: skip
        yield {"url": url, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def api_schema(contract: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_url(
        f"{contract['url']}/openapi.json", headers={"X-API-Key": KEY}
    )


def test_the_schema_is_published_behind_the_token(contract: dict[str, Any]) -> None:
    url = contract["url"]
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    schema = httpx.get(f"{url}/openapi.json", headers={"X-API-Key": KEY}).json()
    paths = set(schema["paths"])
    assert {
        "/healthz", "/v1/status", "/v1/sources", "/v1/sources/{source}", "/v1/remove",
        "/v1/reset", "/v1/ingest", "/v1/documents", "/v1/jobs", "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events", "/v1/watches", "/v1/search", "/v1/ask", "/v1/models",
        "/v1/chat/completions",
    } <= paths  # fmt: skip
    search = schema["paths"]["/v1/search"]["post"]
    assert "requestBody" in search and "400" in search["responses"]


def test_generated_requests_keep_the_contract(api_schema: Any) -> None:
    """Every operation, a bounded number of generated requests each (driven
    through Hypothesis directly: one test, one report of what was sent)."""
    sent: dict[str, int] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/jobs/{job_id}/events":
            continue  # a stream that lasts as long as its job: the jobs tests read it

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=not RANDOM,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            key = f"{case.method} {case.path}"
            sent[key] = sent.get(key, 0) + 1
            case.call_and_validate(
                headers={"X-API-Key": KEY}, timeout=120, excluded_checks=SEMANTIC
            )

        check()
    print(f"schemathesis: {sum(sent.values())} requests over {len(sent)} operations")
    assert len(sent) >= 15


def test_found_while_writing_it(contract: dict[str, Any]) -> None:
    """What schemathesis found, kept: a name with a newline matches no route,
    and Starlette's own 404 (`{"detail": "Not Found"}`) was not ragdb's format;
    a NUL in a server-side path was a 500."""
    c = httpx.Client(base_url=contract["url"], headers={"X-API-Key": KEY})
    for method in ("GET", "DELETE"):
        missing = c.request(method, "/v1/sources/a%0Ab")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["type"] == "NotFoundError"
    nowhere = c.get("/v1/chat/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["type"] == "NotFoundError"
    # A NUL in a path was a 500 (os.path.realpath raises ValueError on it).
    for route, body in (("/v1/watches", {"path": "a\x00b"}), ("/v1/ingest", {"paths": ["a\x00b"]})):
        nul = c.post(route, json=body)
        assert nul.status_code == 400 and "NUL" in nul.json()["detail"], nul.text
    # ... and a NUL in the URL, here unwatching "²\0" (a fresh draw in CI).
    for method, url in (("DELETE", "/v1/watches?path=%C2%B2%00"), ("GET", "/v1/sources/a%00b")):
        nul = c.request(method, url)
        assert nul.status_code == 400 and "NUL" in nul.json()["detail"], nul.text
    assert c.get("/v1/watches").status_code == 200
    # "~user" for a user that does not exist: pathlib raised RuntimeError, a 500.
    tilde = c.delete("/v1/watches", params={"path": "~no-such-user-here/x"})
    assert tilde.status_code == 404 and tilde.json()["type"] == "NotFoundError", tilde.text


def test_nothing_outside_the_root_was_read(contract: dict[str, Any]) -> None:
    c = httpx.Client(base_url=contract["url"], headers={"X-API-Key": KEY}, timeout=60)
    for s in c.get("/v1/sources", params={"limit": 1000}).json()["sources"]:
        if s["source_type"] == "file":
            assert s["source"].startswith(str(contract["root"])) or "facts" in s["source"]
        chunks = c.get(f"/v1/sources/{quote(s['source'], safe='/')}").json().get("chunks", [])
        assert not any(SECRET in ch["text"] for ch in chunks)
