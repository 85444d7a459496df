"""Rebuilding the chunk collection: to repair its vector index, or to re-embed
every chunk with another model.

Either way the new collection is filled beside the old one, and the store
switches to it in one manifest write: a process killed part-way leaves the old
collection in use (the half-built one is deleted by the next rebuild).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .errors import StoreError

if TYPE_CHECKING:
    from .embeddings import Embedder
    from .store import Session, Store

Progress = Callable[[int, int], None]
PAGE = 1000


def _next_name(current: str, taken: set[str]) -> str:
    base = re.sub(r"-\d+$", "", current)
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _read_page(session: Session, offset: int, with_embeddings: bool) -> Any:
    include: list[str] = ["documents", "metadatas"]
    if with_embeddings:
        include.append("embeddings")
    return session.collection.get(limit=PAGE, offset=offset, include=cast(Any, include))


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
        taken = {c.name for c in session.client.list_collections()}
        new_name = _next_name(old_name, taken)
        manifest_model = dict(session.manifest["embed_model"])
        target = dict(identity or manifest_model)
        # A collection left by an earlier, interrupted rebuild.
        for name in taken:
            if name.startswith(re.sub(r"-\d+$", "", old_name)) and name != old_name:
                session.client.delete_collection(name)
        new = store._create_chunk_collection(
            session.client, new_name, {**session.manifest, "embed_model": target}
        )
        total = session.collection.count()
        start_generation = int(session.manifest.get("generation", 0))
        del new
    copy_embeddings = embedder is None
    encoder = embedder or get_embedder(
        manifest_model["name"], store.settings.device, manifest_model.get("backend", "torch")
    )
    done = 0
    offset = 0
    while True:
        with store.session() as session:
            try:
                page = _read_page(session, offset, copy_embeddings)
            except Exception:
                if not copy_embeddings:
                    raise
                # The stored vectors cannot be read: fall back to the text.
                copy_embeddings = False
                page = _read_page(session, offset, False)
        ids = page["ids"]
        if not ids:
            break
        if copy_embeddings and page.get("embeddings") is not None:
            vectors = [list(map(float, v)) for v in page["embeddings"]]
        else:
            vectors = [list(map(float, v)) for v in encoder.encode(page["documents"])]
        with store.session() as session:
            target_coll = session.client.get_collection(new_name)
            target_coll.upsert(
                ids=ids,
                documents=page["documents"],
                metadatas=page["metadatas"],
                embeddings=cast(Any, vectors),
            )
        done += len(ids)
        offset += len(ids)
        if progress:
            progress(done, total)
    with store.session() as session:
        _ = session.keywords  # same chunk ids after the switch: keep it in step
        if int(session.manifest.get("generation", 0)) != start_generation:
            _catch_up(session, new_name, encoder if not copy_embeddings or embedder else None)
        target_coll = session.client.get_collection(new_name)
        count = target_coll.count()
        if count != session.collection.count():
            raise StoreError(
                f"rebuild copied {count} chunks of {session.collection.count()}; "
                "the store was left as it was"
            )
        session.manifest["collection"] = new_name
        session.manifest["embed_model"] = target
        store._save_manifest(session.client, session.manifest)
        session.client.delete_collection(old_name)
        session._collection = None
        session.mark_written()
    return new_name, count


def _catch_up(session: Session, new_name: str, encoder: Embedder | None) -> None:
    """Writes that landed in the old collection while the copy ran (ids are the
    same in both: they depend on the source and its content, not the model)."""
    old_ids = set(session.collection.get(include=[])["ids"])
    new_coll = session.client.get_collection(new_name)
    new_ids = set(new_coll.get(include=[])["ids"])
    extra = sorted(new_ids - old_ids)
    if extra:
        new_coll.delete(ids=extra)
    missing = sorted(old_ids - new_ids)
    for i in range(0, len(missing), PAGE):
        part = missing[i : i + PAGE]
        include: list[str] = ["documents", "metadatas"]
        if encoder is None:
            include.append("embeddings")
        got: Any = session.collection.get(ids=part, include=cast(Any, include))
        vectors = got["embeddings"] if encoder is None else encoder.encode(got["documents"])
        new_coll.upsert(
            ids=got["ids"],
            documents=got["documents"],
            metadatas=got["metadatas"],
            embeddings=cast(Any, [list(map(float, v)) for v in vectors]),
        )
