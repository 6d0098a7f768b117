"""Connections over in-memory frame streams: handshake, streams, limits, timeouts, closing.

Virtual time only (``autojump_clock``); every test body runs under ``fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    CONNECTION_CLOSED,
    Connection,
    ConnectionConfig,
    ConnectionEnded,
    ConnectionFailed,
    ProtocolHandler,
    Stream,
    StreamEnded,
    StreamReset,
    open_connection,
)
from actors.transport._framestream import TransportBroken
from actors.transport._memory_transport import MemoryFrameStream, memory_stream_pair
from protocols import (
    Direction,
    ErrorFrame,
    Handshake,
    HandshakeDone,
    Keypair,
    SendFrame,
    StreamFrame,
    StreamLimitReached,
    WindowUpdate,
    WsAddress,
    decode_stream_frame,
)

A_ADDR = WsAddress(host="192.0.2.1", kind="ip4", port=4001, secure=False)
FRAME_MODES = ("delivered", "read")


@pytest.fixture(autouse=True, params=FRAME_MODES)
def frame_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with the in-memory stream handing frames over and taking them
    without waiting (as in a simulation: no reader task, a writer task only when the
    peer's buffer is full), and with both hidden, so a reader task reads and a writer
    task sends (as over a WebSocket)."""
    if request.param == "read":
        monkeypatch.delattr(MemoryFrameStream, "deliver_to")
        monkeypatch.delattr(MemoryFrameStream, "send_nowait")
    return str(request.param)


B_ADDR = WsAddress(host="192.0.2.2", kind="ip4", port=4002, secure=False)
TIMEOUT = 120  # virtual seconds


async def echo(stream: Stream) -> None:
    message = await stream.receive()
    await stream.send({"echo": message.get("n"), "by": str(stream.connection.peer_id)}, fin=True)


async def hold(stream: Stream) -> None:
    await stream.receive()
    await trio.sleep_forever()


@dataclass
class Pair:
    a: Connection  # the dialer (initiator)
    b: Connection
    fs_a: MemoryFrameStream
    fs_b: MemoryFrameStream
    key_a: Keypair
    key_b: Keypair


@asynccontextmanager
async def connected(
    handlers_a: dict[str, ProtocolHandler] | None = None,
    handlers_b: dict[str, ProtocolHandler] | None = None,
    config_a: ConnectionConfig | None = None,
    config_b: ConnectionConfig | None = None,
) -> AsyncIterator[Pair]:
    fs_a, fs_b = memory_stream_pair(A_ADDR, B_ADDR)
    key_a, key_b = Keypair.generate(), Keypair.generate()
    send_b, receive_b = trio.open_memory_channel[Connection](1)
    stop = trio.Event()

    async def listener() -> None:
        async with open_connection(fs_b, key_b, initiator=False, handlers=handlers_b,
                                   config=config_b) as conn:
            await send_b.send(conn)
            await stop.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener)
        async with open_connection(fs_a, key_a, initiator=True, expected_peer=key_b.peer_id,
                                   handlers=handlers_a, config=config_a) as conn_a:
            conn_b = await receive_b.receive()
            try:
                yield Pair(conn_a, conn_b, fs_a, fs_b, key_a, key_b)
            finally:
                stop.set()


async def raw_handshake(fs: MemoryFrameStream, key: Keypair) -> None:
    """Play the peer by hand: the handshake, then whatever bytes the test wants."""
    handshake = Handshake(key, now=trio.current_time())
    events = handshake.handle_start(trio.current_time())
    while not any(isinstance(event, HandshakeDone) for event in events):
        for event in events:
            assert isinstance(event, SendFrame)
            await fs.send(event.data)
        events = handshake.handle_frame(await fs.receive(), trio.current_time())

@asynccontextmanager
async def connection_to_raw_peer(*, buffer: int | None = None, **kwargs: Any,
                                 ) -> AsyncIterator[tuple[Connection, MemoryFrameStream]]:
    """Our side (the initiator, with ``kwargs`` for ``open_connection``) and the raw frame
    stream of a peer the test plays by hand after :func:`raw_handshake`."""
    fs_a, fs_b = (memory_stream_pair(A_ADDR, B_ADDR) if buffer is None
                  else memory_stream_pair(A_ADDR, B_ADDR, buffer=buffer))
    key_b = Keypair.generate()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(raw_handshake, fs_b, key_b)
        async with open_connection(fs_a, Keypair.generate(), initiator=True,
                                   expected_peer=key_b.peer_id, **kwargs) as conn:
            yield conn, fs_b



