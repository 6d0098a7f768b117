"""A whole node: actors, mailboxes and supervisor, and the embedding API.

Theory of operation
-------------------
``async with open_node(config) as node:`` builds everything that must
outlive an actor incarnation - the mailboxes, the node model, the dial
planner, the snapshot :class:`Watch` - then starts the actors under one
one_for_one :class:`Supervisor` in a nursery of its own, in dependency
order: StatusTracker (everyone reports to it), the STUN server (when
``stun_listen`` is set: bound before any peer connects, so every Identify
advertises it), IdentifyActor, AutonatProbe, the UDP profiler (when
``udp_discovery`` is on), Dialer, the hairpin tester (after the Dialer, so it
stops before the listener its test reaches) (which starts listening and dialing),
BootstrapFetcher. The body of the ``async with`` runs once all
of them signalled readiness; leaving it cancels the supervisor, which stops
the actors in reverse order (the tracker last, so it saves the peer store
after the final ``ConnectionDown`` events).

The :class:`Node` handle only reads immutable snapshots and sends messages:
``snapshot()``, ``subscribe()``, ``wait_for(predicate)``, ``connect(addr)``,
``statistics()``. Several nodes run side by side in one process (tests, the
simulator): nothing here is global.

``node.statistics()`` is a frozen :class:`NodeStatistics` assembled from
each part's own ``statistics()``: every counter is kept by the one object
that does the counted thing, and read from there (the HTTP ``/metrics`` and
``/status`` included, see :mod:`actors.surfaces._metrics`).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

import trio

from protocols import (
    DIAL_BACK_OTHER_IP_PROTOCOL_ID,
    DIAL_BACK_PROTOCOL_ID,
    DIAL_REQUEST_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    Backoff,
    BootstrapStatistics,
    ConnectionInfo,
    DialPlanner,
    HairpinPlan,
    HairpinStatistics,
    Keypair,
    NodeConfig,
    NodeModel,
    NodeSnapshot,
    PeerId,
    PeerIdentified,
    PeersFound,
    ProbeScheduler,
    ProbeSchedulerStatistics,
    Reachability,
    ReachabilityConfig,
    UpgradeStatistics,
    WsAddress,
)
from protocols.bootstrap import PEER_EXCHANGE_PROTOCOL_ID, PeerExchangePlan, PeerExchangeStatistics
from protocols.holepunch import HOLEPUNCH_PROTOCOL_ID
from protocols.node import ListenerHealth
from protocols.relay import HOP_PROTOCOL_ID, STOP_PROTOCOL_ID, CircuitAddress
from protocols.stun import UdpDiscoveryPlan, UdpDiscoveryStatistics

from ..connection import EXCHANGE_FAILURES, Connection, ProtocolHandler, Stream
from ..runtime import (
    ChildSpec,
    Mailbox,
    Pulse,
    Supervisor,
    SupervisorStatistics,
    Watch,
    WatchSubscription,
    call,
)
from ..transport import Transport, WebSocketTransport, client_context, server_context
from ._autonat_probe import AutonatProbe, AutonatState, SmallNetworkWait
from ._autonat_server import AutonatServer, AutonatServerStatistics
from ._bootstrap import BootstrapFetcher, ClientFactory
from ._dialback import DialBackReceiver, DialBackStatistics
from ._dialer import Dialer, DialerState, DialerStatistics
from ._hairpin import HairpinTester
from ._holepunch import HolePunchService, HolePunchStatistics
from ._identify import (
    IdentifyActor,
    IdentifyResponder,
    IdentifyResponderStatistics,
    IdentifyState,
    IdentifyStatistics,
)
from ._listener_check import ListenerCheck
from ._messages import (
    AutonatInput,
    Connect,
    DialerCommand,
    DialFailed,
    IdentifyInput,
    TrackerEvent,
)
from ._peer_exchange import PeerExchangeServer, PeerExchangeServerStatistics
from ._relay import RelayService, RelayServiceStatistics
from ._relay_client import (
    RELAY_DIAL_FAILURES,
    RelayClient,
    RelayClientStatistics,
    RelayReservation,
    RelayUnavailable,
)
from ._status_tracker import StatusTracker, StatusTrackerStatistics
from ._storage import load_or_create_keypair
from ._stun import StunServerActor, StunStatistics, UdpProfiler

CONNECT_TIMEOUT_SLACK = 5.0


class ConnectError(Exception):
    """``node.connect`` did not produce a connection; the message says why."""


@dataclass(frozen=True)
class NodeStatistics:
    """One reading of every part's counters; each part's own frozen ``statistics()``."""

    supervisor: SupervisorStatistics
    dialer: DialerStatistics
    tracker: StatusTrackerStatistics
    identify: IdentifyStatistics
    """The IdentifyActor: peers identified, failed requests, pushes."""
    identify_responder: IdentifyResponderStatistics
    """The Identify handlers: requests answered, pushes received."""
    autonat_client: ProbeSchedulerStatistics
    """Our probing (the AutonatProbe's scheduler): the one count of probes sent, by
    outcome, and the servers, candidates and small-network wait behind them."""
    autonat_server: AutonatServerStatistics
    """Dial requests we served, by ``status/dial_status``: the one count of probes served."""
    dial_back: DialBackStatistics
    """Dial-backs we received for our own probes."""
    bootstrap: BootstrapStatistics
    upgrades: UpgradeStatistics | None = None
    """Inbound connections awaiting the WebSocket upgrade: refusals by reason, evictions
    (None for a transport without such a queue, e.g. the in-memory one)."""
    stun: StunStatistics | None = None
    """Our STUN server's counters (None: ``stun_listen`` is off)."""
    udp_discovery: UdpDiscoveryStatistics | None = None
    """Our UDP profile measurements (None: ``udp_discovery`` is off)."""
    peer_exchange: PeerExchangeServerStatistics | None = None
    """Peer-exchange requests we answered or refused."""
    peer_exchange_client: PeerExchangeStatistics | None = None
    """Peer-exchange requests we made while AutoNAT servers were few."""
    hairpin: HairpinStatistics | None = None
    """Our hairpin tests: the target, the published value, tests by outcome."""
    relay: RelayServiceStatistics | None = None
    """Our relay service: reservations and circuits (None: ``relay_service`` is off)."""
    relay_client: RelayClientStatistics | None = None
    """Our reservations on relays and the relayed connections we dialed and accepted."""
    hole_punch: HolePunchStatistics | None = None
    """Our hole-punch exchanges: outcomes, attempts, time to a direct connection."""

    # Views of ``autonat_client`` (read-only; nothing here is counted twice).

    @property
    def probes(self) -> Mapping[str, int]:
        """Our probes by outcome (reachable, unreachable, refused, timeout, error, lied)."""
        return MappingProxyType(dict(self.autonat_client.outcomes))

    @property
    def servers_answered(self) -> tuple[PeerId, ...]:
        """AutoNAT servers that answered our dial requests."""
        return self.autonat_client.servers_answered

    @property
    def servers_contacted(self) -> tuple[PeerId, ...]:
        """AutoNAT servers we sent a dial request to (answered or not)."""
        return self.autonat_client.servers_contacted

    @property
    def servers_available(self) -> int:
        """Connected peers that serve AutoNAT dial requests (the latest count)."""
        return self.autonat_client.servers_available

    @property
    def probe_candidates(self) -> int:
        """Our candidate addresses to probe (none: no routable listen or observed address)."""
        return self.autonat_client.candidates

    @property
    def small_network_wait(self) -> SmallNetworkWait | None:
        """Set while fewer servers than the threshold are available and the node waits."""
        return self.autonat_client.small_network_wait


class Node:
    """Handle of a running node; see :func:`open_node`."""

    def __init__(self, *, keypair: Keypair, config: NodeConfig, watch: Watch[NodeSnapshot],
                 pulse: Pulse, dialer_box: Mailbox[DialerCommand], supervisor: Supervisor,
                 dialer: Dialer,
                 tracker: StatusTracker, identify: IdentifyActor,
                 responder: IdentifyResponder, autonat: AutonatProbe,
                 server: AutonatServer, receiver: DialBackReceiver,
                 fetcher: BootstrapFetcher, transport: Transport,
                 stun_server: StunServerActor | None = None,
                 udp_profiler: UdpProfiler | None = None,
                 exchange_server: PeerExchangeServer | None = None,
                 exchange_plan: PeerExchangePlan | None = None,
                 hairpin: HairpinTester | None = None,
                 relay: RelayService | None = None,
                 relay_client: RelayClient | None = None,
                 hole_punch: HolePunchService | None = None) -> None:
        self.keypair = keypair
        self.config = config
        self._watch = watch
        self._pulse = pulse
        self._dialer_box = dialer_box
        self.supervisor = supervisor
        self._dialer = dialer
        self._tracker = tracker
        self._identify = identify
        self._responder = responder
        self._autonat = autonat
        self._server = server
        self._receiver = receiver
        self._fetcher = fetcher
        self._transport = transport
        self._stun_server = stun_server
        self._udp_profiler = udp_profiler
        self._exchange_server = exchange_server
        self._exchange_plan = exchange_plan
        self._hairpin = hairpin
        self._relay = relay
        self._relay_client = relay_client
        self.hole_punch = hole_punch
        """The hole-punch service (reports per peer: ``report_for``, ``next_report``)."""
        self.listener_check = ListenerCheck(config=config, keypair=keypair,
                                            transport=transport, watch=watch)
        """``/healthz``'s cached self-check of our WebSocket listener."""

    @property
    def peer_id(self) -> PeerId:
        return self.keypair.peer_id

    @property
    def listen_addrs(self) -> tuple[WsAddress, ...]:
        """Bound listen addresses, each with our ``/p2p/`` id."""
        return tuple(a.with_peer_id(self.peer_id) for a in self._watch.get().listen_addrs)

    async def check_listener(self) -> ListenerHealth:
        """Whether our WebSocket listener serves a peer: a cached self-dial through our
        handshake (:mod:`actors.node._listener_check`), at most one per interval."""
        return await self.listener_check.health()

    def snapshot(self) -> NodeSnapshot:
        """The latest immutable view of the node."""
        return self._watch.get()

    def subscribe(self) -> WatchSubscription[NodeSnapshot]:
        """``async for snap in node.subscribe():`` - current snapshot, then each change."""
        return self._watch.subscribe()

    async def wait_for(self, predicate: Callable[[NodeSnapshot], bool]) -> NodeSnapshot:
        """Wait until a snapshot satisfies ``predicate`` (wrap in ``trio.fail_after``)."""
        return await self._watch.wait_for(predicate)

    @property
    def activity(self) -> Pulse:
        """Beats whenever the snapshot or the statistics a reader follows may have changed.

        Note ``activity.count``, read :meth:`snapshot` / :meth:`statistics`, then
        ``await activity.wait_past(count)`` to wake exactly when there may be
        something new (this is how ``autonat probe`` follows a node, without polling).
        """
        return self._pulse

    async def connect(self, addr: WsAddress | str, *,
                      timeout: float | None = None) -> ConnectionInfo:
        """Connect to ``addr`` (``.../p2p/<id>``) or return the existing connection."""
        target = addr if isinstance(addr, WsAddress) else WsAddress.parse(addr)
        limit = timeout if timeout is not None else (
            self.config.dialer.dial_timeout + self.config.connection.handshake_timeout
            + CONNECT_TIMEOUT_SLACK)
        try:
            outcome: ConnectionInfo | DialFailed = await call(
                self._dialer_box.sender(), partial(Connect, target), limit)
        except trio.TooSlowError as exc:
            raise ConnectError(f"connecting to {target} timed out after {limit:g} s") from exc
        if isinstance(outcome, DialFailed):
            raise ConnectError(f"could not connect to {target}: {outcome.reason}")
        return outcome

    async def reserve_relay(self, relay: WsAddress | str) -> RelayReservation:
        """Connect to ``relay`` (``.../p2p/<id>``) and reserve a slot on it (or renew ours).

        Raises :class:`ConnectError`, or :class:`~actors.node.RelayRefused` with the
        relay's status."""
        target = relay if isinstance(relay, WsAddress) else WsAddress.parse(relay)
        info = await self.connect(target)
        client = self._client()
        try:
            return await client.reserve(info.peer_id, manual=True)
        except RelayUnavailable as exc:  # the connection ended at once
            raise ConnectError(f"reserving on {target}: {exc}") from exc
        except EXCHANGE_FAILURES as exc:
            raise ConnectError(f"reserving on {target}: {exc}") from exc

    @asynccontextmanager
    async def dial_relayed(self, addr: CircuitAddress | str) -> AsyncIterator[Connection]:
        """``async with node.dial_relayed(".../p2p/RELAY/p2p-circuit/p2p/PEER") as conn:``

        Connects to the relay, then runs our handshake and mux end to end through it
        (the peer's id is verified as on any dial). The connection is served with the
        node's handlers but not registered (see :mod:`actors.node._relay_client`).

        Raises :class:`ConnectError` saying why when no connection was made (the relay
        refused with its status, the target refused, the handshake failed, ...)."""
        circuit = addr if isinstance(addr, CircuitAddress) else CircuitAddress.parse(addr)
        await self.connect(circuit.relay)
        async with AsyncExitStack() as stack:
            try:
                connection = await stack.enter_async_context(self._client().dial(circuit))
            except RELAY_DIAL_FAILURES as exc:
                raise ConnectError(f"could not connect to {circuit}: {exc}") from exc
            yield connection

    def relay_addrs(self) -> tuple[CircuitAddress, ...]:
        """Our ``/p2p-circuit`` addresses, through the relays we hold a reservation on."""
        return self._client().circuit_addrs()

    def relayed_peers(self) -> tuple[PeerId, ...]:
        """Peers we hold a live relayed connection with, sorted."""
        return self._client().statistics().relayed_peers

    def _client(self) -> RelayClient:
        if self._relay_client is None:  # pragma: no cover - _build always makes one
            raise RuntimeError("this node has no relay client")
        return self._relay_client

    def close(self) -> None:
        """End subscriptions (called when the node has stopped)."""
        self._watch.close()

    def statistics(self) -> NodeStatistics:
        """Every part's counters, read now (a frozen value; read again for fresh ones)."""
        return NodeStatistics(
            supervisor=self.supervisor.statistics(), dialer=self._dialer.statistics(),
            tracker=self._tracker.statistics(), identify=self._identify.statistics(),
            identify_responder=self._responder.statistics(),
            autonat_client=self._autonat.statistics(), autonat_server=self._server.statistics(),
            dial_back=self._receiver.statistics(), bootstrap=self._fetcher.statistics(),
            upgrades=(self._transport.upgrades.statistics()
                      if isinstance(self._transport, WebSocketTransport) else None),
            stun=self._stun_server.statistics() if self._stun_server else None,
            udp_discovery=self._udp_profiler.statistics() if self._udp_profiler else None,
            peer_exchange=(self._exchange_server.statistics()
                           if self._exchange_server else None),
            peer_exchange_client=(self._exchange_plan.statistics()
                                  if self._exchange_plan else None),
            hairpin=self._hairpin.statistics() if self._hairpin else None,
            relay=self._relay.statistics() if self._relay else None,
            relay_client=self._relay_client.statistics() if self._relay_client else None,
            hole_punch=self.hole_punch.statistics() if self.hole_punch else None)

    def probes_served(self) -> int:
        """AutoNAT dial requests this node's server answered (``/status``'s ``probes_served``)."""
        return self._server.total_answered

    async def add_peers(self, addrs: list[WsAddress] | tuple[WsAddress, ...], *,
                        source: str = "api", from_bootstrap: bool = False) -> None:
        """Hand candidate peers (``.../p2p/<id>``) to the Dialer, as a bootstrap fetch would."""
        await self._dialer_box.send(PeersFound(tuple(addrs), source, from_bootstrap))


def _keypair(config: NodeConfig, keypair: Keypair | None) -> Keypair:
    if keypair is not None:
        return keypair
    if config.key_file is None:
        return Keypair.generate()
    return load_or_create_keypair(config.key_file)[0]


@dataclass
class _Mailboxes:
    """Created by the node, handed to every incarnation of each actor."""

    tracker: Mailbox[TrackerEvent]
    dialer: Mailbox[DialerCommand]
    identify: Mailbox[IdentifyInput]
    autonat: Mailbox[AutonatInput]
    udp: Mailbox[PeerIdentified]

    @classmethod
    def create(cls, size: int) -> _Mailboxes:
        return cls(Mailbox(size, name="status-tracker"), Mailbox(size, name="dialer"),
                   Mailbox(size, name="identify"), Mailbox(size, name="autonat"),
                   Mailbox(size, name="udp-profile"))


def _default_transport(config: NodeConfig) -> WebSocketTransport:
    """WebSockets with the TLS files of the config loaded (ConfigError names a bad file)."""
    server_ssl = None
    if config.tls_cert is not None and config.tls_key is not None:
        server_ssl = server_context(config.tls_cert, config.tls_key)
    client_ssl = client_context(config.tls_ca) if config.tls_ca is not None else None
    return WebSocketTransport(server_ssl=server_ssl, client_ssl=client_ssl,
                              max_frame_bytes=config.connection.max_frame_bytes,
                              connect_timeout=config.dialer.dial_timeout,
                              handshake_timeout=config.connection.handshake_timeout,
                              upgrade_limits=config.dialer.upgrade_limits())


def _planner(config: NodeConfig, keys: Keypair, rng: random.Random) -> DialPlanner:
    dialer = config.dialer
    return DialPlanner(
        keys.peer_id, target=dialer.target_peers, concurrency=dialer.dial_concurrency,
        backoff=Backoff(initial=dialer.reconnect_initial, maximum=dialer.reconnect_max,
                        jitter=0.2),
        rng=rng, max_peers=config.max_peers)


HandlerOverrides = Callable[[Mapping[str, ProtocolHandler]], Mapping[str, ProtocolHandler]]
"""``open_node(handler_overrides=...)``: the node's handlers in, replacements out."""


def _build(config: NodeConfig, keys: Keypair, transport: Transport,
           rng: random.Random, http_client_factory: ClientFactory | None = None,
           handler_overrides: HandlerOverrides | None = None) -> Node:
    """Every actor and the supervisor, wired through the node-owned mailboxes and watch."""
    boxes = _Mailboxes.create(config.mailbox_size)
    watch: Watch[NodeSnapshot] = Watch()
    pulse = Pulse()
    tracker = StatusTracker(NodeModel(keys.peer_id, max_peers=config.max_peers,
                                      announce_addrs=config.announce_addrs),
                            boxes.tracker.receiver(), watch, data_dir=config.data_dir,
                            save_interval=config.save_interval, pulse=pulse)
    receiver = DialBackReceiver(node=keys.peer_id)
    server = AutonatServer(config=config, keypair=keys, transport=transport,
                           connection_config=config.connection,
                           tracker=boxes.tracker.sender(), rng=rng)
    exchange_server = PeerExchangeServer(config=config, watch=watch, rng=rng, node=keys.peer_id)
    handlers: dict[str, ProtocolHandler] = {DIAL_BACK_PROTOCOL_ID: receiver.serve,
                                            PEER_EXCHANGE_PROTOCOL_ID: exchange_server.serve}
    if config.autonat_server:
        handlers[DIAL_REQUEST_PROTOCOL_ID] = server.serve
        if config.autonat_server_config.dialback_source is not None:
            handlers[DIAL_BACK_OTHER_IP_PROTOCOL_ID] = _capability_only
    relay = (RelayService(config=config, keypair=keys, own_addrs=partial(_relay_addrs, watch))
             if config.relay_service else None)
    if relay is not None:
        handlers[HOP_PROTOCOL_ID] = relay.serve_hop

    def connection_to(peer: PeerId) -> Connection | None:
        return dialer.connection_to(peer)  # the Dialer is made below

    relay_client = RelayClient(config=config, keypair=keys, connection_to=connection_to,
                               rng=rng, tracker=boxes.tracker.sender())
    handlers[STOP_PROTOCOL_ID] = relay_client.serve_stop
    hole_punch = HolePunchService(config=config, watch=watch, dialer=boxes.dialer.sender(),
                                  connection_to=connection_to, node=keys.peer_id)
    handlers[HOLEPUNCH_PROTOCOL_ID] = hole_punch.serve  # served on relayed connections only
    relay_client.on_accepted = hole_punch.initiate
    responder = IdentifyResponder(
        keypair=keys, config=config, watch=watch, actor=boxes.identify.sender(),
        protocols=(IDENTIFY_PROTOCOL_ID, IDENTIFY_PUSH_PROTOCOL_ID, *handlers),
        extra_addrs=relay_client.advertised)
    handlers[IDENTIFY_PROTOCOL_ID] = responder.serve_request
    handlers[IDENTIFY_PUSH_PROTOCOL_ID] = responder.serve_push
    if handler_overrides is not None:
        handlers.update(handler_overrides(MappingProxyType(dict(handlers))))
    relay_client.serve_with(handlers)
    scheduler = ProbeScheduler(
        Reachability(ReachabilityConfig(threshold=config.autonat_client.confidence)),
        policy=config.policy, rng=rng, probe_servers=config.autonat_client.probe_servers,
        welcome_probes=config.autonat_client.welcome_probes,
        max_observers=config.max_peers)  # as many observers as the node model keeps
    exchange_plan = PeerExchangePlan(threshold=config.autonat_client.confidence)
    autonat = AutonatProbe(
        config=config, receiver=receiver, state=AutonatState(scheduler, exchange=exchange_plan),
        inbox=boxes.autonat.receiver(), tracker=boxes.tracker.sender(), watch=watch,
        node=keys.peer_id, pulse=pulse, peers=boxes.dialer.sender())
    stun_server = (StunServerActor(config=config, tracker=boxes.tracker.sender(), watch=watch,
                                   node=keys.peer_id) if config.stun.enabled else None)
    udp_profiler = (UdpProfiler(
        config=config, plan=UdpDiscoveryPlan(interval=config.udp.udp_discovery_interval),
        inbox=boxes.udp.receiver(), tracker=boxes.tracker.sender(), watch=watch,
        node=keys.peer_id, pulse=pulse) if config.udp.udp_discovery else None)
    hairpin = HairpinTester(config=config, keypair=keys, transport=transport, plan=HairpinPlan(),
                            tracker=boxes.tracker.sender(), watch=watch, pulse=pulse)
    identify = IdentifyActor(responder=responder, config=config, state=IdentifyState(),
                             inbox=boxes.identify.receiver(), tracker=boxes.tracker.sender(),
                             watch=watch, autonat=boxes.autonat.sender(),
                             udp=boxes.udp.sender() if udp_profiler else None,
                             extra_addrs=relay_client.advertised_addrs)
    dialer = Dialer(
        config=config, keypair=keys, transport=transport,
        state=DialerState(_planner(config, keys, rng)), inbox=boxes.dialer.receiver(),
        tracker=boxes.tracker.sender(),
        listeners=[boxes.identify.sender(), boxes.autonat.sender(), hole_punch],
        handlers=handlers,
        pulse=pulse)
    fetcher = BootstrapFetcher(config=config, dialer=boxes.dialer.sender(), watch=watch,
                               local_peer=keys.peer_id, rng=rng, pulse=pulse,
                               client_factory=http_client_factory)
    children = [ChildSpec("status-tracker", tracker.run, mailbox=boxes.tracker)]
    if stun_server is not None:  # before the Dialer: every Identify advertises it
        children.append(ChildSpec("stun-server", stun_server.run))
    children += [ChildSpec("identify", identify.run, mailbox=boxes.identify),
                 ChildSpec("autonat", autonat.run, mailbox=boxes.autonat)]
    if udp_profiler is not None:
        children.append(ChildSpec("udp-profile", udp_profiler.run, mailbox=boxes.udp))
    if relay_client.planner is not None:  # reserves on relays while the node is private
        children.append(ChildSpec("relay-client", partial(relay_client.run, watch)))
    children += [ChildSpec("dialer", dialer.run, mailbox=boxes.dialer),
                 ChildSpec("hairpin", hairpin.run),  # stops before the Dialer's listener
                 ChildSpec("bootstrap", fetcher.run)]
    supervisor = Supervisor(
        children,
        name=f"node-{str(keys.peer_id)[-6:]}", rng=rng)
    return Node(keypair=keys, config=config, watch=watch, pulse=pulse, dialer_box=boxes.dialer,
                supervisor=supervisor, dialer=dialer, tracker=tracker, identify=identify,
                responder=responder, autonat=autonat, server=server, receiver=receiver,
                fetcher=fetcher, transport=transport, stun_server=stun_server,
                udp_profiler=udp_profiler, exchange_server=exchange_server,
                exchange_plan=exchange_plan, hairpin=hairpin, relay=relay,
                relay_client=relay_client, hole_punch=hole_punch)


async def _capability_only(stream: Stream[Connection]) -> None:
    """:data:`~protocols.DIAL_BACK_OTHER_IP_PROTOCOL_ID` names a capability in Identify;
    a stream opened on it is closed at once."""
    await stream.aclose()


def _relay_addrs(watch: Watch[NodeSnapshot]) -> tuple[WsAddress, ...]:
    """Where reserving peers reach us: confirmed reachable addresses, then listen addresses
    (the relay service keeps those its policy accepts)."""
    snapshot = watch.get()
    return tuple(dict.fromkeys((*snapshot.reachable_addrs, *snapshot.listen_addrs)))


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    transport: Transport | None = None,
    keypair: Keypair | None = None,
    rng: random.Random | None = None,
    http_client_factory: ClientFactory | None = None,
    handler_overrides: HandlerOverrides | None = None,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the ``async with`` block.

    ``transport`` defaults to WebSockets; tests and the simulator pass a
    :class:`~actors.MemoryTransport`. ``keypair`` overrides ``config.key_file``.
    Raises :class:`~protocols.KeyFileError` for an unusable key file and
    :class:`~protocols.ConfigError` for an unusable ``tls_cert``/``tls_key``/``tls_ca``.
    ``http_client_factory`` replaces ``httpx.AsyncClient`` for the boot URL fetches
    (tests serve a boot document from an ``httpx.MockTransport``).
    ``handler_overrides`` is given the node's protocol handlers and returns those to
    replace (Identify still advertises only the node's own protocols): the
    simulator's adversarial AutoNAT servers answer with it, wrapping the real ones.
    """
    node = _build(config, _keypair(config, keypair),
                  transport if transport is not None else _default_transport(config),
                  rng if rng is not None else random.Random(), http_client_factory,
                  handler_overrides)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.supervisor.run)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
    node.close()
