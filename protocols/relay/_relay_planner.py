"""Which relays a private node reserves on, and when it renews or replaces them.

Theory of operation
-------------------
A node that AutoNAT finds ``private`` cannot be dialed; it stays reachable
through Circuit Relay v2 reservations on ``wanted`` public relays (2 by
default, as the issue asks). :class:`RelayPlanner` decides, sans-io, on
which: the actor reports the node's reachability, the connected peers that
serve the hop protocol (with their IP and round-trip time), and how each
RESERVE went; the planner answers with :class:`ReserveOn` commands. Time is
an argument; :meth:`~RelayPlanner.poll_timeout` says when to call
:meth:`~RelayPlanner.handle_timeout` (a renewal or a retry is due).

**Choice.** Diversity first, then latency: among the candidates that are
neither held, asked, nor backing off, the planner prefers relays in a subnet
(IPv4 /24, IPv6 /56) none of its relays is in - two relays behind one
router fail together - and, among those, the lowest round-trip time.

**Lifecycle of one relay** (the table ``_TRANSITIONS``; any other event
raises :class:`~protocols.LocalProtocolError`)::

    CANDIDATE --ask--> RESERVING --reserved--> HELD --renew--> RENEWING
        ^                  |                    ^                 |
        |                failed                 +---reserved------+
        +--retry-- BACKOFF <-----------------------failed---------+
    HELD/RESERVING/RENEWING --release--> CANDIDATE   (the node became public)

A reservation is renewed halfway through its ``ttl``; a refused or failed
RESERVE puts the relay in BACKOFF (doubling, jittered by the caller's
``Backoff``) and another candidate is asked at once. A relay whose
connection is gone (:meth:`~RelayPlanner.handle_candidate_gone`) is
forgotten and replaced. When the node becomes public every reservation is
released (no message: it lapses on the relay) and :meth:`~RelayPlanner.held`
is empty, so the node stops advertising circuit addresses. Answers that
arrive for a relay released or gone meanwhile are ignored.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Final

from ..core import Backoff, IPAddress, IPNetwork, LocalProtocolError, PeerId, subnet_of

__all__ = ["RelayPlanner", "RelayPlannerStatistics", "RelayState", "ReserveOn"]

DEFAULT_WANTED: Final = 2
RENEW_FRACTION: Final = 0.5
"""A reservation is renewed after this fraction of its ttl."""


class RelayState(enum.Enum):
    CANDIDATE = "candidate"
    RESERVING = "reserving"
    HELD = "held"
    RENEWING = "renewing"
    BACKOFF = "backoff"


_TRANSITIONS: Final[dict[tuple[RelayState, str], RelayState]] = {
    (RelayState.CANDIDATE, "ask"): RelayState.RESERVING,
    (RelayState.RESERVING, "reserved"): RelayState.HELD,
    (RelayState.RESERVING, "failed"): RelayState.BACKOFF,
    (RelayState.HELD, "renew"): RelayState.RENEWING,
    (RelayState.RENEWING, "reserved"): RelayState.HELD,
    (RelayState.RENEWING, "failed"): RelayState.BACKOFF,
    (RelayState.BACKOFF, "retry"): RelayState.CANDIDATE,
    (RelayState.HELD, "release"): RelayState.CANDIDATE,
    (RelayState.RESERVING, "release"): RelayState.CANDIDATE,
    (RelayState.RENEWING, "release"): RelayState.CANDIDATE,
}
_ASKED: Final = frozenset({RelayState.RESERVING, RelayState.RENEWING})
_COUNTED: Final = frozenset({RelayState.RESERVING, RelayState.HELD, RelayState.RENEWING})


@dataclass(frozen=True)
class ReserveOn:
    """Send RESERVE to ``relay`` (``renewal``: we hold a reservation there already)."""

    relay: PeerId
    renewal: bool


@dataclass(frozen=True)
class RelayPlannerStatistics:
    private: bool
    candidates: int
    held: tuple[PeerId, ...]
    asked: int
    reserved: int
    failed: int
    lost: int
    """Held reservations whose relay connection went away."""


@dataclass
class _Relay:
    peer: PeerId
    subnet: IPNetwork
    rtt: float
    state: RelayState = RelayState.CANDIDATE
    due: float = 0.0
    """HELD: when to renew; BACKOFF: when to retry."""
    failures: int = 0


class RelayPlanner:
    """See the module docstring. ``backoff`` (jittered with ``rng``) spaces retries of a
    failing relay."""

    def __init__(self, *, backoff: Backoff, rng: random.Random,
                 wanted: int = DEFAULT_WANTED) -> None:
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
            raise ValueError(f"wanted must be an int >= 0, got {wanted!r}")
        self.wanted = wanted
        self._backoff = backoff
        self._rng = rng
        self._private = False
        self._relays: dict[PeerId, _Relay] = {}
        self._late: set[PeerId] = set()
        self._counts = dict.fromkeys(("asked", "reserved", "failed", "lost"), 0)

    # --- inputs -------------------------------------------------------------

    def handle_reachability(self, private: bool, now: float) -> list[ReserveOn]:
        """The node's verdict changed (``private`` or not)."""
        self._private = private
        if private:
            return self._fill(now)
        for relay in self._relays.values():
            if relay.state in _COUNTED:
                if relay.state in _ASKED:
                    self._late.add(relay.peer)
                self._move(relay, "release")
        return []

    def handle_candidate(self, peer: PeerId, ip: IPAddress, rtt: float,
                         now: float) -> list[ReserveOn]:
        """``peer``, connected from ``ip`` with round trip ``rtt``, serves the hop protocol."""
        relay = self._relays.get(peer)
        if relay is None:
            self._relays[peer] = _Relay(peer, subnet_of(ip), rtt)
        else:
            relay.rtt, relay.subnet = rtt, subnet_of(ip)
        return self._fill(now)

    def handle_candidate_gone(self, peer: PeerId, now: float) -> list[ReserveOn]:
        """The connection to ``peer`` ended: forget it, and replace it if we relied on it."""
        relay = self._relays.pop(peer, None)
        if relay is None:
            return []
        if relay.state in _ASKED:
            self._late.add(peer)
        if relay.state in (RelayState.HELD, RelayState.RENEWING):
            self._counts["lost"] += 1
        return self._fill(now)

    def handle_reserved(self, peer: PeerId, ttl: float, now: float) -> list[ReserveOn]:
        """RESERVE on ``peer`` succeeded for ``ttl`` seconds."""
        relay = self._answered(peer)
        if relay is None:
            return []
        self._move(relay, "reserved")
        relay.due = now + ttl * RENEW_FRACTION
        relay.failures = 0
        self._counts["reserved"] += 1
        return []

    def handle_reserve_failed(self, peer: PeerId, now: float, *,
                              refill: bool = True) -> list[ReserveOn]:
        """RESERVE on ``peer`` was refused or failed: back off, ask another. ``refill``
        False: ask no other now (the caller cannot act on commands, e.g. it is being
        cancelled; the next :meth:`handle_timeout` asks)."""
        relay = self._answered(peer)
        if relay is not None:
            self._move(relay, "failed")
            relay.failures += 1
            relay.due = now + self._backoff.delay(relay.failures - 1, self._rng)
            self._counts["failed"] += 1
        return self._fill(now) if refill else []

    def _answered(self, peer: PeerId) -> _Relay | None:
        if peer in self._late:
            self._late.discard(peer)
            return None  # released or gone while we asked
        relay = self._relays.get(peer)
        if relay is None or relay.state not in _ASKED:
            state = "unknown" if relay is None else relay.state.value
            raise LocalProtocolError(f"relay {peer}: an answer nobody asked for ({state})")
        return relay

    # --- time ---------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        """The next renewal or retry, None when nothing is due."""
        if not self._private:
            return None
        due = [r.due for r in self._relays.values()
               if r.state in (RelayState.HELD, RelayState.BACKOFF)]
        return min(due, default=None)

    def handle_timeout(self, now: float) -> list[ReserveOn]:
        if not self._private:
            return []
        commands: list[ReserveOn] = []
        for relay in self._relays.values():
            if relay.due > now:
                continue
            if relay.state is RelayState.HELD:
                self._move(relay, "renew")
                self._counts["asked"] += 1
                commands.append(ReserveOn(relay.peer, renewal=True))
            elif relay.state is RelayState.BACKOFF:
                self._move(relay, "retry")
        return commands + self._fill(now)

    # --- inspection ---------------------------------------------------------

    def held(self) -> tuple[PeerId, ...]:
        """Relays we hold a reservation on (and advertise), best first."""
        held = [r for r in self._relays.values()
                if r.state in (RelayState.HELD, RelayState.RENEWING)]
        return tuple(r.peer for r in sorted(held, key=lambda r: r.rtt))

    def state(self, peer: PeerId) -> RelayState | None:
        relay = self._relays.get(peer)
        return None if relay is None else relay.state

    def statistics(self) -> RelayPlannerStatistics:
        return RelayPlannerStatistics(private=self._private, candidates=len(self._relays),
                                      held=self.held(), **self._counts)

    # --- helpers ------------------------------------------------------------

    def _fill(self, now: float) -> list[ReserveOn]:
        """Ask candidates until ``wanted`` relays are held or asked (diversity, then RTT)."""
        if not self._private:
            return []
        counted = [r for r in self._relays.values() if r.state in _COUNTED]
        used = {r.subnet for r in counted}
        free = [r for r in self._relays.values() if r.state is RelayState.CANDIDATE]
        commands: list[ReserveOn] = []
        for _ in range(self.wanted - len(counted)):
            if not free:
                break
            best = min(free, key=lambda r: (r.subnet in used, r.rtt, r.peer))
            free.remove(best)
            used.add(best.subnet)
            self._move(best, "ask")
            self._counts["asked"] += 1
            commands.append(ReserveOn(best.peer, renewal=False))
        return commands

    def _move(self, relay: _Relay, event: str) -> None:
        following = _TRANSITIONS.get((relay.state, event))
        if following is None:
            raise LocalProtocolError(f"relay {relay.peer}: cannot {event} when "
                                     f"{relay.state.value}")
        relay.state = following
