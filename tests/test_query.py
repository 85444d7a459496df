"""Query, status, reset and the store's guard rails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FACTS, Ragdb
from .fakellm import fake_llm


def test_retrieve_only_json(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    out = ragdb.json("query", "When is the Innovation Summit held?", "--retrieve-only", "-k", "3")
    assert out["question"] == "When is the Innovation Summit held?"
    assert out["answer"] is None
    assert [c["rank"] for c in out["chunks"]] == [1, 2, 3]
    scores = [c["score"] for c in out["chunks"]]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert "Innovation Summit" in out["chunks"][0]["text"]
    assert out["chunks"][0]["source"].endswith("fact0.txt")
    assert {"source", "chunk_index"} <= set(out["chunks"][0]["metadata"])
    assert "timings" in out and "enough_context" in out and "model" in out


def test_score_is_cosine_similarity(ragdb: Ragdb, facts_dir: Path) -> None:
    """The printed score equals the cosine similarity computed independently."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from ragdb.embed.base import resolve_model_path

    # A torch store: its vectors are sentence-transformers' own, computed below.
    ragdb.extra = [*ragdb.extra, "--embed-backend", "torch"]
    ragdb("ingest", str(facts_dir))
    question = "Which animal does the company like?"
    out = ragdb.json("query", question, "--retrieve-only", "-k", "4")
    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    q = model.encode([question], normalize_embeddings=True)[0]
    for chunk in out["chunks"]:
        d = model.encode([chunk["text"]], normalize_embeddings=True)[0]
        assert abs(float(np.dot(q, d)) - chunk["score"]) < 1e-3
    assert out["chunks"][0]["source"].endswith("fact3.txt")


