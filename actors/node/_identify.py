"""IdentifyActor: ask every new peer who it is and what it sees.

See (docs/architecture.md, "Actors and messages").

Theory of operation
-------------------
Following rust-libp2p's split, Identify has two halves:

* :class:`IdentifyResponder` is the per-connection *handler*: the Dialer
  registers its methods for ``/ipfs/id/1.0.0`` and ``/ipfs/id/push/1.0.0``,
  so they run in the connection's nursery. A request is answered with our
  Identify built from the latest node snapshot, with ``observed_addr`` set to
  the connection's real remote address (what a NAT made of the peer; none
  on a relayed connection, whose remote address is the relay's). A
  push is decoded and handed to the actor's mailbox.
* :class:`IdentifyActor` is the *behaviour*: for every ``ConnectionOpened``
  it requests Identify (with ``identify_timeout``), validates the answer
  with :func:`~protocols.interpret_identify` (key must be the authenticated
  peer's, addresses filtered through the policy) and sends
  ``PeerIdentified`` to the StatusTracker and to the AutoNAT probe (its
  observation of our address and its protocols, one at a time, so the
  probe never rescans all observations). When the addresses we advertise
  change it pushes a fresh Identify to every connected peer. Our STUN server
  (the snapshot's ``stun_server``) is advertised as ``stun_addrs``, a
  wildcard IP replaced by the local IP of the connection; a change of it is
  pushed like an address change, and so is a change of the extra listen
  addresses (``extra_addrs``: our relays' ``/p2p-circuit`` addresses, which
  the responder appends). Each ``PeerIdentified`` also goes to the
  UDP profiler (its STUN servers), when the node runs one.

The table of live connections is owned by the node (:class:`IdentifyState`),
so an incarnation that crashed and was restarted still knows whom to push
to; connections opened meanwhile wait in the mailbox. An entry leaves the
table on the Dialer's ``ConnectionGone`` (no task waits per connection),
and a :class:`~actors.node._sweep.ClosedSweep` removes any whose notice was
lost.

Each half counts what it does and reports it as a frozen snapshot:
:meth:`IdentifyResponder.statistics` (requests answered, pushes received)
and :meth:`IdentifyActor.statistics` (peers identified, failed requests,
rejected pushes, pushes sent and failed). The counters live in the objects
the node creates once, so they survive restarts of the actor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import trio

from protocols import (
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    ConnectionInfo,
    Identify,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    PeerIdentified,
    ProtocolError,
    RemoteProtocolError,
    UdpAddress,
    WsAddress,
)
from protocols.identify import advertised_addrs, build_identify, interpret_identify
from protocols.stun import StunAddresses

from ..connection import EXCHANGE_FAILURES, Connection, Stream
from ..runtime import MailboxReceiver, MailboxSender, MessageSink, Watch, get_logger
from ._messages import ConnectionGone, ConnectionOpened, IdentifyInput, IdentifyPushed, TrackerEvent
from ._sweep import ClosedSweep


def _advertised(snapshot: NodeSnapshot) -> tuple[WsAddress, ...]:
    """:func:`~protocols.identify.advertised_addrs` of ``snapshot``."""
    return advertised_addrs(
        listen_addrs=snapshot.listen_addrs, reachable_addrs=snapshot.reachable_addrs,
        local_addrs=snapshot.local_ips, announce_addrs=snapshot.announce_addrs)


def stun_addrs_for(server: StunAddresses | None, local: WsAddress) -> tuple[UdpAddress, ...]:
    """Our STUN server as a peer that reached us at ``local`` can reach it: a wildcard
    primary on ``local``'s IP (when of the same family)."""
    if server is None or server.primary.port == 0:
        return ()
    ip = server.primary.ip
    if ip.is_unspecified:
        if local.ip is None or local.ip.version != ip.version or local.ip.is_unspecified:
            return ()
        ip = local.ip
    return (UdpAddress(ip, server.primary.port),)


@dataclass(frozen=True)
class IdentifyResponderStatistics:
    """What the Identify handlers served (monotonic counters)."""

    requests_answered: int
    """``/ipfs/id/1.0.0`` requests we answered with our Identify."""
    pushes_received: int
    """``/ipfs/id/push/1.0.0`` messages decoded and handed to the actor."""


