"""The in-memory connection's pipes behave as the memory channels they replace:
bounded buffer, FIFO, and the same errors when either end closes."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.transport import (
    DialError,
    FrameStream,
    MemoryFrameStream,
    MemoryNetwork,
    TransportBroken,
    TransportClosed,
)
from actors.transport._memory_transport import memory_stream_pair
from protocols import WsAddress

A = WsAddress(host="127.0.0.1", kind="ip4", port=1, secure=False, peer_id=None)
B = WsAddress(host="127.0.0.2", kind="ip4", port=2, secure=False, peer_id=None)


async def test_frames_arrive_in_order_and_a_full_buffer_blocks_the_sender(
        autojump_clock: trio.testing.MockClock) -> None:
    a, b = memory_stream_pair(A, B, buffer=2)
    await a.send(b"1")
    await a.send(b"2")
    with trio.move_on_after(1) as blocked:
        await a.send(b"3")  # the buffer holds two frames
    assert blocked.cancelled_caught
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send, b"4")
        await trio.testing.wait_all_tasks_blocked()
        assert [await b.receive() for _ in range(3)] == [b"1", b"2", b"4"]


async def test_a_waiting_receiver_gets_the_next_frame() -> None:
    a, b = memory_stream_pair(A, B)
    got: list[bytes] = []

    async def receive() -> None:
        got.append(await b.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await a.send(b"x")
    assert got == [b"x"]


async def test_closing_ends_the_peers_waits_with_the_reason() -> None:
    a, b = memory_stream_pair(A, B, buffer=1)
    await a.send(b"queued")

    async def blocked_send() -> None:
        with pytest.raises(TransportBroken) as info:
            await a.send(b"never")
        assert info.value.peer_closed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_send)
        await trio.testing.wait_all_tasks_blocked()
        await b.aclose("done here")
    with pytest.raises(TransportBroken) as info:
        await a.receive()
    assert info.value.peer_reason == "done here"
    with pytest.raises(TransportClosed):
        await b.receive()


async def test_frames_sent_before_a_close_are_still_delivered() -> None:
    a, b = memory_stream_pair(A, B)
    await a.send(b"last words")
    await a.aclose("bye")
    assert await b.receive() == b"last words"
    with pytest.raises(TransportBroken):
        await b.receive()


async def test_closing_our_end_fails_our_own_waiting_receive() -> None:
    a, _b = memory_stream_pair(A, B)

    async def receive() -> None:
        with pytest.raises(TransportClosed):
            await a.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()


async def test_delivered_frames_come_at_their_arrival_times_in_order_then_the_end(
        autojump_clock: trio.testing.MockClock) -> None:
    a, b = memory_stream_pair(A, B, buffer=2)
    a.delay = 0.5
    got: list[tuple[float, object]] = []
    b.deliver_to(lambda frame: got.append((trio.current_time(), frame)),
                 lambda error: got.append((trio.current_time(), error)))
    start = trio.current_time()
    await a.send(b"1")
    await trio.sleep(0.1)
    assert a.send_nowait(b"2")
    assert got == []  # nothing before its arrival time
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send, b"3")  # the buffer held two: this one waited
        await trio.sleep(0.45)
        assert [frame for _, frame in got] == [b"1"]
    await a.aclose("bye")
    await trio.sleep(1)
    assert [(round(t - start, 2), f) for t, f in got[:3]] == [
        (0.5, b"1"), (0.6, b"2"), (0.6, b"3")]
    end = got[3][1]
    assert isinstance(end, TransportBroken) and end.peer_closed and end.peer_reason == "bye"
    assert len(got) == 4


async def test_send_nowait_says_when_the_buffer_is_full_and_closing_ends_delivery(
        autojump_clock: trio.testing.MockClock) -> None:
    a, b = memory_stream_pair(A, B, buffer=1)
    assert a.send_nowait(b"1")
    assert not a.send_nowait(b"2")  # full: nothing sent
    ends: list[object] = []
    frames: list[bytes] = []
    b.deliver_to(frames.append, ends.append)
    await trio.sleep(0.001)  # delivered at once: the timer task runs before the clock moves
    assert frames == [b"1"]
    assert a.send_nowait(b"3")
    await b.aclose("mine")  # this side closes: the end at once, nothing more delivered
    assert len(ends) == 1 and isinstance(ends[0], TransportClosed)
    await trio.sleep(1)
    assert frames == [b"1"] and len(ends) == 1
    with pytest.raises(TransportBroken):
        a.send_nowait(b"4")


async def test_a_halted_network_drops_frames_and_closes_and_refuses_dials(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    served: list[MemoryFrameStream] = []

    async def handler(stream: FrameStream) -> None:
        assert isinstance(stream, MemoryFrameStream)
        served.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(net.transport("10.0.0.2").listen, WsAddress.parse(
            "/ip4/10.0.0.2/tcp/4001/ws"), handler)
        async with net.transport("10.0.0.1").dial(
                WsAddress.parse("/ip4/10.0.0.2/tcp/4001/ws")) as ours:
            await trio.testing.wait_all_tasks_blocked()
            (theirs,) = served
            got: list[object] = []
            theirs.deliver_to(got.append, got.append)
            await ours.send(b"before")
            await trio.sleep(1)
            assert got == [b"before"]
            net.halt()
            await ours.send(b"after")  # accepted, never delivered
            assert ours.send_nowait(b"after, too")
            await ours.aclose("gone")  # and the other end never hears of it
            await trio.sleep(1)
            assert got == [b"before"]
        with pytest.raises(DialError, match="network is down"):
            async with net.transport("10.0.0.1").dial(
                    WsAddress.parse("/ip4/10.0.0.2/tcp/4001/ws")):
                pass  # pragma: no cover - the dial fails
        nursery.cancel_scope.cancel()
