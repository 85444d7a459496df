"""The ONNX Runtime embedding backends: export once, then encode without torch.

``onnx`` is the sentence-transformers model (transformer, pooling, any dense
layers, normalisation) exported whole with ``torch.onnx.export``; ``onnx-int8``
is that graph with its weights dynamically quantised to 8 bits by
``onnxruntime.quantization``. Exporting needs torch and happens once per model
and setting, into ragdb's cache; encoding needs only onnxruntime and tokenizers
(both installed with chromadb), so a query through an ONNX store never imports
torch or sentence-transformers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.embed.base import Embedder
from ragdb.errors import EmbeddingModelError, UsageError, first_line

if TYPE_CHECKING:
    import numpy as np

# Bumped whenever the export below would write a different file.
EXPORT_VERSION = 2
OPSET = 17
# Signed 8-bit weights, one scale per output channel, 7-bit range (so AVX2's
# u8 x s8 products, without VNNI, never saturate: the same vectors on every
# x86-64-v3 CPU), MatMuls only, and the feed-forward down-projections kept in
# fp32: after GELU their inputs have outliers that 8 bits flatten. Chosen by
# fidelity to torch's vectors (scripts/run-python onnx-variants.py --docs 200):
# keeping them raised the mean cosine from 0.9932 to 0.9968 for 1.40x torch's
# speed instead of 1.47x.
INT8_SETTINGS: dict[str, Any] = {
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "op_types": ["MatMul"],
    "fp32": "down-projections",
}
META = "ragdb-onnx.json"


def cache_root() -> Path:
    """Where exported models are kept (``$XDG_CACHE_HOME/ragdb/onnx`` on Linux)."""
    from platformdirs import user_cache_path

    return user_cache_path("ragdb", appauthor=False) / "onnx"


def _weights_files(model_dir: Path) -> list[Path]:
    """The files that make the model what it is (not other exports beside it)."""
    skip = {"onnx", "openvino", ".git"}
    out = []
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            if name.endswith((".json", ".txt", ".safetensors", ".bin", ".model")):
                out.append(Path(root) / name)
    return out


def model_hash(model_dir: Path) -> str:
    """A hash of the model's own files, memoised by size and mtime: 90 MB of
    weights cost a fifth of a second to hash, every cold start otherwise."""
    memo_path = cache_root() / "hashes.json"
    try:
        memo = dict(json.loads(memo_path.read_text()))
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    changed = False
    for path in _weights_files(model_dir):
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = memo.get(key)
        if digest is None:
            fh_hash = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    fh_hash.update(block)
            digest = memo[key] = fh_hash.hexdigest()
            changed = True
        h.update(str(path.relative_to(model_dir)).encode() + b"\0" + digest.encode() + b"\0")
    if changed:
        with contextlib.suppress(OSError):
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_path.with_name(f".hashes.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            os.replace(tmp, memo_path)
    return h.hexdigest()[:24]


def export_dir(model_dir: Path, backend: str) -> Path:
    """The cache folder of ``backend``'s export of the model in ``model_dir``."""
    settings = {"export": EXPORT_VERSION, "opset": OPSET, "backend": backend}
    if backend == "onnx-int8":
        settings.update(INT8_SETTINGS)
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return cache_root() / f"{model_hash(model_dir)}-{backend}-{tag}"


def ensure_export(model_dir: Path, backend: str, name: str) -> Path:
    """The exported model of ``backend``, made first if it is not cached yet.

    Concurrent processes wait for one export (a file lock) and the folder
    appears whole or not at all (built beside, then renamed)."""
    target = export_dir(model_dir, backend)
    if (target / META).is_file():
        return target
    # int8 is quantised from the fp32 export, which is kept for the onnx backend.
    fp32 = ensure_export(model_dir, "onnx", name) if backend == "onnx-int8" else None
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / META).is_file():
            return target
        print(
            f"ragdb: exporting {name} for the {backend} backend (once; kept in {target.parent})",
            file=sys.stderr,
            flush=True,
        )
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            if fp32 is not None:
                _quantise(fp32, partial)
            else:
                _export(model_dir, backend, partial)
        except EmbeddingModelError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise EmbeddingModelError(
                f"cannot export {name} to ONNX: {first_line(exc)}; "
                "use --embed-backend torch for this model"
            ) from exc
        os.replace(partial, target)
    return target


def _export(model_dir: Path, backend: str, out: Path) -> None:
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()
    # Eager attention traces to plain ops that every ONNX Runtime build runs.
    model = SentenceTransformer(
        str(model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    model.eval()
    tokenizer = model.tokenizer
    inputs = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])
    ]

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = dict(zip(inputs, tensors, strict=True))
            return self.model(features)["sentence_embedding"]

    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in inputs)
    axes = {n: {0: "batch", 1: "sequence"} for n in inputs}
    axes["sentence_embedding"] = {0: "batch"}
    fp32 = out / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer's notes on shapes it fixes are about code paths ragdb never takes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Whole().eval(),
            dummy,
            str(fp32),
            input_names=inputs,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    # What encoding needs besides the graph: the tokenizer and its settings.
    tok_file = model_dir / "tokenizer.json"
    if tok_file.is_file():
        shutil.copy(tok_file, out / "tokenizer.json")
    else:
        backend_tok = getattr(tokenizer, "backend_tokenizer", None)
        if backend_tok is None:
            raise EmbeddingModelError(f"model in {model_dir} has no fast tokenizer")
        backend_tok.save(str(out / "tokenizer.json"))
    first = model[0]
    probe = model.encode(["dimension"], convert_to_numpy=True)
    meta = {
        "inputs": inputs,
        "dimension": int(probe.shape[1]),
        "max_seq_length": int(model.max_seq_length or 512),
        "do_lower_case": bool(getattr(first, "do_lower_case", False)),
        "pad_token": tokenizer.pad_token,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "backend": backend,
    }
    (out / META).write_text(json.dumps(meta, indent=2))


