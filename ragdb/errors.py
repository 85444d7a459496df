"""ragdb's exception tree.

Every failure ragdb expects is a :class:`RagdbError`; the CLI turns them into
one-line messages and the exit code each class carries, and the service into
the HTTP status :func:`http_status` gives (both mappings live here alone).
"""

from __future__ import annotations

from typing import Any


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none):
    what a one-line error shows of a library's failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RagdbError(Exception):
    """Base class: a failure with a message fit to show a user."""

    exit_code = 1
    # What the service sends beside the message (the chunks an answer had).
    extra: Any = None


class InputError(RagdbError):
    """The user asked for something that cannot be done (bad path, bad file)."""


class NotFoundError(InputError):
    """Something named that is not there (a job, a watch)."""


class SourceNotFoundError(NotFoundError):
    """A source named that is not in the knowledge base."""


class SourceConflictError(InputError):
    """A name stored as another kind of source (a file, a record, text given
    directly): neither overwrites the other unless asked to replace."""


class UnsupportedFormatError(InputError):
    """A document in a format ragdb does not read (yet)."""


class UsageError(RagdbError):
    """Options that contradict each other or cannot be parsed."""

    exit_code = 2


class NotAllowedError(UsageError):
    """What this ragdb server was not started to allow (``reset`` without
    ``--allow-reset``)."""


class WrongReplicaError(UsageError):
    """A write sent to a query replica of a service tier: it names the ingest
    worker that takes writes (``--ingest-url``)."""


class StoreError(RagdbError):
    """The knowledge base cannot be opened or used."""


class StoreNotFoundError(StoreError):
    """No knowledge base exists where one was expected."""


class KnowledgeBaseNotFoundError(StoreNotFoundError):
    """A knowledge base named that the store does not hold."""


class KnowledgeBaseExistsError(InputError):
    """A knowledge base created or renamed to a name the store holds already."""


class ManifestError(StoreError):
    """The store's manifest is missing or unreadable while its chunks are there:
    ``ragdb doctor --repair`` rebuilds it."""


class EmptyStoreError(StoreError):
    """The knowledge base exists but holds no chunks."""


class ModelMismatchError(StoreError):
    """The store was made with another embedding model than the one asked for."""


class StoreVersionError(StoreError):
    """The store was written by a newer ragdb or chromadb than this one."""


class DiskFullError(StoreError):
    """The disk holding the store has no room left for a write."""


class StoreBusyError(StoreError):
    """Another process held the store for longer than we were willing to wait."""

    exit_code = 4


class StoreUnavailableError(StoreBusyError):
    """The Chroma server cannot be reached (down, restarting, overloaded): the
    same command, or request, works again once it is back."""


class LeaseLostError(StoreBusyError):
    """A write stalled for longer than its lease on a Chroma server and another
    process took it over: this one stopped before deleting anything, and the
    next session settles its sources."""


class AddressInUseError(RagdbError):
    """``ragdb serve`` cannot listen where it was asked to."""


class EmbeddingModelError(RagdbError):
    """The embedding model cannot be loaded."""


class LLMError(RagdbError):
    """The language model could not answer (server down, model missing, timeout).

    Raised by :meth:`ragdb.KnowledgeBase.ask` with ``answer`` set: the
    :class:`ragdb.Answer` with the retrieved chunks and this error."""

    exit_code = 3
    answer: Any = None


class LLMTimeoutError(LLMError):
    """The language model did not answer in time."""


class UnsupportedAnswerError(RagdbError):
    """An answer with sentences the retrieved chunks do not back, when support
    was required (``--require-support``); ``answer`` is the whole
    :class:`ragdb.Answer`, its ``support`` saying which."""

    exit_code = 5
    answer: Any = None


# The HTTP status of each error, for the service; the nearest class in an
# error's ancestry decides.
HTTP_STATUS: dict[type[RagdbError], int] = {
    RagdbError: 500,
    InputError: 400,
    NotFoundError: 404,
    SourceNotFoundError: 404,
    SourceConflictError: 409,
    UnsupportedFormatError: 415,
    UsageError: 400,
    NotAllowedError: 403,
    WrongReplicaError: 421,
    StoreError: 500,
    StoreNotFoundError: 404,
    KnowledgeBaseExistsError: 409,
    EmptyStoreError: 409,
    ManifestError: 500,
    ModelMismatchError: 409,
    StoreVersionError: 409,
    StoreBusyError: 503,
    DiskFullError: 507,
    EmbeddingModelError: 500,
    LLMError: 502,
    LLMTimeoutError: 504,
    UnsupportedAnswerError: 422,
}


def http_status(exc: RagdbError) -> int:
    """The HTTP status that answers ``exc``."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
