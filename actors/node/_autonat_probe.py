"""AutonatProbe actor: learn, with evidence, whether we are reachable.

The rules: (docs/architecture.md, "AutoNAT client rules").

Theory of operation
-------------------
The probing policy lives in the sans-io :class:`~protocols.ProbeScheduler`
(candidates, NAT mapping, rounds, top-ups, welcome probes, the small-network
wait, what was last published); this actor only drives it, following
(docs/architecture.md, "The sans-io contract"):

* **inputs** - its inbox carries new connections (``ConnectionOpened``, from
  the Dialer) and Identify results (``PeerIdentified``, from the
  IdentifyActor; for one peer either may come first, the scheduler accepts
  both orders). A ``PeerIdentified`` becomes the scheduler's
  ``handle_observation`` (when it carries an observed address) and
  ``handle_peers_identified`` (its protocols): one observation at a time, so
  no input costs work proportional to the number of connections. Closed
  connections arrive as the Dialer's ``ConnectionGone`` (a
  :class:`~actors.node._sweep.ClosedSweep` catches any notice lost while
  the node stops or this actor restarts). Node snapshots are only read for our
  listen addresses, fed when the tuple changed (the model keeps the same
  tuple object while they do not, so the usual check is one identity test).
  A :class:`~actors.runtime.TimeoutDriver` runs the scheduler's
  ``poll_timeout()`` / ``handle_timeout()`` between inputs;
* **probes** - each :class:`~protocols.StartProbe` runs in its own task: a
  ``DialRequest`` with a fresh single-use nonce (issued by the
  :class:`DialBackReceiver` from :mod:`secrets`, never from the injected rng)
  on the existing connection, dial data if the server asks for a sane amount
  (at most ``MAX_DIAL_DATA`` bytes), then the ``DialResponse``. The result
  counts as *reachable* only when the receiver saw our nonce arrive on a new
  inbound connection, on the listener of the address under test - from the
  server's second address when the server reports a dial-back from there
  (:func:`~protocols.dial_back_proves_reachable`); a server's OK without it
  is recorded as a lie (:func:`~protocols.probe_outcome`). Which dial-backs
  arrived from the IP we contacted and which from another IP, with what the
  server reported about each, goes to the scheduler as
  :class:`~protocols.FilteringEvidence` (``nat_filtering``);
* **peer exchange** - with a :class:`~protocols.bootstrap.PeerExchangePlan`
  in the state and a ``peers`` sink (the Dialer), the plan is fed the
  connected peers that serve ``/trio-autonat/peers/1`` and, after every
  scheduler step, the number of AutoNAT servers; while that is below the
  confidence threshold it says whom to ask for peers
  (:func:`~actors.node._peer_exchange.ask_for_peers`), and the usable
  addresses go to the Dialer as ``PeersFound`` - before the small-network
  wait runs out. Its timer runs on a second :class:`TimeoutDriver`;
* **reporting** - every :class:`~protocols.PublishReachability` goes to the
  StatusTracker; results, changes and the small-network wait are logged.
  Results are counted once, by the scheduler (``statistics()``).

State that must survive a restart (the scheduler with its observations and
servers, live server connections) lives in :class:`AutonatState`, owned by
the node; messages sent while an incarnation restarts wait in the mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    DialBackSource,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    Direction,
    FilteringEvidence,
    NatStatusChanged,
    NodeConfig,
    NodeSnapshot,
    ObservedAddr,
    PeerId,
    PeerIdentified,
    PeersFound,
    ProbeCommand,
    ProbeOutcome,
    ProbeResult,
    ProbeScheduler,
    ProbeSchedulerStatistics,
    PublishReachability,
    ReachabilityEvent,
    SmallNetworkWait,
    SmallNetworkWaitEnded,
    SmallNetworkWaitStarted,
    StartProbe,
    ValidationError,
    WsAddress,
    claims_dial_back,
    decode_autonat_message,
    dial_back_proves_reachable,
    dial_data_chunks,
    probe_outcome,
)
from protocols.bootstrap import AskForPeers, PeerExchangePlan

from ..connection import EXCHANGE_FAILURES, Connection
from ..runtime import (
    MailboxReceiver,
    MailboxSender,
    MessageSink,
    Pulse,
    TimeoutDriver,
    Watch,
    get_logger,
    node_field,
)
from ._dialback import DialBackReceiver, PendingProbe
from ._messages import AutonatInput, ConnectionGone, ConnectionOpened, TrackerEvent
from ._peer_exchange import ask_for_peers
from ._sweep import ClosedSweep

__all__ = ["DIAL_BACK_GRACE", "AutonatProbe", "AutonatState", "SmallNetworkWait",
           "reachability_log"]

_PROBE_FAILURES: tuple[type[BaseException], ...] = (*EXCHANGE_FAILURES, trio.ClosedResourceError)
"""What a server or the network can do to one probe: an ERROR result, never a crash."""
DIAL_BACK_GRACE = 1.0
"""After an OK response, how long the dial-back may still take to be seen."""
_MAX_EARLY_IDENTIFIED = 64
"""Identify results kept for peer exchange until their connection is reported."""


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


@dataclass
class AutonatState:
    """Outlives incarnations of the AutonatProbe actor."""

    scheduler: ProbeScheduler
    connections: dict[PeerId, Connection] = field(default_factory=dict)
    exchange: PeerExchangePlan | None = None
    """Peer exchange while AutoNAT servers are few (None: never ask)."""


class AutonatProbe:
    def __init__(self, *, config: NodeConfig, receiver: DialBackReceiver, state: AutonatState,
                 inbox: MailboxReceiver[AutonatInput], tracker: MailboxSender[TrackerEvent],
                 watch: Watch[NodeSnapshot], node: PeerId | None = None,
                 pulse: Pulse | None = None,
                 peers: MessageSink[PeersFound] | None = None) -> None:
        self._config = config
        self._peers = peers
        self._pex = state.exchange if peers is not None and node is not None else None
        self._receiver = receiver
        self._state = state
        self._sweep = ClosedSweep(state.connections, lambda _peer, connection: connection)
        self._scheduler = state.scheduler
        self._inbox = inbox
        self._tracker = tracker
        self._watch = watch
        self._pulse = pulse if pulse is not None else Pulse()
        self._node = node
        self._driver = TimeoutDriver[ProbeCommand](self._scheduler)
        self._pex_driver: TimeoutDriver[AskForPeers] | None = None
        self._pex_early: dict[PeerId, tuple[str, ...]] = {}  # identified before connected
        self._nursery: trio.Nursery | None = None
        self._filtering_logged = "unknown"
        self._log = get_logger("actors.autonat", actor="autonat-probe", **node_field(node))

    def statistics(self) -> ProbeSchedulerStatistics:
        """The scheduler's frozen statistics: probes by outcome, servers, candidates."""
        return self._scheduler.statistics()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._driver = TimeoutDriver[ProbeCommand](self._scheduler)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._pex is not None:  # its requests died with the last incarnation
                self._pex_driver = TimeoutDriver[AskForPeers](self._pex)
                self._ask_peers(self._pex.handle_driver_restart(trio.current_time()))
                nursery.start_soon(self._pex_driver.run, self._ask_peers_async)
            # the previous incarnation's probe tasks died with it
            await self._execute(self._scheduler.handle_driver_restart(trio.current_time()))
            await self._forget(self._sweep.now())  # ends a previous incarnation missed
            nursery.start_soon(self._follow_snapshots)
            nursery.start_soon(self._driver.run, self._execute)
            task_status.started()
            async for message in self._inbox:
                if isinstance(message, ConnectionOpened):
                    await self._opened(message)
                elif isinstance(message, ConnectionGone):
                    await self._gone(message)
                else:
                    await self._identified(message)
            nursery.cancel_scope.cancel()

    async def _opened(self, opened: ConnectionOpened) -> None:
        peer, connection = opened.info.peer_id, opened.connection
        # sweep first: the new connection may have closed already, and its end must
        # reach the scheduler after its start (its ConnectionGone follows in the inbox)
        await self._forget(self._sweep.maybe())
        self._state.connections[peer] = connection
        await self._execute(self._scheduler.handle_connection_up(
            peer, remote_addr=connection.remote_addr, local_addr=connection.local_addr,
            inbound=connection.direction is Direction.INBOUND, now=trio.current_time()))
        early = self._pex_early.pop(peer, None)
        if early is not None and self._pex is not None:  # its Identify came first
            self._ask_peers(self._pex.handle_peer_identified(peer, early, trio.current_time()))

    async def _identified(self, event: PeerIdentified) -> None:
        """One Identify result: its observation of our address, then its protocols."""
        if event.peer_id == self._node:
            return  # ourselves (the node model ignores it too)
        now = trio.current_time()
        commands: list[ProbeCommand] = []
        if event.observed_addr is not None:
            commands += self._scheduler.handle_observation(ObservedAddr(
                observer=event.peer_id, observed=event.observed_addr, local=event.local_addr,
                observer_addr=event.observer_addr, at=now, connection_id=event.connection_id),
                now)
        commands += self._scheduler.handle_peers_identified(
            [(event.peer_id, event.protocols)], now)
        if self._pex is not None and event.peer_id in self._state.connections:
            self._ask_peers(self._pex.handle_peer_identified(event.peer_id, event.protocols, now))
        elif self._pex is not None:  # its connection is not reported yet: keep a few
            self._pex_early.pop(event.peer_id, None)
            self._pex_early[event.peer_id] = event.protocols
            while len(self._pex_early) > _MAX_EARLY_IDENTIFIED:
                del self._pex_early[next(iter(self._pex_early))]
        await self._execute(commands)

    async def _gone(self, gone: ConnectionGone) -> None:
        peer = gone.info.peer_id
        if self._state.connections.get(peer) is gone.connection:
            del self._state.connections[peer]
            await self._forget([peer])

    async def _forget(self, peers: list[PeerId]) -> None:
        """Tell the scheduler that these peers' connections (already out of the table) ended."""
        for peer in peers:
            if self._pex is not None:
                self._ask_peers(self._pex.handle_connection_down(peer, trio.current_time()))
            await self._execute(self._scheduler.handle_connection_down(peer, trio.current_time()))

    async def _follow_snapshots(self) -> None:
        """Our listen addresses from the snapshots: O(1) per snapshot while they stay.

        The announced IP addresses (``announce``) go with them: candidates like a
        listen address, so AutoNAT servers verify them by dialing back."""
        listen: tuple[WsAddress, ...] | None = None
        async for snap in self._watch.subscribe():
            if snap.listen_addrs is listen or snap.listen_addrs == listen:
                listen = snap.listen_addrs
                continue
            listen = snap.listen_addrs
            announced = tuple(a for a in snap.announce_addrs if a.ip is not None)
            await self._execute(self._scheduler.handle_listen_addrs((*listen, *announced),
                                                                    trio.current_time()))

    # --- commands ------------------------------------------------------------------

    async def _execute(self, commands: list[ProbeCommand]) -> None:
        """Start probes at once (no await in between), then log and publish in order."""
        assert self._nursery is not None
        self._driver.wake()  # an input may have moved poll_timeout()
        self._pulse.beat()  # statistics may have changed
        for command in commands:
            if isinstance(command, StartProbe):
                self._nursery.start_soon(self._probe, command)
        if self._pex is not None:  # the server count may have changed
            self._ask_peers(self._pex.handle_servers_available(
                self._scheduler.servers_available, trio.current_time()))
        for command in commands:
            if isinstance(command, PublishReachability):
                await self._tracker.send(command.update)
                if command.update.nat_filtering != self._filtering_logged:
                    self._log.info("nat filtering changed",
                                   nat_filtering=command.update.nat_filtering,
                                   previous=self._filtering_logged)
                    self._filtering_logged = command.update.nat_filtering
                for event in command.events:
                    message, fields = reachability_log(event)
                    self._log.info(message, **fields)
            elif isinstance(command, SmallNetworkWaitStarted):
                wait = command.wait
                self._log.info("few AutoNAT servers: waiting for more before they may decide alone",
                               servers=wait.servers, threshold=wait.threshold, wait_s=wait.wait_s)
            elif isinstance(command, SmallNetworkWaitEnded):
                self._log.info("small-network wait over", servers=command.servers,
                               threshold_in_force=command.threshold_in_force)

    # --- peer exchange -----------------------------------------------------------------

    def _ask_peers(self, commands: list[AskForPeers]) -> None:
        """Start one request per command (no await: callable between scheduler steps)."""
        if self._pex_driver is not None:
            self._pex_driver.wake()
        if not commands:
            return
        assert self._nursery is not None
        for command in commands:
            self._nursery.start_soon(self._exchange_peers, command)

    async def _ask_peers_async(self, commands: list[AskForPeers]) -> None:
        self._ask_peers(commands)
        await trio.lowlevel.checkpoint()

    async def _exchange_peers(self, command: AskForPeers) -> None:
        assert self._pex is not None and self._peers is not None and self._node is not None
        connection = self._state.connections.get(command.peer)
        learned = None
        if connection is not None:
            try:
                learned = await ask_for_peers(connection, count=command.max, own=self._node,
                                              config=self._config)
            except _PROBE_FAILURES as exc:
                self._log.info("peer exchange failed", peer=str(command.peer),
                               error=f"{type(exc).__name__}: {exc}")
        if learned is None:
            self._ask_peers(self._pex.handle_failed(command.peer, trio.current_time()))
            return
        for entry, reason in learned.skipped:
            self._log.debug("peer exchange entry skipped", peer=str(command.peer), entry=entry,
                            reason=reason)
        self._log.info("peers from peer exchange", peer=str(command.peer),
                       peers=len(learned.addrs), skipped=len(learned.skipped))
        if learned.addrs:
            await self._peers.send(PeersFound(learned.addrs, f"peer-exchange:{command.peer}"))
        self._ask_peers(self._pex.handle_answer(command.peer, len(learned.addrs),
                                               trio.current_time()))

    # --- probing ---------------------------------------------------------------------

    async def _probe(self, start: StartProbe) -> None:
        addr, server = start.addr, start.server
        connection = self._state.connections.get(server)
        if connection is None:  # gone before the probe ran
            await self._execute(self._scheduler.handle_probe_cancelled(
                start.probe_id, trio.current_time()))
            return
        result, answered, evidence = await self._ask(connection, start)
        if result.outcome is ProbeOutcome.LIED:
            self._log.warning("server said OK but no dial-back arrived: not evidence",
                              server=str(server), addr=str(addr))
        else:
            detail = {} if result.outcome is ProbeOutcome.REACHABLE else {
                "detail": result.detail}  # a dial-back arrived: that says it all
            self._log.info("probe result", server=str(server), addr=str(addr),
                           outcome=result.outcome.value, **detail)
        await self._execute(self._scheduler.handle_probe_finished(
            start.probe_id, result, trio.current_time(), answered=answered, filtering=evidence))

    async def _ask(self, connection: Connection, start: StartProbe
                   ) -> tuple[ProbeResult, bool, FilteringEvidence]:
        """Run one probe; returns its result, whether the server answered at all, and
        what it showed about filtering."""
        addr, server = start.addr, start.server
        started = trio.current_time()
        pending = PendingProbe(addr, server, started, connection,
                               listen_addrs=self._watch.get().listen_addrs)
        nonce = self._receiver.expect(pending)  # secrets, single-use; never an rng
        response: DialResponse | None = None
        detail = ""
        try:
            with trio.move_on_after(self._config.autonat_client.probe_timeout) as scope:
                response = await self._exchange(connection, start, nonce)
                with trio.move_on_after(DIAL_BACK_GRACE):  # a claimed dial-back may lag
                    while _missing(_evidence(pending, connection, response), response):
                        await pending.next_arrival()
            timed_out = scope.cancelled_caught and response is None
        except _PROBE_FAILURES as exc:
            timed_out, detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            self._receiver.forget(nonce)
        evidence = _evidence(pending, connection, response)
        outcome = probe_outcome(response,
                                dial_back_verified=dial_back_proves_reachable(evidence, response),
                                timed_out=timed_out)
        if response is not None and not detail:
            detail = f"status={response.status.name} dial_status={response.dial_status.name}"
        result = ProbeResult(addr=addr, server=server, outcome=outcome, at=trio.current_time(),
                             detail=detail[:200], via=_via(outcome, evidence, response))
        return result, response is not None, evidence

    async def _exchange(self, connection: Connection, start: StartProbe,
                        nonce: int) -> DialResponse | None:
        stream = await connection.open_stream(DIAL_REQUEST_PROTOCOL_ID)
        async with stream:
            await stream.send(DialRequest(addrs=(start.addr.with_peer_id(None).to_bytes(),),
                                          nonce=nonce, filtering=True).to_wire())
            self._scheduler.handle_request_sent(start.probe_id, trio.current_time())
            self._pulse.beat()  # servers_contacted changed
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



def _evidence(pending: PendingProbe, connection: Connection,
              response: DialResponse | None) -> FilteringEvidence:
    """Our arrivals (from the server IP we contacted or another) and the server's report."""
    contacted, other = pending.arrived_from(connection.remote_addr.ip)
    return FilteringEvidence.from_probe(response, arrived_contacted=contacted,
                                        arrived_other=other)


def _via(outcome: ProbeOutcome, evidence: FilteringEvidence,
         response: DialResponse | None) -> DialBackSource | None:
    """Which dial-back the evidence is about (:class:`~protocols.ProbeResult`)."""
    if outcome is ProbeOutcome.REACHABLE:
        return DialBackSource.OTHER_IP if evidence.arrived_other else DialBackSource.CONTACTED_IP
    if outcome is not ProbeOutcome.UNREACHABLE or response is None:
        return None
    for source in (DialBackSource.OTHER_IP, DialBackSource.CONTACTED_IP):
        if response.attempt(source) is not None:
            return source
    return None


def _missing(evidence: FilteringEvidence, response: DialResponse | None) -> bool:
    """The server claims a dial-back we have not seen (yet)."""
    return evidence.lied or (claims_dial_back(response)
                             and not dial_back_proves_reachable(evidence, response))
