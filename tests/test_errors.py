"""The error families: local versus remote protocol errors, settings errors, stream failures.

See the docstrings of ``protocols/core/_errors.py`` and ``actors/connection/_stream.py``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import pytest
import trio
import trio.testing
import trio_websocket

import actors
from actors import (
    CONNECT_FAILURES,
    EXCHANGE_FAILURES,
    Connection,
    ConnectionEnded,
    ConnectionFailed,
    Mailbox,
    ProtocolHandler,
    Stream,
    StreamEnded,
    StreamFailure,
    StreamReset,
    StreamTimeout,
    Transport,
    TransportError,
    Watch,
    open_connection,
)
from actors.connection import ConnectionConfig
from actors.node._autonat_server import AutonatServer
from actors.node._identify import IdentifyActor, IdentifyResponder, IdentifyState
from actors.transport._memory_transport import memory_stream_pair
from protocols import (
    DIAL_BACK_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    AddressError,
    AutonatClientConfig,
    BadSignature,
    ConfigError,
    ConnectionInfo,
    DecodeError,
    DialerConfig,
    DialStatus,
    Direction,
    ErrorCode,
    FrameTooLarge,
    Handshake,
    HandshakeError,
    HandshakeOrderError,
    HandshakeTimeout,
    Identify,
    InboundProbe,
    InvalidKey,
    KeyFileError,
    Keypair,
    LocalProtocolError,
    NodeConfig,
    NodeModel,
    NodeSnapshot,
    PeerIdMismatch,
    PeersFound,
    PeerStoreError,
    ProbeSchedulerError,
    ProtocolError,
    RemoteProtocolError,
    ResponseStatus,
    SettingsError,
    StatusDocumentError,
    StreamError,
    StreamFrame,
    StreamLimitReached,
    StreamMux,
    ValidationError,
    WsAddress,
    build_node_config,
    decode_autonat_message,
    decode_peer_store,
    parse_status_document,
)

A_ADDR = WsAddress(host="192.0.2.1", kind="ip4", port=4001, secure=False)
B_ADDR = WsAddress(host="192.0.2.2", kind="ip4", port=4002, secure=False)
TIMEOUT = 120  # virtual seconds


# --- the hierarchy --------------------------------------------------------------------

PARENTS: list[tuple[type[Exception], type[Exception]]] = [
    (LocalProtocolError, ProtocolError),
    (ProbeSchedulerError, LocalProtocolError),
    (RemoteProtocolError, ProtocolError),
    (DecodeError, RemoteProtocolError),
    (FrameTooLarge, DecodeError),
    (ValidationError, RemoteProtocolError),
    (AddressError, RemoteProtocolError),
    (InvalidKey, RemoteProtocolError),
    (HandshakeError, RemoteProtocolError),
    (HandshakeOrderError, HandshakeError),
    (BadSignature, HandshakeError),
    (PeerIdMismatch, HandshakeError),
    (HandshakeTimeout, HandshakeError),
    (StreamError, RemoteProtocolError),
    (StatusDocumentError, RemoteProtocolError),
    (ConfigError, SettingsError),
    (KeyFileError, SettingsError),
    (PeerStoreError, SettingsError),
    (StreamEnded, StreamFailure),
    (StreamReset, StreamFailure),
    (StreamTimeout, StreamFailure),
    (StreamTimeout, trio.TooSlowError),
    (ConnectionEnded, StreamFailure),
]


@pytest.mark.parametrize(("child", "parent"), PARENTS,
                         ids=[f"{c.__name__}<{p.__name__}" for c, p in PARENTS])
def test_parent(child: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(child, parent)


def test_the_families_do_not_overlap() -> None:
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    not_protocol: tuple[type[Exception], ...] = (
        SettingsError, ConfigError, KeyFileError, PeerStoreError, StreamLimitReached,
        StreamFailure, ConnectionFailed, TransportError)
    for cls in not_protocol:
        assert not issubclass(cls, ProtocolError), cls
    for family in (LocalProtocolError, RemoteProtocolError, SettingsError):
        assert not issubclass(family, ValueError), family  # no accidental `except ValueError`


def test_named_groups() -> None:
    assert (StreamFailure, RemoteProtocolError) == EXCHANGE_FAILURES
    assert (TransportError, ConnectionFailed) == CONNECT_FAILURES
    assert not any(issubclass(LocalProtocolError, cls) for cls in EXCHANGE_FAILURES)


def test_connection_ended_no_longer_shadows_trio_websocket() -> None:
    assert not hasattr(actors, "ConnectionClosed")
    assert "ConnectionClosed" not in actors.__all__
    assert not issubclass(ConnectionEnded, trio_websocket.ConnectionClosed)
    assert not issubclass(trio_websocket.ConnectionClosed, StreamFailure)


# --- a peer's garbage is remote --------------------------------------------------------


def _handshake(started: bool = True) -> Handshake:
    handshake = Handshake(Keypair.from_seed(b"\x01" * 32), now=0.0)
    if started:
        handshake.handle_start(0.0)
    return handshake


GARBAGE: dict[str, Callable[[], object]] = {
    "mux: undecodable frame": lambda: StreamMux(initiator=True).handle_frame(b"\xc1\x00", 0.0),
    "mux: a new stream with our parity": lambda: StreamMux(initiator=True).handle_frame(
        StreamFrame(1, "/a", {"x": 1}, False).encode(), 0.0),
    "handshake: garbage frame": lambda: _handshake().handle_frame(b"garbage", 0.0),
    "handshake: stream frame first": lambda: _handshake().handle_frame(
        StreamFrame(2, "/a", {"x": 1}, False).encode(), 0.0),
    "autonat: unknown message": lambda: decode_autonat_message({"t": "nope"}),
    "identify: mistyped field": lambda: Identify.from_wire({"protocol_version": 5}),
    "status: not JSON": lambda: parse_status_document(b"<html>"),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_a_peers_garbage_raises_remote_protocol_error(case: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        GARBAGE[case]()
    assert not isinstance(info.value, LocalProtocolError)


# --- our own misuse is local -------------------------------------------------------------


def _mux_after_fin() -> None:
    mux = StreamMux(initiator=True)
    sid = mux.open_stream("/a", 0.0)
    mux.encode_fin(sid)
    mux.encode_message(sid, {"x": 1})


def _mux_after_failure() -> None:
    mux = StreamMux(initiator=True)
    with pytest.raises(RemoteProtocolError):
        mux.handle_frame(b"\xc1", 0.0)
    mux.open_stream("/a", 0.0)


def _handshake_frame_after_failure() -> None:
    handshake = _handshake()
    handshake.handle_timeout(1e9)  # HandshakeFailed: the caller must close the connection
    handshake.handle_frame(b"anything", 1e9)


def _handshake_started_twice() -> None:
    _handshake().handle_start(0.0)


def _handshake_receive_before_start() -> None:
    _handshake(started=False).handle_frame(b"anything", 0.0)


MISUSE: dict[str, Callable[[], object]] = {
    "mux: invalid protocol id": lambda: StreamMux(initiator=True).open_stream("a\nb", 0.0),
    "mux: unknown stream": lambda: StreamMux(initiator=True).encode_message(99, {}),
    "mux: invalid error code": lambda: StreamMux(initiator=True).encode_error(
        StreamMux(initiator=True).open_stream("/a", 0.0), ""),
    "mux: send after our fin": _mux_after_fin,
    "mux: call after the mux failed": _mux_after_failure,
    "handshake: frame after it failed": _handshake_frame_after_failure,
    "handshake: start twice": _handshake_started_twice,
    "handshake: receive before start": _handshake_receive_before_start,
    "handshake: bad nonce": lambda: Handshake(Keypair.generate(), now=0.0, nonce=b"short"),
    "event: PeersFound without /p2p/": lambda: PeersFound((A_ADDR,), "test"),
    "event: InboundProbe with a bad peer": lambda: InboundProbe(
        peer="12D3KooW", status=ResponseStatus.OK, at=0.0),  # type: ignore[arg-type]
    "snapshot: unknown nat_status": lambda: dataclasses.replace(
        NodeModel(Keypair.from_seed(b"\x02" * 32).peer_id).snapshot(0.0),
        nat_status="maybe"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", list(MISUSE))
def test_our_misuse_raises_local_protocol_error(case: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        MISUSE[case]()
    assert not isinstance(info.value, RemoteProtocolError)


def test_misuse_leaves_the_mux_usable() -> None:
    mux = StreamMux(initiator=True)
    with pytest.raises(LocalProtocolError, match="not live"):
        mux.encode_message(7, {"x": 1})
    assert mux.failure is None
    sid = mux.open_stream("/a", 0.0)
    assert mux.encode_message(sid, {"x": 1})


# --- settings errors ----------------------------------------------------------------------


def test_settings_errors() -> None:
    with pytest.raises(PeerStoreError) as store:
        decode_peer_store(b"{not json")
    with pytest.raises(ConfigError) as config:
        build_node_config({"target_peers": 100, "max_connections": 10})
    for exc in (store.value, config.value):
        assert isinstance(exc, SettingsError) and not isinstance(exc, ProtocolError)
    assert "target_peers" in str(config.value)  # NodeConfig's ValueError, named by the loader
    with pytest.raises(ValueError, match="target_peers"):
        DialerConfig(target_peers=100, max_connections=10)  # the loader relies on ValueError
    with pytest.raises(ValueError, match="target_peers"):
        NodeConfig.from_settings(target_peers=100, max_connections=10)


# --- catch sites: the connection's handler runner ------------------------------------------


@dataclass
class Pair:
    a: Connection
    b: Connection


@asynccontextmanager
async def connected(handlers_b: dict[str, ProtocolHandler]) -> AsyncIterator[Pair]:
    fs_a, fs_b = memory_stream_pair(A_ADDR, B_ADDR)
    key_a, key_b = Keypair.generate(), Keypair.generate()
    send_b, receive_b = trio.open_memory_channel[Connection](1)
    stop = trio.Event()

    async def listener() -> None:
        async with open_connection(fs_b, key_b, initiator=False, handlers=handlers_b) as conn:
            await send_b.send(conn)
            await stop.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener)
        async with open_connection(fs_a, key_a, initiator=True,
                                   expected_peer=key_b.peer_id) as conn_a:
            conn_b = await receive_b.receive()
            try:
                yield Pair(conn_a, conn_b)
            finally:
                stop.set()


HANDLER_RAISES: list[tuple[Exception, str, int]] = [
    (StreamEnded("the peer finished early"), ErrorCode.BAD_MESSAGE, 0),
    (StreamTimeout("no reply"), ErrorCode.BAD_MESSAGE, 0),
    (ConnectionEnded("gone"), ErrorCode.BAD_MESSAGE, 0),
    (ValidationError("a bad field from the peer"), ErrorCode.BAD_MESSAGE, 0),
    (LocalProtocolError("our bug"), ErrorCode.INTERNAL_ERROR, 1),
]


@pytest.mark.parametrize(("error", "code", "counted"), HANDLER_RAISES,
                         ids=[type(e).__name__ for e, _, _ in HANDLER_RAISES])
async def test_handler_runner_catches_exchange_failures_and_not_local_bugs(
        autojump_clock: trio.testing.MockClock, error: Exception, code: str,
        counted: int) -> None:
    async def handler(stream: Stream[Connection]) -> None:
        await stream.receive()
        raise error

    with trio.fail_after(TIMEOUT):
        async with connected({"/x": handler}) as p:
            stream = await p.a.open_stream("/x")
            with pytest.raises(StreamReset) as info:
                await stream.request({"n": 1}, timeout=10)
            assert info.value.code == code
            assert p.b.statistics().handler_errors == counted
            assert p.b.close_reason is None  # one stream's trouble never ends the connection


async def test_request_timeout_is_a_stream_failure_and_too_slow(
        autojump_clock: trio.testing.MockClock) -> None:
    async def silent(stream: Stream[Connection]) -> None:
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with connected({"/slow": silent}) as p:
            stream = await p.a.open_stream("/slow")
            with pytest.raises(StreamTimeout, match="within 2 s"):
                await stream.request({"n": 1}, timeout=2)
            stream = await p.a.open_stream("/slow")
            with pytest.raises(trio.TooSlowError):  # what callers caught before
                await stream.request({"n": 1}, timeout=2)
            await p.a.aclose()
            with pytest.raises(StreamFailure):  # ConnectionEnded
                await p.a.open_stream("/slow")


# --- catch sites: Identify and the AutoNAT server ------------------------------------------


def _info(connection: Connection) -> ConnectionInfo:
    return ConnectionInfo(1, connection.peer_id, Direction.OUTBOUND, A_ADDR, B_ADDR, 0.0)


def _identify_actor(config: NodeConfig) -> IdentifyActor:
    keys = Keypair.generate()
    watch: Watch[NodeSnapshot] = Watch(NodeModel(keys.peer_id).snapshot(0.0))
    responder = IdentifyResponder(keypair=keys, config=config, watch=watch,
                                  actor=Mailbox[object](4).sender(),  # type: ignore[arg-type]
                                  protocols=())
    return IdentifyActor(responder=responder, config=config, state=IdentifyState(),
                         inbox=Mailbox[object](4).receiver(),  # type: ignore[arg-type]
                         tracker=Mailbox[object](4).sender(),  # type: ignore[arg-type]
                         watch=watch)


async def _garbage_reply(stream: Stream[Connection]) -> None:
    await stream.receive()
    await stream.send({"protocol_version": 5}, fin=True)


async def _no_reply(stream: Stream[Connection]) -> None:
    await trio.sleep_forever()


async def _reset(stream: Stream[Connection]) -> None:
    await stream.reset(ErrorCode.INTERNAL_ERROR)


PEER_BEHAVIOURS: dict[str, Callable[[Stream[Connection]], Awaitable[None]]] = {
    "garbage reply (ValidationError)": _garbage_reply,
    "no reply (StreamTimeout)": _no_reply,
    "reset (StreamReset)": _reset,
}


@pytest.mark.parametrize("behaviour", list(PEER_BEHAVIOURS))
async def test_identify_actor_counts_a_failed_exchange(
        autojump_clock: trio.testing.MockClock, behaviour: str) -> None:
    actor = _identify_actor(NodeConfig(identify_timeout=5.0))
    with trio.fail_after(TIMEOUT):
        async with (connected({IDENTIFY_PROTOCOL_ID: PEER_BEHAVIOURS[behaviour]}) as p,
                    trio.open_nursery() as nursery):
            nursery.start_soon(actor._identify, p.a, _info(p.a))
            await trio.sleep(10)
            stats = actor.statistics()
            assert (stats.failures, stats.identified) == (1, 0)
            nursery.cancel_scope.cancel()


async def test_identify_actor_counts_an_ended_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    actor = _identify_actor(NodeConfig(identify_timeout=5.0))
    with trio.fail_after(TIMEOUT):
        async with connected({}) as p:
            await p.a.aclose()
            await actor._identify(p.a, _info(p.a))  # ConnectionEnded; returns once closed
            assert actor.statistics().failures == 1


def _server(config: NodeConfig) -> AutonatServer:
    return AutonatServer(config=config, keypair=Keypair.generate(),
                         transport=cast(Transport, object()),
                         connection_config=ConnectionConfig(),
                         tracker=Mailbox[object](4).sender(),  # type: ignore[arg-type]
                         rng=random.Random(0))


@pytest.mark.parametrize("behaviour", list(PEER_BEHAVIOURS))
async def test_autonat_server_turns_a_failed_dial_back_exchange_into_a_status(
        autojump_clock: trio.testing.MockClock, behaviour: str) -> None:
    server = _server(NodeConfig(autonat_client=AutonatClientConfig(probe_timeout=5.0)))
    with trio.fail_after(TIMEOUT):
        async with connected({DIAL_BACK_PROTOCOL_ID: PEER_BEHAVIOURS[behaviour]}) as p:
            status = await server._send_dial_back(p.a, p.b.peer_id, nonce=7)
            assert status is DialStatus.E_DIAL_BACK_ERROR


async def test_autonat_server_dial_back_on_an_ended_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    server = _server(NodeConfig(autonat_client=AutonatClientConfig(probe_timeout=5.0)))
    with trio.fail_after(TIMEOUT):
        async with connected({}) as p:
            await p.a.aclose()
            status = await server._send_dial_back(p.a, p.b.peer_id, nonce=7)
            assert status is DialStatus.E_DIAL_BACK_ERROR
