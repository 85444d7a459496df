"""Would statically quantised int8 make a batch-invariant int8 backend?

    scripts/run-python static-int8.py [--docs 400] [--questions 64]

Dynamic int8 (ragdb's onnx-int8) computes one activation scale per batch, so a
question's vector moves with whoever else is in its batch; static quantisation
fixes the scales once, calibrated offline. This script calibrates on text the
project ships (README.md and the package's own docstrings, chunked as ragdb
chunks, plus their single sentences, question-length), never on an
evaluation set, and measures side by side for fp32, dynamic int8 and each
static variant: documents/s on the first N SciFact documents, one question's
latency, the cosine to sentence-transformers' (torch) vectors, and batch
invariance (SciFact train questions embedded 64 in one call against one by
one: the largest change of a vector element).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.proofs.data import SCIFACT, scifact_documents

ROOT = Path(__file__).resolve().parent.parent


def calibration_texts() -> list[str]:
    """Chunk-like and question-like text from what the project ships."""
    parts = [ROOT / "README.md"]
    docs = [p.read_text() for p in parts]
    for path in sorted((ROOT / "ragdb").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    docs.append(doc)
    text = "\n\n".join(docs)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 40]
    chunks, current = [], ""
    for para in paragraphs:
        if len(current) + len(para) > 1000:
            chunks.append(current)
            current = ""
        current += para + "\n\n"
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.?!])\s+", p) if 20 < len(s) < 200]
    # A step through each, so the sample spans the whole text.
    return spread(chunks, 48) + spread(sentences, 48)


def spread(items: list[str], n: int) -> list[str]:
    """``n`` of ``items``, taken at even steps (a sample that spans them)."""
    return items[:: max(1, len(items) // n)][:n]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument(
        "--ndcg",
        action="store_true",
        help="also embed the whole corpus (title + abstract, one vector a document) with "
        "torch, dynamic int8 and the static variant kept, and compare dense nDCG@10 on the "
        "test queries",
    )
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger().setLevel(logging.ERROR)
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from ragdb.embed.base import resolve_model_path
    from ragdb.embed.onnx import META, down_projections, ensure_export

    model_dir = Path(resolve_model_path("all-MiniLM-L6-v2"))
    base = ensure_export(model_dir, "onnx", "all-MiniLM-L6-v2")
    dyn = ensure_export(model_dir, "onnx-int8", "all-MiniLM-L6-v2")
    meta = json.loads((base / META).read_text())
    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.enable_truncation(int(meta["max_seq_length"]))
    tok.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"])

    def feed(texts: list[str]) -> dict[str, Any]:
        enc = tok.encode_batch(texts)
        arrays = {
            "input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
        }
        return {k: v for k, v in arrays.items() if k in meta["inputs"]}

    calib = calibration_texts()
    # The histogram calibrators want one shape: calibration inputs are padded
    # to the model's length (padding passes through the quantisers in use too).
    fixed = Tokenizer.from_file(str(base / "tokenizer.json"))
    # 128 tokens: the calibrator holds every activation of every sample at once.
    fixed.enable_truncation(128)
    fixed.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"], length=128)

    def fixed_feed(text: str) -> dict[str, Any]:
        enc = fixed.encode(text)
        arrays = {
            "input_ids": np.array([enc.ids], np.int64),
            "attention_mask": np.array([enc.attention_mask], np.int64),
            "token_type_ids": np.array([enc.type_ids], np.int64),
        }
        return {k: v for k, v in arrays.items() if k in meta["inputs"]}

    class Reader(CalibrationDataReader):
        def __init__(self, padded: bool = True) -> None:
            self.items = iter([fixed_feed(t) if padded else feed([t]) for t in calib])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    work = Path(tempfile.mkdtemp(prefix="ragdb-static-int8-"))
    fp32 = base / "model.onnx"
    variants = {"fp32 (onnx)": fp32, "dynamic int8 (onnx-int8)": dyn / "model.onnx"}
    t0 = time.perf_counter()
    # MatMuls of two activations (attention's scores and mix): no weight to
    # quantise ahead, and their ranges move with every input.
    import onnx

    graph = onnx.load(str(fp32)).graph
    weights = {i.name for i in graph.initializer}
    two_activations = [
        n.name for n in graph.node if n.op_type == "MatMul" and not set(n.input) & weights
    ]
    for label, method, extra, padded, skip in (
        ("static minmax padded", CalibrationMethod.MinMax, {}, True, []),
        ("static minmax", CalibrationMethod.MinMax, {}, False, []),
        ("static minmax weights", CalibrationMethod.MinMax, {}, False, two_activations),
        ("static pct99.99", CalibrationMethod.Percentile, {"CalibPercentile": 99.99}, True, []),
    ):
        out = work / (label.replace(" ", "-") + ".onnx")
        quantize_static(
            str(fp32),
            str(out),
            Reader(padded),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=down_projections(fp32) + skip,
            calibrate_method=method,
            extra_options={**extra, "ActivationSymmetric": False},
        )
        variants[label] = out
    print(f"calibrated on {len(calib)} texts in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    docs = list(scifact_documents(opts.docs).values())
    questions = [
        json.loads(line)["text"]
        for line in (SCIFACT / "queries_train.jsonl").read_text().splitlines()[: opts.questions]
    ]

    def run(session: Any, texts: list[str], batch: int = 16) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), int(meta["dimension"])), np.float32)
        for start in range(0, len(texts), batch):
            idx = order[start : start + batch]
            vecs = session.run(None, feed([texts[i] for i in idx]))[0]
            out[idx] = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        return out

    torch_model = SentenceTransformer(str(model_dir), device="cpu")
    reference = torch_model.encode(docs, batch_size=16, normalize_embeddings=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 2
    print(f"{len(docs)} SciFact documents, {len(questions)} questions, {os.cpu_count()} cores")
    print(
        f"{'variant':<26} {'docs/s':>7} {'q ms':>6} {'q/s x8':>7} {'cos min':>8} {'mean':>8} "
        f"{'batch drift':>11}"
    )
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        run(session, docs[:32])
        t0 = time.perf_counter()
        vecs = run(session, docs)
        rate = len(docs) / (time.perf_counter() - t0)
        lat = []
        for q in questions[:30]:
            t0 = time.perf_counter()
            session.run(None, feed([q]))
            lat.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for start in range(0, len(questions), 8):
            session.run(None, feed(questions[start : start + 8]))
        q8 = len(questions) / (time.perf_counter() - t0)
        together = run(session, questions, batch=len(questions))
        alone = run(session, questions, batch=1)
        drift = float(np.abs(together - alone).max())
        cos = (vecs * reference).sum(axis=1)
        print(
            f"{name:<26} {rate:>7.1f} {statistics.median(lat):>6.2f} {q8:>7.1f} "
            f"{cos.min():>8.5f} {cos.mean():>8.5f} {drift:>11.2e}",
            flush=True,
        )
    if opts.ndcg:
        kept = {k: variants[k] for k in ("dynamic int8 (onnx-int8)", "static minmax weights")}
        ndcg_table(torch_model, kept, run, options)
    return 0


def ndcg_table(torch_model: Any, variants: dict[str, Path], run: Any, options: Any) -> None:
    """Dense nDCG@10 on SciFact's test queries, documents embedded whole."""
    import onnxruntime as ort

    from ragdb.evaluate import load_qrels, load_queries, ndcg

    corpus = scifact_documents()
    ids, texts = list(corpus), list(corpus.values())
    qrels = load_qrels(SCIFACT / "qrels.tsv")
    queries = {q: t for q, t in load_queries(SCIFACT / "queries.jsonl").items() if q in qrels}
    qids = sorted(queries)

    def score(docs: np.ndarray, qs: np.ndarray) -> float:
        top = np.argsort(-(qs @ docs.T), axis=1)[:, :10]
        return statistics.fmean(
            ndcg([ids[j] for j in top[i]], qrels[q], 10) for i, q in enumerate(qids)
        )

    t0 = time.perf_counter()
    docs = torch_model.encode(texts, batch_size=32, normalize_embeddings=True)
    qs = torch_model.encode([queries[q] for q in qids], normalize_embeddings=True)
    print(f"{'torch':<26} dense nDCG@10 {score(docs, qs):.4f} ({time.perf_counter() - t0:.0f}s)")
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        docs = run(session, texts, batch=32)
        qs = run(session, [queries[q] for q in qids], batch=1)
        print(
            f"{name:<26} dense nDCG@10 {score(docs, qs):.4f} ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