def connection_tasks() -> list[str]:
    """Names of live tasks that belong to a connection (reader, writer, timer, handlers)."""
    found: list[str] = []
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if any(part in task.name for part in ("_loop", "_run_handler", "stream ")):
            found.append(task.name)
        todo.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


# --- handshake ---------------------------------------------------------------------


async def test_handshake_and_request_response_in_both_directions(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connected({"/echo": echo}, {"/echo": echo}) as p:
            assert p.a.peer_id == p.key_b.peer_id and p.b.peer_id == p.key_a.peer_id
            assert p.a.remote_public_key == p.key_b.public_key
            assert (p.a.direction, p.b.direction) == (Direction.OUTBOUND, Direction.INBOUND)
            assert (p.a.local_addr, p.a.remote_addr) == (A_ADDR, B_ADDR)
            assert (p.b.local_addr, p.b.remote_addr) == (B_ADDR, A_ADDR)
            reply = await (await p.a.open_stream("/echo")).request({"n": 1}, timeout=5)
            assert reply == {"echo": 1, "by": str(p.key_a.peer_id)}
            reply = await (await p.b.open_stream("/echo")).request({"n": 2}, timeout=5)
            assert reply == {"echo": 2, "by": str(p.key_b.peer_id)}
            await trio.testing.wait_all_tasks_blocked()
            assert p.a.statistics().open_streams == 0 and p.b.statistics().open_streams == 0
            assert p.a.statistics().mux.opened_outbound == 1
            assert p.a.statistics().mux.opened_inbound == 1


async def test_peer_id_mismatch_fails_naming_both_ids(
        autojump_clock: trio.testing.MockClock) -> None:
    fs_a, fs_b = memory_stream_pair(A_ADDR, B_ADDR)
    key_a, key_b, someone = Keypair.generate(), Keypair.generate(), Keypair.generate()
    failures: list[ConnectionFailed] = []

    async def side(fs: MemoryFrameStream, key: Keypair, initiator: bool) -> None:
        expected = someone.peer_id if initiator else None
        try:
            async with open_connection(fs, key, initiator=initiator, expected_peer=expected):
                raise AssertionError("the handshake must fail")
        except ConnectionFailed as exc:
            failures.append(exc)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, fs_a, key_a, True)
            nursery.start_soon(side, fs_b, key_b, False)
    dialer_failure = next(f for f in failures if "dialed" in f.reason)
    assert str(someone.peer_id) in dialer_failure.reason
    assert str(key_b.peer_id) in dialer_failure.reason
    assert fs_a.close_reason == dialer_failure.reason
    assert len(failures) == 2  # the listener sees the dialer hang up mid-handshake
    assert connection_tasks() == []


async def test_handshake_times_out_when_the_peer_stays_silent(
        autojump_clock: trio.testing.MockClock) -> None:
    fs_a, _silent = memory_stream_pair(A_ADDR, B_ADDR)
    start = trio.current_time()
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed, match="deadline") as info:
        async with open_connection(fs_a, Keypair.generate(), initiator=True,
                                   config=ConnectionConfig(handshake_timeout=7.5)):
            pass
    assert trio.current_time() - start == pytest.approx(7.5)
    assert fs_a.close_reason == info.value.reason


async def test_peer_hanging_up_during_the_handshake(
        autojump_clock: trio.testing.MockClock) -> None:
    fs_a, fs_b = memory_stream_pair(A_ADDR, B_ADDR)
    await fs_b.aclose("bye")
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed, match="handshake failed"):
        async with open_connection(fs_a, Keypair.generate(), initiator=True):
            pass


# --- connection-level violations ---------------------------------------------------------


VIOLATIONS = [
    ("oversized frame", b"\x80" * 2000, "FrameTooLarge", "exceeds the limit of 1024"),
    ("undecodable frame", b"\xc1\x00", "DecodeError", "msgpack"),
    ("wrong parity", StreamFrame(1, "/echo", {}, False).encode(), "StreamError",
     "must use even ids"),
    ("missing protocol id", StreamFrame(2, None, {}, False).encode(), "StreamError",
     "no protocol id"),
]


@pytest.mark.parametrize(("data", "kind", "text"), [v[1:] for v in VIOLATIONS],
                         ids=[v[0] for v in VIOLATIONS])
