"""Rebuilding the chunk collection: to repair its vector index, or to re-embed
every chunk with another model.

Either way the new collection is filled beside the old one, and the store
switches to it in one manifest write: a process killed part-way leaves the old
collection in use (the half-built one is deleted by the next rebuild).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragdb.errors import StoreError

if TYPE_CHECKING:
    from ragdb.config import Settings
    from ragdb.embed.base import Embedder
    from ragdb.reports import ReembedReport
    from ragdb.store.records import ChunkRecord
    from ragdb.store.session import Session
    from ragdb.store.store import Store

Progress = Callable[[int, int], None]
PAGE = 1000


def _next_name(current: str, taken: set[str]) -> str:
    base = re.sub(r"-\d+$", "", current)
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _read_page(
    session: Session, offset: int, with_embeddings: bool
) -> list[tuple[ChunkRecord, Any]]:
    pages = session.pages(embeddings=with_embeddings, offset=offset)
    return next(pages, [])


def rebuild(
    store: Store,
    embedder: Embedder | None,
    identity: dict[str, Any] | None = None,
    progress: Progress | None = None,
    kbs: list[str] | None = None,
) -> tuple[str, int]:
    """Copy every chunk of knowledge bases ``kbs`` (all of them when None) into
    new collections and switch to them, all in one manifest write.

    With ``embedder`` None the stored embeddings are copied (repairing the
    index); when they cannot be read, at the start or part-way (a torn vector
    file), the chunks are re-embedded from their text with the store's own
    model. With an ``embedder`` every chunk is embedded anew and the store's
    model becomes ``identity`` (which every knowledge base must follow). A
    rebuild that fails leaves no new collection behind. Returns the first new
    collection's name and how many chunks they hold in all.
    """
    with store.session() as session:
        names = kbs or session.kb_names()
        model = dict(session.manifest["embed_model"])
    target = dict(identity or model)
    built: dict[str, str] = {}
    filled: dict[str, _Filled] = {}
    total = 0
    try:
        for kb in names:
            new_name, salvaged, start = _prepare(store, kb, target)
            built[kb] = new_name
            filled[kb] = _fill(store, kb, new_name, model, embedder, salvaged, start, progress)
        with store.session() as session:
            # Writes made while the others were copied: caught up with in the
            # session that switches, so none lands in an old collection alone.
            for kb, done in filled.items():
                total += _settle(store, kb, built[kb], embedder, done)
            session.switch_collections(built, target)
            for kb, done in filled.items():
                if done.salvaged is not None or done.switched:
                    with session.use(kb):
                        session.rebuild_keywords()
    except BaseException:
        with contextlib.suppress(Exception), store.session() as session:
            for name in built.values():
                session.drop_collection(name)
        raise
    return built[names[0]], total


def _prepare(
    store: Store, kb: str, target: dict[str, Any]
) -> tuple[str, list[ChunkRecord] | None, int]:
    """Knowledge base ``kb``'s new, empty collection (a leftover of an earlier,
    interrupted rebuild dropped first); its chunks' text if the vector index does
    not read; the store's generation now."""
    with store.session(kb=kb) as session:
        old_name = session.collection_name
        taken = set(session.collection_names())
        new_name = _next_name(old_name, taken)
        for name in taken:
            if name.startswith(re.sub(r"-\d+$", "", old_name)) and name != old_name:
                session.drop_collection(name)
        salvaged = _salvage_if_unreadable(session)
        session.create_collection(new_name, target)
        return new_name, salvaged, int(session.manifest.get("generation", 0))


def _salvage_if_unreadable(session: Session) -> list[ChunkRecord] | None:
    """None when Chroma reads the chunks; else their text from its database
    (the vector index does not load, and Chroma refuses every read)."""
    try:
        session.count()
    except StoreError:
        return session.salvage()
    unreadable: list[str] = []
    session.fetch_records(text=False, unreadable=unreadable)
    if unreadable:
        raise StoreError(
            f"{len(unreadable)} chunk(s) lack ragdb's source records: "
            "`ragdb doctor --repair` removes them first"
        )
    return None


@dataclasses.dataclass
class _Filled:
    """A new collection filled: what its settling needs to know."""

    encoder: Embedder
    salvaged: list[ChunkRecord] | None
    total: int
    start: int
    switched: bool  # salvaged part-way: the keyword index is to be rebuilt


