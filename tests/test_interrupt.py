"""Ctrl-C during an ingest keeps what was embedded, and says how much."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import Ragdb

WORDS = (
    "octopus coral reef current tide plankton whale salt kelp harbour lighthouse storm "
    "anchor sailor compass island lagoon shell pearl crab gull"
).split()


def test_ctrl_c_keeps_the_written_batches(local_ragdb: Ragdb, tmp_path: Path, store: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    rng = random.Random(3)
    for i in range(300):
        sentences = [" ".join(rng.choices(WORDS, k=12)).capitalize() + "." for _ in range(20)]
        (docs / f"doc{i:03d}.txt").write_text(" ".join(sentences))
    # The ONNX export (once per cache) is made here, not in the timed child.
    from ragdb.embed import get_embedder
    from ragdb.embed.identity import DEFAULT_CPU_BACKEND

    get_embedder("all-MiniLM-L6-v2", "auto", DEFAULT_CPU_BACKEND).load()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragdb", "--store", str(store), "ingest", str(docs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)  # past the model load and the first batches, short of the end
    assert proc.poll() is None, "the ingest finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("Interrupted: ") and "were saved" in line, err
    saved_sources = int(line.split()[1])
    saved_chunks = int(line.split("(")[1].split()[0])
    assert 0 < saved_sources < 300
    status = local_ragdb.json("status")
    assert (status["sources"], status["chunks"]) == (saved_sources, saved_chunks)
    local_ragdb("doctor")
    # The same command again embeds only what is missing.
    out = json.loads(local_ragdb("ingest", str(docs), "--json").stdout)
    assert out["added"] == 300 - saved_sources and out["unchanged"] == saved_sources
