"""ProbeScheduler: the AutoNAT client's probing policy, sans-io.

The rules: (docs/architecture.md, "AutoNAT client rules"); the driving
contract: (docs/architecture.md, "The sans-io contract").

Theory of operation
-------------------
The scheduler decides *which server to ask about which of our addresses,
when*; the probing actor performs the network exchanges it asks for and
reports back. It owns:

* **candidates and NAT mapping** - recomputed (with
  :func:`candidate_addresses` and :func:`classify_nat_mapping`) only when the
  listen or observed addresses actually changed
  (:meth:`~ProbeScheduler.handle_addresses`), and handed to the
  :class:`Reachability` machine it wraps;
* **servers** - connected peers (:meth:`~ProbeScheduler.handle_connection_up`
  / ``_down``) whose Identify lists the dial-request protocol
  (:meth:`~ProbeScheduler.handle_peer_identified`; either may come first);
* **rounds and top-ups** - an address the machine says is due gets a full
  round: up to ``probe_servers`` servers at once, distinct subnets and IPs
  first (:func:`choose_servers`), never a distrusted (lying) server, never
  one already asked about that address. An address still ``unknown`` but not
  due is *topped up* as soon as servers appear that have no live evidence for
  it and were not asked about it within ``retry_server`` seconds, so the first
  verdict does not wait for the retry backoff while servers trickle in;
* **welcome probes** - with ``welcome_probes`` on (boot nodes), every AutoNAT
  peer gets one probe when it first connects: about our best candidate, or,
  without one, about our end of its inbound connection (which it can dial by
  construction). That probe is what makes the newcomer ``fully_connected``;
* **the small-network wait** - the number of available servers is reported
  to the :class:`Reachability` machine (which owns the rule) and the wait's
  start and end are announced as commands, for the actor's log;
* **publishing** - the last published NAT mapping, so that every change of
  verdicts, ``nat_status`` or mapping is published exactly once.

Inputs are ``handle_<input>(..., now)``; each returns the commands the driver
must execute, in order: :class:`PublishReachability`,
:class:`SmallNetworkWaitStarted` / :class:`SmallNetworkWaitEnded` (log
lines) and :class:`StartProbe`. Every input ends with one *step*: expire
evidence, recount servers, plan welcome probes, rounds and top-ups.
:meth:`~ProbeScheduler.poll_timeout` is the earliest future time at which
:meth:`~ProbeScheduler.handle_timeout` would change something: an address
coming due, evidence expiring or a liar being forgiven, the small-network
review, a recently asked server becoming askable again. There is no fixed
polling interval.

Probes are keyed by a ``probe_id`` the scheduler issues; nonces stay with the
actor's dial-back receiver (64 bits from :mod:`secrets`). A probe is in
flight from :class:`StartProbe` until :meth:`~ProbeScheduler.handle_probe_finished`
(or ``handle_probe_cancelled``), also when the server's connection went down
meanwhile: the result still counts.

Impossible inputs raise :class:`ProbeSchedulerError` naming the state and the
input: a result or request for a probe id not in flight, a result about
another address or server than the probe's, a connection-down for a peer not
connected. They are driver bugs, not network events (the network cannot make
them happen), so they are not counted and dropped but refused loudly.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ..core import AddressPolicy, LocalProtocolError, PeerId, WsAddress
from ._autonat_candidates import ProbeServer, candidate_addresses, choose_servers
from ._autonat_events import NatMapping, ProbeResult, ReachabilityUpdate
from ._autonat_msg import DIAL_REQUEST_PROTOCOL_ID
from ._nat_mapping import AddressObservation, classify_nat_mapping
from ._reachability import Reachability, ReachabilityEvent

__all__ = [
    "RETRY_SERVER",
    "ProbeCommand",
    "ProbeScheduler",
    "ProbeSchedulerError",
    "ProbeSchedulerStatistics",
    "PublishReachability",
    "SmallNetworkWait",
    "SmallNetworkWaitEnded",
    "SmallNetworkWaitStarted",
    "StartProbe",
]

RETRY_SERVER: Final = 30.0
"""An unknown address is not topped up with a server asked about it this recently."""


class ProbeSchedulerError(LocalProtocolError):
    """An input the scheduler's state cannot accept (a driver bug); the message names both."""


