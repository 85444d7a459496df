"""The ``torch`` backend: sentence-transformers itself (CPU, CUDA or MPS)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragdb.embed.base import Embedder, pick_device
from ragdb.errors import EmbeddingModelError, first_line

if TYPE_CHECKING:
    import numpy as np


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
            device = pick_device(self.requested_device)
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
