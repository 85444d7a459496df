"""Which ONNX export ragdb ships: every variant tried, measured side by side.

    scripts/run-python onnx-variants.py [--docs 600]

Starts from ragdb's own fp32 export of all-MiniLM-L6-v2 and derives: the
graph-optimised model (onnxruntime's transformer optimizer, fused attention,
layer norm and GELU: what sentence-transformers' O1-O3 levels do), and dynamic
int8 quantisations (signed or unsigned weights, per channel or per tensor, with
and without reduce_range, every MatMul or all but the feed-forward
down-projections, on the plain and the optimised graph). For each it
prints documents/s on the first N SciFact documents (title + abstract), one
query's latency, and the cosine of its vectors to sentence-transformers' (torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# scripts/run-python puts the root on the path
from tests.proofs.data import SCIFACT, scifact_documents

ROOT = Path(__file__).resolve().parent.parent
DATA = SCIFACT
QUERY = "What causes tumor growth in the immune system?"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=600)
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger().setLevel(logging.ERROR)
    import onnxruntime as ort
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from ragdb.embed.base import resolve_model_path
    from ragdb.embed.onnx import META, ensure_export

    model_dir = Path(resolve_model_path("all-MiniLM-L6-v2"))
    base = ensure_export(model_dir, "onnx", "all-MiniLM-L6-v2")
    meta = json.loads((base / META).read_text())
    work = Path(tempfile.mkdtemp(prefix="ragdb-onnx-variants-"))
    variants = {"fp32": base / "model.onnx"}
    fused = optimize_model(
        str(base / "model.onnx"), model_type="bert", num_heads=12, hidden_size=384, opt_level=1
    )
    fused.save_model_to_file(str(work / "fused.onnx"))
    variants["fp32 fused"] = work / "fused.onnx"
    from ragdb.embed.onnx import down_projections

    fp32_path = base / "model.onnx"
    for graph in ("fp32", "fp32 fused"):
        for weight, per_channel, reduce, matmul_only, keep_down in (
            ("QInt8", True, True, True, True),  # what ragdb ships as onnx-int8
            ("QInt8", True, True, False, False),
            ("QInt8", True, False, False, False),
            ("QInt8", False, False, False, False),
            ("QUInt8", True, False, False, False),
        ):
            if graph == "fp32 fused" and keep_down:
                continue  # fused nodes have other names
            name = f"{graph.replace('fp32', 'int8')} {weight} {'pc' if per_channel else 'pt'}"
            name += " rr" if reduce else ""
            name += " down-fp32" if keep_down else ""
            out = work / (name.replace(" ", "-") + ".onnx")
            quantize_dynamic(
                str(variants[graph]),
                str(out),
                weight_type=getattr(QuantType, weight),
                per_channel=per_channel,
                reduce_range=reduce,
                op_types_to_quantize=["MatMul"] if matmul_only else None,
                nodes_to_exclude=down_projections(fp32_path) if keep_down else None,
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            )
            variants[name] = out

    docs = list(scifact_documents(opts.docs).values())
    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.enable_truncation(int(meta["max_seq_length"]))
    tok.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"])

    def run(session: ort.InferenceSession, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), int(meta["dimension"])), np.float32)
        for start in range(0, len(texts), 16):
            idx = order[start : start + 16]
            enc = tok.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], np.int64)
            feed = {
                "input_ids": ids,
                "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
            }
            vecs = session.run(None, {k: v for k, v in feed.items() if k in meta["inputs"]})[0]
            out[idx] = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        return out

    torch_model = SentenceTransformer(str(model_dir), device="cpu")

    def torch_run() -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        vecs = torch_model.encode(docs, batch_size=16, normalize_embeddings=True)
        return vecs, len(docs) / (time.perf_counter() - t0)

    reference, rate_a = torch_run()
    lat = []
    for _ in range(20):
        t0 = time.perf_counter()
        torch_model.encode([QUERY])
        lat.append(1000 * (time.perf_counter() - t0))
    rows = []
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run(session, docs[:32])
        t0 = time.perf_counter()
        vecs = run(session, docs)
        rate = len(docs) / (time.perf_counter() - t0)
        q = []
        for _ in range(20):
            t0 = time.perf_counter()
            run(session, [QUERY])
            q.append(1000 * (time.perf_counter() - t0))
        cos = (vecs * reference).sum(axis=1)
        rows.append((name, rate, statistics.median(q), cos.min(), cos.mean()))
    _, rate_b = torch_run()
    torch_rate = (rate_a + rate_b) / 2
    print(f"{len(docs)} SciFact documents, {os.cpu_count()} cores; torch ran before and after")
    print(
        f"{'variant':<26} {'docs/s':>7} {'x torch':>8} {'query ms':>9} {'cos min':>8} {'mean':>8}"
    )
    print(
        f"{'torch fp32':<26} {torch_rate:>7.1f} {1.0:>8.2f} {statistics.median(lat):>9.1f} "
        f"{1.0:>8.5f} {1.0:>8.5f}"
    )
    for name, rate, q_ms, cmin, cmean in rows:
        print(
            f"{name:<26} {rate:>7.1f} {rate / torch_rate:>8.2f} {q_ms:>9.1f} "
            f"{cmin:>8.5f} {cmean:>8.5f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
