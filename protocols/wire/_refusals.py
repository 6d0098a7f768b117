"""Refused requests per connection: a peer that keeps asking for what is refused is cut off.

Theory of operation
-------------------
Every refusal costs us a little - a decoded frame, an error reply, a log
line, a rate-limiter look-up - and costs the peer nothing: it can open
streams for a protocol we do not serve, or beyond ``max_streams``, or keep
sending requests a rate limit refuses, as fast as the connection carries
them. An honest peer meets a refusal now and then (a protocol an older
version lacks, a busy server) and backs off. So each connection keeps one
:class:`RefusalWindow`, fed with every refusal whatever its kind - streams
the mux refused (``unsupported-protocol``, ``too-many-streams``) and
requests a handler refused (the AutoNAT server's rate limits) - and the
connection is closed once ``max_refusals`` of them fell within
``window`` seconds: :meth:`RefusalWindow.handle_refused` then answers
:class:`CloseForRefusals` - once; refusals counted while the connection
closes answer None, so the caller acts (and counts the closing) once.

The window slides: it keeps the times of at most ``max_refusals`` recent
refusals (oldest first) and drops those older than ``window``, so each
event costs O(1) amortised and the memory is bounded by ``max_refusals``.
The caller passes the time; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_MAX_REFUSALS", "DEFAULT_REFUSAL_WINDOW", "CloseForRefusals",
           "RefusalWindow"]

DEFAULT_MAX_REFUSALS: Final = 8
"""Refusals within the window that close a connection: an honest peer backs off long
before (it asks a few servers once per round and knows which protocols we serve)."""
DEFAULT_REFUSAL_WINDOW: Final = 60.0
"""Seconds over which refusals are counted."""


@dataclass(frozen=True)
class CloseForRefusals:
    """Close the connection: ``refusals`` were refused within ``window`` seconds."""

    refusals: int
    window: float

    @property
    def reason(self) -> str:
        return f"{self.refusals} refused requests within {self.window:g} s"


class RefusalWindow:
    """One connection's recent refusals; see the module docstring."""

    def __init__(self, max_refusals: int = DEFAULT_MAX_REFUSALS,
                 window: float = DEFAULT_REFUSAL_WINDOW) -> None:
        if max_refusals < 1 or window <= 0:
            raise ValueError("max_refusals must be >= 1 and window > 0")
        self.max_refusals = max_refusals
        self.window = window
        self.total = 0
        """Refusals counted over the connection's life."""
        self._recent: deque[float] = deque(maxlen=max_refusals)
        self.closing = False
        """:class:`CloseForRefusals` was answered."""

    def handle_refused(self, now: float) -> CloseForRefusals | None:
        """One more refusal at ``now``: None, or close the connection."""
        self.total += 1
        self._recent.append(now)
        while self._recent[0] <= now - self.window:
            self._recent.popleft()
        if len(self._recent) >= self.max_refusals and not self.closing:
            self.closing = True
            return CloseForRefusals(len(self._recent), self.window)
        return None
