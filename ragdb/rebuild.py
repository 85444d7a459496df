"""Rebuilding the chunk collection: to repair its vector index, or to re-embed
every chunk with another model.

Either way the new collection is filled beside the old one, and the store
switches to it in one manifest write: a process killed part-way leaves the old
collection in use (the half-built one is deleted by the next rebuild).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import StoreError

if TYPE_CHECKING:
    from .chunks import ChunkRecord
    from .embeddings import Embedder
    from .session import Session
    from .store import Store

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
    pages = session.pages(embeddings=with_embeddings, size=PAGE, offset=offset)
    return next(pages, [])


def rebuild(
    store: Store,
    embedder: Embedder | None,
    identity: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[str, int]:
    """Copy every chunk into a new collection and switch to it.

    With ``embedder`` None the stored embeddings are copied (repairing the
    index); when they cannot be read the chunks are re-embedded from their text
    with the store's own model. With an ``embedder`` every chunk is embedded
    anew and the store's model becomes ``identity``. Returns the new
    collection's name and how many chunks it holds.
    """
    from .embeddings import get_embedder

    with store.session() as session:
        old_name = session.manifest["collection"]
        taken = set(session.collection_names())
        new_name = _next_name(old_name, taken)
        manifest_model = dict(session.manifest["embed_model"])
        target = dict(identity or manifest_model)
        # A collection left by an earlier, interrupted rebuild.
        for name in taken:
            if name.startswith(re.sub(r"-\d+$", "", old_name)) and name != old_name:
                session.drop_collection(name)
        salvaged: list[ChunkRecord] | None = None
        try:
            total = session.count()
        except StoreError:
            # The vector index does not load, and Chroma refuses every read:
            # take the chunks' text from its database and embed them again.
            salvaged = session.salvage()
            total = len(salvaged)
        if salvaged is None:
            unreadable: list[str] = []
            session.fetch_records(text=False, unreadable=unreadable)
            if unreadable:
                raise StoreError(
                    f"{len(unreadable)} chunk(s) lack ragdb's source records: "
                    "`ragdb doctor --repair` removes them first"
                )
        session.create_collection(new_name, target)
        start_generation = int(session.manifest.get("generation", 0))
    copy_embeddings = embedder is None and salvaged is None
    encoder = embedder or get_embedder(
        manifest_model["name"], store.settings.device, manifest_model.get("backend", "torch")
    )
    done = 0
    offset = 0
    while True:
        if salvaged is not None:
            page = [(r, None) for r in salvaged[offset : offset + PAGE]]
        else:
            with store.session() as session:
                page = _read_page(session, offset, copy_embeddings)
        if not page:
            break
        records = [record for record, _ in page]
        if copy_embeddings and all(v is not None for _, v in page):
            vectors = [v for _, v in page]
        else:
            vectors = list(encoder.encode([r.text for r in records]))
        with store.session() as session:
            session.add_to(new_name, records, vectors)
        done += len(page)
        offset += len(page)
        if progress:
            progress(done, total)
    with store.session() as session:
        if salvaged is None:
            _ = session.keywords  # same chunk ids after the switch: keep it in step
        moved = int(session.manifest.get("generation", 0)) != start_generation
        if moved and salvaged is None:
            _catch_up(session, new_name, encoder if not copy_embeddings or embedder else None)
        count = len(session.ids_of(new_name))
        expected = total if salvaged is not None else session.count()
        if count != expected:
            raise StoreError(
                f"rebuild copied {count} chunks of {expected}; the store was left as it was"
            )
        session.switch_collection(new_name, target)
        if salvaged is not None:
            session.rebuild_keywords()
    return new_name, count


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
