"""The bootstrap node's round robin over the peers it hands out (the seed's "basic round robin").

Theory of operation
-------------------
A boot node answers every ``GET /status`` with its own routable addresses
first - they are what a new client needs most - followed by a *window* of
other peers it has confirmed public. If every client received the same
first few peers, those few would carry the whole network's bootstrap load,
so :class:`RoundRobin` keeps a cursor into the list of other peers and
advances it by ``window`` on every call::

    others = [p0 .. p9], window = 4
    call 1 -> own + [p0, p1, p2, p3]
    call 2 -> own + [p4, p5, p6, p7]
    call 3 -> own + [p8, p9, p0, p1]     (the window wraps around the list)

so ``ceil(len(others) / window)`` successive requests together hand out
every peer. The caller passes the candidates in a stable order (the node
snapshot sorts peers by id); when the list changes between calls the cursor
is simply reduced modulo the new length, so peers joining or leaving shift
the rotation a little but never stall it.

The result is deterministic (same calls, same answers), bounded (at most
``len(own) + window`` entries) and free of duplicates: repeated entries are
dropped and an entry of ``others`` that is also one of ``own`` is not
repeated in the window. The cursor is kept below ``len(others)``, so the
state stays bounded too. Addresses are opaque strings here - multiaddrs
ending in ``/p2p/<id>`` in practice; which of them are safe to hand out is
decided by the caller (:mod:`protocols.bootstrap._status_view`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..core import LocalProtocolError

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "RoundRobin"]

DEFAULT_WINDOW: Final = 8
"""Other peers per answer; Pyrsia's boot nodes handed out a handful."""
MAX_WINDOW: Final = 256
"""Upper bound for ``window`` (a ``/status`` answer must stay small)."""


class RoundRobin:
    """Rotating windows over a list of peer addresses; see the module docstring."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if type(window) is not int or not 1 <= window <= MAX_WINDOW:
            raise LocalProtocolError(f"window must be an int in 1..{MAX_WINDOW}, got {window!r}")
        self._window = window
        self._cursor = 0

    @property
    def window(self) -> int:
        return self._window

    @property
    def cursor(self) -> int:
        """Where the next window starts (an index into the last ``others`` seen)."""
        return self._cursor

    def next_window(self, own: Sequence[str], others: Sequence[str]) -> tuple[str, ...]:
        """``own`` (deduplicated), then the next window of ``others``; advances the cursor."""
        mine = _unique(own, "own")
        pool = tuple(entry for entry in _unique(others, "others") if entry not in mine)
        if not pool:
            return mine
        start = self._cursor % len(pool)
        count = min(self._window, len(pool))
        picked = tuple(pool[(start + offset) % len(pool)] for offset in range(count))
        self._cursor = (start + self._window) % len(pool)
        return mine + picked


def _unique(entries: Sequence[str], name: str) -> tuple[str, ...]:
    if isinstance(entries, str | bytes):
        raise TypeError(f"{name} must be a sequence of strings, not a single string")
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(f"{name} entries must be strings, got {type(entry).__name__}")
    return tuple(dict.fromkeys(entries))