@dataclass(frozen=True)
class IdentifyStatistics:
    """What the IdentifyActor did (monotonic counters)."""

    identified: int
    """Identify answers and pushes accepted (each sent ``PeerIdentified`` to the tracker
    and the AutoNAT probe)."""
    failures: int
    """Our Identify requests that failed (reset, closed, invalid, timed out)."""
    pushes_rejected: int
    """Pushes from peers that :func:`~protocols.identify.interpret_identify` refused."""
    pushes_sent: int
    """Pushes of our changed addresses that reached a peer."""
    push_failures: int
    """Pushes that could not be delivered."""


class IdentifyResponder:
    """The per-connection handlers for the two Identify protocols."""

    def __init__(self, *, keypair: Keypair, config: NodeConfig, watch: Watch[NodeSnapshot],
                 actor: MailboxSender[IdentifyInput], protocols: Iterable[str],
                 extra_addrs: Callable[[], tuple[bytes, ...]] | None = None) -> None:
        self._keypair = keypair
        self._extra_addrs = extra_addrs
        """More listen addresses, already binary: our relays' ``/p2p-circuit`` ones."""
        self._config = config
        self._watch = watch
        self._actor = actor
        self.protocols = tuple(protocols)
        self._answered = self._pushes_received = 0

    def statistics(self) -> IdentifyResponderStatistics:
        return IdentifyResponderStatistics(requests_answered=self._answered,
                                           pushes_received=self._pushes_received)

    @property
    def peer_id(self) -> PeerId:
        """Our own peer id."""
        return self._keypair.peer_id

    def message_for(self, connection: Connection) -> Identify:
        snapshot = self._watch.get()
        stun = snapshot.stun_server
        message = build_identify(
            public_key=self._keypair.public_key, agent_version=self._config.agent_version,
            listen_addrs=_advertised(snapshot),
            observed_addr=None if connection.relayed else connection.remote_addr,
            protocols=self.protocols,
            policy=self._config.policy,
            stun_addrs=stun_addrs_for(stun, connection.local_addr),
            stun_alternate=stun is not None and stun.alternate is not None,
            reached_ip=connection.local_addr.ip)
        extra = self._extra_addrs() if self._extra_addrs is not None else ()
        if not extra:
            return message
        try:  # within Identify's count and size limits, or without the extras
            extended = replace(message, listen_addrs=(*message.listen_addrs, *extra))
            extended.encode()
        except ProtocolError:
            return message
        return extended

    async def serve_request(self, stream: Stream[Connection]) -> None:
        """``/ipfs/id/1.0.0``: the opener sends one (empty) message; we answer and finish."""
        with trio.fail_after(self._config.identify_timeout):
            await stream.receive()
            await stream.send(self.message_for(stream.connection).to_wire(), fin=True)
        self._answered += 1

    async def serve_push(self, stream: Stream[Connection]) -> None:
        """``/ipfs/id/push/1.0.0``: the opener sends its Identify and finishes."""
        with trio.fail_after(self._config.identify_timeout):
            message = Identify.from_wire(await stream.receive())
        self._pushes_received += 1
        await self._actor.send(IdentifyPushed(stream.connection, message))


@dataclass
class IdentifyState:
    """Outlives incarnations: live connections and what we last advertised."""

    connections: dict[Connection, ConnectionInfo] = field(default_factory=dict)
    advertised: tuple[tuple[WsAddress, ...], StunAddresses | None] | None = None


