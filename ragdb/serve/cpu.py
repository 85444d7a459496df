"""The service's CPU time by thread, for its status: which part of the service
(the event loop's HTTP work, the batching thread's searches, the encoder's
threads, the keyword searches) the cores went to. Read from Linux's
``/proc/self/task``; empty where there is none."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

# A pool's threads share their pool's name: "ragdb-encode_0" counts as "ragdb-encode".
_POOL_SUFFIX = re.compile(r"_\d+$")
# Threads Python did not start (ONNX Runtime's, Chroma's) are counted together.
NATIVE = "native"


def cpu_seconds_by_thread() -> dict[str, float]:
    """User and system CPU seconds of this process's live threads, summed by
    thread name; threads Python did not start under :data:`NATIVE`."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return {}
    names = {t.native_id: _POOL_SUFFIX.sub("", t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in tasks.iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        name = names.get(int(task.name), NATIVE)
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return {name: round(seconds, 3) for name, seconds in sorted(out.items())}
