"""The dial-back's connect-phase plan (sans-io), the path measurement it is made from, and
the transport's race of the plan's attempts."""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from actors.transport import DialError, HandshakeTimedOut, WebSocketTransport, _sockets
from actors.transport._sockets import ConnectGaveUp, connect_planned, path_stats
from protocols import ConnectPlan, LocalProtocolError, PathStats, WsAddress, plan_dial_back
from protocols.autonat import attempts_needed

CEILING = 5.0
CLEAN = dict(segments_sent=40, retransmitted=0)


def test_without_a_measurement_the_fixed_timeout_applies() -> None:
    assert plan_dial_back(None, ceiling=CEILING) == ConnectPlan((0.0,), CEILING, measured=False)


def test_a_fast_path_gives_up_at_the_floor_with_its_hedges_inside() -> None:
    plan = plan_dial_back(PathStats(srtt=0.0002, rttvar=0.0001, **CLEAN), ceiling=CEILING)
    assert plan.give_up_after == 0.3  # loopback: RTO and spacing are the 50 ms minimum
    assert plan.attempts == (0.0, 0.05)  # a long clean connection: one hedge
    assert plan.measured


def test_hedges_go_out_one_round_trip_apart_and_the_last_gets_a_full_rto() -> None:
    # 100 ms RTT, 10 ms variation: RTO 140 ms; three attempts for a young clean connection
    plan = plan_dial_back(PathStats(srtt=0.1, rttvar=0.01, segments_sent=10),
                          ceiling=CEILING)
    assert plan.attempts == pytest.approx((0.0, 0.1, 0.2))
    assert plan.give_up_after == pytest.approx(0.2 + 0.14)


def test_no_plan_gives_up_before_its_rtos() -> None:
    # a very variable path: RTO 0.5 s dominates the three attempts' wait
    plan = plan_dial_back(PathStats(srtt=0.1, rttvar=0.1, **CLEAN), ceiling=CEILING,
                          rtos=2.0)
    assert plan.give_up_after == pytest.approx(1.0)


def test_a_slow_path_is_capped_by_the_ceiling_and_drops_attempts_past_it() -> None:
    plan = plan_dial_back(PathStats(srtt=1.5, rttvar=0.5, segments_sent=10), ceiling=CEILING)
    assert plan.give_up_after == CEILING
    assert plan.attempts == (0.0, 1.5, 3.0)


@pytest.mark.parametrize(("retransmitted", "attempts"), [(1, 3), (2, 4), (10, 9)])
def test_a_lossier_connection_gets_more_attempts_and_more_time(
        retransmitted: int, attempts: int) -> None:
    path = PathStats(srtt=0.1, rttvar=0.02, segments_sent=40, retransmitted=retransmitted)
    plan = plan_dial_back(path, ceiling=CEILING)
    assert len(plan.attempts) == attempts
    assert plan.give_up_after == pytest.approx((attempts - 1) * 0.1 + path.rto)


@pytest.mark.parametrize("loss", [0.0, 0.02, 0.1, 0.25, 0.4])
def test_the_attempts_make_a_false_unreachable_rarer_than_the_target(loss: float) -> None:
    count = attempts_needed(loss, miss_target=1e-3, max_attempts=50)
    all_fail = (1 - (1 - loss) ** 2) ** count
    assert all_fail <= 1e-3
    assert count == 1 or (1 - (1 - loss) ** 2) ** (count - 1) > 1e-3  # and no more


def test_attempts_are_capped() -> None:
    path = PathStats(srtt=0.01, rttvar=0.001, segments_sent=4, retransmitted=4)
    assert path.loss == 0.5  # capped
    assert len(plan_dial_back(path, ceiling=CEILING, max_attempts=6).attempts) == 6


