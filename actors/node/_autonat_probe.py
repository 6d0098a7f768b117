"""AutonatProbe actor: learn, with evidence, whether we are reachable.

The rules: (docs/architecture.md, "AutoNAT client rules").

Theory of operation
-------------------
The decisions live in sans-io objects; this actor only drives them:

* **candidates** - on every node snapshot it recomputes our candidate
  addresses (routable listen addresses, and observed addresses translated
  onto our listen port) and the NAT mapping from the observations, and hands
  the candidates to the :class:`~protocols.Reachability` machine;
* **probing** - whenever the machine says an address is due, it picks up to
  ``probe_servers`` connected peers that speak AutoNAT v2 (distinct IPs and
  subnets first, skipping servers that already gave live evidence for that
  address and servers caught lying) and probes them **in parallel**: a
  ``DialRequest`` with a fresh single-use nonce (issued by the receiver from
  :mod:`secrets`, never from the injected rng) on the existing connection, dial data
  if the server asks for a sane amount (at most ``MAX_DIAL_DATA`` bytes),
  then the ``DialResponse``. The result counts as *reachable* only when the
  :class:`DialBackReceiver` saw our nonce arrive on a new inbound connection,
  on the listener of the address under test;
  a server's OK without it is recorded as a lie. There is no boot delay: the
  first probes go out as soon as candidates and servers exist, so the first
  verdict comes within a few round trips of the first connections;
* **welcome probes** - with ``welcome_probes`` on (boot nodes), every newly
  connected AutoNAT peer is sent one dial request, so a bootstrap node always
  probes its newcomers (which is what makes them ``fully_connected``);
* **reporting** - every change of verdicts, ``nat_status`` or NAT mapping is
  sent to the StatusTracker as one :class:`~protocols.ReachabilityUpdate`.

State that must survive a restart (the Reachability machine, live server
connections, counters) lives in :class:`AutonatState`, owned by the node.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

import trio

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    Direction,
    NatMapping,
    NatStatusChanged,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    ProbeOutcome,
    ProbeResult,
    ProbeServer,
    ProtocolError,
    Reachability,
    ReachabilityEvent,
    ReachabilityUpdate,
    ResponseStatus,
    ValidationError,
    WsAddress,
    candidate_addresses,
    choose_servers,
    classify_nat_mapping,
    decode_autonat_message,
    dial_data_chunks,
    probe_outcome,
)

from ..connection import Connection, ConnectionClosed, StreamEnded, StreamReset
from ..runtime import MailboxReceiver, MailboxSender, Watch, get_logger, node_field
from ._dialback import DialBackReceiver, PendingProbe
from ._messages import ConnectionOpened, TrackerEvent

DIAL_BACK_GRACE = 1.0
"""After an OK response, how long the dial-back may still take to be seen."""
EXPIRE_EVERY = 60.0
RETRY_SERVER = 30.0
"""An unknown address is not topped up with a server asked this recently."""


def reachability_log(event: ReachabilityEvent) -> tuple[str, dict[str, object]]:
    """One reachability event as a log message and its fields (never a repr).

    ``votes`` is ``"<reachable>:<unreachable>"``; ``reason`` is given unless it
    is ``evidence`` (a change by expiry, a distrusted server, a removed address).
    """
    if isinstance(event, NatStatusChanged):
        return "nat status changed", {"nat_status": event.new, "previous": event.old}
    fields: dict[str, object] = {
        "addr": str(event.addr), "verdict": event.new, "previous": event.old,
        "votes": f"{event.reachable_votes}:{event.unreachable_votes}"}
    if event.reason != "evidence":
        fields["reason"] = event.reason
    return "address verdict changed", fields


def _claims_dial_back(response: DialResponse | None) -> bool:
    """The server says it dialed back: give its dial-back a moment to be seen."""
    return (response is not None and response.status == ResponseStatus.OK
            and response.dial_status == DialStatus.OK)


@dataclass
class AutonatState:
    """Outlives incarnations of the AutonatProbe actor."""

    reachability: Reachability
    connections: dict[PeerId, Connection] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    welcomed: set[PeerId] = field(default_factory=set)
    mapping: NatMapping = "unknown"
    in_flight: set[tuple[WsAddress, PeerId]] = field(default_factory=set)
    tried: dict[WsAddress, dict[PeerId, float]] = field(default_factory=dict)
    answered: set[PeerId] = field(default_factory=set)
    """Servers that sent us a DialResponse (whatever it said)."""
    contacted: set[PeerId] = field(default_factory=set)
    """Servers we sent a DialRequest to (answered or not)."""
    available: int = 0
    """Connected AutoNAT servers at the latest count of the probe loop."""
    small_wait: SmallNetworkWait | None = None
    """The small-network wait in progress, if any (see :class:`~protocols.Reachability`)."""


@dataclass(frozen=True)
class SmallNetworkWait:
    """Fewer AutoNAT servers than the threshold: wait before they may decide alone."""

    servers: int
    threshold: int
    """The configured threshold (the number of servers a verdict normally needs)."""
    wait_s: float
    """The wait's full length (``ReachabilityConfig.small_network_settle``)."""
    until: float
    """When it ends (trio time), unless more servers come first."""


