"""What a new user hit (issue 16), each a test that failed on the code before:
requests that escape their roots, kill the server or replace stored files;
special files that wedge an ingest; answers never given; messages that did not
say what to do. Real parts throughout: a real `ragdb serve` on a free port,
the real model, llama.cpp, httpx and the openai SDK."""

from __future__ import annotations

import contextlib
import email.message
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ragdb import KnowledgeBase
from ragdb.errors import LLMError
from ragdb.ingest.plan import plan_paths
from ragdb.serve.jobs import JobQueue

from .conftest import FACTS, Ragdb, free_port, wait_http
from .fakellm import fake_llm
from .test_serve import KEY, ragdb_serve

SECRET = "The vault combination is 31-41-59, known to nobody outside."


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory, llm_server: str) -> Iterator[dict[str, Any]]:
    """A served store with the facts, an allowed root, and a folder outside it."""
    base = tmp_path_factory.mktemp("hard")
    store, root, outside = base / "store", base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    for name in ("hosts", "hostname", "host.conf"):
        (outside / name).write_text(f"{SECRET} ({name})")
    facts = base / "facts"
    facts.mkdir()
    for i, fact in enumerate(FACTS):
        (facts / f"fact{i}.txt").write_text(fact + "\n")
    Ragdb(store)("ingest", str(facts))
    with ragdb_serve(
        store, base / "serve.log", "--api-key", KEY, "--allow-path", str(root),
        "--llm-url", llm_server, "--model", "smollm2", "--max-tokens", "48",
    ) as url:  # fmt: skip
        yield {"url": url, "store": store, "root": root, "outside": outside}


def api(hard: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=hard["url"], headers={"X-API-Key": KEY}, timeout=120)


def stored_texts(c: httpx.Client) -> dict[str, str]:
    """Every stored source's whole text, read back through the API."""
    out = {}
    for s in c.get("/v1/sources", params={"limit": 1000}).json()["sources"]:
        chunks = c.get(f"/v1/sources/{s['source']}").json()["chunks"]
        out[s["source"]] = " ".join(ch["text"] for ch in chunks)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# -- 1. nothing read for a request escapes its roots ------------------------------------------
def test_symlinks_in_walks_globs_and_watches_stay_inside_the_roots(hard: dict[str, Any]) -> None:
    root, outside = hard["root"], hard["outside"]
    sub = root / "sub"
    sub.mkdir()
    (sub / "pelicans.txt").write_text("Pelicans scoop fish into their throat pouches.")
    (sub / "passwd.txt").symlink_to(outside / "secret.txt")
    (sub / "etcdir").symlink_to(outside, target_is_directory=True)
    with api(hard) as c:
        walked = c.post("/v1/ingest", params={"wait": "true"}, json={"paths": [str(sub)]})
        assert walked.status_code == 200, walked.text
        reasons = {s["source"]: s["reason"] for s in walked.json()["skipped_sources"]}
        assert "--allow-path" in reasons[str(sub / "passwd.txt")]
        direct = c.post("/v1/ingest", json={"paths": [f"{sub}/etcdir/host*"]})
        assert direct.status_code == 400 and "--allow-path" in direct.json()["detail"]
        globbed = c.post("/v1/ingest", params={"wait": "true"}, json={"paths": [f"{sub}/*/host*"]})
        assert globbed.status_code == 200, globbed.text
        assert globbed.json()["added"] == 0 and globbed.json()["skipped"] == 3
        watched = c.post("/v1/watches", json={"path": str(sub)})
        assert watched.status_code == 201, watched.text
        deadline = time.time() + 60
        while time.time() < deadline:
            (watch,) = [w for w in c.get("/v1/watches").json()["watches"] if w["path"] == str(sub)]
            if watch["reconciles"]:
                break
            time.sleep(0.3)
        assert watch["reconciles"] and watch["last_error"] is None
        texts = stored_texts(c)
        c.delete("/v1/watches", params={"path": str(sub)})
    assert any("Pelicans" in t for t in texts.values())
    assert not any("vault" in t for t in texts.values()), [s for s in texts if "vault" in texts[s]]


