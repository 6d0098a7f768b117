"""Forgetting connections whose end notice never arrived.

Theory of operation
-------------------
Actors that keep a table of live connections (Identify, AutoNAT) learn of
each end from the Dialer's ``ConnectionGone`` notice instead of running a
task per connection. A notice can still be lost: the Dialer gives up on a
full mailbox after ``DOWN_NOTICE_TIMEOUT`` while the node stops or an actor
restarts. :class:`ClosedSweep` keeps such tables bounded anyway: each time
a table has doubled since the last sweep (and at an actor's start), the
entries whose connection has ``closed`` are removed. The work is
proportional to the table and happens once per doubling, so it costs O(1)
per insertion, amortised; a table of live connections never grows past
twice its live size plus :data:`MIN_SWEEP_SIZE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic, TypeVar

from ..connection import Connection

K = TypeVar("K")
V = TypeVar("V")

MIN_SWEEP_SIZE: Final = 64


class ClosedSweep(Generic[K, V]):
    """Sweeps ``table`` of closed connections; ``connection_of(key, value)`` finds each one."""

    def __init__(self, table: dict[K, V], connection_of: Callable[[K, V], Connection]) -> None:
        self._table = table
        self._connection_of = connection_of
        self._next_at = MIN_SWEEP_SIZE

    def maybe(self) -> list[K]:
        """Sweep if the table doubled since the last sweep; the removed keys."""
        if len(self._table) < self._next_at:
            return []
        return self.now()

    def now(self) -> list[K]:
        """Remove every entry whose connection has closed; the removed keys."""
        table, connection_of = self._table, self._connection_of
        removed = [key for key, value in table.items() if connection_of(key, value).closed.is_set()]
        for key in removed:
            del table[key]
        self._next_at = max(MIN_SWEEP_SIZE, 2 * len(table))
        return removed
