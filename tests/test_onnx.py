"""The ONNX Runtime backends: parity with sentence-transformers, the export
cache, the store's record of its backend, reembed between backends, and a
query path that never imports torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragdb import KnowledgeBase
from ragdb.embed import default_backend, get_embedder
from ragdb.embed.base import resolve_model_path
from ragdb.embed.identity import DEFAULT_CPU_BACKEND, compatible_backends
from ragdb.embed.onnx import META, export_dir, model_hash
from ragdb.errors import UsageError

from .conftest import Ragdb
from .proofs.data import ROOT, SHARED_DATA

# The tolerances ragdb's compatibility rule rests on: backends whose vectors
# agree to FP32_MIN_COSINE are one family (a store accepts either); int8's do
# not, so a store records it and refuses the others.
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.95
INT8_MEAN_COSINE = 0.98


def real_texts() -> list[str]:
    """Paragraphs nobody wrote for this test: the README, and SciFact abstracts."""
    texts = [p.strip() for p in (ROOT / "README.md").read_text().split("\n\n") if len(p) > 80]
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if corpus.is_file():
        with open(corpus) as fh:
            for _, line in zip(range(120), fh, strict=False):
                doc = json.loads(line)
                texts.append(f"{doc['title']}\n{doc['text']}")
    return texts


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def test_pooling_and_normalisation_match_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    texts = real_texts()
    assert len(texts) >= 20
    reference = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    fp32 = get_embedder("all-MiniLM-L6-v2", "cpu", "onnx").encode(texts)
    int8 = get_embedder("all-MiniLM-L6-v2", "cpu", "onnx-int8").encode(texts)
    for vecs in (fp32, int8):
        assert vecs.shape == reference.shape and vecs.dtype == np.float32
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    same = cosines(fp32, reference)
    assert same.min() >= FP32_MIN_COSINE, same.min()
    near = cosines(int8, reference)
    assert near.min() >= INT8_MIN_COSINE and near.mean() >= INT8_MEAN_COSINE, near.mean()
    # ... and int8 really is outside the fp32 family: it must be recorded.
    assert near.min() < FP32_MIN_COSINE
    # One text alone (no padding) embeds as it does in a batch.
    one = get_embedder("all-MiniLM-L6-v2", "cpu", "onnx").encode(texts[:1])
    assert cosines(one, fp32[:1])[0] > 0.99999


def test_compatibility_and_default_rules() -> None:
    assert compatible_backends("torch", "onnx")
    assert not compatible_backends("torch", "onnx-int8")
    assert not compatible_backends("onnx", "onnx-int8")
    assert default_backend("all-MiniLM-L6-v2", "cpu") == DEFAULT_CPU_BACKEND == "onnx-int8"
    # A GPU keeps torch; so does a model that is not on disk to export.
    assert default_backend("all-MiniLM-L6-v2", "cuda") == "torch"
    assert default_backend("someone/not-on-this-disk", "cpu") == "torch"
    with pytest.raises(UsageError, match="runs on the CPU"):
        get_embedder("all-MiniLM-L6-v2", "cuda", "onnx-int8")
    with pytest.raises(UsageError, match="unknown embedding backend"):
        get_embedder("all-MiniLM-L6-v2", "cpu", "tensorrt")


def test_export_is_cached_and_keyed_by_the_model_files(tmp_path: Path, session_cache: Path) -> None:
    model = Path(resolve_model_path("all-MiniLM-L6-v2"))
    get_embedder("all-MiniLM-L6-v2", "cpu", "onnx-int8").load()
    folder = export_dir(model, "onnx-int8")
    assert folder.is_relative_to(session_cache)  # XDG_CACHE_HOME, not the user's
    meta = json.loads((folder / META).read_text())
    assert meta["dimension"] == 384 and meta["max_seq_length"] == 256
    assert export_dir(model, "onnx") != folder
    # Another model (one config value changed) gets another key.
    copy = tmp_path / "model-copy"
    shutil.copytree(model, copy)
    assert model_hash(copy) == model_hash(model)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(cfg))
    assert model_hash(copy) != model_hash(model)
    # A fresh process finds the export: it says nothing about exporting.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ragdb.embed import get_embedder;"
            "print(get_embedder('all-MiniLM-L6-v2','cpu','onnx-int8').encode(['x']).shape)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "(1, 384)" in proc.stdout and "exporting" not in proc.stderr


def imported_modules(args: list[str]) -> set[str]:
    """The modules a ragdb command imports (from ``python -X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ragdb", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            names.add(m.group(1))
    assert "chromadb" in names  # the parse found the imports
    return names


def test_query_path_of_an_onnx_store_never_imports_torch(
    local_ragdb: Ragdb, facts_dir: Path, store: Path
) -> None:
    local_ragdb("ingest", str(facts_dir))
    assert local_ragdb.json("status")["embed_backend"] == "onnx-int8"
    for mode in ("dense", "hybrid"):
        names = imported_modules(
            ["--store", str(store), "query", "octopus", "--retrieve-only", "--mode", mode]
        )
        heavy = sorted(n for n in names if n.split(".")[0] in ("torch", "sentence_transformers"))
        assert heavy == [], heavy[:5]
    # A re-ingest of unchanged files loads no model at all.
    names = imported_modules(["--store", str(store), "ingest", str(facts_dir)])
    assert "onnxruntime" not in names and "torch" not in names


def test_store_records_backend_and_refuses_an_incompatible_one(
    ragdb: Ragdb, facts_dir: Path
) -> None:
    ragdb("ingest", str(facts_dir))
    assert ragdb.json("status")["embed_backend"] == "onnx-int8"
    for other in ("torch", "onnx"):
        err = ragdb("--embed-backend", other, "query", "octopus", "--retrieve-only", code=1).stderr
        assert "was embedded with the onnx-int8 backend" in err
        assert f"ragdb reembed --to-backend {other}" in err
    env = {"RAGDB_EMBED_BACKEND": "torch"}
    assert "onnx-int8 backend" in ragdb("status", code=1, env=env).stderr
    err = ragdb("status", code=2, env={"RAGDB_EMBED_BACKEND": "tpu"}).stderr
    assert "unknown embedding backend 'tpu'" in err


def test_torch_store_answers_onnx_queries(local_ragdb: Ragdb, facts_dir: Path) -> None:
    local_ragdb("--embed-backend", "torch", "ingest", str(facts_dir))
    assert local_ragdb.json("status")["embed_backend"] == "torch"
    by_torch = local_ragdb.json("query", "octopus", "--retrieve-only", "--mode", "dense")
    # onnx (fp32) is torch's family: the store takes its query vectors.
    by_onnx = local_ragdb.json(
        "--embed-backend", "onnx", "query", "octopus", "--retrieve-only", "--mode", "dense"
    )
    assert [h["id"] for h in by_onnx["chunks"]] == [h["id"] for h in by_torch["chunks"]]
    for a, b in zip(by_onnx["chunks"], by_torch["chunks"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert "onnx-int8 backend" not in local_ragdb("status").stdout


def test_reembed_moves_a_store_between_backends(ragdb: Ragdb, facts_dir: Path) -> None:
    ragdb("ingest", str(facts_dir))
    ids = {c["id"] for c in ragdb.chunks()}
    out = ragdb.json("reembed", "--to-backend", "torch")
    assert (out["from_backend"], out["to_backend"], out["chunks"]) == ("onnx-int8", "torch", 4)
    assert out["from"] == out["to"] == "all-MiniLM-L6-v2"
    assert ragdb.json("status")["embed_backend"] == "torch"
    assert {c["id"] for c in ragdb.chunks()} == ids
    hits = ragdb.json("query", "octopus", "--retrieve-only", "--mode", "dense")["chunks"]
    assert hits[0]["source"].endswith("fact3.txt")
    # The vectors are torch's now: exactly what sentence-transformers gives.
    kb = ragdb.kb()
    with kb.store().session() as session:
        ((record, vector),) = session.fetch_embeddings(ids=[hits[0]["id"]])
    expected = get_embedder("all-MiniLM-L6-v2", "cpu", "torch").encode([record.text])
    assert cosines(np.asarray([vector]), expected)[0] > 0.99999
    ragdb("doctor")
    assert "already uses" in ragdb("reembed", "--to-backend", "torch", code=2).stderr
    assert ragdb.json("reembed", "--to-backend", "onnx-int8")["to_backend"] == "onnx-int8"
    assert "--to-model NAME, --to-backend B" in ragdb("reembed", code=2).stderr


def test_python_api_takes_the_backend(tmp_path: Path) -> None:
    kb = KnowledgeBase(store=tmp_path / "kb", embed_backend="onnx")
    kb.ingest_text("note", "Zebras have stripes that confuse biting flies.")
    assert kb.status().embed_backend == "onnx"
    assert kb.retrieve("zebra stripes", k=1).hits[0].source == "note"