def test_a_file_swapped_for_a_symlink_after_planning_is_not_read(tmp_path: Path) -> None:
    """The check holds when the file is opened, not only when the plan is made."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    doc = root / "doc.txt"
    doc.write_text("Storks carry twigs to their nests on chimneys.")
    kb = KnowledgeBase(store=tmp_path / "store")
    plan = plan_paths([root], roots=[root])
    doc.unlink()
    doc.symlink_to(outside / "secret.txt")
    report = kb.ingest_plan(plan)
    assert report.added == 0 and "--allow-path" in report.skipped_sources[0]["reason"]


# -- 2. no single request takes the server down -----------------------------------------------
def test_oversized_requests_are_refused_and_the_server_lives(hard: dict[str, Any]) -> None:
    pid = json.loads((hard["store"] / "serve.json").read_text())["pid"]
    before = rss_mb(pid)
    with api(hard) as c:
        huge = b'{"query": "' + b"a" * (60 * 2**20) + b'"}'
        with contextlib.suppress(httpx.TransportError):  # it may hang up mid-upload
            assert c.post("/v1/search", content=huge).status_code == 413

        def chunked() -> Iterator[bytes]:
            for _ in range(40):
                yield b"x" * 100_000

        streamed = c.post("/v1/search", content=chunked())
        assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]
        long = c.post("/v1/search", json={"query": "why " * 5000})
        assert long.status_code == 400 and "at most 8,000" in long.json()["detail"]
        many = c.post("/v1/search", json={"query": "summit", "k": 10**9})
        assert many.status_code == 400 and many.json()["detail"].startswith('"k":')
        chat = c.post(
            "/v1/chat/completions",
            json={"model": "ragdb", "messages": [{"role": "user", "content": "hi"}] * 600},
        )
        assert chat.status_code == 400 and chat.json()["error"]["type"] == "invalid_request_error"
        assert c.post("/v1/search", json={"query": "summit"}).status_code == 200
    assert rss_mb(pid) - before < 150, (before, rss_mb(pid))


def test_wrong_types_are_the_requests_400_in_ragdbs_format(hard: dict[str, Any]) -> None:
    with api(hard) as c:
        bad_k = c.post("/v1/search", json={"query": "summit", "k": "abc"})
        assert bad_k.status_code == 400, bad_k.text
        body = bad_k.json()
        assert bad_k.headers["content-type"].startswith("application/problem+json")
        assert (body["type"], body["exit_code"], body["title"]) == ("UsageError", 2, "Bad Request")
        assert body["detail"].startswith('"k":')
        assert c.post("/v1/search", json={"query": "x", "min_score": 5}).status_code == 400
        assert c.post("/v1/ask", json={"query": "x", "min_score": 5}).status_code == 400
        chat = c.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "ragdb": {"k": "x"}},
        )
        assert chat.status_code == 400 and '"ragdb.k"' in chat.json()["error"]["message"]
        offset = c.get("/v1/sources", params={"offset": "abc"})
        assert offset.status_code == 400 and offset.json()["type"] == "UsageError"
        job = c.get("/v1/jobs/nope")
        assert job.status_code == 404 and job.json()["type"] == "NotFoundError"


# -- 3. uploads never replace what is stored as something else --------------------------------
def test_uploads_and_texts_never_silently_replace_a_stored_file(hard: dict[str, Any]) -> None:
    paper = hard["root"] / "paper.txt"
    paper.write_text("Albatrosses glide for hours without flapping their wings.")
    with api(hard) as c:
        added = c.post("/v1/ingest", params={"wait": "true"}, json={"paths": [str(paper)]})
        assert added.json()["added"] == 1
        upload = c.post(
            "/v1/documents", files={"file": ("x.txt", b"Overwritten!")}, data={"name": str(paper)}
        )
        assert upload.status_code == 409, upload.text
        assert (
            "stored as a file" in upload.json()["detail"] and "replace" in upload.json()["detail"]
        )
        text = c.post("/v1/ingest", json={"texts": [{"name": str(paper), "text": "Overwritten!"}]})
        assert text.status_code == 409
        assert "Albatrosses" in stored_texts(c)[str(paper)]
        on_purpose = c.post(
            "/v1/ingest",
            params={"wait": "true"},
            json={"texts": [{"name": str(paper), "text": "Replaced."}], "replace": True},
        )
        assert on_purpose.status_code == 200 and on_purpose.json()["updated"] == 1
        docx = c.post("/v1/documents", files={"file": ("report.docx", b"PK\x03\x04zipzip")})
        assert docx.status_code == 415, docx.text
        assert "corrupt Word document (a damaged or truncated zip)" in docx.json()["detail"]


def test_a_watch_syncs_around_a_clash_and_rearms_when_its_folder_returns(
    hard: dict[str, Any],
) -> None:
    folder = hard["root"] / "synced"
    folder.mkdir()
    clash = folder / "clash.txt"
    with api(hard) as c:
        c.post(
            "/v1/ingest",
            params={"wait": "true"},
            json={"texts": [{"name": str(clash), "text": "Typed in by hand about herons."}]},
        )
        clash.write_text("A file of the same name, about egrets.")
        (folder / "a.txt").write_text("Cormorants dry their wings in the sun.")
        assert c.post("/v1/watches", json={"path": str(folder), "poll": True}).status_code == 201

        def wait_for(name: str, seconds: float = 60) -> dict[str, str]:
            deadline = time.time() + seconds
            while time.time() < deadline:
                texts = stored_texts(c)
                if str(folder / name) in texts:
                    return texts
                time.sleep(0.5)
            raise AssertionError(f"{name} never synced")

        texts = wait_for("a.txt")
        assert "herons" in texts[str(clash)]  # the text stored by hand is kept
        (watch,) = [w for w in c.get("/v1/watches").json()["watches"] if w["path"] == str(folder)]
        assert watch["last_error"] is None
        job = c.get(f"/v1/jobs/{watch['last_job']}").json()
        assert any(e["source"] == str(clash) and "stored as" in e["reason"] for e in job["errors"])
        # A re-clone: the folder goes, then comes back with other files.
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        deadline = time.time() + 30
        while time.time() < deadline:
            (watch,) = [
                w for w in c.get("/v1/watches").json()["watches"] if w["path"] == str(folder)
            ]
            if watch["last_error"] and "gone" in watch["last_error"]:
                break
            time.sleep(0.3)
        assert "gone" in (watch["last_error"] or "")
        folder.mkdir()
        (folder / "b.txt").write_text("Gannets dive into the sea from great heights.")
        wait_for("b.txt", 30)  # not the 5-minute safety net
        c.delete("/v1/watches", params={"path": str(folder)})


# -- 4. special files never wedge anything -----------------------------------------------------
def test_fifo_and_devices_are_skipped_not_read(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("Puffins nest in burrows on cliff tops.")
    os.mkfifo(docs / "pipe.txt")
    (docs / "zero.txt").symlink_to("/dev/zero")
    cmd = [sys.executable, "-m", "ragdb", "--store", str(tmp_path / "s"), "ingest", str(docs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "pipe.txt: not a regular file (a named pipe)" in proc.stderr
    assert "zero.txt: not a regular file (a character device)" in proc.stderr
    assert "1 added" in proc.stdout


def test_serve_refuses_busy_ports_and_second_servers_and_stops_with_a_fifo_watched(
    tmp_path: Path, facts_dir: Path
) -> None:
    store, watched = tmp_path / "store", tmp_path / "watched"
    watched.mkdir()
    (watched / "a.txt").write_text("Kestrels hover over motorway verges.")
    os.mkfifo(watched / "pipe")
    Ragdb(store)("ingest", str(facts_dir))
    Ragdb(tmp_path / "other")("ingest", str(facts_dir))
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "ragdb", "--store", str(store), "serve", "--port", str(port)]
    with open(log, "wb") as fh:
        server = subprocess.Popen([*cmd, "--watch", str(watched)], stdout=fh, stderr=fh)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", server, 180, log)
        token = (store / "serve.token").read_text().strip()
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": token})
        deadline = time.time() + 60
        while (
            time.time() < deadline and not c.get("/v1/watches").json()["watches"][0]["reconciles"]
        ):
            time.sleep(0.3)
        (watch,) = c.get("/v1/watches").json()["watches"]
        assert watch["reconciles"] >= 1 and watch["last_error"] is None
        assert c.get(f"/v1/sources/{watched / 'a.txt'}").status_code == 200
        # A second server of the same store, and one on the busy port.
        again = subprocess.run(
            [*cmd[:-1], str(free_port())], capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 1 and "already serves this store" in again.stderr
        other = [sys.executable, "-m", "ragdb", "--store", str(tmp_path / "other"), "serve"]
        busy = subprocess.run(
            [*other, "--port", str(port)], capture_output=True, text=True, timeout=120
        )
        assert busy.returncode == 1, busy.stderr
        lines = [ln for ln in busy.stderr.splitlines() if ln.strip()]
        assert lines[-1] == (
            f"Error: port {port} on 127.0.0.1 is in use: stop what listens there, "
            "or choose another with --port"
        )
        assert not any("serving" in ln for ln in lines)
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) is not None
        assert not (store / "serve.json").exists()
    finally:
        server.kill()


def test_a_job_that_cannot_stop_is_abandoned_and_the_queue_goes_on() -> None:
    jobs = JobQueue(grace=0.5)
    release = threading.Event()
    stuck = jobs.submit("stuck", lambda job: release.wait(30))
    after = jobs.submit("after", lambda job: {"ok": True})
    deadline = time.time() + 5
    while stuck.state != "running" and time.time() < deadline:
        time.sleep(0.05)
    jobs.cancel(stuck.id)
    assert after.wait() and after.state == "succeeded" and after.report == {"ok": True}
    assert stuck.state == "cancelled" and (stuck.error or "").startswith("abandoned")
    hung = jobs.submit("hung", lambda job: release.wait(30))
    while hung.state != "running":
        time.sleep(0.05)
    t0 = time.time()
    jobs.stop()
    assert time.time() - t0 < 5 and hung.state == "failed" and "server stopped" in str(hung.error)
    release.set()


def test_a_cancelled_ingest_job_reports_what_it_saved(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(300):
        (docs / f"d{i:03}.txt").write_text(f"Document {i} is about wading birds. " * 3)
    kb = KnowledgeBase(store=tmp_path / "store")
    kb.ingest_text("seed", "A seed document so the store exists.")
    jobs = JobQueue()
    seen: list[tuple[int, int]] = []

    def work(job: Any) -> Any:
        def progress(done: int, total: int) -> None:
            seen.append((done, total))
            if done > 96:  # past the first batch (64 chunks), which is written
                jobs.cancel(job.id)
            job.progress(done, total)

        return kb.ingest([docs], progress=progress)

    job = jobs.submit("ingest", work)
    job.wait()
    jobs.stop()
    assert job.state == "cancelled" and job.report is not None
    assert job.report["cancelled"] is True and job.report["sources_saved"] >= 1
    assert len(kb.sources()) == 1 + job.report["sources_saved"]
    # The bar never ran backwards: done/total only grows.
    fractions = [d / t for d, t in seen]
    assert fractions == sorted(fractions), seen


# -- 5. a torn vector file is repaired -----------------------------------------------------------
@pytest.fixture(scope="module")
def torn_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .proofs.tornindex import make_store

    base = tmp_path_factory.mktemp("torn") / "base"
    make_store(base)
    return base


@pytest.mark.parametrize(("name", "fraction"), [("data_level0.bin", 1000)])
def test_a_torn_vector_file_is_repaired_with_nothing_left_behind(
    torn_base: Path, tmp_path: Path, name: str, fraction: float
) -> None:
    """The case that failed (`truncate -s 1000` of data_level0.bin); every file
    of the index, cut to nothing and to half, is in `scripts/torn-index`."""
    from .proofs.tornindex import case

    r = case(torn_base, tmp_path, name, fraction)
    assert r["query_torn_rc"] == 1 and "doctor --repair" in r["query_torn_err"][0]
    assert r["found"] == ["index-unloadable"]
    assert r["repair_rc"] == 0 and r["repair_progress"], r
    assert r["healthy"] and r["chunks"] == 1101 and r["query_rc"] == 0 and r["same_top_hit"]
    assert r["stray_dirs"] == [] and r["collections"] == ["ragdb-chunks-2"]
    assert r["doctor_after_rc"] == 0


# -- 6. an answer the model never gave is an error ---------------------------------------------
def test_a_stream_closed_without_a_word_is_an_error(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    with fake_llm("empty") as server:
        result = local_ragdb("--no-server", "query", "octopus", "--llm-url", server.url, code=3)
    assert "closed the answer stream without a word" in result.stderr
    kb = local_ragdb.kb()
    kb.settings = kb.settings.replace(llm_url=server.url)
    with fake_llm("empty") as server, pytest.raises(LLMError) as failed:
        kb.settings = kb.settings.replace(llm_url=server.url)
        kb.ask("octopus")
    assert failed.value.answer is not None and failed.value.answer.answer is None


def test_llama_cpp_closing_an_over_long_prompt_is_a_502(hard: dict[str, Any]) -> None:
    """llama.cpp (n_ctx 4096) answers a prompt over its context with a stream
    that ends at once; through ragdb that is a 502, never an empty answer."""
    long = " ".join(f"word{i}" for i in range(6000))
    with api(hard) as c:
        reply = c.post(
            "/v1/chat/completions",
            json={"model": "ragdb/llm", "messages": [{"role": "user", "content": long}]},
        )
    assert reply.status_code == 502, reply.text
    assert "closed the answer stream without a word" in reply.json()["error"]["message"]


# -- 8. the OpenAI-compatible endpoint honours max_tokens and counts usage ----------------------
def test_chat_honours_max_tokens_and_reports_usage(hard: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=f"{hard['url']}/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="ragdb",
        messages=[{"role": "user", "content": "Tell me all about the Innovation Summit."}],
        max_tokens=5,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.prompt_tokens > 20
    assert 0 < reply.usage.completion_tokens <= 12


# -- 12, 13: waits and keys say what to do ----------------------------------------------------
def test_cli_beside_a_server_with_its_own_key(hard: dict[str, Any]) -> None:
    ragdb = Ragdb(hard["store"])
    quiet = ragdb("query", "octopus", "--retrieve-only")
    assert "wants its API key" in quiet.stderr and "working in-process" in quiet.stderr
    assert "fact3.txt" in quiet.stdout
    wrong = ragdb("query", "octopus", "--retrieve-only", code=2, env={"RAGDB_API_KEY": "nope"})
    assert "RAGDB_API_KEY" in wrong.stderr and "--no-server" in wrong.stderr


def test_wait_bounds_the_wait_for_another_ingest(
    local_ragdb: Ragdb, facts_dir: Path, store: Path
) -> None:
    from .test_sharing import HOLD_INGEST_TURN

    local_ragdb("ingest", str(facts_dir))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_INGEST_TURN, str(store), str(facts_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        t0 = time.time()
        result = local_ragdb("--wait", "0", "ingest", str(facts_dir), code=4)
        assert time.time() - t0 < 30
        assert "did not finish within --wait 0s" in result.stderr
    finally:
        holder.kill()


# -- 7, 9, 16: what was mangled or silent --------------------------------------------------------
def test_mail_latin1_and_office_files_are_read_or_named(local_ragdb: Ragdb, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_bytes("A naïve café in München.".encode("latin-1"))
    msg = email.message.EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "Café meeting", "ana@example.org", "bo@example.org"
    msg.set_content(
        "We meet at the café on Friday; bring the déjà-vu slides.", cte="quoted-printable"
    )
    msg.add_alternative("<p>We meet at the <b>café</b> on Friday.</p>", subtype="html")
    msg.add_attachment(b"\x00\x01binary" * 50, maintype="application", subtype="octet-stream",
                       filename="slides.bin")  # fmt: skip
    (docs / "meeting.eml").write_bytes(bytes(msg))
    (docs / "report.docx").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    result = local_ragdb("ingest", str(docs))
    assert "note.txt: not UTF-8: read as cp1252 (guessed)" in result.stderr
    assert "report.docx: corrupt Word document (a damaged or truncated zip)" in result.stderr
    assert "attachments not read (not a format ragdb reads): slides.bin" in result.stderr
    texts = {Path(c["source"]).name: c["text"] for c in local_ragdb.chunks()}
    assert "naïve café in München" in texts["note.txt"]
    mail = texts["meeting.eml"]
    assert mail.startswith("Subject: Café meeting") and "déjà-vu slides" in mail
    assert "=C3" not in mail and "<p>" not in mail and "binary" not in mail


def test_eval_says_how_many_judged_documents_are_missing(
    local_ragdb: Ragdb, tmp_path: Path
) -> None:
    records = tmp_path / "corpus.jsonl"
    records.write_text(
        "\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(FACTS)) + "\n"
    )
    local_ragdb("ingest", "--records", str(records))
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": "Where is the summit?"}) + "\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\tnot-stored\t1\n")
    result = local_ragdb("eval", "--queries", str(queries), "--qrels", str(qrels), "--json")
    assert json.loads(result.stdout)["relevant_docs_missing"] == 1
    assert "1 of the 2 documents judged relevant are not in the knowledge base" in result.stderr


def test_smaller_findings(local_ragdb: Ragdb, tmp_path: Path, store: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "[draft].txt").write_text("Avocets sweep their upturned bills through mud.")
    for i in range(14):
        (odd / f"empty{i}.txt").write_text("")
    result = local_ragdb("ingest", str(odd))
    assert result.stderr.count("warning: skipped") == 10
    assert "4 more skipped; 14 in all: 14 empty" in result.stderr
    # A stored name with brackets is that file, not a pattern.
    os.chdir(tmp_path)
    removed = local_ragdb("remove", "odd/[draft].txt", "--json")
    assert json.loads(removed.stdout)["removed"] == [str(odd / "[draft].txt")]
    # Global options after the command are pointed to their place.
    err = local_ragdb("ingest", "--store", "x", code=2).stderr
    assert "--store is a global option: put it before the command" in err
    # A store that cannot be made is one line.
    blocked = Ragdb(Path("/etc/hostname/store"))("status", code=1)
    assert blocked.stderr.strip().count("\n") == 0
    # A broken manifest does not read as data gone.
    (store / "ragdb.json").write_text("{")
    (store / "ragdb.json.bak").unlink()
    out = local_ragdb("doctor", code=1).stdout
    assert "0 chunks" not in out and "not counted" in out


def test_chunk_records_have_to_dict(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    kb = local_ragdb.kb()
    (record,) = kb.chunks(str(facts_dir / "fact0.txt"))
    data = record.to_dict()
    assert data["text"] == record.text and data["extra"] == {} and data["id"] == record.id


def test_a_full_disk_is_named(tmp_path: Path, facts_dir: Path) -> None:
    """A store on a small tmpfs: the write that fills it says the disk is full,
    and once space is freed nothing stored was lost."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        ragdb = Ragdb(mount / "store")
        ragdb("ingest", str(facts_dir))
        ballast = mount / "ballast"
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        ballast.write_bytes(b"\0" * max(0, free - 256 * 1024))
        docs = tmp_path / "docs"
        docs.mkdir()
        for i in range(40):
            (docs / f"d{i}.txt").write_text(f"Report {i} on the migration of swifts. " * 40)
        failed = ragdb("ingest", str(docs), code=None)
        assert failed.exit_code == 1, failed.stderr
        assert "is full" in failed.stderr and "free some space" in failed.stderr
        ballast.unlink()
        assert ragdb.json("status")["sources"] >= 4
        ragdb("doctor", "--repair", "--yes", code=None)
        ragdb("doctor")
        ragdb("ingest", str(docs))
        assert ragdb.json("status")["sources"] == 44
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory whatever its mode")
def test_an_unreadable_subdirectory_is_named(tmp_path: Path) -> None:
    from ragdb.ingest.paths import expand_paths

    docs = tmp_path / "docs"
    (docs / "locked").mkdir(parents=True)
    (docs / "a.txt").write_text("Terns fly from pole to pole.")
    (docs / "locked" / "b.txt").write_text("Unseen.")
    (docs / "locked").chmod(0)
    try:
        found = expand_paths([str(docs)])
    finally:
        (docs / "locked").chmod(0o755)
    assert [p.name for p in found.files] == ["a.txt"]
    assert any("locked" in n and "Permission denied" in n for n in found.notes), found.notes


def test_opening_store_after_store_keeps_file_descriptors_bounded(tmp_path: Path) -> None:
    """A process that opens many stores (a suite, a service of many knowledge
    bases) closes the least recently used idle Chroma clients instead of
    keeping a dozen descriptors open for every store it ever opened."""
    from ragdb.store.store import MAX_CLIENTS

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    kbs, counts = [], []
    for i in range(MAX_CLIENTS + 3):
        doc = tmp_path / f"doc{i}.txt"
        doc.write_text(f"Lighthouse number {i} stands on a granite cliff.")
        kb = KnowledgeBase(store=tmp_path / f"store{i}")
        kb.ingest([doc])
        kbs.append(kb)
        counts.append(open_fds())
    assert counts[-1] - counts[MAX_CLIENTS] <= 4, counts  # flat once the bound is reached
    # A store whose client was closed opens it again when next used.
    assert "Lighthouse number 0" in kbs[0].retrieve("granite lighthouse", k=1).hits[0].text
