"""The accept loop keeps file descriptors in reserve and logs resource errors once a burst."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from actors import DialError, FrameStream, WebSocketTransport
from actors.transport._accept import SocketBudget, accept_loop
from protocols import WsAddress


class _FlakyListener:
    """``accept`` fails with EMFILE ``failures`` times, then hands out one stream, then waits."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def accept(self) -> trio.SocketStream:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        if self.calls == self.failures + 1:
            left, _right = trio.socket.socketpair()
            return trio.SocketStream(left)
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_burst_of_accept_failures_is_two_log_lines_not_a_traceback_each(
        autojump_clock: trio.testing.MockClock) -> None:
    served: list[trio.SocketStream] = []

    async def serve(stream: trio.SocketStream) -> None:
        served.append(stream)
        stream.socket.close()

    with capture_logs() as logs:
        with trio.move_on_after(10):
            await accept_loop(_FlakyListener(50), serve, SocketBudget(limit=1000), where="test")
    events = [(e["event"], e.get("failed_accepts")) for e in logs]
    assert events == [("accept failed: out of resources; pausing and retrying", None),
                      ("accepting again", 50)]
    assert len(served) == 1


async def test_an_error_that_is_not_about_resources_ends_the_listener() -> None:
    class Broken:
        async def accept(self) -> trio.SocketStream:
            raise OSError(errno.EBADF, "Bad file descriptor")

    async def serve(stream: trio.SocketStream) -> None:
        raise AssertionError("nothing is accepted")

    with pytest.raises(BaseExceptionGroup) as info:
        await accept_loop(Broken(), serve, SocketBudget(limit=1000))
    assert info.group_contains(OSError, match="Bad file descriptor", depth=None)


async def test_inbound_connections_beyond_the_fd_headroom_are_closed_at_once() -> None:
    budget = SocketBudget(limit=100, reserve=98)  # room for two sockets
    server = WebSocketTransport(budget=budget)
    held: list[FrameStream] = []

    async def hold(stream: FrameStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            (addr,) = await nursery.start(server.listen,
                                          WsAddress.parse("/ip4/127.0.0.1/tcp/0/ws"), hold)
            client = WebSocketTransport()
            async with client.dial(addr), client.dial(addr):
                while len(held) < 2:
                    await trio.sleep(0.01)
                with capture_logs() as logs, pytest.raises(DialError):
                    async with client.dial(addr):
                        pass
                assert budget.refused == 1 and budget.in_use == 2
                assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
                    "inbound connection refused: keeping file descriptors in reserve"]
            nursery.cancel_scope.cancel()
