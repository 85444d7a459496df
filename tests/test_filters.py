"""Filters at query time: each operator, in each retrieval mode, against an
independent computation over the stored records (the unfiltered full
rankings with the other chunks dropped); the CLI's options and its errors."""

from __future__ import annotations

import email.message
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragdb import KnowledgeBase, Query
from ragdb.errors import UsageError
from ragdb.ingest.plan import plan_paths
from ragdb.query.retrieve import fuse

from .conftest import Ragdb

TOPICS = [
    ("alpine", "Glaciers carve valleys as the ice moves slowly downhill.", "ml, ice", 2019, "Ann"),
    ("bees", "Honey bees dance to tell the hive where flowers bloom.", "bio", 2021, "Ben"),
    ("boats", "Sailing boats tack against the wind to reach the harbour.", "sea", 2022, "Ann"),
    ("bread", "Sourdough bread rises slowly thanks to wild yeast.", "food, ml", 2023, "Cai"),
    ("comets", "Comets grow tails of ice and dust near the sun.", "space, ice", 2020, "Ben"),
    ("coral", "Coral reefs shelter fish along the warm coast.", "sea, bio", 2024, "Dee"),
    ("crows", "Crows solve puzzles and remember faces for years.", "bio, ml", 2025, "Ann"),
    ("dunes", "Desert dunes walk with the wind across the sand.", "geo", 2018, "Eve"),
]
QUESTION = "How do ice, wind and animals shape the world?"


def write_library(folder: Path) -> None:
    folder.mkdir()
    for i, (name, text, tags, year, author) in enumerate(TOPICS):
        date = f"2026-0{1 + i % 6}-1{i}"
        front = f"---\ntags: [{tags}]\nyear: {year}\nauthor: {author}\ndate: {date}\n---\n"
        (folder / f"{name}.md").write_text(front + text + "\n")
    (folder / "notes.txt").write_text("The wind turbine spins fastest in the winter storms.\n")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("filters")
    write_library(root / "docs")
    kb = KnowledgeBase(store=root / "store")
    kb.ingest([root / "docs"])
    notes = root / "docs" / "notes.txt"
    kb.ingest_plan(plan_paths([notes], metadata={"project": "apollo", "tags": "ml"}))
    return kb


def items(value: Any) -> list[str]:
    return [v.strip() for v in str(value).split(",")]


# Each condition, and what it means written out plainly over a chunk's metadata.
CASES: list[tuple[list[str], Callable[[dict[str, Any]], bool]]] = [
    (["tags=ml"], lambda m: "ml" in items(m.get("tags", ""))),
    (["year>=2021"], lambda m: isinstance(m.get("year"), int) and m["year"] >= 2021),
    (["year<2021"], lambda m: isinstance(m.get("year"), int) and m["year"] < 2021),
    (["author!=Ann"], lambda m: "author" in m and m["author"] != "Ann"),
    (["type in text"], lambda m: m["kind"] == "text"),
    (["source~**/b*.md"], lambda m: Path(m["source"]).name.startswith("b")),
    (["date>=2026-04-01"], lambda m: str(m.get("date", "")) >= "2026-04-01"),
    (["project=apollo"], lambda m: m.get("project") == "apollo"),
    (
        ["tags=ml", "year>=2021"],
        lambda m: "ml" in items(m.get("tags", "")) and m.get("year", 0) >= 2021,
    ),
    (["author=Nobody"], lambda m: False),
]


@pytest.mark.parametrize(("where", "keep"), CASES, ids=[" & ".join(w) for w, _ in CASES])
def test_a_filtered_query_is_the_full_ranking_with_the_rest_dropped(
    library: KnowledgeBase, where: list[str], keep: Callable[[dict[str, Any]], bool]
) -> None:
    with library.store().session() as session:
        chunks = session.fetch_records(text=False)
    wanted = {c.id for c in chunks if keep(c.metadata())}
    everything = {
        mode: [h.id for h in library.retrieve(QUESTION, 1000, mode).hits]
        for mode in ("dense", "bm25")
    }
    dense = [cid for cid in everything["dense"] if cid in wanted]
    bm25 = [cid for cid in everything["bm25"] if cid in wanted]
    fused = fuse(dense, bm25)
    expected = {
        "dense": dense[:3],
        "bm25": bm25[:3],
        "hybrid": sorted(fused, key=lambda cid: -fused[cid])[:3],
    }
    for mode, ids in expected.items():
        got = [h.id for h in library.retrieve(QUESTION, 3, mode, where=where).hits]
        assert got == ids, (mode, where)
    # In a batch beside unfiltered queries, the same.
    from ragdb.query.filters import Filter

    batch = library.retrieve_many(
        [Query(QUESTION, 3, "hybrid", filter=Filter.parse(where)), Query(QUESTION, 3, "hybrid")]
    )
    assert [h.id for h in batch[0].hits] == expected["hybrid"]


def test_malformed_filters_name_the_bad_part(library: KnowledgeBase) -> None:
    for bad in ("tags", "=ml", "tags=", "year >> "):
        with pytest.raises(UsageError, match="not a filter"):
            library.retrieve(QUESTION, 3, "dense", where=[bad])


def test_query_options_filter_and_bad_ones_exit_2(tmp_path: Path) -> None:
    write_library(tmp_path / "docs")
    ragdb = Ragdb(tmp_path / "store")
    ragdb("ingest", str(tmp_path / "docs"), "--meta", "shelf=3", "--meta", "loaned=false")
    out = ragdb.json(
        "query", QUESTION, "--retrieve-only", "-k", "9", "--where", "year>=2022",
        "--type", "markdown", "--source", "**/c*.md",
    )  # fmt: skip
    names = sorted(Path(h["source"]).name for h in out["chunks"])
    assert names == ["coral.md", "crows.md"]
    shelf = ragdb.json("query", QUESTION, "--retrieve-only", "--where", "shelf=3", "-k", "20")
    assert len(shelf["chunks"]) == 9 and shelf["chunks"][0]["metadata"]["loaned"] is False
    bad = ragdb("query", QUESTION, "--retrieve-only", "--where", "year", code=2)
    assert "not a filter: 'year'" in bad.stderr
    wrong = ragdb("ingest", str(tmp_path / "docs"), "--meta", "shelf", code=2)
    assert "--meta takes KEY=VALUE" in wrong.stderr
    # A file's modification time is a field too.
    recent = ragdb.json("query", QUESTION, "--retrieve-only", "--where", "modified>=2000-01-01")
    assert recent["chunks"] and all(
        c["metadata"]["modified"] >= "2000-01-01" for c in recent["chunks"]
    )
    # --meta reaches whatever a file holds: a message and its attachment.
    mail = tmp_path / "mail"
    mail.mkdir()
    msg = email.message.EmailMessage()
    msg["Subject"], msg["From"] = "Wind report", "ann@x.org"
    msg.set_content("The wind shaped the dunes this week.")
    msg.add_attachment(b"Ice carved the valley floor.", maintype="text", subtype="plain",
                       filename="ice.txt")  # fmt: skip
    (mail / "report.eml").write_bytes(bytes(msg))
    ragdb("ingest", str(mail), "--meta", "shelf=4")
    shelved = ragdb.json("query", QUESTION, "--retrieve-only", "--where", "shelf=4", "-k", "9")
    names = sorted(Path(c["source"]).name for c in shelved["chunks"])
    assert names == ["report.eml", "report.eml#ice.txt"]
    assert all("modified" in c["metadata"] for c in shelved["chunks"])
