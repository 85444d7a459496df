"""The manifest: what a store records about itself, and the checks made on it.

A manifest names the chunk collection, the embedding model and backend that
made it, the migrations applied (the store's format), the ragdb and chromadb
versions that last wrote it, and a generation number every write moves on.
Where it is kept is the backend's business (a file beside Chroma's, or a
server collection's metadata); what it holds and means is this module's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import TYPE_CHECKING, Any, cast

from ragdb.config import DEFAULT_KB
from ragdb.embed.identity import ModelIdentity, canonical_name, compatible_backends, same_model
from ragdb.errors import (
    KnowledgeBaseNotFoundError,
    ManifestError,
    ModelMismatchError,
    StoreVersionError,
)
from ragdb.version import __version__

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from ragdb.config import Settings


def utcnow() -> str:
    """The time now, as the manifest and chunks record it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def version_tuple(v: str) -> tuple[int, ...]:
    """``"1.5.9"`` as ``(1, 5, 9)``, for comparing versions."""
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def new_manifest(identity: ModelIdentity) -> dict[str, Any]:
    """The manifest of a store about to be created (before any migration)."""
    import chromadb

    return {
        "format_version": 0,
        "migrations": [],
        "ragdb_version": __version__,
        "chromadb_version": chromadb.__version__,
        "created_at": utcnow(),
        "embed_model": identity.to_dict(),
        "generation": 0,
    }


def parse_manifest(raw: str) -> dict[str, Any]:
    """A manifest's JSON, checked for what every reader relies on; ``ValueError``
    says what is wrong."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    model = data.get("embed_model")
    if not isinstance(model, dict) or not {"name", "dimension", "max_seq_length"} <= set(model):
        raise ValueError("no embed_model record")
    if data.get("migrations") and not (data.get("collection") or data.get("knowledge_bases")):
        raise ValueError("no collection name")
    kbs = data.get("knowledge_bases")
    if kbs is not None and not (
        isinstance(kbs, dict)
        and all(isinstance(v, dict) and isinstance(v.get("collection"), str) for v in kbs.values())
    ):
        raise ValueError("a knowledge base without its collection")
    return data


# -- knowledge bases ---------------------------------------------------------------------
# A store holds named knowledge bases, each a chunk collection (and a keyword
# index) of its own; they share the store's model, lock and write protocol.
def kb_entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The store's knowledge bases by name: each one's collection, keyword
    generation and creation time (a store not yet migrated has ``default`` alone)."""
    kbs = manifest.get("knowledge_bases")
    if kbs is None:
        return {DEFAULT_KB: {"collection": manifest.get("collection") or "ragdb-chunks"}}
    return cast(dict[str, dict[str, Any]], kbs)


def kb_entry(manifest: dict[str, Any], kb: str, location: str = "the store") -> dict[str, Any]:
    """Knowledge base ``kb``'s record; an error naming those there are if it is not."""
    entries = kb_entries(manifest)
    if kb not in entries:
        names = ", ".join(sorted(entries)) or "none"
        raise KnowledgeBaseNotFoundError(
            f"no knowledge base {kb!r} in {location} (it holds: {names}); "
            f"`ragdb kb create {kb}` makes it"
        )
    return entries[kb]


def kb_collection(manifest: dict[str, Any], kb: str) -> str:
    """The chunk collection of knowledge base ``kb``."""
    return str(kb_entry(manifest, kb)["collection"])


def check_versions(manifest: dict[str, Any], location: str, known: list[str]) -> None:
    """Refuse a store written by a newer ragdb (a migration this one does not
    know) or a newer chromadb."""
    import chromadb

    unknown = [m for m in manifest.get("migrations", []) if m not in known]
    if unknown or int(manifest.get("format_version", 0)) > len(known):
        raise StoreVersionError(
            f"store {location} has format {manifest.get('format_version')} "
            f"(written by ragdb {manifest.get('ragdb_version', '?')}); this ragdb "
            f"{__version__} reads formats up to {len(known)}: upgrade ragdb "
            f"to {manifest.get('ragdb_version', 'a newer version')} or later"
        )
    written = str(manifest.get("chromadb_version", "0"))
    if version_tuple(written) > version_tuple(chromadb.__version__):
        raise StoreVersionError(
            f"store {location} was written by chromadb {written}; the installed "
            f"chromadb is {chromadb.__version__}: install chromadb>={written}"
        )


def check_model(manifest: dict[str, Any], settings: Settings, location: str) -> None:
    """Refuse an embedding model or backend other than the store's."""
    wanted = settings.embed_model
    recorded = manifest["embed_model"]["name"]
    if wanted is not None and not same_model(wanted, recorded):
        raise ModelMismatchError(
            f"store {location} was made with embedding model {recorded!r}, not "
            f"{canonical_name(wanted)!r}; use the store's model (drop --embed-model), "
            "another --store, or `ragdb reembed --to-model "
            f"{canonical_name(wanted)}`"
        )
    backend = settings.embed_backend
    made_with = manifest["embed_model"].get("backend", "torch")
    if backend is not None and not compatible_backends(backend, made_with):
        raise ModelMismatchError(
            f"store {location} was embedded with the {made_with} backend, whose "
            f"vectors differ from {backend}'s; drop --embed-backend, or move the store "
            f"with `ragdb reembed --to-backend {backend}`"
        )


