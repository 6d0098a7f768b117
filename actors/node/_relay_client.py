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
  the node is connected to, then the initiator's handshake, which checks
  the target's peer id: a relay cannot impersonate it.
* :meth:`RelayClient.serve_stop`: the stop protocol, accepted only from
  relays the node holds a reservation on and at most
  :data:`MAX_ACCEPTED_CIRCUITS` at once; the relayed connection is served
  until it closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    AddressError,
    ConnectionConfig,
    Keypair,
    NodeConfig,
    PeerId,
    WsAddress,
)
from protocols.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    CircuitAddress,
    CircuitLimit,
    RelayStatus,
    StopStatus,
)

from ..connection import (
    EXCHANGE_FAILURES,
    Connection,
    ConnectionFailed,
    ProtocolHandler,
    Stream,
    open_connection,
)
from ..runtime import get_logger
from ._relay_circuit import (
    CircuitFrameStream,
    RelayRefused,
    accept_circuit,
    circuit_config,
    dial_circuit,
    reserve,
)

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


class RelayClient:
    """See the module docstring."""

    def __init__(self, *, config: NodeConfig, keypair: Keypair,
                 connection_to: Callable[[PeerId], Connection | None]) -> None:
        self._config = config
        self._keypair = keypair
        self._connection_to = connection_to
        self._handlers: dict[str, ProtocolHandler] = {}
        self._reservations: dict[PeerId, RelayReservation] = {}
        self._accepting = 0
        self._counts = dict.fromkeys(
            ("reservations_refused", "dialed", "accepted", "refused_stops"), 0)
        self._log = get_logger("actors.relay", actor="relay-client", node=str(keypair.peer_id))

    def serve_with(self, handlers: Mapping[str, ProtocolHandler]) -> None:
        """The node's protocol handlers, served on relayed connections (those allowed)."""
        self._handlers = {p: h for p, h in handlers.items() if p not in NOT_OVER_CIRCUITS}

    def statistics(self) -> RelayClientStatistics:
        return RelayClientStatistics(reservations=tuple(self._reservations.values()),
                                     **self._counts)

    def circuit_addrs(self) -> tuple[CircuitAddress, ...]:
        """Our relayed addresses through every relay we hold a live reservation on."""
        now = trio.current_time()
        return tuple(addr for r in self._reservations.values() if r.expires_at > now
                     for addr in r.circuit_addrs(self._keypair.peer_id))

    @property
    def _connection_config(self) -> ConnectionConfig:
        return circuit_config(self._config.connection)

    # --- reservations -------------------------------------------------------

    async def reserve(self, relay: PeerId) -> RelayReservation:
        """Reserve (or renew) on ``relay``, over the node's connection to it.

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
        self._log.info("reserved on relay", relay=str(relay), ttl=answer.reservation.ttl,
                       addrs=[str(a) for a in held.circuit_addrs(self._keypair.peer_id)])
        return held

    def forget(self, relay: PeerId) -> None:
        """Drop our record of a reservation on ``relay`` (its connection is gone)."""
        self._reservations.pop(relay, None)

    # --- relayed connections ------------------------------------------------

    @asynccontextmanager
    async def dial(self, addr: CircuitAddress) -> AsyncIterator[Connection]:
        """A connection to ``addr.target`` through ``addr.relay`` (see the module docstring)."""
        relay = self._connection_to(addr.relay_peer)
        if relay is None:
            raise RelayUnavailable(f"not connected to relay {addr.relay_peer}")
        async with dial_circuit(relay, addr.target, self._keypair, handlers=self._handlers,
                                config=self._connection_config,
                                timeout=self._config.relay.relay_connect_timeout) as conn:
            self._counts["dialed"] += 1
            yield conn

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
            initiator, _limit = await accept_circuit(
                stream, timeout=self._config.relay.relay_connect_timeout)
            async with open_connection(CircuitFrameStream(stream), self._keypair,
                                       initiator=False, handlers=self._handlers,
                                       config=self._connection_config) as conn:
                self._counts["accepted"] += 1
                self._log.info("relayed connection accepted", relay=str(relay),
                               peer=str(conn.peer_id), claimed=str(initiator))
                await conn.closed.wait()
        except _ACCEPT_FAILURES as exc:
            self._log.info("relayed connection failed", relay=str(relay), error=str(exc))
        finally:
            self._accepting -= 1


_ACCEPT_FAILURES: Final[tuple[type[Exception], ...]] = (
    *EXCHANGE_FAILURES, ConnectionFailed, RelayRefused, trio.TooSlowError)


def _parse_all(raw: tuple[bytes, ...]) -> list[WsAddress]:
    addrs: list[WsAddress] = []
    for data in raw:
        try:
            addrs.append(WsAddress.parse(data))
        except AddressError:  # an address we cannot use
            continue
    return addrs
