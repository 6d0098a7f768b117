"""The node's side of relays: reservations it holds, relayed connections it dials and accepts.

Theory of operation
-------------------
:class:`RelayClient` uses the connections the Dialer already keeps
(``connection_to(peer)``): a reservation is made on the node's registered
connection to the relay (:func:`~actors.node._relay_circuit.reserve`) and
remembered with its expiry and the relay's addresses, which give the
node's ``/p2p/RELAY/p2p-circuit/p2p/SELF`` addresses
(:meth:`RelayClient.circuit_addrs`).

Relayed connections run our full handshake and stream mux inside the
circuit (:mod:`actors.node._relay_circuit`) and are served with the node's
protocol handlers - so the node answers Identify on them, with no observed
address (a circuit has none) - except the ones that must never run over a
relay: AutoNAT dial requests (a dial-back to an address seen through a
relay proves nothing) and the relay protocols themselves. In this first
increment they are *side connections*, like an AutoNAT dial-back: they live
as long as the circuit (and the connection to the relay it runs on) and are
not registered with the Dialer, the StatusTracker or the AutoNAT probe,
whose bookkeeping assumes a connection's remote address is the peer's.

* :meth:`RelayClient.dial` (``node.dial_relayed``): CONNECT through a relay
  the node is connected to, then the key exchange and the initiator's
  handshake, which check the target's peer id: a relay can neither
  impersonate the target nor read or alter the connection.
* :meth:`RelayClient.serve_stop`: the stop protocol, accepted only from
  relays the node holds a reservation on and at most
  :data:`MAX_ACCEPTED_CIRCUITS` at once; the relayed connection is served
  until it closes, after :attr:`RelayClient.on_accepted` ran on it (the
  node's hole punch, :mod:`actors.node._holepunch`, which may add a direct,
  registered connection to the same peer; the relayed one stays).
* :meth:`RelayClient.run` (a supervised child, ``relay-client``, when
  ``relay_reservations`` > 0) drives the sans-io
  :class:`~protocols.relay.RelayPlanner`: from each snapshot it takes the
  verdict and - only while the node is private - the connected peers whose
  Identify lists the hop protocol (their IP and the connection's RTT), and
  runs the planner's RESERVE commands, one task each, reporting every
  outcome back (a cancelled one too, so a restart never leaves the planner
  waiting). :meth:`RelayClient.circuit_addrs` lists the relays the planner
  holds (plus reservations asked for through ``node.reserve_relay``);
  Identify answers carry them as extra listen addresses and ``/status`` as
  ``relay_addrs``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Final

import trio

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    AddressError,
    Backoff,
    ConnectionConfig,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    StreamLimitReached,
    WsAddress,
)
from protocols.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    CircuitAddress,
    CircuitLimit,
    RelayPathsChanged,
    RelayPlanner,
    RelayPlannerStatistics,
    RelayStatus,
    ReserveOn,
    StopStatus,
)

from ..connection import (
    EXCHANGE_FAILURES,
    Connection,
    ConnectionFailed,
    ProtocolHandler,
    Stream,
)
from ..runtime import MailboxSender, TimeoutDriver, Watch, get_logger
from ._messages import TrackerEvent
from ._relay_circuit import (
    RelayRefused,
    accept_relayed,
    circuit_config,
    dial_circuit,
    reserve,
)

MAX_ADVERTISED: Final = 4
"""Circuit addresses advertised at most (Identify has room for a few)."""
RETRY: Final = Backoff(initial=5.0, maximum=300.0, jitter=0.2)
"""Retries of a relay that refused or failed a reservation."""
_ANSWER_SLACK: Final = 5.0
"""Seconds a CONNECT waits beyond ``relay_connect_timeout``: the relay's own stop exchange
may take that long before it answers."""
MAX_ACCEPTED_CIRCUITS: Final = 16
"""Relayed connections a node accepts at once (through all its relays)."""
NOT_OVER_CIRCUITS: Final = frozenset({DIAL_REQUEST_PROTOCOL_ID, HOP_PROTOCOL_ID,
                                      STOP_PROTOCOL_ID})
"""Protocols never served on a relayed connection."""


class RelayUnavailable(Exception):
    """The node is not connected to the relay (connect to it first)."""


@dataclass(frozen=True)
class RelayReservation:
    """A reservation this node holds on ``relay``."""

    relay: PeerId
    expires_at: float
    """Trio time at which it lapses unless renewed."""
    relay_addrs: tuple[WsAddress, ...]
    """The relay's addresses from its answer (each with its ``/p2p/`` id)."""
    limit: CircuitLimit | None

    def circuit_addrs(self, own: PeerId) -> tuple[CircuitAddress, ...]:
        return tuple(CircuitAddress(addr, own) for addr in self.relay_addrs)