@dataclasses.dataclass(frozen=True)
class ManifestRepair:
    """A rebuilt manifest and, in words, what it was rebuilt from."""

    manifest: dict[str, Any]
    source: str


def _first_chunk_dates(coll: Any, page: int = 300) -> list[str]:
    """When each source of ``coll`` was ingested (its first chunk's date), read
    a page at a time (a hosted Chroma serves 300 records a request)."""
    dates: list[str] = []
    offset = 0
    while True:
        got = coll.get(where={"chunk_index": 0}, include=["metadatas"], limit=page, offset=offset)
        dates += [str(m.get("ingested_at")) for m in got["metadatas"] or [] if m]
        if len(got["ids"]) < page:
            return dates
        offset += page


def rebuild_manifest(
    client: ClientAPI, location: str, backup: str | None, device: str
) -> ManifestRepair:
    """How a missing or unreadable manifest is rebuilt: from its backup copy
    when that is readable and names a collection Chroma has, else from what
    Chroma holds (the chunk collection, its embedding function's settings, a
    vector's dimension, the chunks' dates)."""
    chunk_collections = {
        c.name: c for c in client.list_collections() if (c.metadata or {}).get("ragdb") == "chunks"
    }
    if backup is not None:
        try:
            saved = parse_manifest(backup)
        except ValueError:
            saved = None
        if saved is not None and all(
            e["collection"] in chunk_collections for e in kb_entries(saved).values()
        ):
            saved["generation"] = int(saved.get("generation", 0)) + 1
            return ManifestRepair(
                saved, f"its backup copy ragdb.json.bak (of {saved.get('updated_at')})"
            )
    if not chunk_collections:
        raise ManifestError(
            f"{location} holds no ragdb chunk collection: nothing to rebuild its manifest from"
        )
    # Each knowledge base's collection says whose it is (none: the default's). An
    # interrupted rebuild leaves a second, smaller collection: keep the fuller.
    by_kb: dict[str, list[Any]] = {}
    for c in chunk_collections.values():
        by_kb.setdefault(str((c.metadata or {}).get("ragdb_kb") or DEFAULT_KB), []).append(c)
    chosen = {kb: max(cs, key=lambda c: (c.count(), c.name)) for kb, cs in by_kb.items()}
    coll = chosen.get(DEFAULT_KB) or max(chosen.values(), key=lambda c: (c.count(), c.name))
    try:
        ef = coll.configuration_json.get("embedding_function") or {}
    except Exception:
        ef = {}
    config = ef.get("config") or {}
    if ef.get("name") != "ragdb_sentence_transformer" or not config.get("model_name"):
        raise ManifestError(
            f"collection {coll.name!r} does not record ragdb's embedding model: "
            "cannot rebuild the manifest"
        )
    sample: Any = coll.get(limit=1, include=cast(Any, ["embeddings"]))
    count = coll.count()
    name, backend = str(config["model_name"]), str(config.get("backend", "torch"))
    from ragdb.embed import get_embedder

    identity = get_embedder(name, device, backend).identity
    if len(sample["ids"]) and len(sample["embeddings"][0]) != identity.dimension:
        raise ManifestError(
            f"collection {coll.name!r} holds {len(sample['embeddings'][0])}-dimensional "
            f"vectors, but {name} makes {identity.dimension}: cannot rebuild the manifest"
        )
    dates = _first_chunk_dates(coll)
    manifest = new_manifest(identity)
    manifest["created_at"] = min(dates, default=manifest["created_at"])
    # The default's collection (made anew, empty, on use if it was lost); the
    # migration that names knowledge bases adds it to the others found.
    manifest["collection"] = chosen[DEFAULT_KB].name if DEFAULT_KB in chosen else "ragdb-chunks"
    others = {kb: c for kb, c in chosen.items() if kb != DEFAULT_KB}
    if others:
        manifest["knowledge_bases"] = {
            kb: {"collection": c.name, "generation": 0, "created_at": manifest["created_at"]}
            for kb, c in others.items()
        }
    # Only the first migration is known to have run (the collection exists); the
    # later ones are safe to run again, and opening the store runs them.
    manifest["migrations"] = ["m001_chunks_collection"]
    manifest["format_version"] = 1
    manifest["generation"] = 1
    return ManifestRepair(
        manifest,
        f"Chroma's collection {coll.name!r} ({count} chunks, {len(dates)} sources, "
        f"model {name}, {backend} backend)",
    )
