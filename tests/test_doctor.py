"""Every problem doctor knows: produced for real, found, and repaired when it can be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragdb.store.keywords import KeywordIndex

from .conftest import Ragdb


def problems(ragdb: Ragdb, *args: str, code: int = 1) -> dict[str, Any]:
    return json.loads(ragdb("doctor", *args, "--json", code=code).stdout)


def long_doc(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "long.txt").write_text(
        "\n\n".join(f"Section {i} about pelicans. " + "Pelicans glide. " * 40 for i in range(5))
    )
    return d


def break_store(ragdb: Ragdb, problem: str, store: Path) -> None:
    """Make ``problem`` happen, as a crash, a bug or a hand edit could."""
    if problem == "keyword-index-differs":
        index = KeywordIndex(store / "ragdb.keywords.sqlite3")
        index.add(["ghost-000000000000-00000"], ["a chunk Chroma never had"])
        index.close()
        return
    if problem in ("model-mismatch", "wrong-dimension"):
        path = store / "ragdb.json"
        manifest = json.loads(path.read_text())
        if problem == "model-mismatch":
            # The manifest names another model than the one the collection records.
            manifest["embed_model"]["name"] = "paraphrase-MiniLM-L3-v2"
        else:
            manifest["embed_model"]["dimension"] = 512
        path.write_text(json.dumps(manifest))
        return
    with ragdb.chroma() as coll:
        got = coll.get(include=["metadatas", "embeddings", "documents"])
        long = [i for i, m in enumerate(got["metadatas"]) if m["source"].endswith("long.txt")]
        first = long[0]
        if problem == "orphan-collection":
            coll._client.create_collection("ragdb-chunks-9")  # an interrupted rebuild's
        elif problem == "incomplete-source":
            coll.delete(ids=[got["ids"][long[-1]]])
        elif problem == "duplicate-chunks":
            coll.add(
                ids=["dup"],
                embeddings=[got["embeddings"][first]],
                documents=[got["documents"][first]],
                metadatas=[got["metadatas"][first]],
            )


REPAIRABLE = ["orphan-collection", "incomplete-source", "duplicate-chunks", "keyword-index-differs"]


@pytest.mark.parametrize("problem", REPAIRABLE)
def test_each_repairable_problem_is_found_and_repaired(
    local_ragdb: Ragdb, tmp_path: Path, store: Path, problem: str
) -> None:
    local_ragdb("ingest", str(long_doc(tmp_path)))
    before = local_ragdb.json("status")["chunks"]
    assert before > 2
    break_store(local_ragdb, problem, store)
    found = {p["problem"] for p in problems(local_ragdb)["problems"]}
    # Chunks changed behind ragdb's back leave its keyword index behind too.
    assert problem in found and found <= {problem, "keyword-index-differs"}
    repaired = problems(local_ragdb, "--repair", code=0)
    assert repaired["healthy"] and repaired["repaired"]
    problems(local_ragdb, code=0)
    chunks = local_ragdb.chunks()
    if problem == "incomplete-source":
        # No whole version is left: the source goes, and a re-ingest brings it back.
        assert chunks == []
        local_ragdb("ingest", str(tmp_path / "docs"))
        chunks = local_ragdb.chunks()
    assert len(chunks) == before and len({c["chunk_index"] for c in chunks}) == before


@pytest.mark.parametrize("problem", ["model-mismatch", "wrong-dimension"])
def test_problems_doctor_cannot_repair_are_reported_and_left(
    local_ragdb: Ragdb, tmp_path: Path, store: Path, problem: str
) -> None:
    local_ragdb("ingest", str(long_doc(tmp_path)))
    break_store(local_ragdb, problem, store)
    found = problems(local_ragdb)
    assert problem in [p["problem"] for p in found["problems"]]
    assert all(not p["repairable"] for p in found["problems"] if p["problem"] == problem)
    after = problems(local_ragdb, "--repair")
    assert problem in [p["problem"] for p in after["problems"]]