@dataclass(frozen=True)
class RelayClientStatistics:
    reservations: tuple[RelayReservation, ...]
    reservations_refused: int
    dialed: int
    """Relayed connections this node opened."""
    accepted: int
    """Relayed connections this node accepted."""
    refused_stops: int
    """Stop requests refused (no reservation on that relay, or too many circuits)."""
    planner: RelayPlannerStatistics | None = None
    """The choice of relays (None: ``relay_reservations`` is 0)."""
    relayed_peers: tuple[PeerId, ...] = ()
    """Peers we hold a live relayed connection with (dialed or accepted), sorted."""


class RelayClient:
    """See the module docstring."""

    def __init__(self, *, config: NodeConfig, keypair: Keypair,
                 connection_to: Callable[[PeerId], Connection | None],
                 rng: random.Random | None = None,
                 tracker: MailboxSender[TrackerEvent] | None = None) -> None:
        self._config = config
        wanted = config.relay.relay_reservations
        self.planner = (RelayPlanner(backoff=RETRY, rng=rng or random.Random(), wanted=wanted)
                        if wanted else None)
        self._candidates: set[PeerId] = set()
        self._private = False
        self._keypair = keypair
        self._connection_to = connection_to
        self._handlers: dict[str, ProtocolHandler] = {}
        self._reservations: dict[PeerId, RelayReservation] = {}
        self._manual: set[PeerId] = set()
        self.advertised_addrs: Watch[tuple[bytes, ...]] = Watch(())
        """:meth:`advertised`, republished when it changes (Identify pushes it)."""
        self.paths: Watch[RelayPathsChanged] = Watch(RelayPathsChanged())
        """Our circuit addresses and relayed-only peers, republished when they change;
        :meth:`run` forwards them to the StatusTracker (the snapshot's ``relay_addrs``
        and ``relayed_peers``)."""
        self._tracker = tracker
        self._accepting = 0
        self._relayed: dict[PeerId, int] = {}
        self.on_accepted: Callable[[Connection], Awaitable[None]] | None = None
        """Run on each relayed connection we accept, before waiting for its end (the hole
        punch's initiator; must not raise for the peer's or the path's doing)."""
        self._counts = dict.fromkeys(
            ("reservations_refused", "dialed", "accepted", "refused_stops"), 0)
        self._log = get_logger("actors.relay", actor="relay-client", node=str(keypair.peer_id))

    def serve_with(self, handlers: Mapping[str, ProtocolHandler]) -> None:
        """The node's protocol handlers, served on relayed connections (those allowed)."""
        self._handlers = {p: h for p, h in handlers.items() if p not in NOT_OVER_CIRCUITS}

    def statistics(self) -> RelayClientStatistics:
        return RelayClientStatistics(
            reservations=tuple(self._reservations.values()),
            relayed_peers=tuple(sorted(self._relayed, key=str)),
            planner=self.planner.statistics() if self.planner else None, **self._counts)

    def circuit_addrs(self) -> tuple[CircuitAddress, ...]:
        """Our relayed addresses through every relay we hold a live reservation on (while
        the planner runs: only the relays it holds, i.e. none once the node is public)."""
        now = trio.current_time()
        held = (*self.planner.held(), *self._manual) if self.planner else (*self._reservations,)
        return tuple(addr for relay in dict.fromkeys(held)
                     if (r := self._reservations.get(relay)) is not None and r.expires_at > now
                     for addr in r.circuit_addrs(self._keypair.peer_id))

    def advertised(self) -> tuple[bytes, ...]:
        """:meth:`circuit_addrs` as binary multiaddrs for Identify, at most
        :data:`MAX_ADVERTISED`, one per relay first."""
        addrs = self.circuit_addrs()
        firsts = list(dict.fromkeys(addrs, None))
        by_relay: dict[PeerId, CircuitAddress] = {}
        for addr in firsts:
            by_relay.setdefault(addr.relay_peer, addr)
        ordered = [*by_relay.values(), *(a for a in firsts if a not in by_relay.values())]
        return tuple(a.to_bytes() for a in ordered[:MAX_ADVERTISED])

    def _publish(self) -> None:
        """Republish :meth:`advertised` when it changed (a reservation held, lost or
        released)."""
        current = self.advertised()
        if current != self.advertised_addrs.get():
            self.advertised_addrs.set(current)
        self._publish_paths()

    def _publish_paths(self) -> None:
        paths = RelayPathsChanged.bounded(self.circuit_addrs(),
                                          tuple(sorted(self._relayed, key=str)))
        if paths != self.paths.get():
            self.paths.set(paths)

    async def _forward_paths(self, tracker: MailboxSender[TrackerEvent]) -> None:
        async for paths in self.paths.subscribe():
            await tracker.send(paths)

    # --- the planner's driver (a supervised child when relay_reservations > 0) ---

    async def run(self, watch: Watch[NodeSnapshot], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the node's verdict and connections; reserve where the planner says."""
        planner = self.planner
        assert planner is not None
        driver = TimeoutDriver[ReserveOn](planner)
        async with trio.open_nursery() as nursery:

            async def execute(commands: list[ReserveOn]) -> None:
                for command in commands:
                    nursery.start_soon(self._reserve_for, planner, driver, command, execute)

            nursery.start_soon(driver.run, execute)
            if self._tracker is not None:
                nursery.start_soon(self._forward_paths, self._tracker)
            task_status.started()
            async for snapshot in watch.subscribe():
                await execute(self._follow(planner, snapshot))
                self._publish()
                driver.wake()

    def _follow(self, planner: RelayPlanner, snapshot: NodeSnapshot) -> list[ReserveOn]:
        """Feed one snapshot's relay candidates and verdict to the planner.

        Candidates are scanned only while the node is private (a public node with
        many connections pays nothing), and before a new ``private`` verdict is
        given, so the planner never asks a relay that left while we were public.
        """
        now = trio.current_time()
        private = snapshot.nat_status == "private"
        commands = self._scan(planner, snapshot, now) if private else []
        if private != self._private:
            self._private = private
            commands += planner.handle_reachability(private, now)
        return commands

    def _scan(self, planner: RelayPlanner, snapshot: NodeSnapshot,
              now: float) -> list[ReserveOn]:
        commands: list[ReserveOn] = []
        connected = {}
        for info in snapshot.connections:
            record = snapshot.peer(info.peer_id)
            if record is not None and HOP_PROTOCOL_ID in record.protocols:
                connected[info.peer_id] = info
        for peer in self._candidates - connected.keys():
            self._candidates.discard(peer)
            self.forget(peer)
            commands += planner.handle_candidate_gone(peer, now)
        for peer, info in connected.items():
            connection = self._connection_to(peer)
            ip = info.remote_addr.ip
            if peer in self._candidates or connection is None or ip is None:
                continue
            self._candidates.add(peer)
            commands += planner.handle_candidate(peer, ip, connection.path_stats().srtt, now)
        return commands

    async def _reserve_for(self, planner: RelayPlanner, driver: TimeoutDriver[ReserveOn],
                           command: ReserveOn,
                           execute: Callable[[list[ReserveOn]], Awaitable[None]]) -> None:
        relay = command.relay
        try:
            held = await self.reserve(relay)
        except trio.Cancelled:  # the next incarnation's first handle_timeout asks again
            planner.handle_reserve_failed(relay, trio.current_time(), refill=False)
            raise
        except _RESERVE_FAILURES as exc:
            self._log.info("reservation failed", relay=str(relay), error=str(exc))
            commands = planner.handle_reserve_failed(relay, trio.current_time())
        else:
            now = trio.current_time()
            commands = planner.handle_reserved(relay, held.expires_at - now, now)
        self._publish()
        await execute(commands)  # another relay to ask at once
        driver.wake()

    @property
    def _connection_config(self) -> ConnectionConfig:
        return circuit_config(self._config.connection)

    # --- reservations -------------------------------------------------------

    async def reserve(self, relay: PeerId, *, manual: bool = False) -> RelayReservation:
        """Reserve (or renew) on ``relay``, over the node's connection to it; ``manual``:
        asked for by the application (``node.reserve_relay``), advertised until it lapses
        rather than only while the planner holds it.

        Raises :class:`RelayUnavailable`, :class:`RelayRefused` or a stream failure.
        """
        connection = self._connection_to(relay)
        if connection is None:
            raise RelayUnavailable(f"not connected to relay {relay}")
        try:
            answer = await reserve(connection, timeout=self._config.relay.relay_connect_timeout)
        except RelayRefused:
            self._counts["reservations_refused"] += 1
            raise
        assert answer.reservation is not None
        addrs = tuple(addr for addr in _parse_all(answer.reservation.addrs)
                      if addr.peer_id == relay)
        held = RelayReservation(relay, trio.current_time() + answer.reservation.ttl, addrs,
                                answer.limit)
        self._reservations[relay] = held
        if manual:
            self._manual.add(relay)
            self._publish()
        self._log.info("reserved on relay", relay=str(relay), ttl=answer.reservation.ttl,
                       addrs=[str(a) for a in held.circuit_addrs(self._keypair.peer_id)])
        return held

    def forget(self, relay: PeerId) -> None:
        """Drop our record of a reservation on ``relay`` (its connection is gone)."""
        self._reservations.pop(relay, None)
        self._manual.discard(relay)
        self._publish()

    # --- relayed connections ------------------------------------------------

    @asynccontextmanager
    async def dial(self, addr: CircuitAddress) -> AsyncIterator[Connection]:
        """A connection to ``addr.target`` through ``addr.relay`` (see the module docstring)."""
        relay = self._connection_to(addr.relay_peer)
        if relay is None:
            raise RelayUnavailable(f"not connected to relay {addr.relay_peer}")
        async with dial_circuit(relay, addr.target, self._keypair, handlers=self._handlers,
                                config=self._connection_config,
                                timeout=self._config.relay.relay_connect_timeout
                                + _ANSWER_SLACK) as conn:
            self._counts["dialed"] += 1
            with self._live(conn.peer_id):
                yield conn

    @contextmanager
    def _live(self, peer: PeerId) -> Iterator[None]:
        """Count a relayed connection with ``peer`` while it lives (and republish
        :attr:`paths` as it starts and ends)."""
        try:
            with _counted(self._relayed, peer):
                self._publish_paths()
                yield
        finally:
            self._publish_paths()

    async def serve_stop(self, stream: Stream[Connection]) -> None:
        """The stop protocol: a relay we reserved on brings us a relayed connection."""
        relay = stream.connection.peer_id
        held = self._reservations.get(relay)
        if (held is None or held.expires_at <= trio.current_time() or stream.connection.relayed
                or self._accepting >= MAX_ACCEPTED_CIRCUITS):
            self._counts["refused_stops"] += 1
            await stream.send(StopStatus(RelayStatus.PERMISSION_DENIED).to_wire(), fin=True)
            return
        self._accepting += 1
        try:
            async with accept_relayed(stream, self._keypair, handlers=self._handlers,
                                      config=self._config.connection,
                                      timeout=self._config.relay.relay_connect_timeout) as conn:
                self._counts["accepted"] += 1
                self._log.info("relayed connection accepted", relay=str(relay),
                               peer=str(conn.peer_id))
                with self._live(conn.peer_id):
                    if self.on_accepted is not None:
                        await self.on_accepted(conn)
                    await conn.closed.wait()
        except _ACCEPT_FAILURES as exc:
            self._log.info("relayed connection failed", relay=str(relay), error=str(exc))
        finally:
            self._accepting -= 1


@contextmanager
def _counted(live: dict[PeerId, int], peer: PeerId) -> Iterator[None]:
    live[peer] = live.get(peer, 0) + 1
    try:
        yield
    finally:
        live[peer] -= 1
        if not live[peer]:
            del live[peer]


_ACCEPT_FAILURES: Final[tuple[type[Exception], ...]] = (
    *EXCHANGE_FAILURES, ConnectionFailed, RelayRefused, trio.TooSlowError)


_RESERVE_FAILURES: Final[tuple[type[Exception], ...]] = (*_ACCEPT_FAILURES, RelayUnavailable)
RELAY_DIAL_FAILURES: Final[tuple[type[Exception], ...]] = (*_RESERVE_FAILURES,
                                                           StreamLimitReached)
"""What dialing through a relay can end in when no connection was made."""


def _parse_all(raw: tuple[bytes, ...]) -> list[WsAddress]:
    addrs: list[WsAddress] = []
    for data in raw:
        try:
            addrs.append(WsAddress.parse(data))
        except AddressError:  # an address we cannot use
            continue
    return addrs
