"""ragdb's store-format migrations: named, ordered, recorded functions.

As in sqlite-utils' ``Migrations``: each migration is registered under its
function's name (a duplicate name is refused), a store records the names it
has applied, :meth:`Migrations.pending` lists the rest, and
:meth:`Migrations.apply` runs them in order, optionally only up to a given one.
The store's format version is the number of migrations it has applied; a store
that records a migration this ragdb does not know was written by a newer ragdb
and is refused.

Each migration is a function of a :class:`MigrationContext`. It must be safe to
run again after a crash part-way through (the store records a migration only
once it has finished), and it freezes the values it writes: a later change of
ragdb's defaults is a migration of its own, never an edit of an old one.

This folder ships inside the installed package as ``ragdb.migrations``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

Migration = Callable[["MigrationContext"], None]


@dataclasses.dataclass
class MigrationContext:
    """What a migration may touch: the manifest (a dict, saved once the
    migration finishes) and the store's Chroma client."""

    client: ClientAPI
    manifest: dict[str, Any]

    def create_chunk_collection(self, name: str, hnsw: dict[str, Any]) -> None:
        """Make the chunk collection ``name`` (if missing) with these HNSW settings."""
        from ragdb.store.session import create_chunk_collection

        create_chunk_collection(self.client, name, self.manifest["embed_model"], hnsw)

    def set_hnsw_search(self, name: str, ef_search: int) -> None:
        """Change the search breadth of collection ``name``'s HNSW index (a
        SPANN index, on Chroma's distributed deployment or Cloud, has none)."""
        coll = self.client.get_collection(name)
        if (coll.configuration_json or {}).get("spann"):
            return
        coll.modify(configuration={"hnsw": {"ef_search": ef_search}})


class Migrations:
    """An ordered registry of migrations, and the runner that applies them."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Migration]] = []

    def __call__(self, fn: Migration) -> Migration:
        """Register ``fn`` (as a decorator) under its name."""
        if fn.__name__ in self.names():
            raise ValueError(f"a migration named {fn.__name__!r} is already registered")
        self._steps.append((fn.__name__, fn))
        return fn

    def names(self) -> list[str]:
        """Every migration's name, in order."""
        return [name for name, _ in self._steps]

    def applied(self, manifest: dict[str, Any]) -> list[str]:
        """The migrations ``manifest`` records, in the order they ran."""
        return list(manifest.get("migrations", []))

    def pending(self, manifest: dict[str, Any], upto: str | None = None) -> list[str]:
        """The migrations ``manifest`` lacks, in order (through ``upto`` only)."""
        names = self.names()
        if upto is not None:
            if upto not in names:
                raise ValueError(f"no migration named {upto!r}")
            names = names[: names.index(upto) + 1]
        done = set(self.applied(manifest))
        return [name for name in names if name not in done]

    def apply(
        self,
        context: MigrationContext,
        upto: str | None = None,
        after_each: Callable[[str], None] | None = None,
    ) -> list[str]:
        """Run the pending migrations (through ``upto``), recording each in the
        manifest as it finishes; ``after_each`` saves the manifest. Returns
        the names applied."""
        steps = dict(self._steps)
        ran = []
        for name in self.pending(context.manifest, upto):
            steps[name](context)
            context.manifest.setdefault("migrations", []).append(name)
            context.manifest["format_version"] = len(context.manifest["migrations"])
            ran.append(name)
            if after_each is not None:
                after_each(name)
        return ran


MIGRATIONS = Migrations()
migration = MIGRATIONS


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
    10 than exact cosine search; 400 (frozen here) matches it.
    """
    ctx.set_hnsw_search(ctx.manifest["collection"], 400)


@migration
def m003_record_embed_backend(ctx: MigrationContext) -> None:
    """Record which backend embedded the store's chunks.

    Stores made before ONNX backends existed were embedded by torch (the value
    frozen here). Recording it also makes older ragdb versions, which would
    embed queries with torch whatever the store holds, refuse the store.
    """
    ctx.manifest["embed_model"].setdefault("backend", "torch")


@migration
def m004_knowledge_bases(ctx: MigrationContext) -> None:
    """Name the store's chunk collection as knowledge base ``default``.

    A store now holds several named knowledge bases, each with its own
    collection; the manifest lists them under ``knowledge_bases``. Re-run after
    a rebuilt manifest, it keeps the knowledge bases that one found.
    """
    kbs = ctx.manifest.setdefault("knowledge_bases", {})
    collection = ctx.manifest.pop("collection", None)
    if "default" not in kbs:
        kbs["default"] = {
            "collection": collection or "ragdb-chunks",
            "generation": int(ctx.manifest.get("generation", 0)),
            "created_at": ctx.manifest.get("created_at"),
        }


@migration
def m005_manifest_as_record(ctx: MigrationContext) -> None:
    """Keep a Chroma server's manifest as a record's document.

    Chroma Cloud allows 256 bytes a metadata value, and the manifest outgrows
    that; the save that records this migration writes it as the document of a
    record (see :meth:`ragdb.store.server.ServerBackend.write_manifest`),
    leaving in the metadata a stub that makes older ragdb versions refuse the
    store as newer. A local store's manifest is a file: nothing changes there.
    """


@migration
def m006_pruned_write_log(ctx: MigrationContext) -> None:
    """Let a Chroma server's write log be pruned.

    Until now the log's length was its newest entry's number, and a writer took
    the number one above it. Pruning settled entries (see
    :mod:`ragdb.store.writelog`) breaks that, so from here on the numbers are
    found by asking for entries above the newest one seen, and an older ragdb,
    which would take numbers by the length again, must refuse the store: this
    migration's record in the manifest does that. Nothing else changes.
    """