class IdentifyActor:
    def __init__(self, *, responder: IdentifyResponder, config: NodeConfig,
                 state: IdentifyState, inbox: MailboxReceiver[IdentifyInput],
                 tracker: MailboxSender[TrackerEvent], watch: Watch[NodeSnapshot],
                 autonat: MessageSink[PeerIdentified] | None = None,
                 udp: MessageSink[PeerIdentified] | None = None,
                 extra_addrs: Watch[tuple[bytes, ...]] | None = None) -> None:
        self._responder = responder
        self._extra_addrs = extra_addrs
        self._autonat = autonat
        self._udp = udp
        self._config = config
        self._state = state
        self._inbox = inbox
        self._tracker = tracker
        self._watch = watch
        self._identified = self._failures = self._pushes_rejected = 0
        self._pushes_sent = self._push_failures = 0
        self._log = get_logger("actors.identify", actor="identify", node=str(responder.peer_id))

    def statistics(self) -> IdentifyStatistics:
        return IdentifyStatistics(
            identified=self._identified, failures=self._failures,
            pushes_rejected=self._pushes_rejected, pushes_sent=self._pushes_sent,
            push_failures=self._push_failures)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        connections = self._state.connections
        sweep = ClosedSweep(connections, lambda connection, _info: connection)
        sweep.now()  # ends the previous incarnation may have missed
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._push_on_change, nursery)
            if self._extra_addrs is not None:
                nursery.start_soon(self._push_on_extra_change, self._extra_addrs, nursery)
            task_status.started()
            async for item in self._inbox:
                if isinstance(item, ConnectionOpened):
                    connections[item.connection] = item.info
                    sweep.maybe()
                    nursery.start_soon(self._identify, item.connection, item.info)
                elif isinstance(item, ConnectionGone):
                    connections.pop(item.connection, None)
                else:
                    await self._accept_push(item)
            nursery.cancel_scope.cancel()

    async def _identify(self, connection: Connection, info: ConnectionInfo) -> None:
        log = self._log.bind(peer=str(info.peer_id), id=info.connection_id)
        try:
            stream = await connection.open_stream(IDENTIFY_PROTOCOL_ID)
            reply = await stream.request({}, timeout=self._config.identify_timeout)
            await self._accept(Identify.from_wire(reply), info)
        except EXCHANGE_FAILURES as exc:  # StreamTimeout included
            self._failures += 1
            log.info("identify failed", error=f"{type(exc).__name__}: {exc}")

    async def _accept(self, message: Identify, info: ConnectionInfo) -> None:
        outcome = interpret_identify(
            message, peer_id=info.peer_id, connection_id=info.connection_id,
            local_addr=info.local_addr, remote_addr=info.remote_addr,
            policy=self._config.policy)
        for entry, reason in outcome.skipped:
            self._log.debug("identify entry skipped", peer=str(info.peer_id), entry=entry,
                            reason=reason)
        self._identified += 1
        listen = outcome.event.listen_addrs
        self._log.info("peer identified", peer=str(info.peer_id), agent=message.agent_version,
                       observed=str(outcome.event.observed_addr), listen_addrs=len(listen))
        self._log.debug("peer listen addrs", peer=str(info.peer_id),
                        addrs=[str(a.with_peer_id(None)) for a in listen])
        await self._tracker.send(outcome.event)
        if self._autonat is not None:
            await self._autonat.send(outcome.event)
        if self._udp is not None:
            await self._udp.send(outcome.event)

    async def _accept_push(self, push: IdentifyPushed) -> None:
        info = self._state.connections.get(push.connection)
        if info is None:
            return
        try:
            await self._accept(push.message, info)
        except RemoteProtocolError as exc:
            self._pushes_rejected += 1
            self._log.info("identify push rejected", peer=str(info.peer_id), error=str(exc))

    async def _push_on_change(self, nursery: trio.Nursery) -> None:
        async for snapshot in self._watch.subscribe():
            current = (_advertised(snapshot), snapshot.stun_server)
            previous, self._state.advertised = self._state.advertised, current
            if previous is None or previous == current:
                continue
            for connection in list(self._state.connections):
                nursery.start_soon(self._push, connection)

    async def _push_on_extra_change(self, extra: Watch[tuple[bytes, ...]],
                                    nursery: trio.Nursery) -> None:
        """Push when the extra listen addresses (our relays' circuits) change."""
        previous: tuple[bytes, ...] | None = None
        async for current in extra.subscribe():
            if previous is not None and current != previous:
                for connection in list(self._state.connections):
                    nursery.start_soon(self._push, connection)
            previous = current

    async def _push(self, connection: Connection) -> None:
        timeout = self._config.identify_timeout
        with trio.move_on_after(timeout) as scope:
            try:
                stream = await connection.open_stream(IDENTIFY_PUSH_PROTOCOL_ID)
                await stream.send(self._responder.message_for(connection).to_wire(), fin=True)
                await stream.aclose()
            except EXCHANGE_FAILURES as exc:
                self._push_failures += 1
                self._log.debug("identify push failed", peer=str(connection.peer_id),
                                error=str(exc))
                return
        if scope.cancelled_caught:
            self._push_failures += 1
            self._log.debug("identify push failed", peer=str(connection.peer_id),
                            error=f"not sent within {timeout:g} s")
            return
        self._pushes_sent += 1
