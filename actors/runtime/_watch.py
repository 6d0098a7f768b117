"""A latest-value cell that many tasks can read, await and follow.

Theory of operation
-------------------
:class:`Watch` holds one value (or none yet) and a version number that grows
by one on every :meth:`Watch.set`. Each set also fires the current
``trio.Event`` and replaces it with a fresh one, so waiting tasks wake up and
look at the version.

A subscriber (:meth:`Watch.subscribe`) remembers the last version it
delivered. When it is asked for the next value it returns the *current* one
at once if the version moved, otherwise it waits for the next set. A slow
subscriber therefore skips intermediate values but is never left behind: the
value it gets next is always the latest (the same contract as a
``tokio::sync::watch`` receiver). Nothing is buffered per subscriber, so a
stuck subscriber costs nothing and never blocks the producer: :meth:`set` is
synchronous and never waits.

:meth:`Watch.close` ends the stream: subscribers first receive the latest
value if they have not seen it yet, then their iteration stops.
:meth:`Watch.wait_for` returns the first value (current or future) that
satisfies a predicate, or raises :class:`WatchClosed` if the watch closes
first. Timeouts are the caller's: wrap it in ``trio.fail_after``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, overload

import trio

__all__ = ["Watch", "WatchClosed", "WatchStatistics", "WatchSubscription"]

T = TypeVar("T")


class WatchClosed(trio.ClosedResourceError):
    """The watch was closed: no more values will come."""


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Literal[_Unset.UNSET] = _Unset.UNSET


@dataclass(frozen=True)
class WatchStatistics:
    version: int
    has_value: bool
    closed: bool
    tasks_waiting: int


class Watch(Generic[T]):
    """A latest-value cell; see the module docstring."""

    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self, initial: T) -> None: ...
    def __init__(self, initial: T | Literal[_Unset.UNSET] = UNSET) -> None:
        self._value: T | Literal[_Unset.UNSET] = initial
        self._version = 0 if initial is UNSET else 1
        self._changed = trio.Event()
        self._closed = False
        self._waiting = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Watch {state} version={self._version}>"

    @property
    def version(self) -> int:
        """0 before the first value; +1 per :meth:`set`."""
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self) -> T:
        """The latest value; ``LookupError`` when none was ever set."""
        if self._value is UNSET:
            raise LookupError("the watch has no value yet")
        return self._value

    def set(self, value: T) -> None:
        """Publish ``value`` and wake everyone waiting; never blocks."""
        if self._closed:
            raise WatchClosed("cannot set a closed watch")
        self._value = value
        self._version += 1
        self._wake()

    def close(self) -> None:
        """End all subscriptions (after they saw the latest value). Idempotent."""
        if not self._closed:
            self._closed = True
            self._wake()

    def subscribe(self) -> WatchSubscription[T]:
        """An async iterator: the current value (if any), then each newer latest value."""
        return WatchSubscription(self)

    async def wait_for(self, predicate: Callable[[T], bool]) -> T:
        """The first value, current or future, for which ``predicate`` is true."""
        async for value in self.subscribe():
            if predicate(value):
                return value
        raise WatchClosed("the watch closed before the condition was met")

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(
            version=self._version,
            has_value=self._value is not UNSET,
            closed=self._closed,
            tasks_waiting=self._waiting,
        )

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _next_after(self, seen: int) -> tuple[T, int] | None:
        """The latest value once its version is past ``seen``; ``None`` when closed."""
        await trio.lowlevel.checkpoint()
        while True:
            if self._version != seen and self._value is not UNSET:
                return self._value, self._version
            if self._closed:
                return None
            self._waiting += 1
            try:
                await self._changed.wait()
            finally:
                self._waiting -= 1


class WatchSubscription(Generic[T]):
    """Follows one :class:`Watch`; iterate it with ``async for``."""

    def __init__(self, watch: Watch[T]) -> None:
        self._watch = watch
        self._seen = 0

    def __aiter__(self) -> WatchSubscription[T]:
        return self

    async def __anext__(self) -> T:
        found = await self._watch._next_after(self._seen)
        if found is None:
            raise StopAsyncIteration
        value, self._seen = found
        return value
