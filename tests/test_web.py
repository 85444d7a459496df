"""Web pages and sites as sources, fetched from a real HTTP server on a free
loopback port (tests/site.py): the main text is stored under the URL and
retrieved, a re-ingest asks conditionally and embeds nothing unchanged, a
crawl stays on its site, honours robots.txt and prunes what vanished, and each
failure is a clear per-source reason that loses nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragdb.ingest import web
from ragdb.ingest.plan import IngestPlan, plan_paths
from ragdb.ingest.web import WebOptions

from .conftest import Ragdb, free_port
from .pdfgen import write_pdf
from .site import Site, serve_site
from .test_serve import KEY, ragdb_serve

STORM = (
    "<p>When the barometer falls quickly, the harbour master raises the red pennant "
    "and every small boat must return within the hour.</p>"
)


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    s.html("/storm.html", "Storm rules", STORM)
    with serve_site(s) as served:
        yield served


def sources(ragdb: Ragdb) -> dict[str, dict]:
    return {s["source"]: s for s in ragdb.json("sources")}


def test_a_page_is_stored_by_its_main_text_and_asked_again_conditionally(
    local_ragdb: Ragdb, site: Site
) -> None:
    url = f"{site.url}/storm.html"
    out = local_ragdb.json("ingest", url, "--meta", "topic=sea")
    assert out["added"] == 1 and out["chunks_embedded"] >= 1
    chunks = local_ragdb.chunks()
    assert {c["topic"] for c in chunks} == {"sea"}  # --meta reaches pages too
    text = " ".join(c["text"] for c in chunks)
    assert "red pennant" in text
    # The navigation and the footer are not the page's text.
    assert "Contact us" not in text and "All rights reserved" not in text
    assert {c["source_type"] for c in chunks} == {"page"} and chunks[0]["title"] == "Storm rules"
    hits = local_ragdb.json("query", "What does the red pennant mean?", "--retrieve-only")
    assert hits["chunks"][0]["source"] == url
    info = sources(local_ragdb)[url]
    assert info["source_type"] == "page" and info["etag"]
    # Again: the stored ETag is sent, the server answers 304, nothing is embedded.
    again = local_ragdb.json("ingest", url)
    assert (again["unchanged"], again["chunks_embedded"]) == (1, 0)
    assert site.asked("/storm.html") == [None, info["etag"]]
    # Changed on the site: fetched whole and stored anew.
    site.html("/storm.html", "Storm rules", STORM + "<p>Gale warnings come at noon.</p>")
    assert local_ragdb.json("ingest", url)["updated"] == 1


def build_site(site: Site, pdf: Path) -> None:
    site.html(
        "/",
        "Harbour club",
        "<p>Welcome to the harbour club, where members keep their boats.</p>"
        '<a href="/storm.html">Storm rules</a> <a href="/berths.html#north">Berths</a> '
        '<a href="/private/ledger.html">Ledger</a> <a href="http://localhost:9/x">Elsewhere</a>'
        ' <a href="/trap.html" rel="nofollow">Trap</a>',
    )
    site.html(
        "/berths.html",
        "Berths",
        "<p>The north quay berths are three hundred and ten metres long.</p>"
        '<a href="/">Back home</a> <a href="/tides.pdf">Tide table</a>',
    )
    site.html("/private/ledger.html", "Ledger", "<p>Secret accounts of the club.</p>")
    write_pdf(pdf, ["Spring tides peak at four point two metres in the harbour mouth."])
    site.pages["/tides.pdf"] = ("application/pdf", pdf.read_bytes())
    site.pages["/robots.txt"] = ("text/plain", b"User-agent: *\nDisallow: /private/\n")


def test_a_crawl_stays_on_its_site_honours_robots_and_prunes_what_vanished(
    local_ragdb: Ragdb, site: Site, tmp_path: Path
) -> None:
    build_site(site, tmp_path / "tides.pdf")
    start = f"{site.url}/"
    out = local_ragdb.json("ingest", start, "--crawl", "--delay", "0")
    stored = sources(local_ragdb)
    names = {f"{site.url}{p}" for p in ("/", "/storm.html", "/berths.html", "/tides.pdf")}
    assert set(stored) == names and out["added"] == 4, out
    # The robots.txt-disallowed page is skipped as such, never fetched; broken
    # links are named.
    skipped = {s["source"].removeprefix(site.url): s["reason"] for s in out["skipped_sources"]}
    assert skipped == {
        "/private/ledger.html": "disallowed by robots.txt",
        "/about.html": "HTTP 404 Not Found",
        "/contact.html": "HTTP 404 Not Found",
    }
    assert not site.asked("/private/ledger.html") and not site.asked("/trap.html")
    assert {s["origin"] for s in stored.values()} == {start}
    assert stored[f"{site.url}/tides.pdf"]["kind"] == "pdf"
    hits = local_ragdb.json("query", "How high are spring tides?", "--retrieve-only", "-k", "1")
    assert hits["chunks"][0]["source"] == f"{site.url}/tides.pdf"
    assert hits["chunks"][0]["metadata"]["page"] == 1
    # Later the berths page changes and the storm page leaves the site.
    site.html(
        "/berths.html",
        "Berths",
        '<p>The south quay is closed for repairs.</p><a href="/tides.pdf">Tide table</a>',
    )
    site.pages.pop("/storm.html")
    again = local_ragdb.json("ingest", start, "--crawl", "--delay", "0", "--prune")
    assert (again["updated"], again["unchanged"], again["removed"]) == (1, 2, 1), again
    assert set(sources(local_ragdb)) == names - {f"{site.url}/storm.html"}
    # The PDF, where the crawl stops, was asked conditionally (and was a 304).
    assert site.asked("/tides.pdf")[-1] is not None


def test_a_crawl_that_cannot_see_its_whole_site_prunes_nothing(
    local_ragdb: Ragdb, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_site(site, tmp_path / "tides.pdf")
    start = f"{site.url}/"
    local_ragdb("ingest", start, "--crawl", "--delay", "0")
    before = set(sources(local_ragdb))
    site.status["/berths.html"] = 503  # the PDF is reached only through it
    out = local_ragdb("ingest", start, "--crawl", "--delay", "0", "--prune", "--json")
    assert "nothing of this crawl is pruned" in out.stderr
    assert set(sources(local_ragdb)) == before
    site.status.clear()
    limited = local_ragdb(
        "ingest", start, "--crawl", "--delay", "0", "--prune", "--max-pages", "2", "--json"
    )
    assert "stopped at 2 pages" in limited.stderr and set(sources(local_ragdb)) == before
    # Pages are held until stored: a crawl past its byte bound stops the same way.
    monkeypatch.setattr(web, "MAX_CRAWL_BYTES", 1000)
    heavy = local_ragdb("ingest", start, "--crawl", "--delay", "0", "--prune", "--json")
    assert "stopped at 0 MB of pages" in heavy.stderr and set(sources(local_ragdb)) == before


def test_each_failure_is_a_clear_reason_and_keeps_what_is_stored(
    local_ragdb: Ragdb, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{site.url}/storm.html"
    local_ragdb("ingest", url)
    stored = local_ragdb.chunks()

    def reason(*args: str) -> str:
        out = local_ragdb.json("ingest", *args, code=1)
        [skip] = out["skipped_sources"]
        return skip["reason"]

    site.status["/storm.html"] = 500
    assert reason(url, "--prune").startswith("HTTP 500")
    site.status.clear()
    site.stall["/storm.html"] = 3
    assert reason(url, "--prune", "--fetch-timeout", "0.5").startswith("timed out after 0.5s")
    site.stall.clear()
    assert local_ragdb.chunks() == stored  # a failure that may pass keeps the page
    monkeypatch.setattr(web, "MAX_PAGE_BYTES", 2**20)
    site.endless.add("/huge.html")
    assert reason(f"{site.url}/huge.html") == "larger than 1 MB"
    site.redirects.update({"/a.html": "/b.html", "/b.html": "/a.html"})
    assert reason(f"{site.url}/a.html") == "more than 5 redirects"
    site.pages["/logo.png"] = ("image/png", b"\x89PNG\r\n\x1a\nnot really an image")
    assert "image" in reason(f"{site.url}/logo.png", "--no-ocr")
    assert reason(f"http://127.0.0.1:{free_port()}/x").startswith("cannot fetch")
    assert local_ragdb.chunks() == stored
    # A page that is gone (404) goes with --prune, and only then.
    site.pages.pop("/storm.html")
    assert reason(url).startswith("HTTP 404") and local_ragdb.chunks() == stored
    out = local_ragdb.json("ingest", url, "--prune", code=None)
    assert out["removed"] == 1 and local_ragdb.chunks() == []


def test_a_redirected_page_is_stored_under_where_it_led(local_ragdb: Ragdb, site: Site) -> None:
    site.redirects["/old-storm.html"] = "/storm.html"
    local_ragdb("ingest", f"{site.url}/old-storm.html")
    assert set(sources(local_ragdb)) == {f"{site.url}/storm.html"}


def test_bad_addresses_and_options_are_refused_before_anything_runs(
    local_ragdb: Ragdb,
) -> None:
    for bad in ("http://", "https:///path", "http://exa mple.org/"):
        result = local_ragdb("ingest", bad, code=2)
        assert "web address" in result.stderr, result.stderr
    # What a CLI sends a server carries its web targets whole.
    plan = plan_paths(["http://example.org/a"], web=WebOptions(depth=2, delay=0.5), prune=True)
    back = IngestPlan.from_wire(plan.to_wire())
    assert back.pages == plan.pages and back.prune_pages and back.pages[0].max_pages == 50


def test_the_service_fetches_urls_for_its_client(site: Site, tmp_path: Path) -> None:
    store = tmp_path / "served"
    (tmp_path / "note.txt").write_text("The club house opens at nine.")
    Ragdb(store)("ingest", str(tmp_path / "note.txt"))
    with ragdb_serve(store, tmp_path / "serve.log", "--api-key", KEY) as url:
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120) as client:
            reply = client.post("/v1/ingest?wait=true", json={"urls": [f"{site.url}/storm.html"]})
            assert reply.status_code == 200, reply.text
            assert reply.json()["added"] == 1
            bad = client.post("/v1/ingest", json={"urls": ["ftp://example.org/"]})
            assert bad.status_code == 400 and "web address" in bad.json()["detail"]
        # The CLI, finding the server running, sends it the URL to fetch.
        out = Ragdb(store).json("ingest", f"{site.url}/storm.html")
        assert out["unchanged"] == 1
