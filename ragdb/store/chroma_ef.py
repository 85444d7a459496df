"""The embedding function ragdb registers with Chroma.

Chroma persists an embedding function's settings in the collection. Its own
SentenceTransformer function records the model *path*, which points into one
user's virtual environment; this one records the model *name* and resolves it
on whichever install opens the store.
"""

from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from ragdb.embed import get_embedder

EF_NAME = "ragdb_sentence_transformer"


@register_embedding_function
class RagdbEmbeddingFunction(EmbeddingFunction[Documents]):
    def __init__(self, model_name: str, device: str = "auto", backend: str = "torch") -> None:
        self.model_name = model_name
        self.device = device
        self.backend = backend

    def __call__(self, input: Documents) -> Embeddings:
        vecs = get_embedder(self.model_name, self.device, self.backend).encode(list(input))
        return list(vecs)

    @staticmethod
    def name() -> str:
        return EF_NAME

    def default_space(self) -> Any:
        return "cosine"

    def supported_spaces(self) -> Any:
        return ["cosine"]

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> RagdbEmbeddingFunction:
        # Collections made before backends existed were embedded by torch.
        return RagdbEmbeddingFunction(
            config["model_name"], config.get("device", "auto"), config.get("backend", "torch")
        )

    def get_config(self) -> dict[str, Any]:
        # The device is a property of the machine, not of the store.
        return {"model_name": self.model_name, "backend": self.backend}

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model_name"), str):
            raise ValueError("model_name must be a string")

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if old_config.get("model_name") != new_config.get("model_name"):
            raise ValueError("the embedding model of a collection cannot change")
