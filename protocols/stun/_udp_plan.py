"""When and against which server a node measures its UDP NAT profile, sans-io.

Theory of operation
-------------------
A node learns STUN servers from its peers' Identify (``stun_addrs``, each on
the peer's own IP, see :mod:`protocols.identify`). :class:`UdpDiscoveryPlan`
keeps them per peer and decides, on the sans-io contract
(docs/architecture.md, "The sans-io contract"), when to run RFC 5780
behaviour discovery and against which one; the actor runs it
(``actors.transport.discover_udp_profile``) and reports the profile back.

* **One run at a time**, as soon as a server is known: a run is a handful
  of datagrams from one socket, and two runs would only disturb each other's
  NAT bindings.
* **Which server**: those that advertise an RFC 5780 alternate first (only
  they can measure filtering and the mapping behind a NAT), then the one
  tried longest ago (never tried first), ties by arrival.
* **What is published**: a run that measured both mapping and filtering
  replaces the profile; a run that measured less (the server did not answer,
  or has no alternate) is published only while nothing better is known -
  one failing server cannot erase a measurement (it is not evidence).
* **When again**: after a complete run, every ``interval`` seconds; after an
  incomplete one, at once with another server that was never tried, else
  after ``retry_initial`` doubling up to ``interval``. A change of the node's
  local IPs (a new network) and a server with an alternate appearing while
  the profile is incomplete make a run due at once.

Inputs: :meth:`~UdpDiscoveryPlan.handle_peer` (a peer's servers; none
forgets it), :meth:`~UdpDiscoveryPlan.handle_peer_gone`,
:meth:`~UdpDiscoveryPlan.handle_local_ips`,
:meth:`~UdpDiscoveryPlan.handle_run_finished`,
:meth:`~UdpDiscoveryPlan.handle_driver_restart` (a run that was in flight
in a crashed incarnation is over). Commands come out of
:meth:`~UdpDiscoveryPlan.handle_timeout`: :class:`RunDiscovery` and
:class:`PublishUdpProfile`. A second run while one is in flight, or a result
for a run that is not, raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core import LocalProtocolError, PeerId
from ._discovery import NatBehaviour, UdpProfile
from ._stun_codec import Endpoint
from ._stun_responder import StunAddresses

__all__ = [
    "UNKNOWN_UDP_PROFILE",
    "PublishUdpProfile",
    "RunDiscovery",
    "StunServerBound",
    "UdpDiscoveryPlan",
    "UdpDiscoveryStatistics",
    "UdpProfileMeasured",
]

UNKNOWN_UDP_PROFILE: Final = UdpProfile(NatBehaviour.UNKNOWN, NatBehaviour.UNKNOWN)
MAX_SERVERS: Final = 64
"""Peers whose STUN servers are kept (the oldest dropped first)."""
RETRY_INITIAL: Final = 30.0
NEXT_SERVER_DELAY: Final = 1.0
"""After an incomplete run, the next untried server is asked this much later."""


@dataclass(frozen=True)
class StunServerBound:
    """Node event: our STUN server serves ``addresses`` (None: it stopped)."""

    addresses: StunAddresses | None


@dataclass(frozen=True)
class UdpProfileMeasured:
    """Node event: our UDP NAT profile, as measured against ``server``."""

    profile: UdpProfile
    server: Endpoint | None = None


@dataclass(frozen=True)
class RunDiscovery:
    """Command: run behaviour discovery against ``server`` (advertised by ``peer``)."""

    peer: PeerId
    server: Endpoint


@dataclass(frozen=True)
class PublishUdpProfile:
    """Command: tell the node its UDP profile."""

    profile: UdpProfile
    server: Endpoint


@dataclass(frozen=True)
class UdpDiscoveryStatistics:
    servers: int
    """Peers whose STUN servers we know."""
    running: bool
    runs: int
    """Discovery runs finished."""
    complete: int
    """Of those, runs that measured both mapping and filtering."""
    next_run_at: float | None
    alternates: int = 0
    """Of the servers, those with an RFC 5780 alternate (only they can measure
    filtering)."""


def _known(profile: UdpProfile) -> int:
    return sum(value is not NatBehaviour.UNKNOWN for value in (profile.mapping, profile.filtering))


@dataclass
class _Server:
    addrs: tuple[Endpoint, ...]
    alternate: bool
    order: int
    last_tried: float | None = None


class UdpDiscoveryPlan:
    """See the module docstring."""

    def __init__(self, *, interval: float, retry_initial: float = RETRY_INITIAL) -> None:
        if not interval > 0 or not retry_initial > 0:
            raise LocalProtocolError("UdpDiscoveryPlan: interval and retry_initial must be > 0")
        self._interval = interval
        self._retry_initial = min(retry_initial, interval)
        self._retry = self._retry_initial
        self._servers: dict[PeerId, _Server] = {}
        self._arrivals = 0
        self._running: PeerId | None = None
        self._due: float | None = None  # None: due as soon as a server is known
        self._published = UNKNOWN_UDP_PROFILE
        self._runs = self._complete = 0
        self._pending: PublishUdpProfile | None = None
        self._again = False  # made due while a run was in flight

    @property
    def profile(self) -> UdpProfile:
        """The profile published last (``unknown`` before the first)."""
        return self._published

    @property
    def running(self) -> bool:
        return self._running is not None

    @property
    def servers(self) -> int:
        return len(self._servers)

    # --- inputs ------------------------------------------------------------------------

    def handle_peer(self, peer: PeerId, addrs: tuple[Endpoint, ...], alternate: bool,
                    now: float) -> None:
        """``peer``'s STUN servers, from its latest Identify (empty: it serves none)."""
        if not addrs:
            self._servers.pop(peer, None)
            return
        old = self._servers.pop(peer, None)
        self._arrivals += 1
        self._servers[peer] = _Server(addrs, alternate, self._arrivals,
                                      old.last_tried if old else None)
        while len(self._servers) > MAX_SERVERS:
            del self._servers[next(iter(self._servers))]
        if alternate and (old is None or not old.alternate) and _known(self._published) < 2:
            self._make_due(now)

    def server_peers(self) -> tuple[PeerId, ...]:
        """Peers whose STUN servers are known (at most :data:`MAX_SERVERS`)."""
        return tuple(self._servers)

    def handle_peer_gone(self, peer: PeerId) -> None:
        self._servers.pop(peer, None)

    def handle_local_ips(self, now: float) -> None:
        """Our local IPs changed (a new network): the profile may have changed too."""
        self._retry = self._retry_initial
        self._make_due(now)

    def handle_run_finished(self, run: RunDiscovery, profile: UdpProfile, now: float) -> None:
        if self._running != run.peer:
            raise LocalProtocolError(
                f"UdpDiscoveryPlan: a result for {run.peer}, but the run in flight is "
                f"{self._running}")
        self._running = None
        self._runs += 1
        server = self._servers.get(run.peer)
        if server is not None:
            server.last_tried = now
        known = _known(profile)
        if known == 2:
            self._complete += 1
            self._retry = self._retry_initial
            self._due = now + self._interval
        elif any(s.last_tried is None for s in self._servers.values()):
            self._due = now + NEXT_SERVER_DELAY
        else:
            self._due = now + self._retry
            self._retry = min(self._retry * 2, self._interval)
        if self._again:
            self._again = False
            self._due = now
        if known == 2 or known > _known(self._published):
            self._pending = PublishUdpProfile(profile, run.server)

    def handle_driver_restart(self) -> None:
        """The incarnation that ran discovery is gone: nothing is in flight any more."""
        self._running = None

    # --- the contract ------------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        if self._pending is not None:
            return 0.0  # due now (the input that queued it woke the driver)
        if self._running is not None or not self._servers:
            return None
        return self._due if self._due is not None else 0.0

    def handle_timeout(self, now: float) -> list[RunDiscovery | PublishUdpProfile]:
        commands: list[RunDiscovery | PublishUdpProfile] = []
        if self._pending is not None:
            self._published = self._pending.profile
            commands.append(self._pending)
            self._pending = None
        if self._running is None and self._servers and (self._due is None or self._due <= now):
            peer, server = min(self._servers.items(), key=lambda item: (
                not item[1].alternate, item[1].last_tried is not None,
                item[1].last_tried or 0.0, item[1].order))
            self._running = peer
            self._due = now + self._interval  # replaced when the run ends
            commands.append(RunDiscovery(peer, server.addrs[0]))
        return commands

    def statistics(self) -> UdpDiscoveryStatistics:
        return UdpDiscoveryStatistics(
            servers=len(self._servers), running=self._running is not None, runs=self._runs,
            complete=self._complete,
            next_run_at=None if self._running is not None else self._due,
            alternates=sum(server.alternate for server in self._servers.values()))

    def _make_due(self, now: float) -> None:
        if self._running is not None:
            self._again = True
        elif self._due is None or self._due > now:
            self._due = now
