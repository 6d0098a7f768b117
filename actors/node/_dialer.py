"""The Dialer actor: owns the listeners and every connection.

See (docs/architecture.md, "Actors and messages").

Theory of operation
-------------------
One incarnation binds the configured listen addresses (rebinding the same
ports after a restart), tells the StatusTracker where it listens, and then
does three things concurrently in its own nursery:

* **serves inbound connections**: beyond ``max_connections`` a new one is
  closed at once with the reason ``connection limit reached``; otherwise it
  is authenticated (``open_connection``) and registered;
* **dials**: the sans-io :class:`~protocols.DialPlanner` (owned by the node,
  so it survives restarts) says which peers to dial and when - bounded
  concurrency, ``target_peers``, jittered reconnect backoff; a
  :class:`~actors.runtime.TimeoutDriver` runs its timer and hands over its
  ``DialPeer`` commands, and each dial is a task (TCP + WebSocket +
  handshake, each step with its own timeout);
* **handles commands** from its mailbox: ``PeersFound`` (new candidates,
  also forwarded to the StatusTracker), ``Connect`` (an explicit dial
  with a reply channel, used by ``node.connect``) and ``Punch`` (a hole-punch
  dial, ``Transport.punch`` from the listen port in the WebSocket role the
  exchange assigned, used by :mod:`actors.node._holepunch`: the connection
  is authenticated in the role the WebSocket handshake actually took and
  registered like any other, marked ``hole_punched``; a failed punch is not
  a failed dial - the peer's address was a NAT mapping, not one to redial).

A failed dial is remembered per peer (address, reason, count; in
:class:`DialerState`, so restarts keep it) until that peer connects, and
shown as :attr:`DialerStatistics.failing` - how ``autonat probe`` tells that
every ``--peer`` failed, and why. A dial that reached someone authenticating
as *another* peer id (:class:`~protocols.PeerIdMismatch`: a wrong ``/p2p/``
id in a ``--peer`` or a boot document, or an impostor) is logged as a warning.

Every connection runs in this nursery, so if the Dialer crashes its
connections go with it and the next incarnation rebuilds them from the
planner. A registered connection is announced as ``ConnectionUp`` to the
StatusTracker and ``ConnectionOpened`` (with the live handle) to the
IdentifyActor and the AutonatProbe; its end as ``ConnectionDown`` to the
first and ``ConnectionGone`` to the others, so none of them needs a task per
connection to notice.

**One registered connection per peer.** A second connection from or to a
peer we are already connected to is *secondary*: it is served (its streams
work - this is how AutoNAT dial-backs arrive, on a fresh connection from a
server we already know) but not announced. Once it has been idle for
``SECONDARY_GRACE`` seconds (no open stream) it is resolved with a symmetric
rule: both ends keep the connection *dialed by the peer with the smaller peer
id* and close the other, so after simultaneous dials both ends converge on
the same connection without talking about it. A dial-back connection is
normally closed by its server long before that.

An inbound connection whose handshake proves it comes from this node itself
(:class:`~protocols.SelfConnection`: our hairpin test reaching our own
listener through the NAT) is closed by the handshake, counted
(``self_connections``) and never registered or announced.

Inbound protocol streams are dispatched by protocol id through the
``handlers`` map the node passes in (Identify's responder, the dial-back
receiver and, when enabled, the AutoNAT server); an unknown protocol is
refused by the connection layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from protocols import (
    AdmissionLimits,
    AdmissionRefused,
    AdmissionStatistics,
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    DialCommand,
    DialPlanner,
    EvictConnection,
    InboundAdmission,
    Keypair,
    ListenAddrsChanged,
    NodeConfig,
    PeerId,
    PeerIdMismatch,
    PeersFound,
    WsAddress,
)

from ..connection import (
    CONNECT_FAILURES,
    Connection,
    ConnectionFailed,
    ProtocolHandler,
)
from ..connection import open_connection as _open_connection
from ..runtime import (
    MailboxReceiver,
    MailboxSender,
    MessageSink,
    Pulse,
    TimeoutDriver,
    get_logger,
)
from ..transport import FrameStream, Transport
from ._messages import (
    LOCAL_STOP,
    Connect,
    ConnectionGone,
    ConnectionNotice,
    ConnectionOpened,
    DialerCommand,
    DialFailed,
    Punch,
    TrackerEvent,
)

SECONDARY_GRACE = 2.0
"""Idle seconds before a second connection to a connected peer is resolved."""
DOWN_NOTICE_TIMEOUT = 1.0
"""How long a closing connection may wait to report ``ConnectionDown`` during shutdown."""
MAX_DIAL_FAILURES = 256
"""Peers whose latest failed dial is remembered for :attr:`DialerStatistics.failing`."""


@dataclass(frozen=True)
class DialFailure:
    """The latest failed dial to a peer that has not connected since."""

    peer: PeerId
    addr: WsAddress
    reason: str
    failures: int
    """Failed dials to this peer since it was last connected (or first learned)."""
    peer_id_mismatch: bool = False
    """Something answered at ``addr`` but authenticated as another peer id."""


@dataclass
class DialerState:
    """What outlives a Dialer incarnation (owned by the node)."""

    planner: DialPlanner
    connection_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    bound: dict[int, WsAddress] = field(default_factory=dict)
    failing: dict[PeerId, DialFailure] = field(default_factory=dict)
    """Latest failed dial per peer, cleared when the peer connects (least recent dropped)."""


@dataclass(frozen=True)
class DialerStatistics:
    connections: int
    inbound_pending: int
    dials_started: int
    dials_failed: int
    inbound_refused: int
    duplicates_closed: int
    secondary: int
    dialing: int = 0
    """Dials in flight (planned and explicit)."""
    failing: tuple[DialFailure, ...] = ()
    """Peers whose latest dial failed and that have not connected since, oldest first."""
    admission: AdmissionStatistics | None = None
    """Inbound admission: slots in use, refusals by reason, evictions."""
    self_connections: int = 0
    """Inbound connections that proved to come from this node itself (hairpin tests),
    closed after the handshake and never registered."""
    punches_started: int = 0
    """Hole-punch dials (one per address of each attempt)."""
    punches_failed: int = 0
    """Hole-punch dials that made no connection."""


@dataclass(slots=True)
class _Live:
    info: ConnectionInfo
    connection: Connection


class _Busy(Collection[int]):
    """Admission slots whose connection has open streams or is pinned (a relay
    reservation lives on it), never evicted; looked up lazily, so the admission
    rules only pay for it when the node is full. A slot still in its handshake (a
    bare frame stream) is not busy. Pins are bounded by the relay's own limits
    (reservations in total, per IP and per subnet)."""

    def __init__(self, slots: dict[int, Connection | FrameStream]) -> None:
        self._slots = slots

    def __contains__(self, slot: object) -> bool:
        connection = self._slots.get(slot)  # type: ignore[call-overload]
        return isinstance(connection, Connection) and (
            connection.pinned or connection.statistics().open_streams > 0)

    def __iter__(self) -> Iterator[int]:
        return (slot for slot in self._slots if slot in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def admission_limits(config: NodeConfig) -> AdmissionLimits:
    dialer = config.dialer
    return AdmissionLimits(
        max_connections=dialer.max_connections, per_ip=dialer.max_connections_per_ip,
        per_subnet=dialer.max_connections_per_subnet,
        max_pending=dialer.max_pending_handshakes, pending_per_ip=dialer.max_pending_per_ip)


def _dialed_by(connection: Connection, local: PeerId) -> bytes:
    return (local if connection.initiator else connection.peer_id).to_bytes()


class Dialer:
    """See the module docstring. One instance per incarnation is fine; state lives outside."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        keypair: Keypair,
        transport: Transport,
        state: DialerState,
        inbox: MailboxReceiver[DialerCommand],
        tracker: MailboxSender[TrackerEvent],
        listeners: Sequence[MessageSink[ConnectionNotice]],
        handlers: Mapping[str, ProtocolHandler],
        pulse: Pulse | None = None,
    ) -> None:
        self._config = config
        self._keypair = keypair
        self._pulse = pulse if pulse is not None else Pulse()
        self._transport = transport
        self._state = state
        self._inbox = inbox
        self._tracker = tracker
        self._listeners = tuple(listeners)
        self._handlers = dict(handlers)
        self._conn_config = config.connection
        self._live: dict[PeerId, _Live] = {}
        self._pending_inbound = self._secondary = 0
        self._admission = InboundAdmission(admission_limits(config))
        self._slots: dict[int, Connection | FrameStream] = {}
        self._slot_ids = itertools.count(1)
        self._driver = TimeoutDriver[DialCommand](state.planner)
        self._counts = dict.fromkeys(
            ("dials_started", "dials_failed", "inbound_refused", "duplicates_closed",
             "self_connections", "punches_started", "punches_failed"), 0)
        self._log = get_logger("actors.dialer", actor="dialer", node=str(keypair.peer_id))

    def statistics(self) -> DialerStatistics:
        return DialerStatistics(connections=len(self._live),
                                inbound_pending=self._pending_inbound,
                                secondary=self._secondary,
                                dialing=self._state.planner.in_flight,
                                failing=tuple(self._state.failing.values()),
                                admission=self._admission.statistics(), **self._counts)

    def connection_to(self, peer: PeerId) -> Connection | None:
        """The registered connection to ``peer``, if any (the relay client reserves on it)."""
        live = self._live.get(peer)
        return None if live is None else live.connection

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._live, self._pending_inbound, self._secondary = {}, 0, 0
        self._admission = InboundAdmission(admission_limits(self._config))  # no connection
        self._slots = {}  # survives an incarnation: they all closed with its nursery
        self._driver = TimeoutDriver[DialCommand](self._state.planner)
        async with trio.open_nursery() as nursery:
            bound = await self._listen(nursery)
            await self._tracker.send(ListenAddrsChanged(tuple(bound)))
            self._state.planner.handle_peers_found(list(self._config.peer_addrs),
                                                   trio.current_time())
            task_status.started()
            nursery.start_soon(self._driver.run, partial(self._start_dials, nursery))
            async for command in self._inbox:
                await self._handle(command, nursery)
            nursery.cancel_scope.cancel()

    async def _listen(self, nursery: trio.Nursery) -> list[WsAddress]:
        bound: list[WsAddress] = []
        for index, wanted in enumerate(self._config.listen_addrs):
            addr = self._state.bound.get(index, wanted)
            got: list[WsAddress] = await nursery.start(self._transport.listen, addr,
                                                       self._on_inbound)
            self._state.bound[index] = got[0]
            bound.extend(got)
            self._log.info("listening", addrs=[str(a) for a in got])
        return bound

    # --- commands -----------------------------------------------------------

    async def _handle(self, command: DialerCommand, nursery: trio.Nursery) -> None:
        if isinstance(command, PeersFound):
            planner = self._state.planner
            learned = planner.statistics().peers_learned
            planner.handle_peers_found(list(command.addrs), trio.current_time(),
                                       boot=command.owner)
            self._log.debug("peers found", source=command.source,
                            new_peers=planner.statistics().peers_learned - learned)
            await self._tracker.send(command)
            self._driver.wake()
        elif isinstance(command, Punch):
            self._counts["punches_started"] += 1
            nursery.start_soon(self._punch, command)
        else:
            self._connect(command, nursery)

    def _connect(self, command: Connect, nursery: trio.Nursery) -> None:
        peer = command.addr.peer_id
        assert peer is not None  # Connect validates it
        live = self._live.get(peer)
        if live is not None:
            command.reply.reply(live.info)
        elif peer == self._keypair.peer_id:
            command.reply.reply(DialFailed(command.addr, "that is this node's own peer id"))
        elif len(self._live) >= self._config.dialer.max_connections:
            command.reply.reply(DialFailed(command.addr, "connection limit reached"))
        else:
            now = trio.current_time()
            self._state.planner.handle_peers_found([command.addr], now)
            self._state.planner.handle_dial_started(peer, now)
            nursery.start_soon(self._dial, command.addr, command)

    # --- dialing ------------------------------------------------------------

    async def _start_dials(self, nursery: trio.Nursery, commands: list[DialCommand]) -> None:
        for command in commands:
            nursery.start_soon(self._dial, command.addr, None)

    async def _dial(self, addr: WsAddress, command: Connect | None) -> None:
        peer = addr.peer_id
        assert peer is not None
        self._counts["dials_started"] += 1
        self._pulse.beat()
        established = False
        try:
            async with self._transport.dial(addr) as stream, _open_connection(
                stream, self._keypair, initiator=True, expected_peer=peer,
                handlers=self._handlers, config=self._conn_config,
            ) as connection:
                established = True
                await self._serve(connection, command)
        except CONNECT_FAILURES as exc:
            if established:  # the connection ran and ended; _serve already reported it
                self._log.debug("connection ended with a transport error", peer=str(peer),
                                error=str(exc))
            else:
                self._dial_failed(addr, str(exc), command,
                                  mismatch=isinstance(exc.__cause__, PeerIdMismatch))

    async def _punch(self, command: Punch) -> None:
        """One hole-punch dial: connect and handshakes within ``command.timeout``, then
        served (and registered) like any connection for as long as it lives."""
        addr, peer = command.addr, command.addr.peer_id
        assert peer is not None  # Punch validates it
        established = False
        scope = trio.CancelScope(deadline=trio.current_time() + command.timeout)
        try:
            with scope:
                async with self._transport.punch(addr, as_client=command.as_client) as stream:
                    # the role the WebSocket handshake took (a punch that reached the
                    # peer's listener falls back to the client's), so ours is the other's
                    initiator = bool(getattr(stream, "is_client", command.as_client))
                    async with _open_connection(
                        stream, self._keypair, initiator=initiator, expected_peer=peer,
                        handlers=self._handlers, config=self._conn_config) as connection:
                        established = True
                        scope.deadline = math.inf
                        await self._serve(connection, command)
        except CONNECT_FAILURES as exc:
            if not established:
                self._punch_failed(command, str(exc))
            return
        if not established:
            self._punch_failed(command, f"no connection within {command.timeout:g} s")

    def _punch_failed(self, command: Punch, reason: str) -> None:
        self._counts["punches_failed"] += 1
        self._log.info("punch failed", peer=str(command.addr.peer_id), addr=str(command.addr),
                       reason=reason)
        command.reply.reply(DialFailed(command.addr, reason))

    def _dial_failed(self, addr: WsAddress, reason: str, command: Connect | None, *,
                     mismatch: bool = False) -> None:
        assert addr.peer_id is not None
        self._counts["dials_failed"] += 1
        self._record_failure(addr, reason, mismatch)
        now = trio.current_time()
        planner = self._state.planner
        planner.handle_dial_failed(addr.peer_id, now)
        retry_at = planner.retry_at(addr.peer_id)
        delay = 0.0 if retry_at is None else retry_at - now
        if mismatch:  # a wrong /p2p/ id in a --peer or a boot document, or an impostor
            self._log.warning("dial failed: peer id mismatch", peer=str(addr.peer_id),
                              addr=str(addr), reason=reason, retry_in=round(delay, 3))
        else:
            self._log.info("dial failed", peer=str(addr.peer_id), addr=str(addr), reason=reason,
                           retry_in=round(delay, 3))
        if command is not None:
            command.reply.reply(DialFailed(addr, reason))
        self._driver.wake()
        self._pulse.beat()  # dialing and failing changed

    def _record_failure(self, addr: WsAddress, reason: str, mismatch: bool) -> None:
        peer = addr.peer_id
        assert peer is not None
        failing = self._state.failing
        earlier = failing.pop(peer, None)  # re-insert: dict order is recency
        failing[peer] = DialFailure(peer, addr, reason, 1 if earlier is None
                                    else earlier.failures + 1, mismatch)
        while len(failing) > MAX_DIAL_FAILURES:
            del failing[next(iter(failing))]

    # --- inbound ------------------------------------------------------------

    async def _on_inbound(self, stream: FrameStream) -> None:
        """Admission first (pending and established slots, by IP), then the handshake."""
        slot = await self._reserve(stream)
        if slot is None:
            return
        ip = stream.remote_addr.ip
        assert ip is not None
        self._pending_inbound += 1
        admitted = False
        try:
            async with _open_connection(stream, self._keypair, initiator=False,
                                        handlers=self._handlers,
                                        config=self._conn_config.for_inbound()) as connection:
                self._pending_inbound -= 1
                self._admission.handle_pending_ended(ip)
                admitted = True
                self._slots[slot] = connection
                await self._serve(connection, None, slot=slot)
        except ConnectionFailed as exc:
            if exc.self_connection:  # our own hairpin test (actors.node._hairpin) arrived
                self._counts["self_connections"] += 1
                self._log.debug("self-connection closed", remote=str(stream.remote_addr))
            else:
                self._log.info("inbound handshake failed", remote=str(stream.remote_addr),
                               reason=exc.reason)
        finally:
            if not admitted:
                self._pending_inbound -= 1
                self._admission.handle_pending_ended(ip)
            self._release(slot)

    async def _reserve(self, stream: FrameStream) -> int | None:
        """A pending and an established slot for an inbound connection, before its
        handshake (so a refused client learns at once); None: refused and closed."""
        ip = stream.remote_addr.ip
        if ip is None:  # pragma: no cover - transports report IP addresses
            await stream.aclose("no remote IP")
            return None
        refused = self._admission.handle_pending(ip)
        if refused is None:
            slot = next(self._slot_ids)
            decision = self._admission.handle_established(slot, ip, inbound=True,
                                                          protected=_Busy(self._slots))
            if not isinstance(decision, AdmissionRefused):
                self._slots[slot] = stream
                if isinstance(decision, EvictConnection):
                    await self._evict(decision, stream.remote_addr)
                return slot
            self._admission.handle_pending_ended(ip)
            refused = decision
        self._counts["inbound_refused"] += 1
        self._log.info("inbound connection refused", remote=str(stream.remote_addr),
                       reason=refused.reason)
        await stream.aclose(refused.reason)
        return None

    async def _evict(self, decision: EvictConnection, newcomer: WsAddress) -> None:
        victim = self._slots.pop(decision.connection_id, None)
        if victim is None:  # pragma: no cover - every counted slot is in _slots
            return
        self._log.info("evicting an idle connection to admit a newcomer from another network",
                       evicted=str(victim.remote_addr), subnet=str(decision.subnet),
                       newcomer=str(newcomer))
        await victim.aclose("evicted: the node is full and its network holds the most "
                            "connections")

    def _release(self, slot: int) -> None:
        self._slots.pop(slot, None)
        self._admission.handle_closed(slot)

    async def _serve(self, connection: Connection, command: Connect | Punch | None, *,
                     slot: int | None = None) -> None:
        """Serve an authenticated connection; an outbound one takes its slot here."""
        if slot is not None:
            await self._serve_admitted(connection, command)
            return
        ip = connection.remote_addr.ip
        assert ip is not None
        slot = next(self._slot_ids)
        self._admission.handle_established(slot, ip, inbound=False)  # never refused
        self._slots[slot] = connection
        try:
            await self._serve_admitted(connection, command)
        finally:
            self._release(slot)

    async def _serve_admitted(self, connection: Connection,
                              command: Connect | Punch | None) -> None:
        existing = self._live.get(connection.peer_id)
        if existing is None:
            await self._serve_registered(connection, command)
            return
        if command is not None:
            command.reply.reply(existing.info)
        self._secondary += 1
        try:
            promote = await self._resolve_secondary(connection)
        finally:
            self._secondary -= 1
        if promote:
            await self._serve_registered(connection, None)

    async def _resolve_secondary(self, connection: Connection) -> bool:
        """Serve a second connection to a connected peer until it closes or is resolved.

        Returns True when it must be promoted to the peer's registered connection.
        """
        local = self._keypair.peer_id
        while True:
            with trio.move_on_after(SECONDARY_GRACE):
                await connection.closed.wait()
            if connection.closed.is_set():
                return False
            if connection.statistics().open_streams:
                continue
            current = self._live.get(connection.peer_id)
            if current is None:
                return True
            self._counts["duplicates_closed"] += 1
            if _dialed_by(connection, local) < _dialed_by(current.connection, local):
                self._log.info("duplicate connection: keeping the newer one",
                               peer=str(connection.peer_id))
                del self._live[connection.peer_id]
                await current.connection.aclose("duplicate connection (simultaneous dial)")
                return True
            await connection.aclose("duplicate connection (simultaneous dial)")
            return False

    async def _serve_registered(self, connection: Connection,
                                command: Connect | Punch | None) -> None:
        info = ConnectionInfo(
            connection_id=next(self._state.connection_ids), peer_id=connection.peer_id,
            direction=connection.direction, local_addr=connection.local_addr,
            remote_addr=connection.remote_addr, opened_at=connection.opened_at,
            hole_punched=isinstance(command, Punch))
        self._live[connection.peer_id] = _Live(info, connection)
        self._state.planner.handle_connected(connection.peer_id, trio.current_time())
        self._state.failing.pop(connection.peer_id, None)
        self._log.info("connection up", peer=str(info.peer_id), id=info.connection_id,
                       direction=info.direction.value, remote=str(info.remote_addr))
        stopping = False
        try:
            await self._tracker.send(ConnectionUp(info))
            for listener in self._listeners:
                await listener.send(ConnectionOpened(info, connection))
            if command is not None:
                command.reply.reply(info)
            await connection.closed.wait()
        except trio.Cancelled:  # the node (or this Dialer incarnation) is stopping
            stopping = True
            raise
        finally:
            reason = LOCAL_STOP if stopping else connection.close_reason or "connection ended"
            await self._unregister(info, connection, reason, stopping=stopping)

    async def _unregister(self, info: ConnectionInfo, connection: Connection, reason: str, *,
                          stopping: bool) -> None:
        live = self._live.get(info.peer_id)
        if live is not None and live.info.connection_id == info.connection_id:
            del self._live[info.peer_id]
            now = trio.current_time()
            planner = self._state.planner
            planner.handle_disconnected(info.peer_id, now)
            retry_at = planner.retry_at(info.peer_id)
            delay = 0.0 if retry_at is None else retry_at - now
            if stopping:  # no news, and no redial is coming from this incarnation
                self._log.debug("connection down", peer=str(info.peer_id),
                                id=info.connection_id, reason=reason)
            else:
                self._log.info("connection down", peer=str(info.peer_id),
                               id=info.connection_id, reason=reason, redial_in=round(delay, 3))
            self._driver.wake()
        with trio.CancelScope(shield=True), trio.move_on_after(DOWN_NOTICE_TIMEOUT):
            await self._tracker.send(ConnectionDown(info.connection_id, info.peer_id, reason))
            for listener in self._listeners:
                await listener.send(ConnectionGone(info, connection, reason))
