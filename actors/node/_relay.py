"""The relay service: Circuit Relay v2 reservations and spliced circuits over our wire.

Theory of operation
-------------------
A node with ``relay_service`` on (boot nodes, ``config/boot.toml``) serves
``/libp2p/circuit/relay/0.2.0/hop``: the node registers :meth:`RelayService.serve_hop`
with the Dialer, so each hop request runs in the requesting connection's
nursery. Every decision is the sans-io :class:`~protocols.relay.RelayRules`'
(limits, expiry, policy); this actor does the I/O.

**RESERVE.** The rules grant or refuse; the answer carries the reservation's
``ttl``, the circuit limit and our routable listen addresses (with our
``/p2p/`` id), from which the client builds its ``/p2p-circuit`` addresses.
The reservation is bound to the connection it was made on: the handler
keeps waiting (one parked task per reservation, bounded by
``relay_max_reservations``) until that connection ends, then releases it;
a renewal hands the binding over to the new handler. While it waits the
connection is pinned (:meth:`~actors.connection.Connection.pin`): a
reserved connection has no open stream most of the time, and must not
idle out (boot nodes close idle inbound connections after
``inbound_idle_timeout``).

**CONNECT.** The rules admit or refuse; an admitted circuit asks the target
on *its* connection (the one it reserved on) over
``/libp2p/circuit/relay/0.2.0/stop``, within ``relay_connect_timeout``.
When the target answers OK, we answer OK on the hop stream and splice the
two streams: one pump per direction forwards each ``data`` message
unchanged after asking the rules whether it fits the data limit, and the
whole splice runs until the circuit's deadline. The circuit closes, both
streams with it, when either end finishes or resets it, when a message
would cross the data limit (``relay-data-limit``, that message is not
forwarded) or at the deadline (``relay-duration-limit``). The streams'
own lifetime is moved to the circuit's deadline
(:meth:`~actors.connection.Connection.set_stream_deadline`), so the circuit
lives by its duration limit, not the connection's ``stream_timeout``.

The relay sees only ``data`` messages: the ends run an authenticated key
exchange, seal every frame after it, and run our whole handshake and stream
mux inside (:mod:`actors.node._relay_circuit`), so a relay can neither read,
alter nor impersonate either end - it sees sizes and timing only. Requests over a relayed
connection are refused (no relays of relays), and so are peers whose
connection comes from an address the node's policy rejects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from protocols import (
    Keypair,
    NodeConfig,
    PeerId,
    StreamLimitReached,
    ValidationError,
    WsAddress,
)
from protocols.core import IPAddress
from protocols.relay import (
    MAX_RESERVATION_ADDRS,
    STOP_PROTOCOL_ID,
    CircuitAdmitted,
    CircuitDirection,
    CircuitEnd,
    HopConnect,
    HopReserve,
    HopStatus,
    RelayRules,
    RelayStatistics,
    RelayStatus,
    ReservationGranted,
    ReservationInfo,
    StopConnect,
    StopStatus,
    decode_circuit_data,
    decode_hop_message,
    decode_stop_message,
)

from ..connection import EXCHANGE_FAILURES, Connection, Stream
from ..runtime import get_logger

DATA_LIMIT_CODE: Final = "relay-data-limit"
DURATION_LIMIT_CODE: Final = "relay-duration-limit"
CIRCUIT_CLOSED_CODE: Final = "relay-circuit-closed"
_CLOSE_GRACE: Final = 1.0
"""Seconds closing a circuit's two streams may take (their fins queue behind data)."""
_STREAM_SLACK: Final = 5.0
"""Seconds a circuit's streams outlive its deadline, so the relay's own close comes first."""


@dataclass(frozen=True)
class RelayServiceStatistics:
    """The rules' counts and what the service saw on the wire."""

    rules: RelayStatistics
    malformed: int
    """Hop requests that could not be decoded (answered ``MALFORMED_MESSAGE``)."""
    stop_failures: int
    """Circuits whose target refused, could not be asked or did not answer in time."""


@dataclass
class _Held:
    connection: Connection
    scope: trio.CancelScope


