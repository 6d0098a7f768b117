"""The WebSocket transport on real loopback sockets: frames, addresses, port reuse, limits, TLS.

Every async test runs under ``trio.fail_after``; tests that wait for a timeout run on
a mock clock that jumps only after every task has been idle for a moment of
real time, so loopback I/O completes before virtual time moves.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
import trio_websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors import WebSocketBroken, WebSocketTransport
from actors.transport._framestream import (
    DialError,
    FrameStream,
    SimultaneousOpen,
    TransportBroken,
    TransportClosed,
)
from actors.transport._sockets import KEEPALIVE_IDLE, socket_address
from actors.transport._ws_stream import clip_reason
from actors.transport._ws_transport import PUNCH_ROLE_WAIT
from protocols import WsAddress

TEST_TIMEOUT = 10


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def ws_addr(host: str = "127.0.0.1", port: int = 0, *, secure: bool = False) -> WsAddress:
    kind = "ip6" if ":" in host else "ip4"
    return WsAddress(host=host, kind=kind, port=port, secure=secure)


@pytest.fixture
def lazy_autojump_clock() -> trio.testing.MockClock:
    """Virtual time that jumps once every task has been idle for 0.1 s of real time."""
    return trio.testing.MockClock(autojump_threshold=0.1)


@asynccontextmanager
async def running() -> AsyncIterator[trio.Nursery]:
    """A nursery for listeners, bounded by the test timeout and cancelled at the end."""
    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            yield nursery
            nursery.cancel_scope.cancel()


class Inbox:
    """A listen handler that hands each inbound stream to the test and keeps it open."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[FrameStream](16)
        self.done = trio.Event()

    async def handler(self, stream: FrameStream) -> None:
        await self._send.send(stream)
        await self.done.wait()

    async def next(self) -> FrameStream:
        return await self._receive.receive()


async def listen(
    nursery: trio.Nursery, transport: WebSocketTransport, addr: WsAddress, inbox: Inbox
) -> WsAddress:
    bound: list[WsAddress] = await nursery.start(transport.listen, addr, inbox.handler)
    assert len(bound) == 1
    return bound[0]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


# --- frames and addresses -----------------------------------------------------


async def test_frames_flow_both_ways_and_both_ends_see_real_addresses() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        assert bound.port != 0 and bound.host == "127.0.0.1" and bound.peer_id is None
        async with client.dial(bound) as out:
            inbound = await inbox.next()
            for frame in (b"ping", b"", bytes(range(256)) * 256):  # 64 KiB: exactly the limit
                await out.send(frame)
                assert await inbound.receive() == frame
            await inbound.send(b"pong")
            assert await out.receive() == b"pong"

            assert out.remote_addr == bound
            assert inbound.local_addr == bound
            assert out.local_addr.host == "127.0.0.1" and out.local_addr.kind == "ip4"
            assert inbound.remote_addr == out.local_addr
            assert not out.local_addr.secure and out.local_addr.peer_id is None
        inbox.done.set()


@needs_ipv6
async def test_ipv6_loopback_with_port_reuse() -> None:
    a, b, a_inbox, b_inbox = WebSocketTransport(), WebSocketTransport(), Inbox(), Inbox()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("::1"), a_inbox)
        b_bound = await listen(nursery, b, ws_addr("::1"), b_inbox)
        assert a_bound.kind == "ip6" and a_bound.host == "::1"
        async with a.dial(b_bound) as out:
            inbound = await b_inbox.next()
            assert inbound.remote_addr == a_bound  # the listen port, seen from outside
            assert out.remote_addr == b_bound
            await out.send(b"over ipv6")
            assert await inbound.receive() == b"over ipv6"
        b_inbox.done.set()


async def test_dns4_name_resolves_to_the_listener() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        by_name = WsAddress(host="localhost", kind="dns4", port=bound.port, secure=False)
        async with client.dial(by_name) as out:
            assert out.remote_addr == bound  # the resolved IP, not the name
            await out.send(b"hi")
            assert await (await inbox.next()).receive() == b"hi"
        inbox.done.set()


