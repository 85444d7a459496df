"""Record files as sources, retrieval modes, and `ragdb eval` on a SciFact subset,
with metrics checked against trec_eval (pytrec_eval) and rankings against an
independent computation."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from .conftest import Ragdb
from .proofs.data import SHARED_DATA

SCIFACT = SHARED_DATA / "scifact"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_records_jsonl_incremental_and_prune(ragdb: Ragdb, tmp_path: Path) -> None:
    rows = [
        {"_id": "d1", "title": "Llamas", "text": "Llamas live in the Andes.", "year": 2020},
        {"_id": "d2", "title": "Octopus", "text": "The octopus has three hearts.", "year": 2021},
        {"_id": "d3", "title": "Zebras", "text": "Zebras have stripes.", "year": 2022},
    ]
    f = tmp_path / "corpus.jsonl"
    write_jsonl(f, rows)
    args = [
        "ingest",
        "--records",
        str(f),
        "--id-field",
        "_id",
        "--text-field",
        "text",
        "--title-field",
        "title",
        "--meta-field",
        "year",
    ]
    assert ragdb.json(*args)["added"] == 3
    chunks = {c["source"]: c for c in ragdb.chunks()}
    assert chunks["d2"]["title"] == "Octopus" and chunks["d2"]["year"] == 2021
    assert chunks["d2"]["text"].startswith("Octopus\n\nThe octopus")
    assert chunks["d2"]["origin"] == str(f.resolve())
    assert ragdb.json(*args)["unchanged"] == 3
    rows[1]["text"] = "The octopus has three hearts and blue blood."
    write_jsonl(f, rows[:2])
    out = ragdb.json(*args)
    assert (out["updated"], out["unchanged"], out["removed"]) == (1, 1, 0)
    out = ragdb.json(*args, "--prune")
    assert out["removed"] == 1
    sources = {c["source"]: c["text"] for c in ragdb.chunks()}
    assert set(sources) == {"d1", "d2"} and "blue blood" in sources["d2"]


def test_records_csv_and_errors(ragdb: Ragdb, tmp_path: Path) -> None:
    f = tmp_path / "faq.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "question", "answer"])
        w.writerow(["q1", "Where is the coffee?", "Third floor."])
        w.writerow(["q2", "When is the summit?", "In March."])
    out = ragdb.json(
        "ingest", "--records", str(f), "--text-field", "answer", "--title-field", "question"
    )
    assert out["added"] == 2
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    assert "duplicate id 'a'" in ragdb("ingest", "--records", str(bad), code=1).stderr
    write_jsonl(bad, [{"name": "a", "text": "x"}])
    assert "no field 'id'" in ragdb("ingest", "--records", str(bad), code=1).stderr
    bad.write_text("{not json\n")
    assert "not a JSON object" in ragdb("ingest", "--records", str(bad), code=1).stderr
    ragdb("ingest", "--records", str(tmp_path / "missing.jsonl"), code=1)
    ragdb("ingest", "--records", str(f), str(tmp_path), code=2)
    # A quote left open would swallow every later record into one field.
    open_quote = tmp_path / "open.csv"
    open_quote.write_text(
        'id,answer\nq3,"Two\nlines, closed."\nq4,"Never closed.\nq5,Lost.\nq6,Lost too.\n'
    )
    err = ragdb("ingest", "--records", str(open_quote), "--text-field", "answer", code=1).stderr
    assert f"{open_quote}:4: a quote opened in this record is never closed" in err
    assert "q3" not in {s["source"] for s in ragdb.json("sources")}  # nothing was written


def test_modes_find_keywords_and_meaning(ragdb: Ragdb, tmp_path: Path) -> None:
    docs = {
        "part.txt": "Order spare part XJ-9000 from the warehouse in Building 7.",
        "pets.txt": "Cats and dogs are the most common household companions.",
        "cars.txt": "Electric vehicles need charging stations along highways.",
    }
    for name, text in docs.items():
        (tmp_path / name).write_text(text)
    ragdb("ingest", str(tmp_path))
    top = {}
    for mode in ("dense", "bm25", "hybrid"):
        out = ragdb.json("query", "XJ-9000", "--mode", mode, "--retrieve-only", "-k", "3")
        top[mode] = Path(out["chunks"][0]["source"]).name
        for chunk in out["chunks"]:
            assert -1.0 <= chunk["score"] <= 1.0
    assert top["bm25"] == "part.txt" and top["hybrid"] == "part.txt"
    out = ragdb.json("query", "animals people keep at home", "--mode", "bm25", "--retrieve-only")
    assert out["chunks"] == [] or Path(out["chunks"][0]["source"]).name != "part.txt"
    out = ragdb.json("query", "animals people keep at home", "--retrieve-only")
    assert Path(out["chunks"][0]["source"]).name == "pets.txt"  # the default: hybrid


@pytest.fixture(scope="module")
def scifact_subset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """20 test queries, and 150 documents: every judged one plus others."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.fail(f"SciFact is missing from {SCIFACT}")
    out = tmp_path_factory.mktemp("scifact")
    qrels: dict[str, dict[str, int]] = {}
    with open(SCIFACT / "qrels.tsv") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    chosen = sorted(qrels)[:20]
    judged = {d for q in chosen for d in qrels[q]}
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    others = [d for d in docs if d["_id"] not in judged]
    keep = [d for d in docs if d["_id"] in judged] + rng.sample(others, 150 - len(judged))
    write_jsonl(out / "corpus.jsonl", keep)
    queries = [json.loads(line) for line in (SCIFACT / "queries.jsonl").read_text().splitlines()]
    write_jsonl(out / "queries.jsonl", [q for q in queries if q["_id"] in chosen])
    with open(out / "qrels.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in chosen:
            for d, s in qrels[q].items():
                fh.write(f"{q}\t{d}\t{s}\n")
    return {
        name: out / f"{name}{ext}"
        for name, ext in (("corpus", ".jsonl"), ("queries", ".jsonl"), ("qrels", ".tsv"))
    }


def trec_eval(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]
) -> dict[str, float]:
    """nDCG@10, recall@10/100 and MRR@10 by trec_eval (through pytrec_eval), as
    means over every judged query (one missing from ``run`` counts 0)."""
    import pytrec_eval

    measures = {"ndcg_cut.10": "ndcg@10", "recall.10": "recall@10", "recall.100": "recall@100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(measures)).evaluate(run)
    # trec_eval's reciprocal rank has no cut-off: MRR@10 is it over the top 10.
    top10 = {q: dict(sorted(r.items(), key=lambda x: -x[1])[:10]) for q, r in run.items()}
    ranks = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out = {
        name: sum(per_query.get(q, {}).get(key.replace(".", "_"), 0.0) for q in qrels) / len(qrels)
        for key, name in measures.items()
    }
    out["mrr@10"] = sum(ranks.get(q, {}).get("recip_rank", 0.0) for q in qrels) / len(qrels)
    return out


def test_eval_on_scifact_subset(
    local_ragdb: Ragdb, scifact_subset: dict[str, Path], tmp_path: Path
) -> None:
    import numpy as np

    ragdb = local_ragdb
    ragdb(
        "ingest",
        "--records",
        str(scifact_subset["corpus"]),
        "--id-field",
        "_id",
        "--text-field",
        "text",
        "--title-field",
        "title",
    )
    qrels = {}
    for line in scifact_subset["qrels"].read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    queries = {
        json.loads(x)["_id"]: json.loads(x)["text"]
        for x in scifact_subset["queries"].read_text().splitlines()
    }
    results = {}
    for mode in ("dense", "bm25", "hybrid"):
        run_file = tmp_path / f"{mode}.json"
        out = ragdb.json(
            "eval",
            "--queries",
            str(scifact_subset["queries"]),
            "--qrels",
            str(scifact_subset["qrels"]),
            "--mode",
            mode,
            "--run-file",
            str(run_file),
        )
        assert out["queries"] == 20
        assert {
            "mode",
            "ndcg@10",
            "recall@10",
            "recall@100",
            "mrr@10",
            "latency_ms_p50",
            "latency_ms_p95",
        } <= set(out)
        run = json.loads(run_file.read_text())
        # The metrics, recomputed by trec_eval from the very rankings ragdb produced.
        ref = trec_eval(
            qrels, {q: {d: 1000.0 - i for i, d in enumerate(r)} for q, r in run.items()}
        )
        for metric, value in ref.items():
            assert abs(out[metric] - value) < 1e-3, (mode, metric, out[metric], value)
        results[mode] = out

    # Dense rankings, computed independently of Chroma's index and ragdb's ranking:
    # exact cosine between each question's vector and every stored chunk's, each
    # source scored by its best chunk. (That the vectors are the model's own is
    # test_query.py's and test_onnx.py's business.)
    kb = ragdb.kb()
    with kb.store().session() as session:
        stored = [pair for page in session.pages(embeddings=True) for pair in page]
    chunks = [{"source": record.source, "text": record.text} for record, _ in stored]
    vecs = np.asarray([vector for _, vector in stored], dtype=np.float32)
    ids = list(queries)
    # One question a run, as ragdb embeds them.
    qv = np.stack([kb.embedder.encode([queries[q]])[0] for q in ids])
    sims = qv @ vecs.T
    independent = {}
    for qi, q in enumerate(ids):
        best: dict[str, float] = {}
        for ci in np.argsort(-sims[qi]):
            src = chunks[ci]["source"]
            best.setdefault(src, float(sims[qi, ci]))
        independent[q] = best
    ref = trec_eval(qrels, independent)["ndcg@10"]
    assert abs(results["dense"]["ndcg@10"] - ref) < 0.01
    assert results["dense"]["hnsw_recall@10"] >= 0.99
    # BM25, against bm25s over the same chunks (another implementation of the same model).
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([c["text"] for c in chunks], stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    bm_run = {}
    for q in ids:
        docs, scores = retriever.retrieve(
            bm25s.tokenize([queries[q]], stemmer=stemmer, show_progress=False),
            k=100,
            show_progress=False,
        )
        best = {}
        for ci, sc in zip(docs[0], scores[0], strict=True):
            best.setdefault(chunks[int(ci)]["source"], float(sc))
        bm_run[q] = best
    ref = trec_eval(qrels, bm_run)["ndcg@10"]
    assert abs(results["bm25"]["ndcg@10"] - ref) < 0.05
    # Fusion helps here as on the full set.
    assert (
        results["hybrid"]["ndcg@10"]
        >= max(results["dense"]["ndcg@10"], results["bm25"]["ndcg@10"]) - 0.02
    )


def test_eval_with_file_paths(ragdb: Ragdb, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "summit.md").write_text("The Innovation Summit is held every March in Lisbon.")
    (docs / "coffee.md").write_text("The best coffee machine is on the third floor.")
    ragdb("ingest", str(docs))
    write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"_id": "1", "text": "When is the summit?"},
            {"_id": "2", "text": "Where is good coffee?"},
        ],
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\tdocs/summit.md\t1\n2\tdocs/coffee.md\t1\n"
    )
    out = ragdb.json(
        "eval", "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")
    )
    assert out["ndcg@10"] == 1.0 and out["mrr@10"] == 1.0
    (tmp_path / "qrels.tsv").write_text("1\tnowhere.md\t1\n")
    out = ragdb.json(
        "eval", "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")
    )
    assert out["queries"] == 1 and out["ndcg@10"] == 0.0
    (tmp_path / "bad.tsv").write_text("only-one-column\n")
    ragdb(
        "eval", "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "bad.tsv"), code=1
    )