# --- commands ------------------------------------------------------------------


@dataclass(frozen=True)
class StartProbe:
    """Ask ``server`` (connected, AutoNAT) to dial ``addr``; report as ``probe_id``."""

    probe_id: int
    addr: WsAddress
    server: PeerId
    welcome: bool = False
    """A welcome probe (boot nodes probe every newcomer once)."""


@dataclass(frozen=True)
class PublishReachability:
    """Send ``update`` to the StatusTracker; ``events`` say what changed (for the log)."""

    update: ReachabilityUpdate
    events: tuple[ReachabilityEvent, ...]


@dataclass(frozen=True)
class SmallNetworkWait:
    """Fewer AutoNAT servers than the threshold: wait before they may decide alone."""

    servers: int
    threshold: int
    """The configured threshold (the number of servers a verdict normally needs)."""
    wait_s: float
    """The wait's full length (``ReachabilityConfig.small_network_settle``)."""
    until: float
    """When it ends (node time), unless more servers come first."""


@dataclass(frozen=True)
class SmallNetworkWaitStarted:
    """A small-network wait began (or its end moved): log it."""

    wait: SmallNetworkWait


@dataclass(frozen=True)
class SmallNetworkWaitEnded:
    """The small-network wait is over: ``threshold_in_force`` now applies."""

    servers: int
    threshold_in_force: int


ProbeCommand: TypeAlias = (
    StartProbe | PublishReachability | SmallNetworkWaitStarted | SmallNetworkWaitEnded
)


@dataclass(frozen=True)
class ProbeSchedulerStatistics:
    """Counters since creation and the current state; tuples are sorted."""

    outcomes: tuple[tuple[str, int], ...]
    """Finished probes by outcome (``reachable``, ``unreachable``, ``lied``, ...)."""
    probes_started: int
    welcome_probes: int
    in_flight: int
    cancelled: int
    servers_available: int
    """Connected peers that serve AutoNAT dial requests, at the latest step."""
    servers_contacted: tuple[PeerId, ...]
    """Servers we sent a dial request to (answered or not)."""
    servers_answered: tuple[PeerId, ...]
    """Servers that sent us a DialResponse (whatever it said)."""
    candidates: int
    candidate_recomputations: int
    """How often candidates and NAT mapping were recomputed (only on address changes)."""
    nat_mapping: NatMapping
    small_network_wait: SmallNetworkWait | None


# --- state ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Connection:
    remote_addr: WsAddress
    local_addr: WsAddress
    inbound: bool


@dataclass(frozen=True)
class _Probe:
    addr: WsAddress
    server: PeerId
    started_at: float
    welcome: bool


@dataclass
class _Counters:
    outcomes: Counter[str] = field(default_factory=Counter)
    started: int = 0
    welcome: int = 0
    cancelled: int = 0
    recomputations: int = 0


