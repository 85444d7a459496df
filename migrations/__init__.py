"""ragdb's store-format migrations, named and applied in order.

Each migration is a function of a :class:`ragdb.store.MigrationContext`. It must
be safe to run again after a crash part-way through (the store records a
migration only once it has finished). The store's format version is the number
of migrations it has applied; a store that records a migration this ragdb does
not know was written by a newer ragdb and is refused.

This folder ships inside the installed package as ``ragdb.migrations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragdb.store import MigrationContext

Migration = Callable[["MigrationContext"], None]

MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_chunks_collection(ctx: MigrationContext) -> None:
    """Create the cosine-space chunk collection and record its name.

    Its HNSW settings are those of format 1, frozen here: later formats change
    them in migrations of their own.
    """
    name = ctx.manifest.get("collection") or "ragdb-chunks"
    ctx.create_chunk_collection(
        name, hnsw={"space": "cosine", "ef_construction": 200, "max_neighbors": 32}
    )
    ctx.manifest["collection"] = name


@migration
def m002_hnsw_search_breadth(ctx: MigrationContext) -> None:
    """Widen HNSW's ef_search so that top-k matches exact search.

    With Chroma's default of 100, about 4% of SciFact queries get another top
    10 than exact cosine search; the store's value comes from
    ``ragdb.store.HNSW_SETTINGS``.
    """
    ctx.tune_hnsw_search(ctx.manifest["collection"])


@migration
def m003_record_embed_backend(ctx: MigrationContext) -> None:
    """Record which backend embedded the store's chunks.

    Stores made before ONNX backends existed were embedded by torch (the value
    frozen here). Recording it also makes older ragdb versions, which would
    embed queries with torch whatever the store holds, refuse the store.
    """
    ctx.manifest["embed_model"].setdefault("backend", "torch")
