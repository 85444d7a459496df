"""The web page, in a real browser (Debian's headless Chromium driven by
Selenium) against a real `ragdb serve` with the real model and the bundled
LLM: sign in by the startup line's link, search, ask, upload, remove; a wrong
token shows the sign-in page; a cross-site POST carrying the cookie is refused.
A screenshot of each main page is saved under the test's tmp path.

Where no browser can be had, the browser tests skip with a one-line reason
(`scripts/setup-env --test` installs chromium and chromium-driver as root on
Debian); the HTTP-level checks of sign-in and cross-site refusal still run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import FACTS, Ragdb
from .site import Site, serve_site
from .test_serve import ragdb_serve

KEY = "page-key-0123456789"
WAIT = 90


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, llm_server: str) -> Iterator[dict[str, Any]]:
    """A served store of the four facts, its login link and a screenshots folder
    (the server shares the tests' cache: the evaluation report is found there)."""
    root = tmp_path_factory.mktemp("page")
    store, facts = root / "store", root / "facts"
    facts.mkdir()
    for i, fact in enumerate(FACTS):
        (facts / f"fact{i}.txt").write_text(fact + "\n")
    Ragdb(store)("ingest", str(facts))
    log = root / "serve.log"
    with ragdb_serve(
        store, log, "--api-key", KEY, "--llm-url", llm_server, "--model", "smollm2",
        "--max-tokens", "40",
    ) as url:  # fmt: skip
        found = re.search(r"web page (\S+/\?token=\S+)", log.read_text())
        assert found, log.read_text()
        yield {"url": url, "login": found.group(1), "root": root, "shots": root / "screenshots"}


@pytest.fixture(scope="module")
def browser(served: dict[str, Any]) -> Iterator[Any]:
    """Headless Chromium (go() signs it in with the key when it has no session)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no chromium + chromedriver here (scripts/setup-env --test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    served["shots"].mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, seconds: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def shoot(driver: Any, served: dict[str, Any], name: str) -> None:
    driver.save_screenshot(str(served["shots"] / f"{name}.png"))


def go(driver: Any, served: dict[str, Any], view: str) -> None:
    """Open the page afresh (forms empty) at ``view``, signing in with the key
    if this browser has no session yet."""
    driver.get(f"{served['url']}/#{view}")
    driver.refresh()
    if all_css(driver, "#signin"):
        css(driver, "#key").send_keys(KEY)
        css(driver, "#signin button").click()
        wait_for(driver, lambda d: all_css(d, "#main"))
        driver.get(f"{served['url']}/#{view}")
    wait_for(driver, lambda d: not css(d, f"#view-{view}").get_attribute("hidden"))


# -- sign-in and cross-site refusal over plain HTTP (no browser needed) --------------------------
def test_a_wrong_token_gets_the_sign_in_form_and_no_data(served: dict[str, Any]) -> None:
    with httpx.Client(base_url=served["url"]) as http:
        page = http.get("/?token=wrong")
        assert page.status_code == 401 and 'action="/signin"' in page.text
        assert "csrf-token" not in page.text
        assert http.get("/v1/sources").status_code == 401  # no cookie was set
        assert "ragdb_session" not in http.cookies


def test_the_cookie_signs_in_and_changes_need_the_csrf_token_and_same_origin(
    served: dict[str, Any],
) -> None:
    with httpx.Client(base_url=served["url"]) as http:
        signed = http.post("/signin", data={"key": KEY})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = http.get("/")
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
        assert page.status_code == 200 and csrf
        assert http.get("/v1/sources").json()["total"] == len(FACTS)  # reads: the cookie
        body = {"query": "octopus"}
        # A change needs the page's token, and a browser's Origin must be ours.
        assert http.post("/v1/check", json=body).status_code == 403
        token = {"X-CSRF-Token": csrf.group(1)}
        evil = {**token, "Origin": "http://127.0.0.1:1"}
        refused = http.post("/v1/check", json=body, headers=evil)
        assert refused.status_code == 403 and "cross-site" in refused.json()["detail"]
        own = {**token, "Origin": served["url"]}
        assert http.post("/v1/check", json={**body, "answer": "x"}, headers=own).status_code == 200


# -- in the browser --------------------------------------------------------------------------------
def test_the_login_link_signs_in_once(browser: Any, served: dict[str, Any]) -> None:
    browser.get(served["login"])
    wait_for(browser, lambda d: not css(d, "#view-ask").get_attribute("hidden"))
    assert "token=" not in browser.current_url  # it left the address bar
    cookie = browser.get_cookie("ragdb_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shoot(browser, served, "ask-empty")
    # Spent: the same link signs no one in again.
    assert httpx.get(served["login"]).status_code == 401


def test_a_wrong_token_in_the_browser_shows_the_sign_in_page(
    browser: Any, served: dict[str, Any]
) -> None:
    browser.delete_all_cookies()
    try:
        browser.get(f"{served['url']}/?token=not-the-token")
        assert css(browser, "#signin-error").is_displayed()
        assert not all_css(browser, "#main") and "octopus" not in browser.page_source
        shoot(browser, served, "signin")
    finally:
        browser.get(f"{served['url']}/")
        css(browser, "#key").send_keys(KEY)
        css(browser, "#signin button").click()
        wait_for(browser, lambda d: all_css(d, "#main"))


def test_search_shows_the_right_source_first_and_why(browser: Any, served: dict[str, Any]) -> None:
    go(browser, served, "search")
    css(browser, "#search-q").send_keys("the company's favorite animal")
    css(browser, "#search-form button[type=submit]").click()
    wait_for(browser, lambda d: all_css(d, "#search-out .chunk"))
    first = all_css(browser, "#search-out .chunk")[0]
    assert first.get_attribute("data-source").endswith("fact3.txt")
    why = first.find_element("css selector", ".why").text
    assert "dense rank 1" in why and "keyword rank" in why and "fused" in why
    marks = [m.text.lower() for m in first.find_elements("css selector", "mark")]
    assert "animal" in marks and "favorite" in marks
    shoot(browser, served, "search")


def test_ask_streams_an_answer_whose_citation_opens_its_chunk(
    browser: Any, served: dict[str, Any]
) -> None:
    question = "What is the Clarity Protocol?"
    go(browser, served, "ask")
    css(browser, "#ask-q").send_keys(question)
    css(browser, "#ask-form button[type=submit]").click()
    wait_for(browser, lambda d: css(d, "#ask-status").text.startswith("Answered by"))
    assert css(browser, "#answer").text.strip()  # the streamed answer
    # The model's own [n] where it wrote one, else the list of what it was given.
    button = (all_css(browser, "#answer .cite") or all_css(browser, "#citations .cite"))[0]
    rank = int(button.get_attribute("data-rank"))
    button.click()
    card = wait_for(browser, lambda d: all_css(d, ".chunk.cited"))[0]
    expected = httpx.post(
        f"{served['url']}/v1/search", json={"query": question}, headers={"X-API-Key": KEY}
    ).json()["chunks"][rank - 1]
    assert card.get_attribute("data-source") == expected["source"]
    assert expected["text"] in card.text
    assert button.get_attribute("aria-expanded") == "true"
    shoot(browser, served, "ask")


def test_not_enough_information_shows_the_nearest_chunks_and_the_threshold(
    browser: Any, served: dict[str, Any]
) -> None:
    go(browser, served, "ask")
    form = css(browser, "#ask-form")
    form.find_element("css selector", "[name=q]").send_keys("Where is the summit held?")
    form.find_element("css selector", "[name=min_score]").send_keys("0.99")
    form.find_element("css selector", "button[type=submit]").click()
    wait_for(browser, lambda d: "Not enough information" in css(d, "#ask-status").text)
    assert "0.99" in css(browser, "#ask-status").text
    nearest = all_css(browser, "#ask-out .nearest .chunk")
    assert nearest and nearest[0].get_attribute("data-source").endswith("fact0.txt")


def test_upload_shows_progress_then_both_files_in_sources_and_remove_asks(
    browser: Any, served: dict[str, Any]
) -> None:
    folder = served["root"] / "uploads"
    folder.mkdir()
    files = [folder / "walrus.md", folder / "heron.txt"]
    files[0].write_text("# Walruses\n\nWalruses use their tusks to haul out onto ice.\n")
    files[1].write_text("Herons stand still in shallow water and wait for fish.\n")
    go(browser, served, "add")
    css(browser, "#files").send_keys("\n".join(str(f) for f in files))
    wait_for(browser, lambda d: len(all_css(d, "#jobs .job[data-state=succeeded]")) == 2)
    rows = all_css(browser, "#jobs .job")
    assert {r.find_element("css selector", ".label").text for r in rows} >= {
        "walrus.md",
        "heron.txt",
    }
    assert all(
        r.find_element("css selector", "progress").get_attribute("value") == "1" for r in rows[:2]
    )
    shoot(browser, served, "add")

    go(browser, served, "sources")
    wait_for(browser, lambda d: all_css(d, "#sources-table tbody tr"))
    names = [r.get_attribute("data-source") for r in all_css(browser, "#sources-table tbody tr")]
    assert "walrus.md" in names and "heron.txt" in names
    shoot(browser, served, "sources")

    def remove_button() -> Any:
        return css(browser, '#sources-table tr[data-source="heron.txt"] button.danger')

    remove_button().click()  # asks first; dismissed, nothing goes
    alert = wait_for(browser, lambda d: d.switch_to.alert)
    assert "heron.txt" in alert.text and "1 chunks" in alert.text
    alert.dismiss()
    assert all_css(browser, '#sources-table tr[data-source="heron.txt"]')
    remove_button().click()
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_for(browser, lambda d: not all_css(d, '#sources-table tr[data-source="heron.txt"]'))
    listed = httpx.get(f"{served['url']}/v1/sources", headers={"X-API-Key": KEY}).json()
    assert {s["source"] for s in listed["sources"]} >= {"walrus.md"}
    assert "heron.txt" not in {s["source"] for s in listed["sources"]}


def test_status_shows_counts_and_charts(browser: Any, served: dict[str, Any]) -> None:
    go(browser, served, "status")
    wait_for(browser, lambda d: "Chunks" in css(d, "#status-out").text)
    wait_for(
        browser,
        lambda d: d.execute_script("return !!(window.Chart && Chart.getChart('chart-types'))"),
    )
    bars = browser.execute_script(
        "return Chart.getChart('chart-types').data.datasets[0].data.reduce((a, b) => a + b, 0);"
    )
    total = httpx.get(f"{served['url']}/v1/sources", headers={"X-API-Key": KEY}).json()["total"]
    assert bars == total
    shoot(browser, served, "status")


def test_a_language_model_failure_shows_the_error_and_the_chunks(
    browser: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    Ragdb(store)("ingest", "-", "--name", "summit.txt", input=FACTS[0])
    dead = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    with ragdb_serve(store, tmp_path / "serve.log", "--no-auth", "--llm-url", dead) as url:
        browser.get(f"{url}/#ask")
        css(browser, "#ask-q").send_keys("When is the summit?")
        css(browser, "#ask-form button[type=submit]").click()
        error = wait_for(browser, lambda d: all_css(d, "#ask-out .error"))[0]
        assert "127.0.0.1:9" in error.text or "language model" in error.text.lower()
        shown = wait_for(browser, lambda d: all_css(d, "#ask-out .nearest .chunk"))
        assert shown[0].get_attribute("data-source") == "summit.txt"
        # --no-auth needs no cookie, but another site's page still cannot write.
        evil = {"Origin": "http://evil.example"}
        refused = httpx.post(f"{url}/v1/remove", json={"sources": ["summit.txt"]}, headers=evil)
        assert refused.status_code == 403
        assert httpx.get(f"{url}/v1/sources").json()["total"] == 1


def test_the_page_fits_a_phone_screen(browser: Any, served: dict[str, Any]) -> None:
    browser.set_window_size(390, 844)
    try:
        for view in ("ask", "search", "sources", "add", "status"):
            go(browser, served, view)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"#{view} is {overflow}px wider than a phone"
        go(browser, served, "search")
        css(browser, "#search-q").send_keys("octopus")
        css(browser, "#search-form button[type=submit]").click()
        wait_for(browser, lambda d: all_css(d, "#search-out .chunk"))
        shoot(browser, served, "search-phone")
    finally:
        browser.set_window_size(1200, 900)


def test_the_eval_report_opens_with_its_chart_and_the_service_shows_the_last(
    browser: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    facts = served["root"] / "facts"
    (tmp_path / "q.jsonl").write_text(
        '{"_id": "q1", "text": "When is the summit?"}\n'
        '{"_id": "q2", "text": "Which animal does the company like?"}\n'
    )
    (tmp_path / "qrels.tsv").write_text(
        f"q1\t{facts / 'fact0.txt'}\t1\nq2\t{facts / 'fact3.txt'}\t1\n"
    )
    report = tmp_path / "report.html"
    args = ["--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")]
    printed = Ragdb(served["root"] / "store").json("eval", *args, "--report", str(report))
    assert printed["mode"] == "hybrid" and "per_query" not in printed
    browser.get(report.as_uri())
    chart = "Chart.getChart('chart').data"
    drawn = "return !!(window.Chart && Chart.getChart('chart'))"
    wait_for(browser, lambda d: d.execute_script(drawn))
    assert browser.execute_script(f"return {chart}.labels") == ["hybrid", "dense", "bm25"]
    hybrid_ndcg = browser.execute_script(f"return {chart}.datasets[0].data[0]")
    assert hybrid_ndcg == printed["ndcg@10"]
    assert len(all_css(browser, "#queries tbody tr")) == 2
    # The service shows the last report made for its store.
    browser.get(f"{served['url']}/eval")
    wait_for(browser, lambda d: all_css(d, "#queries tbody tr"))
    assert browser.execute_script(f"return {chart}.datasets[0].data[0]") == hybrid_ndcg
    shoot(browser, served, "eval")
    with httpx.Client(base_url=served["url"]) as http:  # and to no one else
        assert http.get("/eval").status_code == 401


def attacker_page(target: str, source: str) -> bytes:
    """Another origin's page that posts a form to ragdb at once: text/plain,
    so its body reads as JSON, {"sources": [SOURCE], "x": "="}."""
    return f"""<!doctype html><form id=f method=post enctype=text/plain
        action="{target}/v1/remove">
        <input name='{{"sources": ["{source}"], "x": "' value='"}}'></form>
        <script>document.getElementById('f').submit()</script>""".encode()


def test_a_cross_site_form_post_with_the_cookie_is_refused(
    browser: Any, served: dict[str, Any]
) -> None:
    def stored() -> set[str]:
        listed = httpx.get(f"{served['url']}/v1/sources", headers={"X-API-Key": KEY}).json()
        return {s["source"] for s in listed["sources"]}

    victim = next(s for s in stored() if s.endswith("fact0.txt"))
    go(browser, served, "ask")  # signed in: the cookie is there to be abused
    evil = Site(pages={"/": ("text/html", attacker_page(served["url"], victim))})
    with serve_site(evil):
        browser.get(f"{evil.url}/")
        wait_for(browser, lambda d: d.current_url.startswith(served["url"]))
        wait_for(browser, lambda d: "cross-site" in d.page_source)
    assert victim in stored()