class ProbeScheduler:
    """The probing policy of the AutoNAT client; see the module docstring."""

    def __init__(
        self,
        reachability: Reachability | None = None,
        *,
        policy: AddressPolicy,
        rng: random.Random,
        probe_servers: int = 3,
        welcome_probes: bool = False,
        retry_server: float = RETRY_SERVER,
        candidate_limit: int = 16,
    ) -> None:
        if isinstance(probe_servers, bool) or not isinstance(probe_servers, int) \
                or probe_servers < 1:
            raise ValueError(f"probe_servers must be an int >= 1, got {probe_servers!r}")
        if not math.isfinite(retry_server) or retry_server < 0:
            raise ValueError(f"retry_server must be a finite number >= 0, got {retry_server!r}")
        self.reachability = reachability if reachability is not None else Reachability()
        self._policy = policy
        self._rng = rng
        self._probe_servers = probe_servers
        self._welcome_probes = welcome_probes
        self._retry_server = retry_server
        self._candidate_limit = candidate_limit
        self._now = -math.inf
        self._listen: tuple[WsAddress, ...] | None = None
        self._observed: tuple[AddressObservation, ...] | None = None
        self._best: tuple[WsAddress, ...] = ()  # candidates, best first
        self._mapping: NatMapping = "unknown"
        self._published: ReachabilityUpdate | None = None
        self._connections: dict[PeerId, _Connection] = {}
        self._autonat_peers: set[PeerId] = set()
        self._in_flight: dict[int, _Probe] = {}
        self._next_id = 1
        self._tried: dict[WsAddress, dict[PeerId, float]] = {}
        self._welcomed: set[PeerId] = set()
        self._contacted: set[PeerId] = set()
        self._answered: set[PeerId] = set()
        self._available = 0
        self._small_wait: SmallNetworkWait | None = None
        self._counters = _Counters()

    # --- reading -------------------------------------------------------------

    @property
    def nat_mapping(self) -> NatMapping:
        return self._mapping

    @property
    def candidates(self) -> tuple[WsAddress, ...]:
        """Our candidate addresses, best first."""
        return self._best

    @property
    def small_network_wait(self) -> SmallNetworkWait | None:
        return self._small_wait

    @property
    def last_published(self) -> ReachabilityUpdate | None:
        """The update of the latest :class:`PublishReachability` (None before the first)."""
        return self._published

    def is_autonat_server(self, peer: PeerId) -> bool:
        """Did ``peer``'s latest Identify list the dial-request protocol?"""
        return peer in self._autonat_peers

    def in_flight(self) -> tuple[StartProbe, ...]:
        """The probes started and not finished, by id."""
        return tuple(StartProbe(pid, p.addr, p.server, p.welcome)
                     for pid, p in sorted(self._in_flight.items()))

    def statistics(self) -> ProbeSchedulerStatistics:
        c = self._counters
        return ProbeSchedulerStatistics(
            outcomes=tuple(sorted(c.outcomes.items())),
            probes_started=c.started,
            welcome_probes=c.welcome,
            in_flight=len(self._in_flight),
            cancelled=c.cancelled,
            servers_available=self._available,
            servers_contacted=tuple(sorted(self._contacted)),
            servers_answered=tuple(sorted(self._answered)),
            candidates=len(self.reachability.candidates),
            candidate_recomputations=c.recomputations,
            nat_mapping=self._mapping,
            small_network_wait=self._small_wait,
        )

    # --- inputs --------------------------------------------------------------

    def handle_connection_up(self, peer: PeerId, *, remote_addr: WsAddress,
                             local_addr: WsAddress, inbound: bool,
                             now: float) -> list[ProbeCommand]:
        """``peer`` is connected (a newer connection replaces an older one)."""
        self._connections[peer] = _Connection(remote_addr, local_addr, inbound)
        return self._step(now, [])

    def handle_connection_down(self, peer: PeerId, now: float) -> list[ProbeCommand]:
        """``peer``'s connection closed; its probes in flight still end with a result."""
        if self._connections.pop(peer, None) is None:
            raise ProbeSchedulerError(
                f"connection down for {peer}, which is not connected "
                f"({len(self._connections)} connected)")
        return self._step(now, [])

    def handle_peer_identified(self, peer: PeerId, protocols: Iterable[str],
                               now: float) -> list[ProbeCommand]:
        """``peer``'s Identify listed ``protocols`` (connected or not yet)."""
        return self.handle_peers_identified([(peer, protocols)], now)

    def handle_peers_identified(self, peers: Iterable[tuple[PeerId, Iterable[str]]],
                                now: float) -> list[ProbeCommand]:
        """Several peers identified at once: one step, so one round sees all of them."""
        for peer, protocols in peers:
            if DIAL_REQUEST_PROTOCOL_ID in protocols:
                self._autonat_peers.add(peer)
            else:
                self._autonat_peers.discard(peer)
        return self._step(now, [])

    def handle_addresses(self, listen_addrs: tuple[WsAddress, ...],
                         observed_addrs: tuple[AddressObservation, ...],
                         now: float) -> list[ProbeCommand]:
        """Our listen or observed addresses (may have) changed.

        Candidates and NAT mapping are recomputed only when either differs
        from what the previous call passed.
        """
        events: list[ReachabilityEvent] = []
        if listen_addrs != self._listen or observed_addrs != self._observed:
            self._listen, self._observed = listen_addrs, observed_addrs
            self._counters.recomputations += 1
            self._best = candidate_addresses(listen_addrs, observed_addrs, self._policy,
                                             limit=self._candidate_limit)
            events = self.reachability.handle_candidates(self._best, now)
            self._mapping = classify_nat_mapping(observed_addrs, policy=self._policy)
            live = set(self.reachability.candidates)
            for addr in [a for a in self._tried if a not in live]:
                del self._tried[addr]
        return self._step(now, events)

    def handle_request_sent(self, probe_id: int, now: float) -> list[ProbeCommand]:
        """The dial request of ``probe_id`` went out (the server counts as contacted)."""
        probe = self._probe(probe_id, "request sent")
        self._contacted.add(probe.server)
        return []

    def handle_probe_finished(self, probe_id: int, result: ProbeResult, now: float, *,
                              answered: bool) -> list[ProbeCommand]:
        """``probe_id`` ended with ``result``; ``answered``: the server sent a DialResponse."""
        probe = self._probe(probe_id, "result")
        if result.server != probe.server or result.addr.with_peer_id(None) != probe.addr:
            raise ProbeSchedulerError(
                f"result about {result.addr} from {result.server} for probe {probe_id}, "
                f"which asked {probe.server} about {probe.addr}")
        del self._in_flight[probe_id]
        if answered:
            self._answered.add(probe.server)
        self._counters.outcomes[result.outcome.value] += 1
        return self._step(now, self.reachability.handle_probe_result(result, now))

    def handle_probe_cancelled(self, probe_id: int, now: float) -> list[ProbeCommand]:
        """``probe_id`` was never run or was abandoned: no result, not an outcome."""
        self._probe(probe_id, "cancellation")
        del self._in_flight[probe_id]
        self._counters.cancelled += 1
        return self._step(now, [])

    def handle_driver_restart(self, now: float) -> list[ProbeCommand]:
        """The driver restarted: every probe it was running is gone without a result."""
        self._counters.cancelled += len(self._in_flight)
        self._in_flight.clear()
        return self._step(now, [])

    def handle_timeout(self, now: float) -> list[ProbeCommand]:
        return self._step(now, [])

    def poll_timeout(self) -> float | None:
        """The earliest future time at which :meth:`handle_timeout` changes something."""
        now, reach = self._now, self.reachability
        times = [reach.next_probe_at(after=now), reach.poll_timeout()]
        for addr, tried in self._tried.items():
            if reach.verdict(addr) == "unknown":
                times.extend(t + self._retry_server for t in tried.values())
        return min((t for t in times if t is not None and t > now), default=None)

    def _probe(self, probe_id: int, what: str) -> _Probe:
        probe = self._in_flight.get(probe_id)
        if probe is None:
            raise ProbeSchedulerError(
                f"{what} for probe {probe_id}, which is not in flight "
                f"(in flight: {sorted(self._in_flight) or 'none'})")
        return probe

    # --- one step ------------------------------------------------------------

    def _step(self, now: float, events: list[ReachabilityEvent]) -> list[ProbeCommand]:
        self._now = now
        reach = self.reachability
        servers = {peer: conn for peer, conn in self._connections.items()
                   if peer in self._autonat_peers}
        starts = self._welcome(servers, now)
        events = events + reach.handle_servers_available(len(servers), now)
        due = reach.poll_timeout()
        if due is not None and due <= now:
            events += reach.handle_timeout(now)
        commands: list[ProbeCommand] = self._publish(events, now)
        commands.extend(self._note_small_network(len(servers), now))
        commands.extend(starts)
        commands.extend(self._plan(servers, now))
        return commands

    def _publish(self, events: list[ReachabilityEvent], now: float) -> list[ProbeCommand]:
        published = "unknown" if self._published is None else self._published.nat_mapping
        if not events and self._mapping == published:
            return []
        view = self.reachability.snapshot()
        self._published = ReachabilityUpdate(
            nat_status=view.nat_status, reachable_addrs=view.reachable_addrs,
            unreachable_addrs=view.unreachable_addrs, nat_mapping=self._mapping, at=now)
        return [PublishReachability(self._published, tuple(events))]

    def _note_small_network(self, servers: int, now: float) -> list[ProbeCommand]:
        """Track the small-network wait: announce when it starts and when it ends."""
        self._available = servers
        reach = self.reachability
        review = reach.small_network_until
        until = review if servers and review is not None and review > now else None
        before = self._small_wait
        if until is not None and (before is None or before.until != until):
            wait = SmallNetworkWait(servers, reach.config.threshold,
                                    reach.config.small_network_settle, until)
            self._small_wait = wait
            return [SmallNetworkWaitStarted(wait)]
        if until is None and before is not None:
            self._small_wait = None
            return [SmallNetworkWaitEnded(servers, reach.threshold)]
        return []

    def _start(self, addr: WsAddress, server: PeerId, now: float, *,
               welcome: bool = False) -> StartProbe | None:
        if any(p.addr == addr and p.server == server for p in self._in_flight.values()):
            return None
        probe_id, self._next_id = self._next_id, self._next_id + 1
        self._in_flight[probe_id] = _Probe(addr, server, now, welcome)
        self._counters.started += 1
        self._counters.welcome += welcome
        return StartProbe(probe_id, addr, server, welcome)

    def _welcome(self, servers: dict[PeerId, _Connection], now: float) -> list[ProbeCommand]:
        """One probe to every new AutoNAT peer (boot nodes probe their newcomers).

        Only the candidate kind counts as evidence for us; either way the
        newcomer sees an inbound probe.
        """
        if not self._welcome_probes:
            return []
        commands: list[ProbeCommand] = []
        for peer, conn in servers.items():
            if peer in self._welcomed:
                continue
            if self._best:
                addr = self._best[0]
            elif conn.inbound:
                addr = conn.local_addr.with_peer_id(None)
            else:
                continue
            self._welcomed.add(peer)
            start = self._start(addr, peer, now, welcome=True)
            if start is not None:
                commands.append(start)
        return commands

    def _plan(self, servers: dict[PeerId, _Connection], now: float) -> list[ProbeCommand]:
        """Full rounds for due addresses, top-ups for unknown ones (see the module doc)."""
        reach = self.reachability
        due = set(reach.addresses_needing_probe(now))
        distrusted = reach.distrusted_servers(now)
        commands: list[ProbeCommand] = []
        for addr in reach.candidates:
            is_due = addr in due
            unknown = reach.verdict(addr) == "unknown"
            if not is_due and not unknown:
                continue
            busy = {p.server for p in self._in_flight.values() if p.addr == addr}
            evidence = reach.evidence_servers(addr, now)
            want = self._probe_servers - len(busy) - (0 if is_due else len(evidence))
            if want <= 0:
                continue
            tried = self._tried.setdefault(addr, {})
            skip = set(distrusted) | busy
            if not is_due:
                skip |= {p for p, t in tried.items() if t + self._retry_server > now}
            if unknown:
                skip |= evidence
            options = [ProbeServer(peer, conn.remote_addr, (DIAL_REQUEST_PROTOCOL_ID,))
                       for peer, conn in servers.items()]
            chosen = [s.peer_id for s in
                      choose_servers(options, want, exclude=skip, rng=self._rng)]
            if not chosen:
                continue
            if is_due:
                reach.handle_probe_started(addr, now)
            for server in chosen:
                tried[server] = now
                start = self._start(addr, server, now)
                if start is not None:
                    commands.append(start)
        return commands
