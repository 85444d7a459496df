"""Embedding models: the registry that makes one embedder per model, device
and backend.

Implementations depend on :mod:`ragdb.embed.base`, never the reverse, and only
this registry imports them, lazily (torch and ONNX Runtime load only when a
model does). :mod:`ragdb.embed.identity` says what a model is without loading
one, for the store's manifest and the settings.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ragdb.embed.base import resolve_model_path
from ragdb.embed.identity import DEFAULT_CPU_BACKEND, DEVICES, canonical_name, check_backend
from ragdb.errors import UsageError

if TYPE_CHECKING:
    from ragdb.embed.base import Embedder


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
                from ragdb.embed.torch import TorchEmbedder

                embedder = TorchEmbedder(name, device)
            else:
                from ragdb.embed.onnx import OnnxEmbedder

                embedder = OnnxEmbedder(name, device, backend)
            _models[key] = embedder
        return embedder