def test_a_short_clean_connection_still_assumes_a_little_loss() -> None:
    young = PathStats(srtt=0.1, rttvar=0.02)
    assert young.loss == 0.5  # nothing sent yet: no evidence of a clean path
    assert PathStats(srtt=0.1, rttvar=0.02, segments_sent=9).loss == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs", [
    {"ceiling": 0.0}, {"ceiling": float("inf")}, {"ceiling": 1.0, "floor": 2.0},
    {"ceiling": 1.0, "max_attempts": 0}, {"ceiling": 1.0, "rtos": 0},
    {"ceiling": True}, {"ceiling": 1.0, "miss_target": 1.0},
])
def test_bad_settings_are_our_bug(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        plan_dial_back(PathStats(0.1, 0.01), **kwargs)


@pytest.mark.parametrize("values", [(-1.0, 0.0), (0.1, float("nan")), (True, 0.0),
                                    (0.1, 0.0, -1, 0), (0.1, 0.0, 1, 1.5)])
def test_path_stats_are_validated(values: tuple[Any, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        PathStats(*values)


@pytest.mark.parametrize("attempts", [(), (0.1,), (0.0, 0.2, 0.1), (0.0, 0.5)])
def test_a_connect_plan_is_validated(attempts: tuple[float, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        ConnectPlan(attempts, give_up_after=0.5, measured=True)


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO's layout is Linux's")
def test_the_kernel_measures_a_loopback_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()[:2], timeout=5) as client:
        accepted, _ = server.accept()
        with accepted:
            for _ in range(10):  # a few exchanges give the kernel RTT samples
                client.sendall(b"x")
                assert accepted.recv(1) == b"x"
                accepted.sendall(b"y")
                assert client.recv(1) == b"y"
            measured = path_stats(client)
    assert measured is not None
    assert 0 < measured.srtt < 0.2 and measured.rttvar < 0.2
    assert measured.segments_sent >= 10 and measured.retransmitted == 0


def test_a_socket_that_is_not_tcp_has_no_path_stats() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert path_stats(udp) is None


# --- the race of a plan's attempts (the socket connect replaced by a script) -------------

PLAN = ConnectPlan((0.0, 0.1, 0.2), give_up_after=0.5, measured=True)


class _FakeSocket:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _FakeStream:
    def __init__(self, number: int) -> None:
        self.number = number
        self.socket = _FakeSocket()


Script = Callable[[int], Any]


def _scripted(monkeypatch: pytest.MonkeyPatch, script: Script) -> list[tuple[int, float]]:
    """Replace the socket connect: attempt ``n`` does ``await script(n)``; returns the log
    of (attempt, start time)."""
    started: list[tuple[int, float]] = []

    async def connect(ip: str, port: int, bind_to: Any, *, source_ip: str | None = None) -> Any:
        number = len(started)
        started.append((number, trio.current_time()))
        return await script(number)
    monkeypatch.setattr(_sockets, "_connect", connect)
    return started


async def _silent(number: int) -> Any:
    await trio.sleep_forever()


async def test_a_hedge_wins_when_the_first_attempt_is_lost(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    streams: list[_FakeStream] = []

    async def script(number: int) -> Any:
        if number == 0:
            await trio.sleep_forever()  # its SYN was lost
        await trio.sleep(0.05)  # half an RTT: the SYN-ACK arrives before the next hedge
        streams.append(_FakeStream(number))
        return streams[-1]
    started = _scripted(monkeypatch, script)
    won = await connect_planned("192.0.2.1", 4001, PLAN)
    assert isinstance(won, _FakeStream) and won.number == 1
    assert trio.current_time() == pytest.approx(0.15)
    assert [n for n, _ in started] == [0, 1]  # the third was never needed
    assert [s.number for s in streams] == [1]


async def test_silence_gives_up_at_the_planned_time(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _scripted(monkeypatch, _silent)
    with pytest.raises(ConnectGaveUp, match="3 connection attempt"):
        await connect_planned("192.0.2.1", 4001, PLAN)
    assert trio.current_time() == pytest.approx(0.5)
    assert [at for _, at in started] == pytest.approx([0.0, 0.1, 0.2])


async def test_a_refusal_ends_the_race_at_once(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    async def script(number: int) -> Any:
        await trio.sleep(0.05)
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    started = _scripted(monkeypatch, script)
    with pytest.raises(ConnectionRefusedError):
        await connect_planned("192.0.2.1", 4001, PLAN)
    assert trio.current_time() == pytest.approx(0.05)
    assert len(started) == 1


async def test_a_local_failure_is_no_evidence(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    async def script(number: int) -> Any:
        if number == 1:
            raise OSError(errno.EMFILE, "too many open files")
        await trio.sleep_forever()
    _scripted(monkeypatch, script)
    with pytest.raises(OSError) as caught:
        await connect_planned("192.0.2.1", 4001, PLAN)
    assert caught.value.errno == errno.EMFILE  # the transport answers LocalDialError
    assert trio.current_time() == pytest.approx(0.5)


async def test_two_attempts_connecting_at_once_leave_one_socket_open(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    streams: list[_FakeStream] = []

    async def script(number: int) -> Any:
        await trio.sleep(0.3 - 0.1 * number)  # attempts 0 and 1 both finish at 0.3 s
        streams.append(_FakeStream(number))
        return streams[-1]
    _scripted(monkeypatch, script)
    plan = ConnectPlan((0.0, 0.1), give_up_after=0.5, measured=True)
    won = await connect_planned("192.0.2.1", 4001, plan)
    assert [s.socket.closed for s in streams if s is not won] == [True] * (len(streams) - 1)
    assert not won.socket.closed


async def test_the_websocket_transport_follows_the_plan_to_a_listener_that_drops(
        autojump_clock: trio.testing.MockClock) -> None:
    # a listener whose accept queue is full drops further SYNs silently, like a NAT
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # fills the queue
            transport = WebSocketTransport()
            addr = WsAddress.parse(f"/ip4/127.0.0.1/tcp/{port}/ws")
            with pytest.raises(DialError, match="no answer to 3 connection attempt"):
                async with transport.dial(addr, reuse_listen_port=False, connect_plan=PLAN):
                    pass  # pragma: no cover - never connects
    assert trio.current_time() == pytest.approx(PLAN.give_up_after)


async def test_a_websocket_upgrade_that_times_out_is_told_apart_from_no_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    # the TCP connection is made (the kernel accepts it), nobody answers the upgrade
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        addr = WsAddress.parse(f"/ip4/127.0.0.1/tcp/{listener.getsockname()[1]}/ws")
        transport = WebSocketTransport(handshake_timeout=2.0)
        with pytest.raises(HandshakeTimedOut, match="timed out after 2 s"):
            async with transport.dial(addr, reuse_listen_port=False, connect_plan=PLAN):
                pass  # pragma: no cover - never upgrades


async def test_a_refused_websocket_dial_is_a_plain_dial_error(
        autojump_clock: trio.testing.MockClock) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
        addr = WsAddress.parse(f"/ip4/127.0.0.1/tcp/{unused.getsockname()[1]}/ws")
        with pytest.raises(DialError) as caught:
            async with WebSocketTransport().dial(addr, reuse_listen_port=False,
                                                 connect_plan=PLAN):
                pass  # pragma: no cover - refused
    assert not isinstance(caught.value, HandshakeTimedOut)
    assert trio.current_time() < PLAN.attempts[1]  # the refusal ended the race at once


def test_a_handshake_sample_plans_cautiously() -> None:
    # one RTT sample, no segment counts: variation half the sample, loss unknown
    path = PathStats.from_handshake(0.1)
    assert (path.srtt, path.rttvar, path.loss) == (0.1, 0.05, 0.5)
    plan = plan_dial_back(path, ceiling=CEILING)
    assert len(plan.attempts) == 12  # all the attempts there are
    assert plan.give_up_after == pytest.approx(11 * 0.1 + 0.3)
