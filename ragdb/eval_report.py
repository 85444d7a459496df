"""``ragdb eval --report FILE.html``: an evaluation as one self-contained HTML
page (the chart library inlined, nothing fetched): the metrics of each mode
side by side, a chart of nDCG and recall per mode, and per query which
relevant documents were missed and where they ranked. The last report made
for a store is kept in the user's cache, where ``ragdb serve`` shows it at
``/eval``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def render_report(results: dict[str, dict[str, Any]], k: int, title: str) -> str:
    """The report of ``results`` (one :func:`ragdb.evaluate.evaluate` result per
    mode, ``per_query`` included) as an HTML page."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, keep_trailing_newline=True
    )
    modes = list(results)
    first = results[modes[0]]
    metrics = [m for m in first if "@" in m or m.startswith("latency")]
    chart = {
        "labels": modes,
        "ndcg": [results[m][f"ndcg@{k}"] for m in modes],
        "recall": [results[m][f"recall@{k}"] for m in modes],
    }
    return env.get_template("eval_report.html").render(
        title=title,
        k=k,
        modes=modes,
        metrics=metrics,
        results=results,
        queries=_queries(results, k),
        chart=chart,
        chart_js=(ASSETS / "vendor" / "chart.umd.min.js").read_text(encoding="utf-8"),
    )


def _queries(results: dict[str, dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Per query, worst first by the first mode's nDCG: its question, and per
    mode its nDCG and where each relevant document ranked."""
    modes = list(results)
    first = results[modes[0]]["per_query"]
    out = []
    for qid in sorted(first, key=lambda q: (first[q][f"ndcg@{k}"], q)):
        docs = [r["doc"] for r in first[qid]["relevant"]]
        out.append(
            {
                "id": qid,
                "question": first[qid]["question"],
                "ndcg": {m: results[m]["per_query"][qid][f"ndcg@{k}"] for m in modes},
                "ranks": {
                    doc: {m: _rank(results[m]["per_query"][qid]["relevant"], doc) for m in modes}
                    for doc in docs
                },
            }
        )
    return out


def _rank(relevant: list[dict[str, Any]], doc: str) -> int | None:
    return next((r["rank"] for r in relevant if r["doc"] == doc), None)


def last_report_path(store: str) -> Path:
    """Where the last report made for ``store`` (its location) is kept."""
    from platformdirs import user_cache_path

    digest = hashlib.sha256(store.encode()).hexdigest()[:20]
    return user_cache_path("ragdb", appauthor=False) / "eval" / f"{digest}.html"


def write_report(html: str, path: Path, store: str) -> None:
    """Write the report to ``path``, and keep it as ``store``'s last."""
    path.write_text(html, encoding="utf-8")
    last = last_report_path(store)
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_text(html, encoding="utf-8")
