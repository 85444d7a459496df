"""How many requests ragdb sends a Chroma server per search, counted by a
proxy in front of a real `chroma run` (loopback, a temporary directory).

A session on a server store first asks whether its write log has an entry
newer than the one last seen; while it has none, the manifest, the pending
writes and the chunk collection handles read then still hold. Before that
cache (commit 1d93de4) a hybrid search cost 9 requests and a dense one 7.

Usage: scripts/requests-per-search [--searches N]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.cloudproxy import CloudProxy
from tests.proofs.data import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=20)
    args = parser.parse_args()
    from ragdb import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        cmd = [chroma, "run", "--path", f"{tmp}/db", "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(4)
            proxy = CloudProxy(f"http://127.0.0.1:{port}", faults=0.0)
            counts: collections.Counter[str] = collections.Counter()
            check = proxy.violation

            def counting(body: dict, path: str, method: str) -> str | None:
                counts[f"{method} {path.split('?')[0].rsplit('/', 1)[-1]}"] += 1
                return check(body, path, method)

            proxy.violation = counting  # type: ignore[method-assign]
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            kb = KnowledgeBase(
                chroma_url=proxy.url, chroma_headers={"X-Cloud-Check": "1"}, chroma_max_batch=300
            )
            kb.ingest_text("octopus", "Octopuses are intelligent animals with eight arms.")
            kb.ingest_text("llama", "Llamas live in the Andes and carry loads.")
            kb.retrieve("octopus arms", k=2)
            print("mode    requests/search  (by kind)   [before the cache: hybrid 9, dense 7]")
            for mode in ("hybrid", "dense", "bm25"):
                counts.clear()
                for _ in range(args.searches):
                    kb.retrieve("octopus arms", k=2, mode=mode)
                total = sum(counts.values()) / args.searches
                kinds = ", ".join(f"{k} {v / args.searches:g}" for k, v in counts.most_common())
                print(f"{mode:<7} {total:>15g}  ({kinds})")
            proxy.shutdown()
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
