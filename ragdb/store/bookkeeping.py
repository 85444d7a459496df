"""What a server store's bookkeeping (its write log and claims, see
:mod:`ragdb.store.writelog` and :mod:`ragdb.store.claims`) is made of: small
collections of ragdb's own whose records carry a one-number vector, each
request to them retried on its own, a page of records at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ragdb.store.backend import Backend

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

# The vector of a bookkeeping record (Chroma needs one; nothing searches it).
DUMMY: Any = [[0.0]]

# What a claim or log entry records of its writer and lease, made when it is written.
LeaseMeta = Callable[["ClientAPI"], dict[str, Any]]


class Keeper(Backend, Protocol):
    """The backend the bookkeeping works for (:class:`ragdb.store.server.ServerBackend`)."""

    me: str  # this process's host identity (see ragdb.store.leases.host_identity)
    lease: float
    page: int  # records per request of the bookkeeping's reads and deletes

    def server_now(self, client: ClientAPI) -> float:
        """The Chroma server's time."""
        ...


def small_collection(client: ClientAPI, name: str, backend: Backend) -> Any:
    """Bookkeeping collection ``name``, each request to it retried on its own
    (see :class:`Retrying`). (Looked up each time, a request to the server: a
    cached handle would go stale when the collection is dropped and made again.)"""
    made = Retrying(client, backend, f"opening {name}").get_or_create_collection(
        name, embedding_function=None, metadata={"ragdb": name}
    )
    return Retrying(made, backend, f"updating {name}")


class Retrying:
    """A Chroma client or collection whose every request is retried on its own
    when it fails transiently or is rate limited (see
    :func:`ragdb.store.session.call_chroma`): the bookkeeping of one write is a
    dozen requests, and against a hosted Chroma each may meet a 429 or a 503."""

    def __init__(self, target: Any, backend: Backend, what: str) -> None:
        self._target, self._backend, self._what = target, backend, what

    def __getattr__(self, name: str) -> Any:
        from ragdb.store.session import call_chroma

        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return call_chroma(self._backend, self._what, lambda: attr(*args, **kwargs))

        return call


def pages(items: list[str], size: int) -> list[list[str]]:
    """``items`` in lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
