"""Changing the embedding model re-embeds every chunk, switching over atomically."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import Ragdb


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real, different sentence-transformers model: the bundled encoder with CLS
    pooling and a fixed projection to 128 dimensions."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    from ragdb.embed.base import resolve_model_path

    torch.manual_seed(0)
    word = models.Transformer(resolve_model_path("all-MiniLM-L6-v2"), max_seq_length=128)
    pool = models.Pooling(word.get_embedding_dimension(), pooling_mode="cls")
    dense = models.Dense(384, 128, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[word, pool, dense, models.Normalize()], device="cpu")
    path = tmp_path_factory.mktemp("models") / "minilm-cls-128"
    model.save(str(path))
    return str(path)


def test_reembed_switches_model(
    ragdb: Ragdb, facts_dir: Path, other_model: str, tmp_path: Path
) -> None:
    ragdb("ingest", str(facts_dir))
    ragdb("--kb", "extra", "ingest", str(facts_dir / "fact0.txt"))
    ids = {c["id"] for c in ragdb.chunks()}
    out = ragdb.json("reembed", "--to-model", other_model)
    # Every knowledge base follows the store's model, switched in one write.
    assert out["chunks"] == 5 and out["from"] == "all-MiniLM-L6-v2"
    extra = ragdb.json("--kb", "extra", "query", "summit", "--retrieve-only", "--mode", "dense")
    assert [Path(c["source"]).name for c in extra["chunks"]] == ["fact0.txt"]
    status = ragdb.json("status")
    assert status["embed_model"] == other_model and status["embed_dimension"] == 128
    assert {c["id"] for c in ragdb.chunks()} == ids
    hits = ragdb.json("query", "octopus", "--retrieve-only", "-k", "4")["chunks"]
    assert len(hits) == 4
    ragdb("doctor")
    # The store now refuses the old model, and ingests with the new one.
    ragdb.extra = [*ragdb.extra, "--embed-model", "all-MiniLM-L6-v2"]
    assert "was made with" in ragdb("status", code=1).stderr
    ragdb.extra = ragdb.extra[:-2]
    (tmp_path / "new.txt").write_text("Zebras have stripes.")
    assert ragdb.json("ingest", str(tmp_path / "new.txt"))["added"] == 1


KILL_IN_REEMBED = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
def die(self, *a, **kw):
    os.kill(os.getpid(), signal.SIGKILL)
Collection.upsert = die
from ragdb import KnowledgeBase
KnowledgeBase(store=sys.argv[1]).reembed(sys.argv[2])
"""


def test_kill_during_reembed_keeps_old_model(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, other_model: str
) -> None:
    local_ragdb("ingest", str(facts_dir))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_IN_REEMBED), str(store), other_model],
        capture_output=True,
        timeout=180,
    )
    assert proc.returncode == -9
    assert local_ragdb.json("status")["embed_model"] == "all-MiniLM-L6-v2"
    hits = local_ragdb.json("query", "octopus", "--retrieve-only")["chunks"]
    assert hits[0]["source"].endswith("fact3.txt")
    assert "orphan-collection" in local_ragdb("doctor", code=1).stdout
    local_ragdb("doctor", "--repair")
    assert local_ragdb.json("reembed", "--to-model", other_model)["chunks"] == 4