def test_human_output_numbers_chunks(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    result = ragdb("query", "coffee machine", "--retrieve-only", "-k", "2")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[1] ") and "fact2.txt" in lines[0]
    assert "similarity" in lines[0]
    # Hybrid order is the fused rank's, and the line says so.
    assert "fused rank score" in lines[0]
    dense = ragdb("query", "coffee machine", "--retrieve-only", "--mode", "dense").stdout
    assert "fused" not in dense and "similarity" in dense
    assert any(line.startswith("[2] ") for line in lines)


def test_min_score_skips_the_model(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    with fake_llm("500") as server:
        out = ragdb.json(
            "query",
            "What is the capital of Mongolia?",
            "--min-score",
            "0.95",
            "--llm-url",
            server.url,
        )
        assert server.calls == 0
    assert out["enough_context"] is False
    assert "enough information" in out["answer"]
    assert out["chunks"]  # still shown


def test_query_missing_and_empty_store(ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    result = ragdb("query", "anything", code=1)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no knowledge base" in result.stderr and "ragdb ingest" in result.stderr
    assert not store.exists()
    ragdb("status", code=1)
    ragdb("ingest", str(facts_dir))
    ragdb("reset", "--yes")
    result = ragdb("query", "anything", "--retrieve-only", code=1)
    assert "empty" in result.stderr


def test_reset_asks_first(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    result = ragdb("reset", input="n\n", code=1)
    assert "Aborted" in result.stderr
    assert ragdb.json("status")["chunks"] == len(FACTS)
    ragdb("reset", input="y\n")
    assert ragdb.json("status")["chunks"] == 0
    # The store still works after a reset.
    assert ragdb.json("ingest", str(facts_dir))["added"] == len(FACTS)


def test_status_json(ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    ragdb("ingest", str(facts_dir))
    info = ragdb.json("status")
    assert info["store"] == (ragdb.chroma_url if ragdb.server else str(store.resolve()))
    assert info["mode"] == ("server" if ragdb.server else "embedded")
    assert {"store", "chunks", "sources", "embed_model", "format_version"} <= set(info)


def test_other_model_is_refused(ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    ragdb("ingest", str(facts_dir))
    other = Ragdb(store, ["--embed-model", "BAAI/bge-small-en-v1.5"], ragdb.chroma_url)
    result = other("query", "x", "--retrieve-only", code=1)
    assert "all-MiniLM-L6-v2" in result.stderr and "bge-small-en-v1.5" in result.stderr
    result = other("ingest", str(facts_dir), code=1)
    assert "reembed" in result.stderr
    # Naming the same model either way is fine.
    same = Ragdb(
        store, ["--embed-model", "sentence-transformers/all-MiniLM-L6-v2"], ragdb.chroma_url
    )
    same("query", "x", "--retrieve-only")


def test_store_path_that_is_a_file_or_foreign_dir(tmp_path: Path, facts_dir: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    result = Ragdb(f)("ingest", str(facts_dir), code=2)
    assert "is a file" in result.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thing.txt").write_text("mine")
    result = Ragdb(foreign)("ingest", str(facts_dir), code=1)
    assert "not empty" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["thing.txt"]


def test_store_opens_from_another_install(local_ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    """Nothing in the store names a path of this install (venv, model folder)."""
    local_ragdb("ingest", str(facts_dir))
    venv = str(Path(sys.prefix).resolve())
    for path in store.rglob("*"):
        if path.is_file():
            assert venv.encode() not in path.read_bytes(), path
    # Chroma records ragdb's embedding function by model name, not by path.
    code = (
        "import chromadb, json\n"
        f"c = chromadb.PersistentClient(path={str(store)!r})\n"
        "print(json.dumps(c.get_collection('ragdb-chunks').configuration_json))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    config = json.loads(out.stdout.strip().splitlines()[-1])
    assert config["embedding_function"]["name"] == "ragdb_sentence_transformer"
    assert config["embedding_function"]["config"] == {
        "model_name": "all-MiniLM-L6-v2",
        "backend": "onnx-int8",
    }
    assert config["hnsw"]["space"] == "cosine"
    # And ragdb's embedding function rebuilds from that record alone.
    from ragdb.store.chroma_ef import RagdbEmbeddingFunction

    ef = RagdbEmbeddingFunction.build_from_config(config["embedding_function"]["config"])
    assert ef.backend == "onnx-int8"
    assert len(ef(["hello"])[0]) == 384
    # A collection recorded before backends existed is torch's.
    assert RagdbEmbeddingFunction.build_from_config({"model_name": "x"}).backend == "torch"


def test_help_is_light() -> None:
    code = (
        "import sys\n"
        "from ragdb.cli import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'chromadb', 'sentence_transformers', 'transformers',"
        " 'numpy', 'openai') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_python_module_entry_point(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ragdb", "--version"], capture_output=True, text=True, check=True
    )
    assert "ragdb" in out.stdout


def test_questions_retrieved_together_get_what_each_gets_alone(
    store: Path, facts_dir: Path
) -> None:
    """retrieve_many (what the service batches concurrent clients into) gives each
    question exactly its own retrieve(), whatever mode, k and company."""
    from ragdb import KnowledgeBase, Query, UsageError

    kb = KnowledgeBase(store=store)
    kb.ingest([facts_dir])
    queries = [
        Query("When is the Innovation Summit held?", 3, "hybrid"),
        Query("Which animal does the company like?", 2, "dense"),
        Query("coffee machine", 4, "bm25"),
        Query("Where is the coffee machine?", 1, "hybrid"),
    ]
    together = kb.retrieve_many(queries)
    for query, got in zip(queries, together, strict=True):
        alone = kb.retrieve(query.question, query.k, query.mode)
        assert got.question == query.question
        assert [h.to_dict() for h in got.hits] == [h.to_dict() for h in alone.hits]
        assert 0 < len(got.hits) <= query.k
    assert together[2].hits and all("bm25" in h.scores for h in together[2].hits)
    with pytest.raises(UsageError, match="question is empty"):
        kb.retrieve_many([queries[0], Query("  ")])


def test_dense_hits_read_without_vectors_are_what_the_vectors_give(
    store: Path, facts_dir: Path
) -> None:
    """A dense search reads its winners' records but not their vectors (its
    scores are Chroma's distances): each hit is the stored record, and its
    score the cosine its stored vector gives."""
    import numpy as np

    from ragdb import KnowledgeBase

    kb = KnowledgeBase(store=store)
    kb.ingest([facts_dir])
    question = "Which animal does the company like?"
    hits = kb.retrieve(question, 4, "dense").hits
    query = np.asarray(kb.embedder.encode([question])[0])
    with kb.store().session() as session:
        stored = {r.id: (r, v) for r, v in session.fetch_embeddings(ids=[h.id for h in hits])}
    assert len(hits) == 4 and set(stored) == {h.id for h in hits}
    for hit in hits:
        record, vector = stored[hit.id]
        assert (hit.text, hit.source, hit.metadata) == (
            record.text,
            record.source,
            record.metadata(),
        )
        assert abs(float(np.dot(np.asarray(vector), query)) - hit.score) < 1e-5
    # The hybrid hits of the same chunks carry the same records.
    hybrid = {h.id: h for h in kb.retrieve(question, 4, "hybrid").hits}
    for hit in hits:
        if hit.id in hybrid:
            assert hybrid[hit.id].metadata == hit.metadata


def test_int8_questions_encoded_together_equal_alone() -> None:
    """An int8 model's vectors depend on their batch, so questions asked together
    are encoded one by one (side by side): the same vectors as alone."""
    import numpy as np

    from ragdb.embed import get_embedder

    questions = [f"question number {i} about {word}" for i, word in enumerate(FACTS)]
    embedder = get_embedder("all-MiniLM-L6-v2", backend="onnx-int8")
    assert not embedder.batch_invariant
    alone = np.stack([embedder.encode([q])[0] for q in questions])
    assert np.array_equal(embedder.encode_queries(questions), alone)
    # What encode_queries avoids: one batch moves the vectors.
    assert not np.array_equal(embedder.encode(questions), alone)


def test_filter_on_source_prefix(store: Path, facts_dir: Path, tmp_path: Path) -> None:
    """A query restricted to sources under a prefix ranks exactly as the full
    ranking does once the other sources are dropped (dense, bm25), in a batch
    with unfiltered queries too."""
    from ragdb import KnowledgeBase, Query

    other = tmp_path / "other"
    other.mkdir()
    (other / "summit.txt").write_text("The Innovation Summit moved to a new venue in May.")
    (other / "coffee.txt").write_text("The coffee machine on floor two makes espresso.")
    kb = KnowledgeBase(store=store)
    kb.ingest([facts_dir, other])
    prefix = str(facts_dir.resolve()) + "/"
    question = "When is the Innovation Summit held and where is the coffee machine?"
    for mode in ("dense", "bm25", "hybrid"):
        filtered, unfiltered, everything = kb.retrieve_many(
            [Query(question, 2, mode, prefix), Query(question, 2, mode), Query(question, 10, mode)]
        )
        assert filtered.hits and all(h.source.startswith(prefix) for h in filtered.hits)
        assert len(unfiltered.hits) == 2
        assert any(not h.source.startswith(prefix) for h in everything.hits)
        if mode != "hybrid":  # fusion ranks the filtered candidates afresh
            expected = [h.id for h in everything.hits if h.source.startswith(prefix)][:2]
            assert [h.id for h in filtered.hits] == expected
    assert kb.retrieve_many([Query(question, 2, "hybrid", "/nowhere/")])[0].hits == []
