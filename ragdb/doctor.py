"""Checking a store, and repairing what can be repaired."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast

from .store import MANIFEST_COLLECTION

if TYPE_CHECKING:
    from .store import Session, Store

REQUIRED = ("source", "chunk_index", "n_chunks", "source_hash")


@dataclasses.dataclass
class Finding:
    problem: str  # a short key, e.g. "incomplete-source"
    detail: str
    repairable: bool = True


@dataclasses.dataclass
class Report:
    store: str
    chunks: int = 0
    sources: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "healthy": self.healthy,
            "chunks": self.chunks,
            "sources": self.sources,
            "problems": [dataclasses.asdict(f) for f in self.findings],
            "repaired": self.repaired,
        }


def check(store: Store) -> Report:
    report = Report(store.location)
    with store.session() as session:
        _check_model(session, report)
        _check_collections(session, report)
        _check_chunks(session, report)
        _check_index(session, report)
        _check_keywords(session, report)
    return report


def _check_keywords(session: Session, report: Report) -> None:
    chroma_ids = set(session.collection.get(include=[])["ids"])
    keyword_ids = session.keywords.ids()
    if chroma_ids != keyword_ids:
        report.findings.append(
            Finding(
                "keyword-index-differs",
                f"the keyword index holds {len(keyword_ids - chroma_ids)} chunk(s) the "
                f"collection lacks and lacks {len(chroma_ids - keyword_ids)}",
            )
        )


def _check_model(session: Session, report: Report) -> None:
    recorded = session.manifest["embed_model"]["name"]
    try:
        config = session.collection.configuration_json.get("embedding_function") or {}
    except Exception:  # an older chromadb without configuration_json
        return
    named = (config.get("config") or {}).get("model_name")
    if named and named != recorded:
        report.findings.append(
            Finding(
                "model-mismatch",
                f"the manifest names model {recorded!r} but the collection {named!r}",
                repairable=False,
            )
        )


def _orphans(session: Session) -> list[str]:
    """Chunk collections other than the active one: left by an interrupted
    rebuild or re-embed."""
    active = session.manifest["collection"]
    base = active.rsplit("-", 1)[0] if active[-1].isdigit() else active
    return [
        c.name
        for c in session.client.list_collections()
        if c.name not in (active, MANIFEST_COLLECTION) and c.name.startswith(base)
    ]


def _check_collections(session: Session, report: Report) -> None:
    for name in _orphans(session):
        report.findings.append(
            Finding(
                "orphan-collection",
                f"collection {name!r} is left from an interrupted rebuild or re-embed",
            )
        )


def _check_chunks(session: Session, report: Report) -> None:
    got: Any = session.collection.get(include=["metadatas"])
    report.chunks = len(got["ids"])
    versions: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    orphans = 0
    for meta in got["metadatas"] or []:
        meta = meta or {}
        if any(key not in meta for key in REQUIRED):
            orphans += 1
            continue
        versions[str(meta["source"])][str(meta["source_hash"])].append(meta)
    report.sources = len(versions)
    if orphans:
        report.findings.append(
            Finding("chunks-without-source", f"{orphans} chunk(s) lack ragdb's source records")
        )
    for source, by_hash in sorted(versions.items()):
        if len(by_hash) > 1:
            report.findings.append(
                Finding("mixed-versions", f"{source}: chunks of {len(by_hash)} versions")
            )
            continue
        (metas,) = by_hash.values()
        n = int(metas[0]["n_chunks"])
        indices = [int(m["chunk_index"]) for m in metas]
        if len(indices) != len(set(indices)):
            report.findings.append(Finding("duplicate-chunks", f"{source}: duplicated chunks"))
        elif sorted(indices) != list(range(n)):
            report.findings.append(
                Finding("incomplete-source", f"{source}: {len(indices)} of {n} chunks")
            )


def _check_index(session: Session, report: Report) -> None:
    if report.chunks == 0:
        return
    try:
        sample: Any = session.collection.get(limit=1, include=cast(Any, ["embeddings"]))
        dim = len(sample["embeddings"][0])
        expected = int(session.manifest["embed_model"]["dimension"])
        if dim != expected:
            report.findings.append(
                Finding(
                    "wrong-dimension",
                    f"vectors have {dim} dimensions, not {expected}",
                    repairable=False,
                )
            )
            return
        session.collection.query(
            query_embeddings=cast(Any, [list(map(float, sample["embeddings"][0]))]),
            n_results=min(10, report.chunks),
        )
    except Exception as exc:
        report.findings.append(
            Finding("index-unloadable", f"the vector index fails to load or search: {exc}")
        )


def repair(store: Store) -> Report:
    """Fix what :func:`check` finds: settle every source to one whole version,
    drop chunks without records and orphan collections, and rebuild the vector
    index when it fails to load. Returns the check after repair."""
    from .rebuild import rebuild
    from .sources import settle_sources

    before = check(store)
    problems = {f.problem for f in before.findings}
    repaired: list[str] = []
    with store.session() as session:
        if "orphan-collection" in problems:
            for name in _orphans(session):
                session.client.delete_collection(name)
                repaired.append(f"deleted orphan collection {name}")
        if problems & {"chunks-without-source"}:
            got: Any = session.collection.get(include=["metadatas"])
            bad = [
                cid
                for cid, m in zip(got["ids"], got["metadatas"], strict=True)
                if any(k not in (m or {}) for k in REQUIRED)
            ]
            if bad:
                session.collection.delete(ids=bad)
                session.mark_written()
                repaired.append(f"deleted {len(bad)} chunk(s) without source records")
        if problems & {"mixed-versions", "incomplete-source", "duplicate-chunks"}:
            fixed = settle_sources(session, None)
            if fixed:
                session.mark_written()
                repaired.append(
                    f"settled {len(fixed)} source(s), deleting {sum(fixed.values())} chunk(s)"
                )
    if "keyword-index-differs" in problems:
        with store.session() as session:
            session.keywords.rebuild(session.collection)
            session.mark_written()
        repaired.append("rebuilt the keyword index")
    if "index-unloadable" in problems:
        name, count = rebuild(store, None)
        repaired.append(f"rebuilt the vector index as {name} ({count} chunks)")
    after = check(store)
    after.repaired = repaired
    return after
