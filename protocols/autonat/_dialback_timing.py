"""When a dial-back may give up: a plan from the measured path, with hedged attempts.

Theory of operation
-------------------
An AutoNAT server that dials a client back and hears nothing must decide
when silence is evidence. A fixed timeout (``dialback_timeout``, 5 s) is
right for the slowest path and makes every private verdict behind a NAT
that silently drops take that long. But the server already knows the path:
the client's request came over a TCP connection whose kernel keeps a
smoothed round-trip time and its variation, and counts the segments it
sent and retransmitted (``TCP_INFO``; :class:`PathStats`). TCP's own
retransmission timeout is ``srtt + 4 * rttvar`` (RFC 6298): once that has
passed, the answer to a packet is not merely late, it is lost.

:func:`plan_dial_back` turns a measurement into a :class:`ConnectPlan` for
the *connect* phase of the dial-back (SYN to SYN-ACK; once connected the
path is proven and the rest runs under the usual handshake timeouts):

* ``attempts`` - start times, relative to the dial-back's start, of the
  connection attempts: the first at once, then one *hedge* about every
  round trip (``spacing``: the smoothed RTT, at least ``min_spacing``),
  each a fresh SYN from a fresh port. A lost SYN or SYN-ACK kills one
  attempt; the kernel would retransmit it only after a full second, the
  hedges do not wait for that.
* how many attempts: enough that all of them failing on a reachable client
  is unlikely (below ``miss_target``). An attempt fails when its SYN or its
  SYN-ACK is lost, ``q = 1 - (1 - p)^2`` for a loss rate ``p`` per
  direction, so ``n`` attempts all fail with ``q^n``. ``p`` is estimated
  from the request's own connection - retransmitted segments over segments
  sent, with half a loss and one segment added (the Jeffreys estimate), so a
  short clean connection still assumes a little loss, a long clean one very
  little, and a lossy one gets more attempts - capped at ``max_attempts``.
* ``give_up_after`` - when the silence counts: the last attempt gets one
  retransmission timeout to be answered, and no plan gives up before
  ``rtos`` retransmission timeouts, nor before ``floor`` (scheduling and
  jitter on a fast path), nor after ``ceiling`` (the fixed
  ``dialback_timeout``). Attempts that could not start before the give-up
  are dropped.

Where the transport measures nothing (no ``TCP_INFO`` on the platform, an
in-memory transport), the connection handshake's own round trip is the
sample (:meth:`PathStats.from_handshake`): its variation is taken as half
the sample and, with no segment counts, the loss estimate is the most
cautious one, so such a plan has the most attempts. Without any measurement
(a dial-back to another IP than the requester's: another path) the plan is
the fixed ceiling with one attempt - the behaviour before this module.
Everything is a pure function of its arguments: no clock, no sockets (the
measurement is read by ``actors.transport._sockets.path_stats``; the
transport follows the plan).

Why this cannot turn a reachable client into a wrong "unreachable" more
often than ``miss_target`` per dial-back: a client that is reachable answers
every SYN that arrives within about one RTT, the last attempt still has a
full retransmission timeout (which already includes four deviations of the
RTT) when the plan gives up, and the client itself needs ``confidence``
servers agreeing before it believes "unreachable" - a later success
overturns it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ..core import LocalProtocolError

__all__ = ["DEFAULT_FLOOR", "DEFAULT_MAX_ATTEMPTS", "DEFAULT_MISS_TARGET", "DEFAULT_RTOS",
           "ConnectPlan", "PathStats", "plan_dial_back"]

DEFAULT_FLOOR: Final = 0.3
"""Seconds: no dial-back gives up sooner, whatever the path (scheduling, jitter)."""
DEFAULT_RTOS: Final = 1.5
"""No dial-back gives up before this many retransmission timeouts."""
DEFAULT_MAX_ATTEMPTS: Final = 12
"""At most this many connection attempts (SYNs from fresh ports) per dial-back."""
DEFAULT_MISS_TARGET: Final = 1e-3
"""Plan enough attempts that all failing on a reachable client is this unlikely."""
MIN_RTO: Final = 0.05
"""Seconds: the retransmission timeout used for a path faster than this (loopback)."""
MIN_SPACING: Final = 0.05
"""Seconds: hedges are never closer together than this."""
MAX_LOSS: Final = 0.5
"""The loss estimate is capped here: beyond it no number of attempts is convincing."""


@dataclass(frozen=True)
class PathStats:
    """The kernel's view of one TCP connection: round trip (seconds) and loss (segments)."""

    srtt: float
    rttvar: float
    segments_sent: int = 0
    retransmitted: int = 0

    def __post_init__(self) -> None:
        for name in ("srtt", "rttvar"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise LocalProtocolError(f"PathStats.{name} must be a finite number >= 0, "
                                         f"got {value!r}")
        for name in ("segments_sent", "retransmitted"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LocalProtocolError(f"PathStats.{name} must be an integer >= 0, "
                                         f"got {value!r}")

    @classmethod
    def from_handshake(cls, rtt: float) -> PathStats:
        """What one RTT sample says (the connection handshake's, where the transport
        measures nothing): variation half the sample (RFC 6298's first-sample rule),
        no segment counts, so the loss estimate is the most cautious one."""
        return cls(srtt=rtt, rttvar=rtt / 2)

    @property
    def rto(self) -> float:
        """TCP's retransmission timeout for this path (``srtt + 4 * rttvar``, at least
        :data:`MIN_RTO`)."""
        return max(MIN_RTO, self.srtt + 4 * self.rttvar)

    @property
    def loss(self) -> float:
        """Estimated loss per direction: (retransmitted + 0.5) / (sent + 1), at most
        :data:`MAX_LOSS`."""
        sent = max(self.segments_sent, self.retransmitted)
        return min(MAX_LOSS, (self.retransmitted + 0.5) / (sent + 1))


@dataclass(frozen=True)
class ConnectPlan:
    """When to start each connection attempt, and when to give up (seconds from the start)."""

    attempts: tuple[float, ...]
    give_up_after: float
    measured: bool
    """False: no measurement, the fixed ceiling applies."""

    def __post_init__(self) -> None:
        if not self.attempts or self.attempts[0] != 0 or list(self.attempts) != sorted(
                self.attempts) or self.attempts[-1] >= self.give_up_after:
            raise LocalProtocolError(f"bad connect plan: attempts {self.attempts} must start "
                                     f"at 0, ascend and start before {self.give_up_after}")


def attempts_needed(loss: float, *, miss_target: float = DEFAULT_MISS_TARGET,
                    max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> int:
    """How many attempts make all of them failing less likely than ``miss_target``."""
    fail = 1 - (1 - loss) ** 2  # the SYN or the SYN-ACK lost
    if fail <= 0:
        return 1
    return max(1, min(max_attempts, math.ceil(math.log(miss_target) / math.log(fail))))


def plan_dial_back(path: PathStats | None, *, ceiling: float, floor: float = DEFAULT_FLOOR,
                   rtos: float = DEFAULT_RTOS, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                   miss_target: float = DEFAULT_MISS_TARGET,
                   min_spacing: float = MIN_SPACING) -> ConnectPlan:
    """The connect-phase plan for a dial-back over a path measured as ``path``."""
    _check(ceiling=ceiling, floor=floor, rtos=rtos, min_spacing=min_spacing)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise LocalProtocolError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    if not 0 < miss_target < 1:
        raise LocalProtocolError(f"miss_target must be in (0, 1), got {miss_target!r}")
    if path is None:
        return ConnectPlan(attempts=(0.0,), give_up_after=ceiling, measured=False)
    count = attempts_needed(path.loss, miss_target=miss_target, max_attempts=max_attempts)
    spacing = max(min_spacing, path.srtt)
    wait = (count - 1) * spacing + path.rto
    give_up = min(ceiling, max(floor, rtos * path.rto, wait))
    attempts = tuple(n * spacing for n in range(count) if n * spacing < give_up)
    return ConnectPlan(attempts=attempts, give_up_after=give_up, measured=True)


def _check(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value <= 0:
            raise LocalProtocolError(f"{name} must be a finite number > 0, got {value!r}")
    if values["floor"] > values["ceiling"]:
        raise LocalProtocolError("floor must not exceed ceiling")