async def test_a_name_that_does_not_resolve_is_a_dial_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio.socket, "getaddrinfo", no_such_name)
    addr = WsAddress(host="nowhere.example", kind="dns4", port=4001, secure=False)
    with trio.fail_after(TEST_TIMEOUT), pytest.raises(DialError, match=r"nowhere\.example"):
        async with WebSocketTransport().dial(addr):
            pytest.fail("dial should not succeed")


# --- listen port reuse ----------------------------------------------------------


async def test_outbound_connections_leave_from_the_listen_port() -> None:
    a, b, a_inbox, b_inbox = WebSocketTransport(), WebSocketTransport(), Inbox(), Inbox()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.2"), a_inbox)
        b_bound = await listen(nursery, b, ws_addr("127.0.0.1"), b_inbox)
        async with a.dial(b_bound) as out:
            observed = (await b_inbox.next()).remote_addr
            assert observed == a_bound == out.local_addr
        b_inbox.done.set()


async def test_without_reuse_the_dial_uses_an_ephemeral_port() -> None:
    a, b, a_inbox, b_inbox = WebSocketTransport(), WebSocketTransport(), Inbox(), Inbox()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.2"), a_inbox)
        b_bound = await listen(nursery, b, ws_addr("127.0.0.1"), b_inbox)
        async with a.dial(b_bound, reuse_listen_port=False) as out:
            observed = (await b_inbox.next()).remote_addr
            assert observed.port != a_bound.port  # (the source IP is the kernel's choice)
            assert out.local_addr == observed
        b_inbox.done.set()


async def test_a_second_connection_to_the_same_peer_falls_back_to_an_ephemeral_port() -> None:
    a, b, a_inbox, b_inbox = WebSocketTransport(), WebSocketTransport(), Inbox(), Inbox()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.2"), a_inbox)
        b_bound = await listen(nursery, b, ws_addr("127.0.0.1"), b_inbox)
        async with a.dial(b_bound) as first, a.dial(b_bound) as second:
            first_in, second_in = await b_inbox.next(), await b_inbox.next()
            assert first.local_addr.port == a_bound.port  # the 4-tuple is now taken
            assert second.local_addr.port != a_bound.port
            assert {first_in.remote_addr, second_in.remote_addr} == {
                first.local_addr,
                second.local_addr,
            }
            await second.send(b"still works")
            await first.send(b"both work")
            received = {await first_in.receive(), await second_in.receive()}
            assert received == {b"still works", b"both work"}
        b_inbox.done.set()


