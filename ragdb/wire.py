"""Results read back from JSON: a remote server's answers become the same
dataclasses the in-process library returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ragdb.errors import StoreError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def from_fields(cls: type[T], data: Mapping[str, Any], **converted: Any) -> T:
    """``cls`` (a dataclass) from ``data``'s fields of that name, ``converted``
    overriding some. Keys ``cls`` lacks are ignored, so a newer server's extra
    fields do not break an older client; a missing required one is an error."""
    if not isinstance(data, Mapping):
        raise StoreError(f"the ragdb server sent {type(data).__name__} for a {cls.__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    try:
        return cls(**{**values, **converted})
    except TypeError as exc:
        raise StoreError(f"the ragdb server sent an incomplete {cls.__name__}: {exc}") from None
