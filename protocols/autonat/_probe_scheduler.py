"""ProbeScheduler: the AutoNAT client's probing policy, sans-io.

The rules: (docs/architecture.md, "AutoNAT client rules"); the driving
contract: (docs/architecture.md, "The sans-io contract").

Theory of operation
-------------------
The scheduler decides *which server to ask about which of our addresses,
when*; the probing actor performs the network exchanges it asks for and
reports back. It owns:

* **candidates and NAT mapping** - kept by an :class:`ObservationIndex`
  fed one change at a time: our listen addresses
  (:meth:`~ProbeScheduler.handle_listen_addrs`), one peer's observation of
  our address (:meth:`~ProbeScheduler.handle_observation`, from its
  Identify; a newer one replaces the older) or its removal
  (:meth:`~ProbeScheduler.handle_observation_removed`). The work is
  proportional to what changed, not to the number of observers (see
  :mod:`._observation_index`); changed candidates are handed to the
  :class:`Reachability` machine it wraps - except, once the mapping is
  ``endpoint-dependent``, observed ports that are none of our listen ports
  (such a NAT gives each server its own port: probing each would cost one
  request per observer and prove nothing another peer could use);
* **servers** - connected peers (:meth:`~ProbeScheduler.handle_connection_up`
  / ``_down``) whose Identify lists the dial-request protocol
  (:meth:`~ProbeScheduler.handle_peer_identified`; either may come first),
  kept by the :class:`ServerChoice` and updated by those inputs only (never
  rebuilt per step);
* **rounds and top-ups** - an address the machine says is due gets a full
  round: up to ``probe_servers`` servers at once, never a distrusted (lying)
  server, never one already asked about that address. *Whom* among the rest
  is the :class:`ServerChoice`'s (:mod:`._server_choice`): distinct subnets
  and IPs first, a random sample beyond :data:`SAMPLE_SERVERS` servers, one
  server that dials back from a second IP first while fewer than
  ``threshold`` of those have spoken about the address, and servers without
  live evidence first when the address's evidence disagrees
  (:meth:`Reachability.contested`). An address still ``unknown`` but not
  due is *topped up* as soon as servers appear that have no live evidence for
  it and were not asked about it within ``retry_server`` seconds, so the first
  verdict does not wait for the retry backoff while servers trickle in. A
  decided address asks one such second-IP server at a time (none while a
  probe about it is in flight) until ``threshold`` servers' live evidence on
  it is of that kind, which is what ``nat_filtering`` needs;
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

Cost of a step
--------------
A step does no work proportional to the number of connections or servers
S in the common case: the server count is ``len`` of the maintained dict;
welcome probes look only at servers not welcomed yet (each peer is welcomed
once; outbound ones wait, in their own set, for a candidate); a round or
top-up looks at the at most ``candidate_limit`` candidates, and per
candidate at its probes in flight (indexed by address), its evidence and
distrusted servers (bounded by :class:`ReachabilityConfig`) and the servers
asked about it within ``retry_server`` seconds (older entries are pruned).
An unknown address for which no server could be chosen is *parked* until
something could free one: a new server, a probe leaving flight, a
reachability event, or the time at which a recent ask or the machine's own
timeout expires. Choosing servers is O(S) only up to :data:`SAMPLE_SERVERS`
servers, beyond that O(SAMPLE_SERVERS) draws (:mod:`._server_choice`).
Left O(N) on purpose: a change of listen
addresses (every observation is translated again) and :meth:`statistics`
(sorted tuples, read on demand).

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
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from ..core import AddressPolicy, PeerId, WsAddress
from ._autonat_events import NatFiltering, NatMapping, ProbeResult, ReachabilityUpdate
from ._autonat_msg import DIAL_BACK_OTHER_IP_PROTOCOL_ID, DIAL_REQUEST_PROTOCOL_ID
from ._nat_filtering import FilteringEvidence, NatFilteringVotes, seen_at
from ._nat_mapping import AddressObservation
from ._observation_index import ObservationIndex, ObservationIndexStatistics
from ._probe_commands import (
    ProbeCommand,
    ProbeSchedulerError,
    ProbeSchedulerStatistics,
    PublishReachability,
    SmallNetworkWait,
    SmallNetworkWaitEnded,
    SmallNetworkWaitStarted,
    StartProbe,
)
from ._reachability import Reachability
from ._reachability_events import ReachabilityEvent
from ._server_choice import ServerChoice

__all__ = [
    "RECENT_PROBES",
    "RETRY_SERVER",
    "ProbeScheduler",
]

RETRY_SERVER: Final = 30.0
"""An unknown address is not topped up with a server asked about it this recently."""
RECENT_PROBES: Final = 32
"""Finished probes remembered in ``statistics().recent`` (the oldest dropped first)."""


# --- state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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
    far: bool = False
    """Asked a server that dials back from a second IP (the reachability machine waits
    for its answer before contacted-IP dial-backs alone make the address reachable)."""


@dataclass
class _Counters:
    outcomes: Counter[str] = field(default_factory=Counter)
    started: int = 0
    welcome: int = 0
    cancelled: int = 0
    recomputations: int = 0
    recent: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=RECENT_PROBES))


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
        max_observers: int = 1000,
    ) -> None:
        if isinstance(probe_servers, bool) or not isinstance(probe_servers, int) \
                or probe_servers < 1:
            raise ValueError(f"probe_servers must be an int >= 1, got {probe_servers!r}")
        if not math.isfinite(retry_server) or retry_server < 0:
            raise ValueError(f"retry_server must be a finite number >= 0, got {retry_server!r}")
        self.reachability = reachability if reachability is not None else Reachability()
        self.filtering = NatFilteringVotes(self.reachability)
        self._probe_servers = probe_servers
        self._welcome_probes = welcome_probes
        self._retry_server = retry_server
        self._max_observers = max_observers
        self._index = ObservationIndex(policy, limit=candidate_limit,
                                       max_observers=max_observers)
        self._now = -math.inf
        self._best: tuple[WsAddress, ...] = ()  # candidates, best first
        self._mapping: NatMapping = "unknown"
        self._published: ReachabilityUpdate | None = None
        self._connections: dict[PeerId, _Connection] = {}
        self._connected_at: dict[PeerId, int] = {}  # order of connecting (welcome order)
        self._connects = 0
        self._serving: set[PeerId] = set()  # connected, Identify lists dial requests
        self._serving_detached: OrderedDict[PeerId, None] = OrderedDict()  # same, not connected
        self._choice = ServerChoice(rng)  # connected AutoNAT servers, whom to ask
        self._unwelcomed_in: dict[PeerId, None] = {}  # servers to welcome (inbound)
        self._unwelcomed_out: dict[PeerId, None] = {}  # ... outbound: once we have a candidate
        self._in_flight: dict[int, _Probe] = {}
        self._busy: dict[WsAddress, set[PeerId]] = {}  # servers with a probe in flight, by addr
        self._next_id = 1
        self._tried: dict[WsAddress, dict[PeerId, float]] = {}
        self._parked: dict[WsAddress, tuple[int, float]] = {}  # addr -> (epoch, until)
        self._epoch = 0  # bumped by whatever could free a server for an address
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
    def nat_filtering(self) -> NatFiltering:
        return self.filtering.nat_filtering

    @property
    def candidates(self) -> tuple[WsAddress, ...]:
        """Our candidate addresses, best first."""
        return self._best

    @property
    def small_network_wait(self) -> SmallNetworkWait | None:
        return self._small_wait

    @property
    def servers_available(self) -> int:
        """Connected peers whose Identify lists the dial-request protocol, now (O(1))."""
        return len(self._choice)

    @property
    def last_published(self) -> ReachabilityUpdate | None:
        """The update of the latest :class:`PublishReachability` (None before the first)."""
        return self._published

    def is_autonat_server(self, peer: PeerId) -> bool:
        """Did ``peer``'s latest Identify list the dial-request protocol?

        Remembered for every connected peer and for up to ``max_observers``
        peers that are not connected (identified before their connection was
        reported, or disconnected since), the least recent dropped first.
        """
        return peer in self._serving or peer in self._serving_detached

    def in_flight(self) -> tuple[StartProbe, ...]:
        """The probes started and not finished, by id."""
        return tuple(StartProbe(pid, p.addr, p.server, p.welcome)
                     for pid, p in sorted(self._in_flight.items()))

    def observation_statistics(self) -> ObservationIndexStatistics:
        """The observation index's counters (observers, addresses, operations)."""
        return self._index.statistics()

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
            observers=len(self._index),
            nat_mapping=self._mapping,
            small_network_wait=self._small_wait,
            recent=tuple(c.recent),
        )

    # --- inputs --------------------------------------------------------------

    def handle_connection_up(self, peer: PeerId, *, remote_addr: WsAddress,
                             local_addr: WsAddress, inbound: bool,
                             now: float) -> list[ProbeCommand]:
        """``peer`` is connected (a newer connection replaces an older one)."""
        if peer not in self._connections:
            self._connects += 1
            self._connected_at[peer] = self._connects
            if peer in self._serving_detached:  # its Identify came first
                del self._serving_detached[peer]
                self._serving.add(peer)
        self._connections[peer] = _Connection(remote_addr, local_addr, inbound)
        self._sync_server(peer)
        return self._step(now, [])

    def handle_connection_down(self, peer: PeerId, now: float) -> list[ProbeCommand]:
        """``peer``'s connection closed; its probes in flight still end with a result."""
        if self._connections.pop(peer, None) is None:
            raise ProbeSchedulerError(
                f"connection down for {peer}, which is not connected "
                f"({len(self._connections)} connected)")
        del self._connected_at[peer]
        self._choice.set_far(peer, False)
        if peer in self._serving:
            self._serving.discard(peer)
            self._detach(peer)
        self._sync_server(peer)
        return self._step(now, [])

    def handle_peer_identified(self, peer: PeerId, protocols: Iterable[str],
                               now: float) -> list[ProbeCommand]:
        """``peer``'s Identify listed ``protocols`` (connected or not yet)."""
        return self.handle_peers_identified([(peer, protocols)], now)

    def handle_peers_identified(self, peers: Iterable[tuple[PeerId, Iterable[str]]],
                                now: float) -> list[ProbeCommand]:
        """Several peers identified at once: one step, so one round sees all of them."""
        for peer, protocols in peers:
            listed = frozenset(protocols)
            serves = DIAL_REQUEST_PROTOCOL_ID in listed
            self._choice.set_far(peer, serves and DIAL_BACK_OTHER_IP_PROTOCOL_ID in listed)
            if peer in self._connections:
                if serves:
                    self._serving.add(peer)
                else:
                    self._serving.discard(peer)
                self._sync_server(peer)
            elif serves:
                self._detach(peer)
            else:
                self._serving_detached.pop(peer, None)
        return self._step(now, [])

    def handle_listen_addrs(self, listen_addrs: Iterable[WsAddress],
                            now: float) -> list[ProbeCommand]:
        """Our listen addresses (may have) changed.

        Equal addresses change nothing; different ones re-translate every
        observation (O(observers); listen addresses change rarely).
        """
        changed = self._index.set_listen_addrs(listen_addrs)
        return self._step(now, self._index_changed(changed, now))

    def handle_observation(self, observation: AddressObservation,
                           now: float) -> list[ProbeCommand]:
        """A peer observed our address (Identify); it replaces that peer's older one."""
        return self.handle_observations([observation], now)

    def handle_observations(self, observations: Iterable[AddressObservation],
                            now: float) -> list[ProbeCommand]:
        """Several observations, oldest first, in one step."""
        changed = False
        for observation in observations:
            changed = self._index.observe(observation) or changed
        return self._step(now, self._index_changed(changed, now))

    def handle_observation_removed(self, observer: PeerId, now: float) -> list[ProbeCommand]:
        """Forget ``observer``'s observation of our address (none held: nothing changes)."""
        changed = self._index.remove(observer)
        return self._step(now, self._index_changed(changed, now))

    def handle_request_sent(self, probe_id: int, now: float) -> list[ProbeCommand]:
        """The dial request of ``probe_id`` went out (the server counts as contacted)."""
        probe = self._probe(probe_id, "request sent")
        self._contacted.add(probe.server)
        return []

    def handle_probe_finished(self, probe_id: int, result: ProbeResult, now: float, *,
                              answered: bool, filtering: FilteringEvidence | None = None
                              ) -> list[ProbeCommand]:
        """``probe_id`` ended with ``result``; ``answered``: the server sent a DialResponse.

        ``filtering``: which of its dial-backs arrived and what the server reported
        about each (:mod:`._nat_filtering`); it votes on ``nat_filtering`` once the
        reachability machine has seen ``result`` (so a lie is already distrusted).
        """
        probe = self._probe(probe_id, "result")
        if result.server != probe.server or result.addr.with_peer_id(None) != probe.addr:
            raise ProbeSchedulerError(
                f"result about {result.addr} from {result.server} for probe {probe_id}, "
                f"which asked {probe.server} about {probe.addr}")
        self._land(probe_id)
        if answered:
            self._answered.add(probe.server)
        self._counters.outcomes[result.outcome.value] += 1
        self._counters.recent.append(result)
        events = self.reachability.handle_probe_result(result, now)
        if probe.far:
            events += self.reachability.handle_far_probe_ended(probe.addr, now)
        mapped = seen_at(self._index.observed_by(probe.server), probe.addr)
        self.filtering.handle_probe_result(result, filtering, mapped=mapped, now=now)
        return self._step(now, events)

    def handle_probe_cancelled(self, probe_id: int, now: float) -> list[ProbeCommand]:
        """``probe_id`` was never run or was abandoned: no result, not an outcome."""
        probe = self._probe(probe_id, "cancellation")
        self._land(probe_id)
        self._counters.cancelled += 1
        events = (self.reachability.handle_far_probe_ended(probe.addr, now) if probe.far
                  else [])
        return self._step(now, events)

    def handle_driver_restart(self, now: float) -> list[ProbeCommand]:
        """The driver restarted: every probe it was running is gone without a result."""
        self._counters.cancelled += len(self._in_flight)
        events = [event for probe in self._in_flight.values() if probe.far
                  for event in self.reachability.handle_far_probe_ended(probe.addr, now)]
        self._in_flight.clear()
        self._busy.clear()
        self._epoch += 1
        return self._step(now, events)

    def handle_timeout(self, now: float) -> list[ProbeCommand]:
        return self._step(now, [])

    def poll_timeout(self) -> float | None:
        """The earliest future time at which :meth:`handle_timeout` changes something."""
        now, reach = self._now, self.reachability
        times = [reach.next_probe_at(after=now), reach.poll_timeout(),
                 self.filtering.poll_timeout()]
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

    def _land(self, probe_id: int) -> None:
        """``probe_id`` leaves flight: its server may be asked about its address again."""
        probe = self._in_flight.pop(probe_id)
        busy = self._busy[probe.addr]
        busy.discard(probe.server)
        if not busy:
            del self._busy[probe.addr]
        self._epoch += 1

    # --- servers and observations ----------------------------------------------

    def _detach(self, peer: PeerId) -> None:
        """Remember that ``peer`` (not connected) serves AutoNAT, within ``max_observers``."""
        self._serving_detached.pop(peer, None)
        self._serving_detached[peer] = None
        while len(self._serving_detached) > self._max_observers:
            self._serving_detached.popitem(last=False)

    def _sync_server(self, peer: PeerId) -> None:
        """Make ``peer``'s entries in the server choice and welcome sets current."""
        conn = self._connections.get(peer)
        if conn is not None and peer in self._serving:
            if self._choice.add(peer, conn.remote_addr):
                self._epoch += 1  # a new server may be asked about parked addresses
            if self._welcome_probes and peer not in self._welcomed:
                waiting, other = ((self._unwelcomed_in, self._unwelcomed_out) if conn.inbound
                                  else (self._unwelcomed_out, self._unwelcomed_in))
                other.pop(peer, None)
                waiting[peer] = None
            return
        self._choice.remove(peer)
        self._unwelcomed_in.pop(peer, None)
        self._unwelcomed_out.pop(peer, None)

    def _index_changed(self, changed: bool, now: float) -> list[ReachabilityEvent]:
        """Take over the index's candidates and mapping after it reported a change."""
        if not changed:
            return []
        self._counters.recomputations += 1
        self._mapping = self._index.nat_mapping
        best = _worth_probing(self._index.candidates, self._mapping, self._index.listen_addrs)
        if best == self._best:
            return []
        self._best = best
        events = self.reachability.handle_candidates(best, now)
        live = set(self.reachability.candidates)
        self.filtering.handle_candidates(live, now)
        for addr in [a for a in self._tried if a not in live]:
            del self._tried[addr]
        for addr in [a for a in self._parked if a not in live]:
            del self._parked[addr]
        return events

    # --- one step ------------------------------------------------------------

    def _step(self, now: float, events: list[ReachabilityEvent]) -> list[ProbeCommand]:
        self._now = now
        reach = self.reachability
        servers = len(self._choice)
        starts = self._welcome(now)
        events = events + reach.handle_servers_available(servers, now)
        due = reach.poll_timeout()
        if due is not None and due <= now:
            events += reach.handle_timeout(now)
        if self.filtering.needs_review(now):
            self.filtering.handle_timeout(now)
        if events:
            self._epoch += 1  # evidence, distrust or verdicts changed
        commands: list[ProbeCommand] = self._publish(events, now)
        commands.extend(self._note_small_network(servers, now))
        commands.extend(starts)
        commands.extend(self._plan(now))
        return commands

    def _publish(self, events: list[ReachabilityEvent], now: float) -> list[ProbeCommand]:
        last = self._published
        published = ("unknown", "unknown") if last is None else (last.nat_mapping,
                                                               last.nat_filtering)
        if not events and (self._mapping, self.filtering.nat_filtering) == published:
            return []
        view = self.reachability.snapshot()
        self._published = ReachabilityUpdate(
            nat_status=view.nat_status, reachable_addrs=view.reachable_addrs,
            unreachable_addrs=view.unreachable_addrs, nat_mapping=self._mapping, at=now,
            nat_filtering=self.filtering.nat_filtering)
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
        busy = self._busy.setdefault(addr, set())
        if server in busy:
            return None
        busy.add(server)
        probe_id, self._next_id = self._next_id, self._next_id + 1
        far = self._choice.is_far(server)
        self._in_flight[probe_id] = _Probe(addr, server, now, welcome, far)
        if far:
            self.reachability.handle_far_probe_started(addr, now)
        self._counters.started += 1
        self._counters.welcome += welcome
        return StartProbe(probe_id, addr, server, welcome)

    def _welcome(self, now: float) -> list[ProbeCommand]:
        """One probe to every new AutoNAT peer (boot nodes probe their newcomers).

        Only the candidate kind counts as evidence for us; either way the
        newcomer sees an inbound probe. Without a candidate only inbound
        newcomers can be asked (about our end of their connection); outbound
        ones wait for the first candidate. Newcomers go in the order they
        connected. Cost: O(k log k) for the k welcomed now, each peer once.
        """
        if not self._welcome_probes:
            return []
        ready = list(self._unwelcomed_in)
        if self._best:
            ready += self._unwelcomed_out
        if not ready:
            return []
        ready.sort(key=self._connected_at.__getitem__)
        commands: list[ProbeCommand] = []
        for peer in ready:
            conn = self._connections[peer]
            addr = self._best[0] if self._best else conn.local_addr.with_peer_id(None)
            self._welcomed.add(peer)
            self._unwelcomed_in.pop(peer, None)
            self._unwelcomed_out.pop(peer, None)
            start = self._start(addr, peer, now, welcome=True)
            if start is not None:
                commands.append(start)
        return commands

    def _plan(self, now: float) -> list[ProbeCommand]:
        """Full rounds for due addresses, top-ups for unknown ones (see the module doc)."""
        reach = self.reachability
        due = set(reach.addresses_needing_probe(now))
        distrusted = reach.distrusted_servers(now)
        commands: list[ProbeCommand] = []
        for addr in reach.candidates:
            is_due = addr in due
            unknown = reach.verdict(addr) == "unknown"
            if not is_due and not unknown:
                commands += self._ask_far(addr, distrusted, now)
                continue
            busy = self._busy.get(addr, set())
            evidence = reach.evidence_servers(addr, now)
            want = self._probe_servers - len(busy) - (0 if is_due else len(evidence))
            if want <= 0 or (not is_due and self._is_parked(addr, now)):
                continue
            tried = self._tried.setdefault(addr, {})
            skip = set(distrusted) | busy
            if not is_due:
                skip |= self._recently_tried(tried, now)
            if unknown:
                skip |= evidence
            far = self._far_servers(addr, skip, now)
            if is_due and reach.contested(addr, now):
                chosen = self._choice.fresh_first(want, skip, evidence)
            elif far:
                chosen = self._choice.far_first(want, skip, far)
            else:
                chosen = self._choice.choose(want, skip)
            if not chosen:
                if not is_due:
                    self._park(addr, tried, now)
                continue
            if is_due:
                reach.handle_probe_started(addr, now)
            for server in chosen:
                tried[server] = now
                start = self._start(addr, server, now)
                if start is not None:
                    commands.append(start)
        return commands

    def _far_servers(self, addr: WsAddress, skip: set[PeerId], now: float) -> set[PeerId]:
        """:meth:`ServerChoice.far_servers` for ``addr``: until ``threshold`` servers'
        live evidence on it is from a second IP."""
        reach = self.reachability
        return self._choice.far_servers(skip, enough=reach.threshold,
                                        far_heard=lambda: reach.far_evidence(addr, now))

    def _ask_far(self, addr: WsAddress, distrusted: frozenset[PeerId],
                 now: float) -> list[ProbeCommand]:
        """A verdict that rests only on dial-backs from IPs we contacted (or on claims
        about them) is what an address-dependent filter shows too: ask one server that
        dials back from a second IP, if one is connected, was not asked lately and has
        no live evidence on ``addr`` - until ``threshold`` servers' evidence is of that
        kind, which is also what ``nat_filtering`` needs to say ``endpoint-independent``
        (one such server's word left public hosts' filtering ``unknown``)."""
        busy = self._busy.get(addr, set())
        if busy:
            return []
        tried = self._tried.setdefault(addr, {})
        reach = self.reachability
        skip = (set(distrusted) | self._recently_tried(tried, now)
                | reach.evidence_servers(addr, now))
        far = self._far_servers(addr, skip, now)
        commands: list[ProbeCommand] = []
        for server in self._choice.choose(1, skip, among=far) if far else []:
            tried[server] = now
            start = self._start(addr, server, now)
            if start is not None:
                commands.append(start)
        return commands

    def _recently_tried(self, tried: dict[PeerId, float], now: float) -> set[PeerId]:
        """Servers asked within ``retry_server``; older entries are dropped (never needed)."""
        for peer in [p for p, t in tried.items() if t + self._retry_server <= now]:
            del tried[peer]
        return set(tried)

    def _park(self, addr: WsAddress, tried: dict[PeerId, float], now: float) -> None:
        """No server could be asked about ``addr``: skip it until one might be.

        That is: until the epoch moves (a new server, a probe leaving flight,
        a reachability event) or until the earliest of a recent ask expiring
        and the reachability machine's own timeout (evidence expiry, a liar
        forgiven) - both of which are in :meth:`poll_timeout`, so the driver
        wakes then.
        """
        times = [t + self._retry_server for t in tried.values()]
        reach_due = self.reachability.poll_timeout()
        if reach_due is not None:
            times.append(reach_due)
        self._parked[addr] = (self._epoch, min(times, default=math.inf))

    def _is_parked(self, addr: WsAddress, now: float) -> bool:
        parked = self._parked.get(addr)
        if parked is None:
            return False
        epoch, until = parked
        if epoch == self._epoch and now < until:
            return True
        del self._parked[addr]
        return False


def _worth_probing(candidates: tuple[WsAddress, ...], mapping: NatMapping,
                   listen_addrs: tuple[WsAddress, ...]) -> tuple[WsAddress, ...]:
    """The candidates minus, once our mapping is known to be ``endpoint-dependent``,
    the observed ports that are none of our listen ports: such a NAT gives every
    destination its own port, so a port one server saw is no address another peer
    can reach (each server's observation would only add a probe that must fail)."""
    if mapping != "endpoint-dependent":
        return candidates
    ports = {addr.port for addr in listen_addrs}
    return tuple(addr for addr in candidates if addr.port in ports)
