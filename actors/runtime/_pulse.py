"""Pulse: a counter that wakes whoever waits for it to move.

Theory of operation
-------------------
Some facts change without a new node snapshot - a dial failed, a bootstrap
fetch ended, a probe request went out - and are read from the actors'
``statistics()``. An actor that changes such a fact calls :meth:`Pulse.beat`.
A reader notes :attr:`Pulse.count`, reads what it needs, and then awaits
:meth:`Pulse.wait_past` with that count: it wakes as soon as anything may
have changed since its reading (or at once, if something already did), and
never on a timer. Trio runs one task at a time, so a reading taken between
two awaits is consistent with the count taken next to it.

A beat carries no data and waking a reader for nothing is harmless, so
actors beat generously; a missing beat is the only way to get this wrong.
"""

from __future__ import annotations

import trio

__all__ = ["Pulse"]


class Pulse:
    """See the module docstring."""

    def __init__(self) -> None:
        self._count = 0
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def count(self) -> int:
        """How many beats so far."""
        return self._count

    def beat(self) -> None:
        """Something a reader may care about changed: wake every waiter."""
        self._count += 1
        self._lot.unpark_all()

    async def wait_past(self, count: int) -> None:
        """Return once :attr:`count` is greater than ``count`` (at once if it already is)."""
        while self._count <= count:
            await self._lot.park()
