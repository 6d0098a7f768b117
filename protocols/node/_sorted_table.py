"""SortedTable: a mapping kept in key order, whose values are handed out as one tuple.

Theory of operation
-------------------
Node snapshots list peers, connections and observations sorted by key, and
a busy node publishes a snapshot after almost every event. Sorting the whole
collection for each snapshot made one event cost O(N log N) Python work, so
N connections cost O(N^2 log N). A :class:`SortedTable` keeps the keys in a
sorted list beside a dict: replacing a value is a dict write plus a binary
search, inserting or removing one moves list items in C (``list.insert`` /
``del``), and :meth:`values` copies the values into a tuple only when
something changed since the last call (C speed, cached otherwise). Keys must
be totally ordered and hashable.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar, overload

__all__ = ["SortedTable"]


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...

    def __hash__(self) -> int: ...


K = TypeVar("K", bound=_Ordered)
V = TypeVar("V")


class SortedTable(Generic[K, V]):
    """See the module docstring."""

    def __init__(self) -> None:
        self._items: dict[K, V] = {}
        self._keys: list[K] = []
        self._values: list[V] = []
        self._tuple: tuple[V, ...] | None = ()
        self._key_tuple: tuple[K, ...] | None = ()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: V) -> V: ...

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._items.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        if key in self._items:
            self._values[bisect_left(self._keys, key)] = value
        else:
            index = bisect_left(self._keys, key)
            self._keys.insert(index, key)
            self._values.insert(index, value)
            self._key_tuple = None
        self._items[key] = value
        self._tuple = None

    def pop(self, key: K) -> V | None:
        value = self._items.pop(key, None)
        if value is not None:
            index = bisect_left(self._keys, key)
            del self._keys[index]
            del self._values[index]
            self._tuple = self._key_tuple = None
        return value

    def keys(self) -> tuple[K, ...]:
        """Every key, sorted (the same tuple object until a key is added or removed)."""
        if self._key_tuple is None:
            self._key_tuple = tuple(self._keys)
        return self._key_tuple

    def values(self) -> tuple[V, ...]:
        """Every value in key order (the same tuple object until something changes)."""
        if self._tuple is None:
            self._tuple = tuple(self._values)
        return self._tuple

    def items(self) -> Iterator[tuple[K, V]]:
        """(key, value) pairs in insertion order (not sorted)."""
        return iter(self._items.items())