class AutonatProbe:
    def __init__(self, *, config: NodeConfig, receiver: DialBackReceiver, state: AutonatState,
                 inbox: MailboxReceiver[ConnectionOpened], tracker: MailboxSender[TrackerEvent],
                 watch: Watch[NodeSnapshot], rng: random.Random,
                 node: PeerId | None = None) -> None:
        self._config = config
        self._receiver = receiver
        self._state = state
        self._inbox = inbox
        self._tracker = tracker
        self._watch = watch
        self._rng = rng
        self._changed = trio.Event()
        self._log = get_logger("actors.autonat", actor="autonat-probe", **node_field(node))

    def statistics(self) -> dict[str, int]:
        return dict(self._state.outcomes)

    @property
    def servers_answered(self) -> tuple[PeerId, ...]:
        return tuple(sorted(self._state.answered))

    @property
    def servers_contacted(self) -> tuple[PeerId, ...]:
        return tuple(sorted(self._state.contacted))

    @property
    def servers_available(self) -> int:
        return self._state.available

    @property
    def candidates(self) -> int:
        """Our candidate addresses (routable listen or observed addresses) to probe."""
        return len(self._state.reachability.candidates)

    @property
    def small_network_wait(self) -> SmallNetworkWait | None:
        return self._state.small_wait

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._changed = trio.Event()
        self._state.in_flight.clear()
        async with trio.open_nursery() as nursery:
            for peer, connection in list(self._state.connections.items()):
                nursery.start_soon(self._follow, peer, connection)
            nursery.start_soon(self._follow_snapshots, nursery)
            nursery.start_soon(self._probe_loop, nursery)
            task_status.started()
            async for opened in self._inbox:
                self._state.connections[opened.info.peer_id] = opened.connection
                nursery.start_soon(self._follow, opened.info.peer_id, opened.connection)
                self._changed.set()
            nursery.cancel_scope.cancel()

    async def _follow(self, peer: PeerId, connection: Connection) -> None:
        await connection.closed.wait()
        if self._state.connections.get(peer) is connection:
            del self._state.connections[peer]

    # --- candidates and mapping ------------------------------------------------

    async def _follow_snapshots(self, nursery: trio.Nursery) -> None:
        reach = self._state.reachability
        async for snap in self._watch.subscribe():
            now = trio.current_time()
            candidates = candidate_addresses(snap.listen_addrs, snap.observed_addrs,
                                             self._config.policy)
            events = reach.set_candidates(candidates, now)
            mapping = classify_nat_mapping(snap.observed_addrs, policy=self._config.policy)
            if events or mapping != self._state.mapping:
                self._state.mapping = mapping
                await self._publish(events)
            if self._config.welcome_probes:
                self._welcome(snap, nursery)
            self._changed.set()

    def _servers(self, snap: NodeSnapshot) -> dict[PeerId, Connection]:
        """Connected peers whose Identify says they serve AutoNAT v2 dial requests."""
        result = {}
        for peer, connection in self._state.connections.items():
            record = snap.peer(peer)
            if record is not None and DIAL_REQUEST_PROTOCOL_ID in record.protocols:
                result[peer] = connection
        return result

    def _welcome(self, snap: NodeSnapshot, nursery: trio.Nursery) -> None:
        """One dial request to every new AutoNAT peer (boot nodes probe their newcomers).

        We ask about our best candidate address; without one (a boot node whose
        policy rejects its own addresses, e.g. on a laptop) we ask about the
        address the newcomer reached us at - our end of its inbound connection,
        which it can dial back by construction. Only the candidate kind counts
        as evidence for us; either way the newcomer sees an inbound probe.
        """
        candidates = self._state.reachability.candidates
        for peer, connection in self._servers(snap).items():
            if peer in self._state.welcomed:
                continue
            if candidates:
                addr = candidates[0]
            elif connection.direction is Direction.INBOUND:
                addr = connection.local_addr.with_peer_id(None)
            else:
                continue
            self._state.welcomed.add(peer)
            self._start_probe(nursery, addr, peer)

    # --- probing -----------------------------------------------------------------

    async def _probe_loop(self, nursery: trio.Nursery) -> None:
        reach = self._state.reachability
        while True:
            now = trio.current_time()
            servers = self._servers(self._watch.get())
            await self._publish(reach.expire(now)
                                + reach.set_available_servers(len(servers), now))
            self._note_small_network(len(servers), now)
            for addr, chosen in self._plan(now, servers):
                for server in chosen:
                    self._start_probe(nursery, addr, server)
            wake_at = reach.next_probe_at()
            if wake_at is None or wake_at <= now:  # nothing scheduled, or waiting for servers
                wake_at = math.inf
            wake_at = min(wake_at, reach.threshold_review_at() or math.inf)
            with trio.move_on_at(min(wake_at, now + EXPIRE_EVERY)):
                await self._changed.wait()
            self._changed = trio.Event()

    def _note_small_network(self, servers: int, now: float) -> None:
        """Track (and log) the small-network wait: when it starts and when it ends."""
        self._state.available = servers
        reach = self._state.reachability
        review = reach.threshold_review_at()
        until = review if servers and review is not None and review > now else None
        before = self._state.small_wait
        if until is not None and (before is None or before.until != until):
            wait = SmallNetworkWait(servers, reach.config.threshold,
                                    reach.config.small_network_settle, until)
            self._state.small_wait = wait
            self._log.info("few AutoNAT servers: waiting for more before they may decide alone",
                           servers=servers, threshold=wait.threshold, wait_s=wait.wait_s)
        elif until is None and before is not None:
            self._state.small_wait = None
            self._log.info("small-network wait over", servers=servers,
                           threshold_in_force=reach.threshold)

    def _plan(self, now: float,
              servers: dict[PeerId, Connection]) -> list[tuple[WsAddress, list[PeerId]]]:
        """Which servers to ask about which address, now.

        Due addresses get a full round (``probe_servers`` servers). An address
        that is still ``unknown`` but not due is *topped up* as soon as servers
        that have not been asked recently become available, so the first
        verdict does not wait for the retry backoff when servers trickle in.
        """
        reach = self._state.reachability
        due = set(reach.addresses_needing_probe(now))
        plans = []
        for addr in reach.candidates:
            is_due = addr in due
            if not is_due and reach.verdict(addr) != "unknown":
                continue
            busy = sum(1 for (a, _) in self._state.in_flight if a == addr)
            have = len(reach.evidence_servers(addr, now))
            want = self._config.probe_servers - busy - (0 if is_due else have)
            tried = self._state.tried.setdefault(addr, {})
            skip = set() if is_due else {p for p, t in tried.items() if now - t < RETRY_SERVER}
            if not is_due or reach.verdict(addr) == "unknown":
                skip |= reach.evidence_servers(addr, now)
            chosen = self._choose(addr, servers, now, skip, want) if want > 0 else []
            if chosen:
                if is_due:
                    reach.probe_started(addr, now)
                tried.update(dict.fromkeys(chosen, now))
                plans.append((addr, chosen))
        for addr in set(self._state.tried) - set(reach.candidates):
            del self._state.tried[addr]
        return plans

    def _choose(self, addr: WsAddress, servers: dict[PeerId, Connection], now: float,
                skip: set[PeerId], count: int) -> list[PeerId]:
        reach = self._state.reachability
        skip = skip | reach.distrusted_servers(now)
        skip |= {server for (a, server) in self._state.in_flight if a == addr}
        options = [ProbeServer(peer, conn.remote_addr, (DIAL_REQUEST_PROTOCOL_ID,))
                   for peer, conn in servers.items()]
        chosen = choose_servers(options, count, exclude=skip, rng=self._rng)
        return [server.peer_id for server in chosen]

    def _start_probe(self, nursery: trio.Nursery, addr: WsAddress, server: PeerId) -> None:
        key = (addr, server)
        if key not in self._state.in_flight:
            self._state.in_flight.add(key)
            nursery.start_soon(self._probe, addr, server)

    async def _probe(self, addr: WsAddress, server: PeerId) -> None:
        try:
            connection = self._state.connections.get(server)
            if connection is None:
                return
            result = await self._ask(connection, addr, server)
            self._state.outcomes[result.outcome.value] += 1
            if result.outcome is ProbeOutcome.LIED:
                self._log.warning("server said OK but no dial-back arrived: not evidence",
                                  server=str(server), addr=str(addr))
            else:
                detail = {} if result.outcome is ProbeOutcome.REACHABLE else {
                    "detail": result.detail}  # a dial-back arrived: that says it all
                self._log.info("probe result", server=str(server), addr=str(addr),
                               outcome=result.outcome.value, **detail)
            await self._tracker.send(result)
            await self._publish(self._state.reachability.record(result, trio.current_time()))
        finally:
            self._state.in_flight.discard((addr, server))
            self._changed.set()

    async def _ask(self, connection: Connection, addr: WsAddress, server: PeerId) -> ProbeResult:
        started = trio.current_time()
        pending = PendingProbe(addr, server, started, connection,
                               listen_addrs=self._watch.get().listen_addrs)
        nonce = self._receiver.expect(pending)  # secrets, single-use; never self._rng
        response: DialResponse | None = None
        detail = ""
        try:
            with trio.move_on_after(self._config.probe_timeout) as scope:
                response = await self._exchange(connection, addr, nonce)
                if _claims_dial_back(response) and not pending.verified.is_set():
                    with trio.move_on_after(DIAL_BACK_GRACE):
                        await pending.verified.wait()
            timed_out = scope.cancelled_caught and response is None
        except (StreamReset, StreamEnded, ConnectionClosed, ProtocolError,
                trio.ClosedResourceError) as exc:
            timed_out, detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            self._receiver.forget(nonce)
        if response is not None:
            self._state.answered.add(server)
        outcome = probe_outcome(response, dial_back_verified=pending.verified.is_set(),
                                timed_out=timed_out)
        if response is not None and not detail:
            detail = f"status={response.status.name} dial_status={response.dial_status.name}"
        return ProbeResult(addr=addr, server=server, outcome=outcome, at=trio.current_time(),
                           detail=detail[:200])

    async def _exchange(self, connection: Connection, addr: WsAddress,
                        nonce: int) -> DialResponse | None:
        stream = await connection.open_stream(DIAL_REQUEST_PROTOCOL_ID)
        async with stream:
            await stream.send(DialRequest(addrs=(addr.with_peer_id(None).to_bytes(),),
                                          nonce=nonce).to_wire())
            self._state.contacted.add(connection.peer_id)
            while True:
                message = decode_autonat_message(await stream.receive())
                if isinstance(message, DialResponse):
                    return message
                if not isinstance(message, DialDataRequest):
                    raise ValidationError(f"unexpected {type(message).__name__} from server")
                try:
                    chunks = dial_data_chunks(message.num_bytes)  # refuses > MAX_DIAL_DATA
                except ValidationError as exc:
                    self._log.info("refusing the server's dial data request",
                                   server=str(connection.peer_id), error=str(exc))
                    await stream.reset()
                    return None
                for size in chunks:
                    await stream.send(DialDataResponse(data=bytes(size)).to_wire())

    async def _publish(self, events: list[ReachabilityEvent]) -> None:
        if not events and self._state.mapping == self._last_published_mapping():
            return
        view = self._state.reachability.snapshot()
        await self._tracker.send(ReachabilityUpdate(
            nat_status=view.nat_status, reachable_addrs=view.reachable_addrs,
            unreachable_addrs=view.unreachable_addrs, nat_mapping=self._state.mapping,
            at=trio.current_time()))
        for event in events:
            message, fields = reachability_log(event)
            self._log.info(message, **fields)

    def _last_published_mapping(self) -> NatMapping:
        try:
            return self._watch.get().nat_mapping
        except LookupError:
            return "unknown"
