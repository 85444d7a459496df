"""A knowledge base as a portable archive: ``ragdb export`` and ``ragdb import``.

An archive is a zip file holding ``ragdb-archive.json`` (the format and its
version, the model that made the vectors, the knowledge base's name, counts,
and the SHA-256 of the chunks file) and ``chunks.jsonl``: one chunk a line,
with its id, text, metadata and vector (little-endian float32, base64), so a
chunk comes back exactly as it was. Importing reads and checks the whole
archive before anything is written; a source already stored in the same
version is left alone, another version is replaced through the same
add-then-delete protocol as an ingest (:mod:`ragdb.store.versions`), so an
import never duplicates and a killed one is settled like any write.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.embed.identity import ModelIdentity, compatible_backends, same_model
from ragdb.errors import InputError
from ragdb.store.manifest import utcnow
from ragdb.store.records import ChunkRecord, NewVersion, version_problem, versions
from ragdb.store.versions import list_sources, write_versions
from ragdb.version import __version__

if TYPE_CHECKING:
    import numpy as np

    from ragdb.store.session import Session
    from ragdb.store.store import Store

FORMAT = "ragdb-archive"
VERSION = 1
HEADER = "ragdb-archive.json"
CHUNKS = "chunks.jsonl"
# Sources written per session: bounds how long an import holds the store at once.
SOURCES_PER_WRITE = 64

Encode = Callable[[list[str]], "np.ndarray"]


@dataclasses.dataclass
class Archive:
    """An archive read and checked: its header and its chunks with their vectors."""

    header: dict[str, Any]
    chunks: list[tuple[ChunkRecord, list[float]]]

    @property
    def identity(self) -> ModelIdentity:
        """The model that made the archive's vectors."""
        return ModelIdentity.from_dict(self.header["embed_model"])


# -- export --------------------------------------------------------------------------------
def export_kb(session: Session, path: Path) -> dict[str, Any]:
    """Write the knowledge base ``session`` addresses to an archive at ``path``
    (written aside and moved into place, so a failed export leaves no half
    file); returns the archive's header."""
    tmp = path.with_name(f".{path.name}.partial")
    digest = hashlib.sha256()
    count, sources = 0, set()
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            with zf.open(CHUNKS, "w") as out:
                for page in session.pages(embeddings=True):
                    for record, vector in page:
                        line = _line(record, vector)
                        digest.update(line)
                        out.write(line)
                        count += 1
                        sources.add(record.source)
            header = {
                "format": FORMAT,
                "version": VERSION,
                "knowledge_base": session.kb,
                "embed_model": dict(session.manifest["embed_model"]),
                "chunks": count,
                "sources": len(sources),
                "sha256": digest.hexdigest(),
                "ragdb_version": __version__,
                "created_at": utcnow(),
            }
            zf.writestr(HEADER, json.dumps(header, indent=2))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write the archive {path}: {exc.strerror or exc}") from None
    return header


def _line(record: ChunkRecord, vector: Any) -> bytes:
    import numpy as np

    packed = np.asarray(vector, dtype="<f4").tobytes()
    item = {
        "id": record.id,
        "text": record.text,
        "metadata": record.metadata(),
        "vector": base64.b64encode(packed).decode("ascii"),
    }
    return (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")


# -- reading ---------------------------------------------------------------------------------
def read_archive(path: Path) -> Archive:
    """The archive at ``path``, every chunk checked (its record, its vector's
    size, the checksum); an :class:`InputError` saying what is wrong otherwise."""
    try:
        with zipfile.ZipFile(path) as zf:
            header = _header(zf, path)
            raw = zf.read(CHUNKS)
    except FileNotFoundError:
        raise InputError(f"no archive at {path}") from None
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InputError(f"{path} is not a readable ragdb archive ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != header.get("sha256"):
        raise InputError(f"{path} is corrupt: its chunks do not match their checksum")
    dimension = int(header["embed_model"]["dimension"])
    chunks = list(_chunks(raw, dimension, path))
    if len(chunks) != header.get("chunks"):
        raise InputError(
            f"{path} is corrupt: it holds {len(chunks)} chunks, not {header.get('chunks')}"
        )
    for source, by_hash in versions(r for r, _ in chunks).items():
        whole = [v for v in by_hash.values() if version_problem(v) is None]
        if len(by_hash) != 1 or not whole:
            raise InputError(f"{path} is corrupt: source {source} is not one whole version")
    return Archive(header, chunks)


def _header(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(zf.read(HEADER))
    except KeyError:
        raise InputError(f"{path} is not a ragdb archive (it has no {HEADER})") from None
    except ValueError as exc:
        raise InputError(f"{path} is corrupt: {HEADER} is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"{path} is not a ragdb archive")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise InputError(
            f"{path} is a ragdb archive of version {header.get('version')}; this ragdb reads "
            f"version {VERSION}: upgrade ragdb to import it"
        )
    try:
        ModelIdentity.from_dict(header["embed_model"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path} is corrupt: it does not say which model made it") from None
    return header


def _chunks(raw: bytes, dimension: int, path: Path) -> Iterator[tuple[ChunkRecord, list[float]]]:
    import numpy as np

    for number, line in enumerate(raw.splitlines(), 1):
        try:
            item = json.loads(line)
            record = ChunkRecord.from_metadata(item["metadata"], item["text"], id=item["id"])
            vector = np.frombuffer(base64.b64decode(item["vector"], validate=True), dtype="<f4")
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is corrupt: chunk line {number}: {exc}") from None
        if vector.shape != (dimension,) or not np.isfinite(vector).all():
            raise InputError(
                f"{path} is corrupt: chunk line {number} has a vector of {vector.size} "
                f"numbers, not {dimension}"
            )
        yield record, vector.astype(np.float32).tolist()


# -- import -----------------------------------------------------------------------------------
def vectors_fit(archive: Archive, identity: ModelIdentity) -> bool:
    """Whether the archive's vectors are the store's model's (no re-embedding)."""
    theirs = archive.identity
    return (
        same_model(theirs.name, identity.name)
        and compatible_backends(theirs.backend, identity.backend)
        and theirs.dimension == identity.dimension
    )


@dataclasses.dataclass
class ImportCounts:
    """What an import did, per source."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0


def import_archive(store: Store, kb: str, archive: Archive, encode: Encode | None) -> ImportCounts:
    """Write the archive's sources into knowledge base ``kb`` of ``store``:
    with their own vectors when ``encode`` is None, else embedded anew by it."""
    import numpy as np

    by_source: dict[str, list[tuple[ChunkRecord, list[float]]]] = {}
    for record, vector in archive.chunks:
        by_source.setdefault(record.source, []).append((record, vector))
    counts = ImportCounts()
    names = sorted(by_source)
    for i in range(0, len(names), SOURCES_PER_WRITE):
        batch = names[i : i + SOURCES_PER_WRITE]
        with store.session(kb=kb) as session:
            stored = list_sources(session, batch)
        new: list[NewVersion] = []
        for name in batch:
            chunks = sorted(by_source[name], key=lambda c: c[0].chunk_index)
            if name in stored and stored[name].source_hash == chunks[0][0].source_hash:
                counts.unchanged += 1
                continue
            records = [record for record, _ in chunks]
            if encode is None:
                vectors = np.asarray([v for _, v in chunks], dtype=np.float32)
            else:
                vectors = np.asarray(encode([r.text for r in records]), dtype=np.float32)
            new.append(NewVersion(name, records, vectors))
            counts.added += name not in stored
            counts.updated += name in stored
            counts.chunks += len(records)
        if new:
            with store.session(kb=kb) as session:
                write_versions(session, new)
    return counts
