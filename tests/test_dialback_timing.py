"""The dial-back's connect-phase plan (sans-io) and the path RTT it is made from."""

from __future__ import annotations

import socket
import sys

import pytest

from actors.transport._sockets import path_rtt
from protocols import DialBackPlan, LocalProtocolError, PathRtt, plan_dial_back

CEILING = 5.0


def test_without_a_measurement_the_fixed_timeout_applies() -> None:
    assert plan_dial_back(None, ceiling=CEILING) == DialBackPlan((0.0,), CEILING, measured=False)


def test_a_fast_path_gives_up_at_the_floor_with_its_hedges_inside() -> None:
    plan = plan_dial_back(PathRtt(srtt=0.0002, rttvar=0.0001), ceiling=CEILING)
    assert plan.give_up_after == 0.3  # loopback: the RTO is the 50 ms minimum
    assert plan.attempts == (0.0, 0.05, 0.1)
    assert plan.measured


def test_timing_follows_the_retransmission_timeout_of_the_path() -> None:
    # 100 ms RTT, 10 ms variation: RTO 140 ms; hedges at 1 and 2 RTOs; 1.5 RTOs for the last
    plan = plan_dial_back(PathRtt(srtt=0.1, rttvar=0.01), ceiling=CEILING)
    assert plan.attempts == pytest.approx((0.0, 0.14, 0.28))
    assert plan.give_up_after == pytest.approx(0.28 + 1.5 * 0.14)


def test_a_slow_path_is_capped_by_the_ceiling_and_drops_hedges_past_it() -> None:
    plan = plan_dial_back(PathRtt(srtt=1.5, rttvar=0.5), ceiling=CEILING)  # RTO 3.5 s
    assert plan.give_up_after == CEILING
    assert plan.attempts == (0.0, 3.5)


def test_more_loss_tolerance_with_more_hedges() -> None:
    path = PathRtt(srtt=0.05, rttvar=0.005)
    few, many = (plan_dial_back(path, ceiling=CEILING, hedges=n) for n in (0, 4))
    assert len(few.attempts) == 1 and len(many.attempts) == 5
    assert few.give_up_after < many.give_up_after


@pytest.mark.parametrize("kwargs", [
    {"ceiling": 0.0}, {"ceiling": float("inf")}, {"ceiling": 1.0, "floor": 2.0},
    {"ceiling": 1.0, "hedges": -1}, {"ceiling": 1.0, "slack": 0}, {"ceiling": True},
])
def test_bad_settings_are_our_bug(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        plan_dial_back(PathRtt(0.1, 0.01), **kwargs)


@pytest.mark.parametrize("values", [(-1.0, 0.0), (0.1, float("nan")), (True, 0.0)])
def test_a_path_rtt_is_validated(values: tuple[float, float]) -> None:
    with pytest.raises(LocalProtocolError):
        PathRtt(*values)


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
            measured = path_rtt(client)
    assert measured is not None
    assert 0 < measured.srtt < 0.2 and measured.rttvar < 0.2


def test_a_socket_that_is_not_tcp_has_no_rtt() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert path_rtt(udp) is None
