"""One way to name things a user can choose: a registry of name → spec (a frozen dataclass).

Image backbones, text encoders and packaged models are each one ``Registry``; an unknown name is a
``ValueError`` that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Specs by name, in the order they were registered."""

    def __init__(self, what: str):
        self.what = what  # how errors name an entry: "image backbone", "text encoder", ...
        self._items: dict[str, T] = {}

    def register(self, name: str, spec: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = spec
        return spec

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.what} {name!r}: expected one of {', '.join(self._items)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())