class RelayService:
    """See the module docstring. ``own_addrs`` returns our current listen addresses."""

    def __init__(self, *, config: NodeConfig, keypair: Keypair,
                 own_addrs: Callable[[], Sequence[WsAddress]]) -> None:
        self.rules = RelayRules(config.relay, config.policy)
        self._config = config.relay
        self._policy = config.policy
        self._peer_id = keypair.peer_id
        self._own_addrs = own_addrs
        self._reserved: dict[PeerId, _Held] = {}
        self._malformed = self._stop_failures = 0
        self._log = get_logger("actors.relay", actor="relay", node=str(keypair.peer_id))

    def statistics(self) -> RelayServiceStatistics:
        return RelayServiceStatistics(rules=self.rules.statistics(), malformed=self._malformed,
                                      stop_failures=self._stop_failures)

    async def serve_hop(self, stream: Stream[Connection]) -> None:
        """Serve one hop stream: RESERVE or CONNECT."""
        try:
            with trio.fail_after(self._config.relay_connect_timeout):
                message = decode_hop_message(await stream.receive())
        except ValidationError as exc:
            self._malformed += 1
            self._log.info("malformed hop request", peer=str(stream.connection.peer_id),
                           error=str(exc))
            await _answer(stream, HopStatus(RelayStatus.MALFORMED_MESSAGE))
            return
        if isinstance(message, HopReserve):
            await self._reserve(stream)
        elif isinstance(message, HopConnect):
            await self._connect(stream, message.peer_id)
        else:
            await _answer(stream, HopStatus(RelayStatus.UNEXPECTED_MESSAGE))

    # --- reservations -------------------------------------------------------

    async def _reserve(self, stream: Stream[Connection]) -> None:
        connection = stream.connection
        peer = connection.peer_id
        decision = self.rules.handle_reserve(peer, _ip_of(connection), trio.current_time())
        if not isinstance(decision, ReservationGranted):
            self._log.info("reservation refused", peer=str(peer), status=decision.status.name,
                           reason=decision.reason)
            connection.count_refusal(f"relay reservation refused: {decision.reason}")
            await _answer(stream, HopStatus(decision.status))
            return
        held = _Held(connection, trio.CancelScope())
        previous = self._reserved.get(peer)
        if previous is not None:
            previous.scope.cancel()  # its handler hands the reservation over to this one
        self._reserved[peer] = held
        connection.pin()  # a reserved connection does not idle out (inbound_idle_timeout)
        try:
            info = ReservationInfo(decision.ttl, self._advertised())
            await _answer(stream, HopStatus(RelayStatus.OK, info, self.rules.limit))
            self._log.info("reservation granted", peer=str(peer), ttl=decision.ttl,
                           renewed=decision.renewed)
            with held.scope:
                await connection.closed.wait()
        finally:
            connection.unpin()
            if self._reserved.get(peer) is held:
                del self._reserved[peer]
                self.rules.handle_unreserve(peer)

    def _advertised(self) -> tuple[bytes, ...]:
        addrs = [a.with_peer_id(self._peer_id).to_bytes() for a in self._own_addrs()
                 if self._policy.is_routable(a)]
        return tuple(addrs[:MAX_RESERVATION_ADDRS])

    # --- circuits -----------------------------------------------------------

    async def _connect(self, hop: Stream[Connection], target: PeerId) -> None:
        connection = hop.connection
        decision = self.rules.handle_connect(connection.peer_id, _ip_of(connection), target,
                                             trio.current_time())
        if not isinstance(decision, CircuitAdmitted):
            self._log.info("circuit refused", src=str(connection.peer_id), dst=str(target),
                           status=decision.status.name, reason=decision.reason)
            await _answer(hop, HopStatus(decision.status))
            return
        end = CircuitEnd.CONNECT_FAILED
        try:
            stop = await self._ask_target(decision)
            if stop is None:
                self._stop_failures += 1
                await _answer(hop, HopStatus(RelayStatus.CONNECTION_FAILED))
                return
            end = await self._run_circuit(decision, hop, stop)
        except trio.Cancelled:  # the initiator reset the hop stream, or the node stops
            end = CircuitEnd.FINISHED if hop.reset_or_broken else CircuitEnd.RELAY_STOPPED
            raise
        finally:
            self.rules.handle_closed(decision.circuit_id, end)

    async def _ask_target(self, circuit: CircuitAdmitted) -> Stream[Connection] | None:
        """The stop stream to the target once it accepted, or None."""
        held = self._reserved.get(circuit.dst)
        if held is None or held.connection.close_reason is not None:
            return None
        stop: Stream[Connection] | None = None
        with trio.move_on_at(self.rules.circuit_deadline(circuit.circuit_id)):
            try:
                stop = await held.connection.open_stream(STOP_PROTOCOL_ID)
                await stop.send(StopConnect(circuit.src.to_bytes(), circuit.limit).to_wire())
                reply = decode_stop_message(await stop.receive())
                if isinstance(reply, StopStatus) and reply.status is RelayStatus.OK:
                    return stop
                self._log.info("circuit target refused", dst=str(circuit.dst), reply=repr(reply))
            except _TARGET_FAILURES as exc:
                self._log.info("circuit target unreachable", dst=str(circuit.dst),
                               error=str(exc))
        if stop is not None:
            await stop.reset(CIRCUIT_CLOSED_CODE)
        return None

    async def _run_circuit(self, circuit: CircuitAdmitted, hop: Stream[Connection],
                           stop: Stream[Connection]) -> CircuitEnd:
        cid = circuit.circuit_id
        deadline = self.rules.handle_established(cid, trio.current_time())
        for stream in (hop, stop):
            stream.connection.set_stream_deadline(stream, deadline + _STREAM_SLACK)
        self._log.info("circuit up", id=cid, src=str(circuit.src), dst=str(circuit.dst))
        ends: list[CircuitEnd] = []
        try:
            await hop.send(HopStatus(RelayStatus.OK, limit=circuit.limit).to_wire())
            with trio.move_on_at(deadline) as timer:
                async with trio.open_nursery() as nursery:
                    for src, dst, way in ((hop, stop, CircuitDirection.TO_TARGET),
                                          (stop, hop, CircuitDirection.TO_INITIATOR)):
                        nursery.start_soon(self._pump, cid, src, dst, way, ends,
                                           nursery.cancel_scope)
        finally:  # cancelled from outside: the hop stream broke, or the node stops
            cancelled = not ends and not timer.cancelled_caught
            end = ends[0] if ends else CircuitEnd.DURATION_LIMIT
            await _close_both(hop, stop, CIRCUIT_CLOSED_CODE if cancelled
                              else _RESET_CODES.get(end))
        self._log.info("circuit closed", id=cid, end=end.value)
        return end

    async def _pump(self, cid: int, src: Stream[Connection], dst: Stream[Connection],
                    way: CircuitDirection, ends: list[CircuitEnd],
                    done: trio.CancelScope) -> None:
        """Forward ``src``'s messages to ``dst`` until either ends or a limit is hit; the
        first pump to finish ends the circuit (``done``) and says how."""
        ends.append(await self._forward(cid, src, dst, way))
        done.cancel()

    async def _forward(self, cid: int, src: Stream[Connection], dst: Stream[Connection],
                       way: CircuitDirection) -> CircuitEnd:
        try:
            while True:
                message = await src.receive()
                data = decode_circuit_data(message)
                if not self.rules.handle_data(cid, way, len(data.data)):
                    return CircuitEnd.DATA_LIMIT  # not forwarded
                await dst.send(message)
        except EXCHANGE_FAILURES:
            return CircuitEnd.FINISHED  # an end finished, reset or sent garbage
        except trio.ClosedResourceError:
            return CircuitEnd.FINISHED  # we closed a stream already


_TARGET_FAILURES: Final[tuple[type[Exception], ...]] = (*EXCHANGE_FAILURES, StreamLimitReached)
_RESET_CODES: Final = {CircuitEnd.DATA_LIMIT: DATA_LIMIT_CODE,
                       CircuitEnd.DURATION_LIMIT: DURATION_LIMIT_CODE}


async def _close_both(hop: Stream[Connection], stop: Stream[Connection], code: str | None) -> None:
    """Close (``code`` None) or reset both streams of a circuit, even while cancelled."""
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
        for stream in (hop, stop):
            if code is None:
                await stream.aclose()
            else:
                await stream.reset(code)


def _ip_of(connection: Connection) -> IPAddress | None:
    """The IP the peer connects from; None over a relayed connection."""
    return None if connection.relayed else connection.remote_addr.ip


async def _answer(stream: Stream[Connection], status: HopStatus) -> None:
    await stream.send(status.to_wire(), fin=True)