async def test_violation_closes_the_connection_with_a_clear_reason(
        autojump_clock: trio.testing.MockClock, data: bytes, kind: str, text: str) -> None:
    fs_a, fs_b = memory_stream_pair(A_ADDR, B_ADDR)
    key_b = Keypair.generate()
    config = ConnectionConfig(max_frame_bytes=1024)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw_handshake, fs_b, key_b)
            async with open_connection(fs_a, Keypair.generate(), initiator=True,
                                       expected_peer=key_b.peer_id, config=config) as conn:
                stream = await conn.open_stream("/echo")
                await fs_b.send(data)
                await conn.closed.wait()
                reason = conn.close_reason
                assert reason is not None
                assert "protocol violation" in reason and kind in reason and text in reason
                assert fs_a.close_reason == reason
                with pytest.raises(StreamReset) as reset:
                    await stream.receive()
                assert reset.value.code == CONNECTION_CLOSED and text in reset.value.detail
                with pytest.raises(ConnectionEnded, match=text):
                    await conn.open_stream("/echo")
            with pytest.raises(TransportBroken):
                await fs_b.receive()
    assert connection_tasks() == []


async def test_lost_transport_ends_the_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/hold": hold}) as p:
            stream = await p.a.open_stream("/hold")
            await stream.send({"n": 1})
            await p.fs_b.aclose("pulled the plug")
            await p.a.closed.wait()
            # the peer closed the transport itself: a normal close, with its reason
            assert p.a.close_reason == "closed by the peer: pulled the plug"
            with pytest.raises(StreamReset, match=CONNECTION_CLOSED):
                await stream.send({"n": 2})
            await p.b.closed.wait()


# --- stream-level trouble: the connection survives ---------------------------------------


async def test_too_many_streams_is_refused_and_the_connection_survives(
        autojump_clock: trio.testing.MockClock) -> None:
    handlers: dict[str, ProtocolHandler] = {"/hold": hold, "/echo": echo}
    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b=handlers, config_b=ConnectionConfig(max_streams=2)) as p:
            held = [await p.a.open_stream("/hold") for _ in range(2)]
            for stream in held:
                await stream.send({"n": 0})
            extra = await p.a.open_stream("/echo")
            with pytest.raises(StreamReset) as info:
                await extra.request({"n": 3})
            assert info.value.code == "too-many-streams"
            await held[0].reset("internal-error")
            reply = await (await p.a.open_stream("/echo")).request({"n": 4})
            assert reply["echo"] == 4
            assert p.b.statistics().mux.rejected_too_many == 1
            assert p.a.close_reason is None and p.b.close_reason is None


