"""Name-keyed registries (after timm's ``@register_model``).

The registered names are the public names the CLI and the HTTP API accept, so listing a registry lists
the user's choices. This module is torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Generic, TypeVar

from gacd_core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from public names to factories or classes; a duplicate name is an error.

    Args:
        kind: what the registry holds, in the singular ("model", "method"); used in error messages.
        allowed: when given, the only names that may be registered. The torch-free catalog
            (:mod:`gacd_core.catalog`) passes its names here so that the catalog the service validates
            against and the registry the science code runs from cannot drift apart. It is read at each
            registration, so names added to it later are allowed from then on.
        declared_in: where a name missing from ``allowed`` should be added (for the error message).
    """

    def __init__(
        self, kind: str, allowed: Collection[str] | None = None, *, declared_in: str = "gacd_core.catalog"
    ) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._allowed = allowed
        self._declared_in = declared_in

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: the object's ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"cannot infer a {self.kind} name for {obj!r}")
            if key in self._items:
                raise ValueError(f"duplicate {self.kind} name {key!r}")
            if self._allowed is not None and key not in self._allowed:
                raise ValueError(
                    f"{self.kind} {key!r} is not declared; declare it in {self._declared_in} so that the "
                    "job specification accepts it"
                )
            self._items[key] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register something for a while)."""
        del self._items[name]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
