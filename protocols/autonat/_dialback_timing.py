"""When a dial-back may give up: a timeout from the measured path, and hedged attempts.

Theory of operation
-------------------
An AutoNAT server that dials a client back and hears nothing must decide
when silence is evidence. A fixed timeout (``dialback_timeout``, 5 s) is
right for the slowest path and makes every private verdict behind a NAT
that silently drops take that long. But the server already knows the path:
the client's request came over a TCP connection whose kernel keeps a
smoothed round-trip time and its variation (``tcpi_rtt``/``tcpi_rttvar``,
microseconds; :class:`PathRtt`). TCP's own retransmission timeout is
``srtt + 4 * rttvar`` (RFC 6298): once that has passed, the answer to a
packet is not merely late, it is lost.

:func:`plan_dial_back` turns a measurement into a :class:`DialBackPlan` for
the *connect* phase of the dial-back (SYN to SYN-ACK; once connected the
path is proven and the rest runs under the usual timeouts):

* ``attempts`` - start times, relative to the dial-back's start, of the
  connection attempts: the first at once, then one *hedge* per
  retransmission timeout (each a fresh SYN from a fresh port), so a single
  lost SYN or SYN-ACK does not become evidence. The kernel's own SYN
  retransmission waits a full second; the hedges do not wait for it.
* ``give_up_after`` - when the silence counts: one retransmission timeout
  after the last attempt started, scaled by ``slack``, never below ``floor``
  (scheduling and jitter on a fast path) nor above ``ceiling`` (the fixed
  ``dialback_timeout``).

Without a measurement (no ``TCP_INFO`` on this platform, or a connection
too young to have a sample) the plan is the fixed ceiling with no hedges -
the behaviour before this module. Everything is a pure function of its
arguments: no clock, no sockets (the measurement is read by
``actors.transport._sockets.path_rtt``).

Status: the AutoNAT server does not follow these plans yet; it still waits
the fixed ``dialback_timeout``. Following them waits for lab scenarios with
added delay and loss that can show the hedged, earlier give-up never turns
a reachable client into a wrong "unreachable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ..core import LocalProtocolError

__all__ = ["DEFAULT_FLOOR", "DEFAULT_HEDGES", "DEFAULT_SLACK", "DialBackPlan", "PathRtt",
           "plan_dial_back"]

DEFAULT_FLOOR: Final = 0.3
"""Seconds: no dial-back gives up sooner, whatever the path (scheduling, jitter)."""
DEFAULT_HEDGES: Final = 2
"""Extra connection attempts after the first, one per retransmission timeout."""
DEFAULT_SLACK: Final = 1.5
"""How many retransmission timeouts the last attempt gets before silence counts."""
MIN_RTO: Final = 0.05
"""Seconds: the retransmission timeout used for a path faster than this (loopback)."""


@dataclass(frozen=True)
class PathRtt:
    """The kernel's view of one TCP connection's round trip, in seconds."""

    srtt: float
    rttvar: float

    def __post_init__(self) -> None:
        for name in ("srtt", "rttvar"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise LocalProtocolError(f"PathRtt.{name} must be a finite number >= 0, "
                                         f"got {value!r}")

    @property
    def rto(self) -> float:
        """TCP's retransmission timeout for this path (``srtt + 4 * rttvar``, at least
        :data:`MIN_RTO`)."""
        return max(MIN_RTO, self.srtt + 4 * self.rttvar)


@dataclass(frozen=True)
class DialBackPlan:
    """When to start each connection attempt, and when to give up (seconds from the start)."""

    attempts: tuple[float, ...]
    give_up_after: float
    measured: bool
    """False: no measurement, the fixed ceiling applies."""


def plan_dial_back(path: PathRtt | None, *, ceiling: float, floor: float = DEFAULT_FLOOR,
                   hedges: int = DEFAULT_HEDGES, slack: float = DEFAULT_SLACK) -> DialBackPlan:
    """The connect-phase plan for a dial-back over a path measured as ``path``."""
    _check(ceiling=ceiling, floor=floor, slack=slack)
    if isinstance(hedges, bool) or not isinstance(hedges, int) or hedges < 0:
        raise LocalProtocolError(f"hedges must be an integer >= 0, got {hedges!r}")
    if path is None:
        return DialBackPlan(attempts=(0.0,), give_up_after=ceiling, measured=False)
    rto = path.rto
    attempts = tuple(n * rto for n in range(hedges + 1))
    wait = attempts[-1] + slack * rto
    give_up = min(ceiling, max(floor, wait))
    return DialBackPlan(attempts=tuple(a for a in attempts if a < give_up),
                        give_up_after=give_up, measured=True)


def _check(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value <= 0:
            raise LocalProtocolError(f"{name} must be a finite number > 0, got {value!r}")
    if values["floor"] > values["ceiling"]:
        raise LocalProtocolError("floor must not exceed ceiling")