def _quantise(fp32: Path, out: Path) -> None:
    """The int8 export, made from the fp32 one in ``fp32``: weights quantised
    per channel, the down projections left in fp32 (INT8_SETTINGS)."""
    import logging

    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = fp32 / "model.onnx"
    # It advises shape pre-processing on the root logger; the graph needs none.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(model),
            str(out / "model.onnx"),
            weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
            per_channel=INT8_SETTINGS["per_channel"],
            reduce_range=INT8_SETTINGS["reduce_range"],
            op_types_to_quantize=INT8_SETTINGS["op_types"],
            nodes_to_exclude=down_projections(model),
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    shutil.copy(fp32 / "tokenizer.json", out / "tokenizer.json")
    meta = json.loads((fp32 / META).read_text())
    (out / META).write_text(json.dumps({**meta, "backend": "onnx-int8"}, indent=2))


def down_projections(model_path: Path) -> list[str]:
    """The MatMul nodes whose weight maps more features to fewer (a transformer
    block's feed-forward output, a Dense head): quantisation hurts them most."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        dims = shapes.get(node.input[1])
        if dims is not None and len(dims) == 2 and dims[0] > dims[1]:
            out.append(node.name)
    return out


class OnnxEmbedder(Embedder):
    """An exported sentence-transformers model run by ONNX Runtime on the CPU."""

    def __init__(self, name: str, device: str = "auto", backend: str = "onnx-int8") -> None:
        super().__init__(name, device)
        if device not in ("auto", "cpu"):
            raise UsageError(
                f"the {backend} backend runs on the CPU; use --embed-backend torch "
                f"for --device {device}"
            )
        self.backend = backend
        self._session: Any = None
        self._encoder_tokenizer: Any = None
        self._meta: dict[str, Any] = {}
        self._folder: Path | None = None
        # For questions asked together (see encode_queries), made on first use.
        self._solo: tuple[Any, ThreadPoolExecutor] | None = None
        self._solo_lock = threading.Lock()

    def _load(self) -> Any:
        if not self.is_local:
            raise EmbeddingModelError(
                f"the {self.backend} backend needs the model {self.name!r} on disk "
                "(a directory); give its path or use --embed-backend torch"
            )
        folder = ensure_export(Path(self.path), self.backend, self.name)
        try:
            from tokenizers import Tokenizer

            self._meta = json.loads((folder / META).read_text())
            session = _session(folder / "model.onnx")
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:
            raise EmbeddingModelError(
                f"cannot load the {self.backend} export of {self.name!r} from {folder}: "
                f"{first_line(exc)} (delete that folder to export it again)"
            ) from exc
        tok.enable_truncation(int(self._meta["max_seq_length"]))
        tok.enable_padding(pad_id=int(self._meta["pad_id"]), pad_token=self._meta["pad_token"])
        self._encoder_tokenizer = tok
        self._folder = folder
        return session

    def _loaded_max_seq_length(self) -> int:
        _ = self.model
        return int(self._meta["max_seq_length"])

    @property
    def dimension(self) -> int:
        _ = self.model
        return int(self._meta["dimension"])

    @property
    def batch_size(self) -> int:
        """16 texts a run, as for torch on a CPU (a one-off sweep of 4-64 on 2 cores
        found no batch size clearly better for int8)."""
        return 16

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions asked together. An int8 model's vector depends on its batch,
        so each question runs alone; a run that small leaves one thread of
        ONNX Runtime's pool idle most of the time, so instead the questions run
        side by side, one single-threaded run per core (measured on 2 cores: 245
        questions/s against 155 one after another)."""
        import numpy as np

        if self.batch_invariant or len(texts) < 2:
            return super().encode_queries(texts)
        session, pool = self._solo_runner()
        return np.stack(list(pool.map(lambda t: self._run(session, [t])[0], texts)))

    def _solo_runner(self) -> tuple[Any, ThreadPoolExecutor]:
        with self._solo_lock:
            if self._solo is None:
                _ = self.model
                assert self._folder is not None
                workers = max(1, min(4, os.cpu_count() or 1))
                self._solo = (
                    _session(self._folder / "model.onnx", threads=1),
                    ThreadPoolExecutor(workers, thread_name_prefix="ragdb-encode"),
                )
            return self._solo

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self.model, texts)

    def _run(self, session: Any, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if self._meta.get("do_lower_case"):
            texts = [t.lower() for t in texts]
        encodings = self._encoder_tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids}
        if "attention_mask" in self._meta["inputs"]:
            feed["attention_mask"] = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        if "token_type_ids" in self._meta["inputs"]:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        vectors = session.run(None, feed)[0].astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _session(path: Path, threads: int = 0) -> Any:
    """An ONNX Runtime session on the CPU (``threads`` 0: one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warnings are not the user's business
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