class RawPeer:
    """A plain TCP listener on loopback whose ``_handle`` plays some other party."""

    async def serve(self, nursery: trio.Nursery,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(partial(self._handle, nursery), listeners)

    async def _handle(self, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
        raise NotImplementedError


class ClientLikePeer(RawPeer):
    """A TCP peer that answers our WebSocket upgrade like the far end of a TCP
    simultaneous open: with an upgrade request of its own (only the first
    ``acts_as_client`` connections; later ones get a real WebSocket server)."""

    UPGRADE_REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")

    def __init__(self, acts_as_client: int) -> None:
        self.acts_as_client = acts_as_client
        self.source_ports: list[int] = []
        self.done = trio.Event()

    async def _handle(self, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
        self.source_ports.append(stream.socket.getpeername()[1])
        if len(self.source_ports) <= self.acts_as_client:
            await stream.send_all(self.UPGRADE_REQUEST)
            with trio.move_on_after(5):
                while await stream.receive_some():
                    pass
            await stream.aclose()
            return
        request = await trio_websocket.wrap_server_stream(nursery, stream)
        ws = await request.accept()
        await ws.send_message(b"served")
        await self.done.wait()


async def test_a_simultaneous_open_is_redialed_from_an_ephemeral_port() -> None:
    a, a_inbox, peer = WebSocketTransport(), Inbox(), ClientLikePeer(acts_as_client=1)
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.1"), a_inbox)
        port = await nursery.start(peer.serve, nursery)
        async with a.dial(ws_addr(port=port)) as out:
            assert await out.receive() == b"served"
            assert out.local_addr.port != a_bound.port
        assert peer.source_ports[0] == a_bound.port  # the first dial: from the listen port
        assert peer.source_ports[1] != a_bound.port  # the redial: from an ephemeral one
        assert len(peer.source_ports) == 2
        peer.done.set()


async def test_a_simultaneous_open_without_the_listen_port_is_not_redialed() -> None:
    a, a_inbox, peer = WebSocketTransport(), Inbox(), ClientLikePeer(acts_as_client=2)
    async with running() as nursery:
        await listen(nursery, a, ws_addr("127.0.0.1"), a_inbox)
        port = await nursery.start(peer.serve, nursery)
        with pytest.raises(SimultaneousOpen, match="simultaneous open"):
            async with a.dial(ws_addr(port=port), reuse_listen_port=False):
                pytest.fail("dial should not succeed")
        assert len(peer.source_ports) == 1


async def test_a_peer_that_answers_garbage_is_a_dial_error_not_a_simultaneous_open() -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    async with running() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, garbage, listeners)
        addr = ws_addr(port=listeners[0].socket.getsockname()[1])
        with pytest.raises(DialError) as caught:
            async with WebSocketTransport().dial(addr):
                pytest.fail("dial should not succeed")
        assert not isinstance(caught.value, SimultaneousOpen)


# --- hole punching: a dial in a given WebSocket role ----------------------------------


class AcceptingClient(RawPeer):
    """A peer that accepts our TCP connection and then acts as the WebSocket *client*
    on it - what the designated client of a simultaneous open does."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.done = trio.Event()

    async def _handle(self, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, "127.0.0.1", "/")
        await ws.send_message(b"from the client")
        self.received.append(bytes(await ws.get_message()))
        await self.done.wait()


async def test_a_punch_as_server_answers_the_peers_upgrade_request() -> None:
    a, a_inbox, peer = WebSocketTransport(), Inbox(), AcceptingClient()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.1"), a_inbox)
        port = await nursery.start(peer.serve, nursery)
        async with a.punch(ws_addr(port=port), as_client=False) as out:
            assert out.local_addr.port == a_bound.port  # from the listen port
            assert not out.is_client  # the role our handshake follows
            assert await out.receive() == b"from the client"
            await out.send(b"from the server")
            with trio.fail_after(5):
                while not peer.received:
                    await trio.sleep(0.01)
        assert peer.received == [b"from the server"]
        peer.done.set()


async def test_a_punch_as_server_that_reached_a_listener_becomes_the_client(
        lazy_autojump_clock: trio.testing.MockClock) -> None:
    a, b, a_inbox, b_inbox = WebSocketTransport(), WebSocketTransport(), Inbox(), Inbox()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.2"), a_inbox)
        b_bound = await listen(nursery, b, ws_addr("127.0.0.1"), b_inbox)
        started = trio.current_time()
        async with a.punch(b_bound, as_client=False) as out:
            inbound = await b_inbox.next()
            assert inbound.remote_addr == a_bound == out.local_addr
            assert out.is_client  # the role it fell back to, so ours is the other's
            await out.send(b"works")
            assert await inbound.receive() == b"works"
        assert trio.current_time() - started >= PUNCH_ROLE_WAIT  # it listened first
        b_inbox.done.set()


async def test_a_punch_as_client_is_a_dial_from_the_listen_port() -> None:
    a, b, a_inbox, b_inbox = WebSocketTransport(), WebSocketTransport(), Inbox(), Inbox()
    async with running() as nursery:
        a_bound = await listen(nursery, a, ws_addr("127.0.0.2"), a_inbox)
        b_bound = await listen(nursery, b, ws_addr("127.0.0.1"), b_inbox)
        async with a.punch(b_bound, as_client=True) as out:
            assert (await b_inbox.next()).remote_addr == a_bound == out.local_addr
        b_inbox.done.set()


async def test_a_punch_needs_a_listen_port() -> None:
    with pytest.raises(DialError, match="no listen port"):
        async with WebSocketTransport().punch(ws_addr(port=free_port()), as_client=True):
            pytest.fail("punch should not succeed")


# --- limits and protocol violations -------------------------------------------------


async def test_an_oversized_frame_breaks_the_connection_on_the_receiver() -> None:
    server, client = WebSocketTransport(max_frame_bytes=1024), WebSocketTransport()
    inbox = Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            inbound = await inbox.next()
            await out.send(b"x" * 1024)
            assert await inbound.receive() == b"x" * 1024
            await out.send(b"x" * 1025)
            with pytest.raises(TransportBroken, match="too large") as caught:
                await inbound.receive()
            assert isinstance(caught.value, WebSocketBroken) and caught.value.code == 1009
            with pytest.raises(TransportBroken, match="too large"):
                await inbound.send(b"sticky")  # the failure stays
            with pytest.raises(TransportBroken):
                await out.receive()  # the sender learns it too (1009, or a lost connection)
        inbox.done.set()


async def test_a_text_message_is_refused_with_a_clear_close() -> None:
    server, inbox = WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        # a plain trio-websocket client on a socket we own (its own open_websocket
        # leaves the socket open when the server initiates the close)
        raw = await trio.open_tcp_stream(bound.host, bound.port)
        async with raw, trio.open_nursery() as reader:
            host = f"{bound.host}:{bound.port}"
            foreign = await trio_websocket.wrap_client_stream(reader, raw, host, "/")
            await foreign.send_message("hello as text")
            inbound = await inbox.next()
            with pytest.raises(TransportBroken, match="peer sent a text message"):
                await inbound.receive()
            with pytest.raises(trio_websocket.ConnectionClosed) as caught:
                await foreign.get_message()
            assert caught.value.reason is not None
            assert caught.value.reason.code == 1003
            assert caught.value.reason.reason == "peer sent a text message"
            reader.cancel_scope.cancel()
        inbox.done.set()


async def test_a_client_that_never_upgrades_is_dropped(
    lazy_autojump_clock: trio.testing.MockClock,
) -> None:
    server, inbox = WebSocketTransport(handshake_timeout=5.0), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        silent = await trio.open_tcp_stream(bound.host, bound.port)
        started = trio.current_time()
        assert await silent.receive_some(100) == b""  # the listener hung up on us
        assert trio.current_time() - started == pytest.approx(5.0, abs=0.5)
        # ...and keeps serving others
        async with WebSocketTransport().dial(bound) as out:
            await out.send(b"after")
            assert await (await inbox.next()).receive() == b"after"
        await silent.aclose()
        inbox.done.set()


async def test_plain_http_on_the_websocket_port_does_not_hurt_the_listener() -> None:
    server, inbox = WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        probe = await trio.open_tcp_stream(bound.host, bound.port)
        await probe.send_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := await probe.receive_some(1000):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 4")
        await probe.aclose()
        async with WebSocketTransport().dial(bound) as out:
            await out.send(b"fine")
            assert await (await inbox.next()).receive() == b"fine"
        inbox.done.set()


async def test_a_peer_that_stops_reading_makes_send_time_out(
    lazy_autojump_clock: trio.testing.MockClock,
) -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(send_timeout=5.0), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            inbound = await inbox.next()  # ...which never reads
            with pytest.raises(WebSocketBroken, match="timed out after 5 s"):
                for _ in range(10_000):  # until the socket buffers are full
                    await out.send(b"x" * 65536)
            with pytest.raises(WebSocketBroken, match="timed out"):
                await out.receive()  # the connection is gone for good
            with pytest.raises(TransportBroken):
                while True:  # the reader drains what arrived, then the connection ends
                    await inbound.receive()
        inbox.done.set()


async def test_a_cancelled_send_aborts_the_connection(
    lazy_autojump_clock: trio.testing.MockClock,
) -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(send_timeout=60.0), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            await inbox.next()
            with trio.move_on_after(5) as scope:
                for _ in range(10_000):
                    await out.send(b"x" * 65536)
            assert scope.cancelled_caught
            with pytest.raises(WebSocketBroken, match="cancelled mid-frame"):
                await out.send(b"a torn frame must not be followed by more")
        inbox.done.set()


# --- closing -------------------------------------------------------------------------


async def test_the_peer_closing_breaks_receive_and_send_with_its_reason() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            inbound = await inbox.next()
            await inbound.send(b"last words")
            await inbound.aclose("going away for a test")
            assert await out.receive() == b"last words"  # frames before the close arrive
            with pytest.raises(WebSocketBroken, match="going away for a test") as caught:
                await out.receive()
            assert caught.value.code == 1000
            assert caught.value.reason == "going away for a test"
            with pytest.raises(TransportBroken, match="going away"):
                await out.send(b"too late")
        inbox.done.set()


async def test_a_policy_close_code_reaches_the_peer() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            await out.aclose("bad frame", code=1008)
            with pytest.raises(WebSocketBroken) as caught:
                await (await inbox.next()).receive()
            assert (caught.value.code, caught.value.reason) == (1008, "bad frame")
            with pytest.raises(ValueError, match="close code"):
                await out.aclose("no such code", code=1005)
        inbox.done.set()


async def test_our_close_makes_send_and_receive_raise_transport_closed() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            await out.aclose("done")
            await out.aclose("done again")  # idempotent
            with pytest.raises(TransportClosed):
                await out.send(b"x")
            with pytest.raises(TransportClosed):
                await out.receive()
        inbox.done.set()


async def test_a_receive_waiting_while_we_close_raises_transport_closed() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            outcome: list[BaseException] = []

            async def receive() -> None:
                try:
                    await out.receive()
                except TransportClosed as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as inner:
                inner.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                await out.aclose("closing under a reader")
            assert len(outcome) == 1
        inbox.done.set()


async def test_a_long_close_reason_is_cut_to_fit_the_close_frame() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            await out.aclose("é" * 200)
            with pytest.raises(WebSocketBroken) as caught:
                await (await inbox.next()).receive()
            assert caught.value.reason == "é" * 61  # 122 bytes: no half character
        inbox.done.set()


def test_socket_addresses_become_multiaddrs_with_ipv4_mapped_normalised() -> None:
    mapped = socket_address(("::ffff:127.0.0.2", 4001, 0, 0), secure=True)
    assert str(mapped) == "/ip4/127.0.0.2/tcp/4001/wss"
    plain = socket_address(("0:0::1", 4002, 0, 0), secure=False)
    assert str(plain) == "/ip6/::1/tcp/4002/ws"


def test_clip_reason_keeps_short_reasons_and_cuts_on_character_edges() -> None:
    assert clip_reason("short") == "short"
    assert clip_reason("a" * 123) == "a" * 123
    assert clip_reason("a" * 200) == "a" * 123
    assert clip_reason("a" + "€" * 60).encode() == ("a" + "€" * 40).encode()


async def test_an_exception_in_the_dial_body_comes_out_unwrapped() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        with pytest.raises(KeyError, match="mine"):
            async with client.dial(bound):
                raise KeyError("mine")
        with pytest.raises(WebSocketBroken, match="dialer closed the connection"):
            await (await inbox.next()).receive()
        inbox.done.set()


async def test_cancelling_a_dial_body_closes_the_connection_cleanly() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        with trio.CancelScope() as scope:
            async with client.dial(bound):
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        with pytest.raises(WebSocketBroken, match="lost"):  # no time for a close handshake
            await (await inbox.next()).receive()
        inbox.done.set()


async def test_a_shielded_close_while_shutting_down_still_says_goodbye() -> None:
    # A node shutting down closes its connections in a shielded scope: the close
    # frame must reach the peer and the close handshake must complete (our reader
    # stays alive for it) instead of running into close_timeout.
    server, inbox = WebSocketTransport(), Inbox()
    client = WebSocketTransport(close_timeout=60.0)
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        with trio.CancelScope() as scope:
            async with client.dial(bound) as out:
                inbound = await inbox.next()
                scope.cancel()
                with trio.CancelScope(shield=True), trio.fail_after(10):
                    await trio.testing.wait_all_tasks_blocked()  # the reader saw the cancel
                    await out.aclose("node shutting down")
        with pytest.raises(WebSocketBroken, match="node shutting down") as caught:
            await inbound.receive()
        assert caught.value.code == 1000
        inbox.done.set()


async def test_a_second_listener_on_a_taken_port_fails_instead_of_sharing_it() -> None:
    first, second, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, first, ws_addr("127.0.0.2"), inbox)
        with pytest.raises(OSError, match="in use"):
            await second.listen(bound, inbox.handler)
        by_name = WsAddress(host="localhost", kind="dns4", port=0, secure=False)
        named = await listen(nursery, second, by_name, inbox)
        assert named.kind == "ip4" and named.host == "127.0.0.1" and named.port != 0


# --- dial failures ---------------------------------------------------------------------


async def test_dialing_a_closed_port_fails_fast_naming_the_address() -> None:
    addr = ws_addr(port=free_port())
    with trio.fail_after(2), pytest.raises(DialError, match=f"/tcp/{addr.port}/ws"):
        async with WebSocketTransport().dial(addr):
            pytest.fail("dial should not succeed")


async def test_a_rejected_websocket_handshake_is_a_dial_error() -> None:
    async def refuse(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(403, body=b"go away")

    async with running() as nursery:
        refuser = await nursery.start(trio_websocket.serve_websocket, refuse, "127.0.0.1", 0, None)
        addr = ws_addr(port=refuser.port)
        with pytest.raises(DialError, match="rejected with HTTP status 403"):
            async with WebSocketTransport().dial(addr):
                pytest.fail("dial should not succeed")


async def test_a_server_that_never_answers_the_upgrade_times_out(
    lazy_autojump_clock: trio.testing.MockClock,
) -> None:
    async def hold(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with running() as nursery:
        [mute] = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        port = mute.socket.getsockname()[1]
        transport = WebSocketTransport(handshake_timeout=3.0)
        started = trio.current_time()
        with pytest.raises(DialError, match="timed out after 3 s"):
            async with transport.dial(ws_addr(port=port)):
                pytest.fail("dial should not succeed")
        assert trio.current_time() - started == pytest.approx(3.0, abs=0.5)


@pytest.mark.filterwarnings("error::ResourceWarning")  # a leaked socket fails the test
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_cancelling_a_dial_mid_handshake_closes_its_socket(
    lazy_autojump_clock: trio.testing.MockClock,
) -> None:
    hung_up = trio.Event()

    async def read_until_eof(stream: trio.SocketStream) -> None:
        while await stream.receive_some(1000):  # the upgrade request, then nothing
            pass
        hung_up.set()

    async with running() as nursery:
        [mute] = await nursery.start(partial(trio.serve_tcp, read_until_eof, 0, host="127.0.0.1"))
        addr = ws_addr(port=mute.socket.getsockname()[1])
        with trio.move_on_after(1) as scope:
            async with WebSocketTransport(handshake_timeout=30.0).dial(addr):
                pytest.fail("dial should not succeed")
        assert scope.cancelled_caught
        await hung_up.wait()


# --- TLS -----------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trio-autonat test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the server's self-signed certificate)."""
    cert_file, key_file = _self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def test_wss_with_a_self_signed_certificate(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ssl, client_ssl = tls
    server = WebSocketTransport(server_ssl=server_ssl)
    client, inbox = WebSocketTransport(client_ssl=client_ssl), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(secure=True), inbox)
        assert bound.secure and str(bound).endswith("/wss")
        async with client.dial(bound) as out:
            inbound = await inbox.next()
            await out.send(b"secret")
            assert await inbound.receive() == b"secret"
            await inbound.send(b"reply")
            assert await out.receive() == b"reply"
            assert out.remote_addr == bound and inbound.remote_addr.secure
        inbox.done.set()


async def test_wss_to_an_untrusted_certificate_is_a_dial_error(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, inbox = WebSocketTransport(server_ssl=tls[0]), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(secure=True), inbox)
        with pytest.raises(DialError, match="certificate"):
            async with WebSocketTransport().dial(bound):  # default trust store
                pytest.fail("dial should not succeed")


async def test_listening_on_wss_without_a_certificate_is_refused() -> None:
    with trio.fail_after(TEST_TIMEOUT), pytest.raises(ValueError, match="server_ssl"):
        await WebSocketTransport().listen(ws_addr(secure=True), Inbox().handler)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        WebSocketTransport(max_frame_bytes=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        WebSocketTransport(connect_timeout=0)


def _keepalive(sock: trio.socket.SocketType) -> tuple[int, int]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))


@pytest.mark.skipif(not hasattr(socket, "TCP_KEEPIDLE"), reason="needs TCP_KEEPIDLE (Linux)")
async def test_both_ends_use_tcp_keepalive_so_vanished_peers_are_detected() -> None:
    server, client, inbox = WebSocketTransport(), WebSocketTransport(), Inbox()
    async with running() as nursery:
        bound = await listen(nursery, server, ws_addr(), inbox)
        async with client.dial(bound) as out:
            inbound = await inbox.next()
            for end in (out, inbound):
                raw = end._stream  # type: ignore[attr-defined]
                assert isinstance(raw, trio.SocketStream)
                assert _keepalive(raw.socket) == (1, KEEPALIVE_IDLE)
        inbox.done.set()