async def test_opening_beyond_the_local_limit_raises(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connected(config_a=ConnectionConfig(max_streams=1)) as p:
            await p.a.open_stream("/x")
            with pytest.raises(StreamLimitReached):
                await p.a.open_stream("/x")


async def test_unknown_protocol_resets_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/echo": echo}) as p:
            stream = await p.a.open_stream("/nope/1.0.0")
            with pytest.raises(StreamReset) as info:
                await stream.request({"n": 1})
            assert info.value.code == "unsupported-protocol"
            assert (await (await p.a.open_stream("/echo")).request({"n": 2}))["echo"] == 2


async def test_stream_timeout_resets_both_sides(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[str] = []

    async def stuck(stream: Stream) -> None:
        await stream.receive()
        try:
            await stream.receive()
        except StreamReset as exc:
            seen.append(exc.code)
            raise

    config = ConnectionConfig(stream_timeout=5.0)
    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/stuck": stuck}, config_a=config,
                             config_b=config) as p:
            start = trio.current_time()
            stream = await p.a.open_stream("/stuck")
            await stream.send({"n": 1})
            with pytest.raises(StreamReset) as info:
                await stream.receive()
            assert info.value.code == "stream-timeout"
            assert trio.current_time() - start == pytest.approx(5.0)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == ["stream-timeout"]
            assert p.a.close_reason is None and p.b.close_reason is None
            assert p.a.statistics().mux.timed_out + p.b.statistics().mux.timed_out >= 1


async def test_request_timeout_resets_the_stream_for_the_peer(
        autojump_clock: trio.testing.MockClock) -> None:
    seen: list[str] = []

    async def slow(stream: Stream) -> None:
        await stream.receive()
        try:
            await trio.sleep(10)
        finally:
            seen.append("cancelled")

    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/slow": slow}) as p:
            stream = await p.a.open_stream("/slow")
            with pytest.raises(trio.TooSlowError):
                await stream.request({"n": 1}, timeout=2)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == ["cancelled"]  # the peer's reset cancels the handler
            assert p.b.statistics().mux.reset_by_peer == 1


# --- handlers ---------------------------------------------------------------------------------


async def test_handler_crash_resets_only_its_stream(autojump_clock: trio.testing.MockClock) -> None:
    async def broken(stream: Stream) -> None:
        await stream.receive()
        raise RuntimeError("bug in a handler")

    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/broken": broken, "/echo": echo}) as p:
            with pytest.raises(StreamReset, match="internal-error"):
                await (await p.a.open_stream("/broken")).request({"n": 1})
            assert p.b.statistics().handler_errors == 1
            assert (await (await p.a.open_stream("/echo")).request({"n": 2}))["echo"] == 2


async def test_handler_returning_without_fin_ends_the_stream(
        autojump_clock: trio.testing.MockClock) -> None:
    async def mute(stream: Stream) -> None:
        await stream.receive()

    async def bad_input(stream: Stream) -> None:
        await stream.receive()
        await stream.receive()  # the peer already sent fin: StreamEnded

    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/mute": mute, "/strict": bad_input}) as p:
            with pytest.raises(StreamEnded):
                await (await p.a.open_stream("/mute")).request({"n": 1})
            with pytest.raises(StreamReset, match="bad-message"):
                await (await p.a.open_stream("/strict")).request({"n": 1})
            assert p.b.statistics().handler_errors == 0


async def test_streams_half_close_and_carry_many_messages(
        autojump_clock: trio.testing.MockClock) -> None:
    async def count(stream: Stream) -> None:
        total = 0
        while True:
            try:
                total += int(str((await stream.receive())["n"]))
            except StreamEnded:
                break
        for _ in range(3):
            await stream.send({"total": total})
        await stream.send({}, fin=True)  # an empty final message is still delivered

    with trio.fail_after(TIMEOUT):
        small_window = ConnectionConfig(stream_buffer=2)  # both ends must agree on it
        async with connected(handlers_b={"/count": count}, config_a=small_window,
                             config_b=small_window) as p:
            stream = await p.a.open_stream("/count")
            for n in range(20):
                await stream.send({"n": n})
            await stream.send({"n": 0}, fin=True)
            with pytest.raises(trio.ClosedResourceError):
                await stream.send({"n": 1})
            got = [await stream.receive() for _ in range(4)]
            assert got == [{"total": 190}] * 3 + [{}]
            with pytest.raises(StreamEnded):
                await stream.receive()


async def test_local_reset_and_close_are_usage_errors_afterwards(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/hold": hold}) as p:
            stream = await p.a.open_stream("/hold")
            await stream.send({"n": 1})
            await stream.reset()
            await stream.reset()  # idempotent
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive()
            with pytest.raises(trio.ClosedResourceError):
                await stream.send({"n": 2})
            async with await p.a.open_stream("/hold") as other:
                await other.send({"n": 3})
            with pytest.raises(trio.ClosedResourceError):
                await other.receive()


# --- closing --------------------------------------------------------------------------------


async def test_closing_resets_open_streams_and_leaves_no_task(
        autojump_clock: trio.testing.MockClock) -> None:
    outcomes: list[str] = []

    async def reader(stream: Stream) -> None:
        try:
            await stream.receive()
        except StreamReset as exc:
            outcomes.append(exc.code)

    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/hold": hold}) as p, trio.open_nursery() as nursery:
            streams = [await p.a.open_stream("/hold") for _ in range(3)]
            for stream in streams:
                await stream.send({"n": 1})
                nursery.start_soon(reader, stream)
            await trio.testing.wait_all_tasks_blocked()
            assert len([t for t in connection_tasks() if t.startswith("stream")]) == 3
            await p.a.aclose("test is done")
            await p.b.closed.wait()
            assert p.a.close_reason == "test is done" == p.fs_a.close_reason
            assert p.b.close_reason == "closed by the peer: test is done"
            await trio.testing.wait_all_tasks_blocked()
            assert outcomes == [CONNECTION_CLOSED] * 3
            assert connection_tasks() == []
    assert connection_tasks() == []


async def test_queued_replies_go_out_before_the_close(
        autojump_clock: trio.testing.MockClock) -> None:
    fs_a, fs_b = memory_stream_pair(A_ADDR, B_ADDR)
    key_b = Keypair.generate()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw_handshake, fs_b, key_b)
            async with open_connection(fs_a, Keypair.generate(), initiator=True,
                                       expected_peer=key_b.peer_id) as conn:
                stream = await conn.open_stream("/x")
                await stream.send({"last": True}, fin=True)
            frame = decode_stream_frame(await fs_b.receive())
            assert isinstance(frame, StreamFrame) and frame.message == {"last": True}
            with pytest.raises(TransportBroken):
                await fs_b.receive()


async def test_idle_connection_closes_itself(autojump_clock: trio.testing.MockClock) -> None:
    config = ConnectionConfig(idle_timeout=60.0)
    with trio.fail_after(TIMEOUT * 2):
        async with connected({"/echo": echo}, {"/echo": echo}, config, config) as p:
            start = trio.current_time()
            await trio.sleep(45)
            await (await p.a.open_stream("/echo")).request({"n": 1})  # activity restarts it
            await p.a.closed.wait()
            assert trio.current_time() - start == pytest.approx(105.0)
            assert p.a.close_reason is not None and "idle" in p.a.close_reason


async def test_rejections_and_error_frames_reach_a_raw_peer(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connection_to_raw_peer(handlers={"/echo": echo}) as (_, fs_b):
            await fs_b.send(StreamFrame(2, "/other", {}, False).encode())
            assert decode_stream_frame(await fs_b.receive()) == ErrorFrame(
                2, "unsupported-protocol")
            await fs_b.send(StreamFrame(4, "/echo", {"n": 9}, True).encode())
            answer = decode_stream_frame(await fs_b.receive())
            assert isinstance(answer, StreamFrame)
            assert (answer.stream_id, answer.message["echo"], answer.fin) == (4, 9, True)


async def test_senders_wait_when_the_peer_does_not_read(
        autojump_clock: trio.testing.MockClock) -> None:
    sent = 0
    with trio.fail_after(TIMEOUT):
        async with connection_to_raw_peer(
                buffer=8, config=ConnectionConfig(send_buffer=4)) as (conn, fs_b), \
                trio.open_nursery() as nursery:
            stream = await conn.open_stream("/x")

            async def flood() -> None:
                nonlocal sent
                with pytest.raises(trio.ClosedResourceError, match="reset by this side"):
                    for n in range(1000):
                        await stream.send({"n": n})
                        sent += 1

            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == 8 + 1 + 4  # transport buffer, the writer's frame, the outbox
            assert conn.statistics().queued_frames == 5
            for _ in range(3):
                await fs_b.receive()
            await trio.testing.wait_all_tasks_blocked()
            assert sent == 16
            await stream.reset()


async def test_an_idle_connection_keeps_a_task_only_to_read_and_only_where_it_must(
        frame_mode: str, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/echo": echo}) as p:
            for n in range(3):
                stream = await p.a.open_stream("/echo")
                await stream.send({"n": n}, fin=True)
                assert (await stream.receive())["echo"] == n
            await trio.testing.wait_all_tasks_blocked()
            tasks = connection_tasks()
            # the writer ended with its queue; a reader only where frames are not delivered
            assert not [name for name in tasks if "_write_loop" in name]
            readers = [name for name in tasks if "_read_loop" in name]
            assert len(readers) == (2 if frame_mode == "read" else 0)


async def test_peer_that_floods_without_reading_is_disconnected(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        # refusals do not count here: the send queue overflows first
        async with connection_to_raw_peer(
                buffer=8, config=ConnectionConfig(max_refusals=10**6)) as (conn, fs_b):
            with pytest.raises(TransportBroken):
                for sid in range(2, 2000, 2):  # refused streams, never reading the refusals
                    await fs_b.send(StreamFrame(sid, "/nope", {}, False).encode())
            await conn.closed.wait()
            assert conn.close_reason is not None and "not reading" in conn.close_reason


# --- flow control ---------------------------------------------------------------------------

WINDOW = ConnectionConfig().stream_buffer  # each stream's flow-control window (messages)


async def test_a_stream_nobody_reads_does_not_stall_its_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    reading, drained = trio.Event(), trio.Event()
    received: list[int] = []
    sent = 0

    async def sink(stream: Stream) -> None:
        await reading.wait()  # a consumer that stopped reading
        while True:
            try:
                received.append(int(str((await stream.receive())["n"])))
            except StreamEnded:
                drained.set()
                return

    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/sink": sink, "/echo": echo}) as p:
            stalled = await p.a.open_stream("/sink")

            async def flood() -> None:
                nonlocal sent
                for n in range(3 * WINDOW):
                    await stalled.send({"n": n})
                    sent += 1
                await stalled.aclose()

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await trio.testing.wait_all_tasks_blocked()
                reply = await (await p.a.open_stream("/echo")).request({"n": 7})
                assert reply["echo"] == 7
                elapsed = trio.current_time() - start
                assert elapsed < 1.0 < p.a.config.stream_timeout  # old code: the stream timeout
                await trio.testing.wait_all_tasks_blocked()
                assert sent == WINDOW  # parked for credit, not failed
                assert p.b.statistics().mux.flow_control_resets == 0
                reading.set()
            await drained.wait()
            assert received == list(range(3 * WINDOW))  # the sender resumed: all, in order
            assert p.a.statistics().mux.window_updates_received >= 2


async def test_a_sender_waiting_for_credit_can_be_cancelled(
        autojump_clock: trio.testing.MockClock) -> None:
    async def never_read(stream: Stream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with connected(handlers_b={"/never": never_read}) as p:
            stream = await p.a.open_stream("/never")
            for n in range(WINDOW):
                await stream.send({"n": n})
            frames_before = p.a.statistics().mux.frames_sent
            with trio.move_on_after(5) as waited:
                await stream.send({"n": WINDOW})
            assert waited.cancelled_caught
            assert p.a.statistics().mux.frames_sent == frames_before  # nothing half-sent
            await stream.aclose()  # a bare fin needs no credit
            assert p.a.statistics().mux.frames_sent == frames_before + 1


async def test_window_updates_reach_a_raw_peer_as_the_handler_reads(
        autojump_clock: trio.testing.MockClock) -> None:
    async def drain(stream: Stream) -> None:
        while True:
            await stream.receive()

    with trio.fail_after(TIMEOUT):
        async with connection_to_raw_peer(handlers={"/drain": drain}) as (_, fs_b):
            await fs_b.send(StreamFrame(2, "/drain", {"n": 0}, False).encode())
            for n in range(1, WINDOW):
                await fs_b.send(StreamFrame(2, None, {"n": n}, False).encode())
            grants = [decode_stream_frame(await fs_b.receive()) for _ in range(2)]
            assert grants == [WindowUpdate(2, WINDOW // 2)] * 2


async def test_a_raw_peer_ignoring_the_window_loses_only_that_stream(
        autojump_clock: trio.testing.MockClock) -> None:
    cancelled = trio.Event()

    async def never_read(stream: Stream) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(TIMEOUT):
        async with connection_to_raw_peer(
                handlers={"/never": never_read, "/echo": echo}) as (conn, fs_b):
            await fs_b.send(StreamFrame(2, "/never", {"n": 0}, False).encode())
            for n in range(1, 2 * WINDOW):  # a window's worth, then more
                await fs_b.send(StreamFrame(2, None, {"n": n}, False).encode())
            assert decode_stream_frame(await fs_b.receive()) == ErrorFrame(2, "flow-control")
            await cancelled.wait()  # the handler of the overfilled stream is cancelled
            await fs_b.send(StreamFrame(4, "/echo", {"n": 9}, True).encode())
            answer = decode_stream_frame(await fs_b.receive())
            assert isinstance(answer, StreamFrame) and answer.message["echo"] == 9
            stats = conn.statistics()
            assert conn.close_reason is None
            assert (stats.mux.flow_control_resets, stats.mux.frames_dropped) == (1, WINDOW - 1)


def test_config_is_validated() -> None:
    for bad in ({"handshake_timeout": 0}, {"max_streams": 1.5}, {"idle_timeout": -1},
                {"stream_buffer": True}, {"max_frame_bytes": 2**30}):
        with pytest.raises(ValueError):
            ConnectionConfig(**bad)
    assert ConnectionConfig(idle_timeout=None).idle_timeout is None



async def test_a_pinned_idle_connection_is_busy_for_eviction() -> None:
    """A relay reservation pins its connection: a full node must not evict it to admit
    a newcomer, although no stream is open on it."""
    from actors.node._dialer import _Busy

    with trio.fail_after(10):
        async with connected() as pair:
            busy = _Busy({1: pair.b})
            assert 1 not in busy and len(busy) == 0  # idle: evictable
            pair.b.pin()
            assert pair.b.pinned and 1 in busy and list(busy) == [1]
            pair.b.unpin()
            assert not pair.b.pinned and 1 not in busy