def _fill(
    store: Store,
    kb: str,
    new_name: str,
    model: dict[str, Any],
    embedder: Embedder | None,
    salvaged: list[ChunkRecord] | None,
    start: int,
    progress: Progress | None,
) -> _Filled:
    """Fill collection ``new_name`` with knowledge base ``kb``'s chunks."""
    from ragdb.embed import get_embedder

    encoder = embedder or get_embedder(
        model["name"], store.settings.device, model.get("backend", "torch")
    )
    with store.session(kb=kb) as session:
        total = len(salvaged) if salvaged is not None else session.count()
    offset = 0
    switched = False
    while True:
        copy = embedder is None and salvaged is None
        try:
            page = _page(store, kb, salvaged, offset, copy)
        except StoreError:
            if salvaged is not None or embedder is not None:
                raise
            # Vectors that do not read (a torn vector file): from the text, then.
            with store.session(kb=kb) as session:
                salvaged = session.salvage()
            total, offset, switched = len(salvaged), 0, True
            continue
        if not page:
            break
        records = [record for record, _ in page]
        if copy and all(v is not None for _, v in page):
            vectors = [v for _, v in page]
        else:
            vectors = list(encoder.encode([r.text for r in records]))
        with store.session(kb=kb) as session:
            session.add_to(new_name, records, vectors)
        offset += len(page)
        if progress:
            progress(offset, total)
    return _Filled(encoder, salvaged, total, start, switched)


def _page(
    store: Store, kb: str, salvaged: list[ChunkRecord] | None, offset: int, copy: bool
) -> list[tuple[ChunkRecord, Any]]:
    if salvaged is not None:
        return [(r, None) for r in salvaged[offset : offset + PAGE]]
    with store.session(kb=kb) as session:
        return _read_page(session, offset, copy)


def _settle(store: Store, kb: str, new_name: str, embedder: Embedder | None, done: _Filled) -> int:
    """Catch up with writes made meanwhile, and check the count."""
    with store.session(kb=kb) as session:
        if done.salvaged is None:
            _ = session.keywords  # same chunk ids after the switch: keep it in step
        # A server's generation is its write log's: compared there, it always moved.
        moved = store.server or int(session.manifest.get("generation", 0)) != done.start
        if moved and done.salvaged is None:
            _catch_up(session, new_name, done.encoder if embedder else None)
        count = len(session.ids_of(new_name))
        expected = done.total if done.salvaged is not None else session.count()
        if count != expected:
            raise StoreError(
                f"rebuild copied {count} chunks of {expected}; the store was left as it was"
            )
    return count


def _catch_up(session: Session, new_name: str, encoder: Embedder | None) -> None:
    """Writes that landed in the old collection while the copy ran (ids are the
    same in both: they depend on the source and its content, not the model)."""
    old_ids = session.ids()
    new_ids = session.ids_of(new_name)
    session.delete_from(new_name, sorted(new_ids - old_ids))
    missing = sorted(old_ids - new_ids)
    for i in range(0, len(missing), PAGE):
        found = session.fetch_embeddings(ids=missing[i : i + PAGE])
        records = [record for record, _ in found]
        if encoder is None:
            vectors = [vector for _, vector in found]
        else:
            vectors = list(encoder.encode([r.text for r in records]))
        session.add_to(new_name, records, vectors)


def reembed(
    store: Store,
    settings: Settings,
    model: str | None,
    backend: str | None,
    progress: Callable[[int, int], None] | None = None,
) -> ReembedReport:
    """Re-embed every chunk of ``store`` with ``model`` and/or ``backend``
    (either one defaults to the store's) into a new collection, then switch."""
    from ragdb.embed import default_backend, get_embedder
    from ragdb.embed.identity import check_backend, same_model
    from ragdb.errors import UsageError
    from ragdb.reports import ReembedReport

    if model is None and backend is None:
        raise UsageError("give the model or the backend to re-embed with")
    old = store.identity
    target_model = model or old.name
    target_backend = (
        check_backend(backend) if backend else default_backend(target_model, settings.device)
    )
    if same_model(target_model, old.name) and target_backend == old.backend:
        raise UsageError(f"the store already uses {old.name!r} with the {old.backend} backend")
    identity = (embedder := get_embedder(target_model, settings.device, target_backend)).identity
    name, count = rebuild(store, embedder, identity.to_dict(), progress=progress)
    return ReembedReport(
        store.location, old.name, identity.name, old.backend, identity.backend, name, count
    )
