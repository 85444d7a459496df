"""Checking a store, and repairing what can be repaired."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragdb.config import DEFAULT_KB
from ragdb.errors import StoreError
from ragdb.store.manifest import kb_entries
from ragdb.store.records import version_problem, versions
from ragdb.store.versions import remove_ids, settle_sources

# A knowledge base's collection (see Session.create_kb): one a creation killed
# part-way left is an orphan.
_KB_COLLECTION = re.compile(r"kb-[0-9a-f]{12}-chunks(-\d+)?")

if TYPE_CHECKING:
    from ragdb.config import Settings
    from ragdb.store.session import Session
    from ragdb.store.store import Store


@dataclasses.dataclass
class Finding:
    """One problem doctor found."""

    problem: str  # a short key, e.g. "incomplete-source"
    detail: str
    repairable: bool = True
    kb: str = DEFAULT_KB  # the knowledge base it was found in


@dataclasses.dataclass
class DoctorReport:
    """What doctor found (and, after a repair, what it did)."""

    store: str
    # None: not known (the manifest or the vector index does not read), which
    # is not the same as none stored.
    chunks: int | None = None
    sources: int | None = None
    findings: list[Finding] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)
    # Per knowledge base: its chunks and sources (None where not known).
    knowledge_bases: dict[str, dict[str, int | None]] = dataclasses.field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """What ``ragdb doctor --json`` prints."""
        return {
            "store": self.store,
            "healthy": self.healthy,
            "chunks": self.chunks,
            "sources": self.sources,
            "problems": [dataclasses.asdict(f) for f in self.findings],
            "repaired": self.repaired,
            "knowledge_bases": self.knowledge_bases,
        }

    def problems_in(self, kb: str) -> set[str]:
        """The kinds of problem found in knowledge base ``kb``."""
        return {f.problem for f in self.findings if f.kb == kb}


def check(store: Store) -> DoctorReport:
    """Check the store (model, collections) and each of its knowledge bases
    (chunks, vector index, keyword index)."""
    report = DoctorReport(store.location)
    with store.session() as session:
        _check_collections(session, report)
        for kb in session.kb_names():
            with session.use(kb):
                _check_kb(session, report)
    totals = [n for n in report.knowledge_bases.values()]
    for key in ("chunks", "sources"):
        known = [t[key] for t in totals]
        setattr(report, key, None if None in known else sum(k or 0 for k in known))
    return report


def _check_kb(session: Session, report: DoctorReport) -> None:
    """Check the knowledge base ``session`` addresses."""
    part = DoctorReport(report.store)
    _check_model(session, part)
    try:
        _check_chunks(session, part)
    except StoreError as exc:
        # A vector index that does not load makes Chroma refuse every read.
        part.findings.append(Finding("index-unloadable", f"the vector index fails to load: {exc}"))
    else:
        _check_index(session, part)
        _check_keywords(session, part)
    report.knowledge_bases[session.kb] = {"chunks": part.chunks, "sources": part.sources}
    for finding in part.findings:
        if session.kb != DEFAULT_KB:
            finding.detail = f"knowledge base {session.kb}: {finding.detail}"
        finding.kb = session.kb
        report.findings.append(finding)


def _check_keywords(session: Session, report: DoctorReport) -> None:
    chroma_ids = session.ids()
    keyword_ids = session.keywords.ids()
    if chroma_ids != keyword_ids:
        report.findings.append(
            Finding(
                "keyword-index-differs",
                f"the keyword index holds {len(keyword_ids - chroma_ids)} chunk(s) the "
                f"collection lacks and lacks {len(chroma_ids - keyword_ids)}",
            )
        )


def _check_model(session: Session, report: DoctorReport) -> None:
    recorded = session.manifest["embed_model"]["name"]
    named = session.recorded_model()
    if named and named != recorded:
        report.findings.append(
            Finding(
                "model-mismatch",
                f"the manifest names model {recorded!r} but the collection {named!r}",
                repairable=False,
            )
        )


def _orphans(session: Session) -> list[str]:
    """Chunk collections no knowledge base uses: left by an interrupted
    rebuild, re-embed or knowledge base creation."""
    active = {e["collection"] for e in kb_entries(session.manifest).values()}
    bases = {a.rsplit("-", 1)[0] if a[-1].isdigit() else a for a in active}
    reserved = session.backend.reserved_collections()
    return [
        name
        for name in session.collection_names()
        if name not in active
        and name not in reserved
        and (any(name.startswith(b) for b in bases) or _KB_COLLECTION.fullmatch(name))
    ]


def _check_collections(session: Session, report: DoctorReport) -> None:
    for name in _orphans(session):
        report.findings.append(
            Finding(
                "orphan-collection",
                f"collection {name!r} is left from an interrupted rebuild or re-embed",
            )
        )


def _check_chunks(session: Session, report: DoctorReport) -> None:
    unreadable: list[str] = []
    records = session.fetch_records(text=False, unreadable=unreadable)
    report.chunks = len(records) + len(unreadable)
    by_source = versions(records)
    report.sources = len(by_source)
    if unreadable:
        report.findings.append(
            Finding(
                "chunks-without-source",
                f"{len(unreadable)} chunk(s) lack ragdb's source records",
            )
        )
    for source, by_hash in sorted(by_source.items()):
        if len(by_hash) > 1:
            report.findings.append(
                Finding("mixed-versions", f"{source}: chunks of {len(by_hash)} versions")
            )
            continue
        (version,) = by_hash.values()
        problem = version_problem(version)
        if problem == "duplicate-chunks":
            report.findings.append(Finding(problem, f"{source}: duplicated chunks"))
        elif problem == "incomplete-source":
            report.findings.append(
                Finding(problem, f"{source}: {len(version)} of {version[0].n_chunks} chunks")
            )


def _check_index(session: Session, report: DoctorReport) -> None:
    if not report.chunks:
        return
    try:
        sample = session.sample_vector()
        if sample is None:
            return
        expected = int(session.manifest["embed_model"]["dimension"])
        if len(sample) != expected:
            report.findings.append(
                Finding(
                    "wrong-dimension",
                    f"vectors have {len(sample)} dimensions, not {expected}",
                    repairable=False,
                )
            )
            return
        session.nearest_many([sample], min(10, report.chunks or 1))
    except StoreError as exc:
        report.findings.append(
            Finding("index-unloadable", f"the vector index fails to load or search: {exc}")
        )


def repair(store: Store, progress: Callable[[int, int], None] | None = None) -> DoctorReport:
    """Fix what :func:`check` finds: settle every source to one whole version,
    drop chunks without records and orphan collections, and rebuild the vector
    index when it fails to load. Returns the check after repair."""
    before = check(store)
    repaired: list[str] = []
    with store.session() as session:
        if "orphan-collection" in before.problems_in(DEFAULT_KB):
            for name in _orphans(session):
                session.drop_collection(name)
                repaired.append(f"deleted orphan collection {name}")
    for kb in before.knowledge_bases:
        repaired += _repair_kb(store, kb, before.problems_in(kb), progress)
    after = check(store)
    after.repaired = repaired
    return after


def _repair_kb(
    store: Store, kb: str, problems: set[str], progress: Callable[[int, int], None] | None
) -> list[str]:
    """Fix what was found in knowledge base ``kb``; what was done, in words."""
    from ragdb.store.rebuild import rebuild

    repaired: list[str] = []
    where = "" if kb == DEFAULT_KB else f" in knowledge base {kb}"
    with store.session(kb=kb) as session:
        if "chunks-without-source" in problems:
            bad: list[str] = []
            session.fetch_records(text=False, unreadable=bad)
            if remove_ids(session, bad):
                repaired.append(f"deleted {len(bad)} chunk(s) without source records{where}")
        if problems & {"mixed-versions", "incomplete-source", "duplicate-chunks"}:
            fixed = settle_sources(session, None)
            if fixed:
                session.mark_written()
                repaired.append(
                    f"settled {len(fixed)} source(s), deleting {sum(fixed.values())} "
                    f"chunk(s){where}"
                )
        if "keyword-index-differs" in problems:
            session.rebuild_keywords()
            repaired.append(f"rebuilt the keyword index{where}")
    if "index-unloadable" in problems:
        name, count = rebuild(store, None, progress=progress, kbs=[kb])
        repaired.append(f"rebuilt the vector index{where} as {name} ({count} chunks)")
    return repaired


def doctor(
    settings: Settings,
    open_store: Callable[[], Store],
    repair_it: bool = False,
    confirm: Callable[[str], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DoctorReport:
    """Check the store ``open_store`` opens (with ``repair_it``, fix what can be
    fixed). A missing or unreadable manifest is a finding; repairing it rebuilds
    the manifest from its backup copy or from Chroma, once ``confirm`` (given
    what it is rebuilt from, in words) agrees."""
    from ragdb.errors import InputError, ManifestError
    from ragdb.store.store import Store

    try:
        store = open_store()
    except ManifestError as exc:
        broken = Store(settings)
        if not repair_it:
            # The store's location as every report gives it (a server's URL too).
            return DoctorReport(broken.location, findings=[Finding("manifest", str(exc))])
        plan = broken.plan_manifest_repair()
        if confirm is not None and not confirm(plan.source):
            raise InputError("the manifest was not rebuilt: nothing changed") from None
        broken.apply_manifest_repair(plan)
        report = repair(open_store(), progress)
        report.repaired.insert(0, f"rebuilt the manifest from {plan.source}")
        return report
    return repair(store, progress) if repair_it else check(store)
