"""The two ends of a relayed connection: reserving, dialing through a relay, accepting.

Theory of operation
-------------------
A relay (:mod:`actors.node._relay`) only splices two streams; everything
that makes a relayed connection a *connection* happens at its ends, here.

* :func:`reserve` - a private node's RESERVE on its connection to a relay:
  one hop exchange whose answer says how long the reservation lasts, the
  circuit limit, and the relay's addresses.
* :func:`open_circuit` - the initiator's CONNECT: returns the hop stream once
  the relay answered OK (the target accepted); :class:`RelayRefused` carries
  the status otherwise.
* :func:`accept_circuit` - the target's side of the stop protocol: reads the
  relay's ``stop-connect`` and answers OK.
* :func:`secure_circuit` - both ends, on the circuit stream, run the
  authenticated X25519 key exchange of :mod:`protocols.relay._circuit_security`
  (each signs a transcript binding both identities to both ephemeral keys;
  the initiator checks the target's peer id) and get a
  :class:`CircuitFrameStream`: a :class:`~actors.transport.FrameStream` whose
  every frame is sealed (ChaCha20-Poly1305, one key per direction, the frame
  counter as nonce) and travels as one ``data`` message.
  :func:`~actors.connection.open_connection` then runs over it exactly as
  over a WebSocket - our handshake and stream mux. Our handshake alone
  authenticates but does not protect the frames after it (on a direct
  connection ``/wss`` does that); a relay is on the path, so without the
  sealing it could read every frame and alter or inject them after the
  handshake. With it the relay forwards ciphertext it can neither read, alter,
  replay nor reorder unnoticed (it still sees sizes and timing). The stream
  reports ``relayed = True`` (the :class:`~actors.connection.Connection`
  exposes it), so a node never relays over a relayed connection.
* :func:`dial_circuit` - all of the initiator's side at once:
  ``async with dial_circuit(relay_connection, target, keypair) as conn``;
  :func:`accept_relayed` the target's, which also checks that the key
  exchange and the handshake authenticated the same peer.

The inner connection's sealed frames must fit one ``data`` message inside
one frame of the relay's connections, so it runs with ``max_frame_bytes``
at most :data:`~protocols.relay.MAX_CIRCUIT_DATA` minus the seal's tag
(:func:`circuit_config`).
Both ends move their circuit stream's lifetime to the circuit's duration
limit (plus a little slack: the relay closes first), since a circuit lives
longer than one ordinary stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Final

import trio

from protocols import ConnectionConfig, ErrorCode, Keypair, PeerId, WsAddress
from protocols.relay import (
    HOP_PROTOCOL_ID,
    MAX_CIRCUIT_DATA,
    SEAL_OVERHEAD,
    CircuitData,
    CircuitKeyExchange,
    CircuitKeys,
    CircuitLimit,
    FrameOpener,
    FrameSealer,
    HopConnect,
    HopReserve,
    HopStatus,
    RelayStatus,
    StopConnect,
    StopStatus,
    decode_circuit_data,
    decode_hop_message,
    decode_stop_message,
)

from ..connection import (
    EXCHANGE_FAILURES,
    Connection,
    ConnectionFailed,
    ProtocolHandler,
    Stream,
    StreamReset,
    open_connection,
)
from ..transport import TransportBroken, TransportClosed

_LIMIT_SLACK: Final = 10.0
"""Seconds the ends keep a circuit stream beyond its duration limit (the relay closes it)."""


class RelayRefused(Exception):
    """The relay (or, through it, the target) refused a reservation or a circuit."""

    def __init__(self, status: RelayStatus, what: str) -> None:
        super().__init__(f"{what} refused by the relay: {status.name}")
        self.status = status


def circuit_config(config: ConnectionConfig) -> ConnectionConfig:
    """``config`` for a connection inside a circuit (a sealed frame fits one ``data``
    message)."""
    return dataclasses.replace(config, max_frame_bytes=min(config.max_frame_bytes,
                                                            MAX_CIRCUIT_DATA - SEAL_OVERHEAD))


async def reserve(relay: Connection, *, timeout: float) -> HopStatus:
    """RESERVE on ``relay``; the OK answer (its ``reservation`` and ``limit``), or
    :class:`RelayRefused`. Stream failures and timeouts raise as in ``Stream.request``."""
    stream = await relay.open_stream(HOP_PROTOCOL_ID)
    reply = decode_hop_message(await stream.request(HopReserve().to_wire(), timeout=timeout))
    if not isinstance(reply, HopStatus) or reply.reservation is None:
        raise RelayRefused(reply.status if isinstance(reply, HopStatus)
                           else RelayStatus.UNEXPECTED_MESSAGE, "reservation")
    return reply


async def open_circuit(relay: Connection, target: PeerId, *,
                       timeout: float) -> tuple[Stream[Connection], CircuitLimit | None]:
    """CONNECT to ``target`` through ``relay``: the hop stream, now a circuit, and its limit."""
    stream = await relay.open_stream(HOP_PROTOCOL_ID)
    try:
        with trio.fail_after(timeout):
            await stream.send(HopConnect(target.to_bytes()).to_wire())
            reply = decode_hop_message(await stream.receive())
    except BaseException:
        await stream.reset(ErrorCode.STREAM_TIMEOUT)
        raise
    if not isinstance(reply, HopStatus) or reply.status is not RelayStatus.OK:
        await stream.reset(ErrorCode.BAD_MESSAGE)
        raise RelayRefused(reply.status if isinstance(reply, HopStatus)
                           else RelayStatus.UNEXPECTED_MESSAGE, f"circuit to {target}")
    _extend(stream, reply.limit)
    return stream, reply.limit


async def accept_circuit(stream: Stream[Connection], *,
                         timeout: float) -> tuple[PeerId, CircuitLimit | None]:
    """The target's side of a stop stream: who is connecting, under which limit (answered
    OK). A message other than ``stop-connect`` raises ValidationError."""
    with trio.fail_after(timeout):
        message = decode_stop_message(await stream.receive())
        if not isinstance(message, StopConnect):
            await stream.send(StopStatus(RelayStatus.UNEXPECTED_MESSAGE).to_wire(), fin=True)
            raise RelayRefused(RelayStatus.UNEXPECTED_MESSAGE, "stop stream")
        await stream.send(StopStatus(RelayStatus.OK).to_wire())
    _extend(stream, message.limit)
    return message.peer_id, message.limit


def _extend(stream: Stream[Connection], limit: CircuitLimit | None) -> None:
    if limit is not None:
        stream.connection.set_stream_deadline(
            stream, trio.current_time() + limit.duration + _LIMIT_SLACK)


class CircuitFrameStream:
    """A :class:`~actors.transport.FrameStream` over a circuit stream whose key exchange
    is done (:func:`secure_circuit`): every frame is sealed for the peer, one per ``data``
    message. ``remote_addr``/``local_addr`` are those of the connection to the relay: a
    circuit has no address of its own, and ``relayed`` tells it apart. ``peer_id`` is
    the peer the key exchange authenticated."""

    relayed: Final = True

    def __init__(self, stream: Stream[Connection], keys: CircuitKeys) -> None:
        self._stream = stream
        self.peer_id = keys.peer_id
        self._sealer = FrameSealer(keys.send_key)
        self._opener = FrameOpener(keys.receive_key)
        self._closed = False

    @property
    def local_addr(self) -> WsAddress:
        return self._stream.connection.local_addr

    @property
    def remote_addr(self) -> WsAddress:
        return self._stream.connection.remote_addr

    def path_stats(self) -> None:
        return None  # a circuit has no path measurement of its own

    async def send(self, frame: bytes) -> None:
        if self._closed:
            raise TransportClosed("circuit already closed by this side")
        try:
            await self._stream.send(CircuitData(self._sealer.seal(frame)).to_wire())
        except _STREAM_ENDS as exc:
            raise _broken(exc) from exc

    async def receive(self) -> bytes:
        if self._closed:
            raise TransportClosed("circuit already closed by this side")
        try:
            return self._opener.open(decode_circuit_data(await self._stream.receive()).data)
        except _STREAM_ENDS as exc:
            raise _broken(exc) from exc

    async def aclose(self, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        await self._stream.aclose()


async def secure_circuit(stream: Stream[Connection], keypair: Keypair, *, initiator: bool,
                         expected_peer: PeerId | None = None,
                         timeout: float) -> CircuitFrameStream:
    """Run the key exchange (:mod:`protocols.relay._circuit_security`) on a circuit
    stream; raises :class:`~actors.connection.ConnectionFailed` when it fails (the
    stream is then reset)."""
    exchange = CircuitKeyExchange(keypair, initiator=initiator, expected_peer=expected_peer)
    try:
        with trio.fail_after(timeout):
            await stream.send(CircuitData(exchange.handle_start()).to_wire())
            while True:
                reply = exchange.handle_message(
                    decode_circuit_data(await stream.receive()).data)
                if isinstance(reply, CircuitKeys):
                    return CircuitFrameStream(stream, reply)
                await stream.send(CircuitData(reply).to_wire())
    except _SECURING_FAILURES as exc:
        await stream.reset(ErrorCode.BAD_MESSAGE)
        raise ConnectionFailed(f"circuit key exchange failed: {exc}",
                               timed_out=isinstance(exc, trio.TooSlowError)) from exc


_STREAM_ENDS: Final[tuple[type[Exception], ...]] = (*EXCHANGE_FAILURES,
                                                     trio.ClosedResourceError)


_SECURING_FAILURES: Final[tuple[type[Exception], ...]] = (*_STREAM_ENDS, trio.TooSlowError)


def _broken(exc: BaseException) -> TransportBroken:
    if isinstance(exc, StreamReset):
        return TransportBroken(f"circuit reset ({exc.code})")
    return TransportBroken(f"circuit ended: {exc}", peer_closed=True)


@asynccontextmanager
async def dial_circuit(relay: Connection, target: PeerId, keypair: Keypair, *,
                       handlers: Mapping[str, ProtocolHandler] | None = None,
                       config: ConnectionConfig | None = None,
                       timeout: float = 10.0) -> AsyncIterator[Connection]:
    """An authenticated connection to ``target`` through ``relay`` (see the module
    docstring); raises :class:`RelayRefused`, a stream failure or
    :class:`~actors.connection.ConnectionFailed` (the handshake: e.g. someone else answered)."""
    stream, _limit = await open_circuit(relay, target, timeout=timeout)
    secure = await secure_circuit(stream, keypair, initiator=True, expected_peer=target,
                                  timeout=timeout)
    async with open_connection(secure, keypair, initiator=True,
                               expected_peer=target, handlers=handlers,
                               config=circuit_config(config or ConnectionConfig())) as conn:
        yield conn


@asynccontextmanager
async def accept_relayed(stream: Stream[Connection], keypair: Keypair, *,
                         handlers: Mapping[str, ProtocolHandler] | None = None,
                         config: ConnectionConfig | None = None,
                         timeout: float = 10.0) -> AsyncIterator[Connection]:
    """All of the target's side of a stop stream: accept, secure, authenticate.

    Raises :class:`~actors.connection.ConnectionFailed` when the key exchange or the
    handshake fails, or when they authenticated different peers."""
    await accept_circuit(stream, timeout=timeout)
    secure = await secure_circuit(stream, keypair, initiator=False, timeout=timeout)
    async with open_connection(secure, keypair, initiator=False, handlers=handlers,
                               config=circuit_config(config or ConnectionConfig())) as conn:
        if conn.peer_id != secure.peer_id:
            await conn.aclose("the handshake and the key exchange name different peers")
            raise ConnectionFailed(f"relayed handshake authenticated {conn.peer_id}, the key "
                                   f"exchange {secure.peer_id}")
        yield conn
