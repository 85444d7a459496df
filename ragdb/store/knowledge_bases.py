"""Named knowledge bases in one store: list, create, rename, delete.

Each knowledge base is a chunk collection and a keyword index of its own,
named in the manifest (see :func:`ragdb.store.manifest.kb_entries`); they
share the store's model, lock, write protocol and crash recovery. ``default``
is the one every command uses without ``--kb``: it is never renamed or deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragdb.config import DEFAULT_KB, check_kb_name
from ragdb.errors import KnowledgeBaseExistsError, UsageError
from ragdb.reports import KnowledgeBaseInfo
from ragdb.store.manifest import kb_entries, kb_entry
from ragdb.store.versions import list_sources

if TYPE_CHECKING:
    from ragdb.store.session import Session


def list_kbs(session: Session) -> list[KnowledgeBaseInfo]:
    """Every knowledge base with what it holds, by name."""
    out = []
    for name, entry in sorted(kb_entries(session.manifest).items()):
        with session.use(name):
            chunks, sources = session.count(), len(list_sources(session))
        out.append(KnowledgeBaseInfo(name, chunks, sources, entry.get("created_at")))
    return out


def create_kb(session: Session, name: str, exist_ok: bool = False) -> bool:
    """Make knowledge base ``name``, empty; whether it was made (with
    ``exist_ok``, one that exists is no error)."""
    check_kb_name(name)
    if name in kb_entries(session.manifest):
        if exist_ok:
            return False
        raise KnowledgeBaseExistsError(f"knowledge base {name!r} exists already")
    session.create_kb(name)
    return True


def rename_kb(session: Session, old: str, new: str) -> None:
    """Call knowledge base ``old`` ``new``; its chunks stay where they are."""
    _not_default(old, "renamed")
    kb_entry(session.manifest, old, session.backend.location)
    check_kb_name(new)
    if new in kb_entries(session.manifest):
        raise KnowledgeBaseExistsError(f"knowledge base {new!r} exists already")
    session.rename_kb(old, new)


def delete_kb(session: Session, name: str) -> int:
    """Delete knowledge base ``name`` and everything in it; its chunk count."""
    _not_default(name, "deleted")
    kb_entry(session.manifest, name, session.backend.location)
    return session.delete_kb(name)


def _not_default(name: str, what: str) -> None:
    if name == DEFAULT_KB:
        raise UsageError(
            f"the {DEFAULT_KB!r} knowledge base cannot be {what} (`ragdb reset` empties it)"
        )
