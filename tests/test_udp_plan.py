"""UdpDiscoveryPlan (sans-io): which STUN server, when, and what is published."""

from __future__ import annotations

import pytest

from protocols import Keypair, LocalProtocolError
from protocols.stun import (
    UNKNOWN_UDP_PROFILE,
    Endpoint,
    NatBehaviour,
    PublishUdpProfile,
    RunDiscovery,
    UdpDiscoveryPlan,
    UdpProfile,
)

A, B, C = (Keypair.generate().peer_id for _ in range(3))
SA, SB, SC = (Endpoint.of(f"198.51.100.{i}", 3478) for i in (1, 2, 3))
EI = NatBehaviour.ENDPOINT_INDEPENDENT
FULL = UdpProfile(EI, EI)
HALF = UdpProfile(NatBehaviour.NONE, NatBehaviour.UNKNOWN)


def _runs(commands: list[RunDiscovery | PublishUdpProfile]) -> list[RunDiscovery]:
    return [c for c in commands if isinstance(c, RunDiscovery)]


def test_nothing_to_do_without_servers() -> None:
    plan = UdpDiscoveryPlan(interval=100.0)
    assert plan.poll_timeout() is None
    assert plan.handle_timeout(0.0) == []
    assert plan.profile == UNKNOWN_UDP_PROFILE


def test_a_server_with_an_alternate_is_preferred_and_one_run_at_a_time() -> None:
    plan = UdpDiscoveryPlan(interval=100.0)
    plan.handle_peer(A, (SA,), False, 0.0)
    plan.handle_peer(B, (SB,), True, 0.0)
    assert plan.poll_timeout() == 0.0
    first = plan.handle_timeout(0.0)
    assert first == [RunDiscovery(B, SB)]
    assert plan.poll_timeout() is None and plan.handle_timeout(1.0) == []  # one in flight
    plan.handle_run_finished(first[0], FULL, 2.0)
    assert plan.handle_timeout(2.0) == [PublishUdpProfile(FULL, SB)]
    assert plan.profile == FULL
    assert plan.poll_timeout() == 102.0  # complete: again after the interval
    assert plan.handle_timeout(101.0) == []
    again = plan.handle_timeout(102.0)
    assert again == [RunDiscovery(B, SB)]  # still the one with an alternate
    with pytest.raises(LocalProtocolError):
        plan.handle_run_finished(RunDiscovery(A, SA), FULL, 103.0)


def test_an_incomplete_run_never_replaces_a_complete_profile() -> None:
    plan = UdpDiscoveryPlan(interval=100.0)
    plan.handle_peer(A, (SA,), True, 0.0)
    run = plan.handle_timeout(0.0)[0]
    assert isinstance(run, RunDiscovery)
    plan.handle_run_finished(run, FULL, 1.0)
    plan.handle_timeout(1.0)
    run = _runs(plan.handle_timeout(101.0))[0]
    plan.handle_run_finished(run, UNKNOWN_UDP_PROFILE, 102.0)  # a failing server
    assert [c for c in plan.handle_timeout(102.0) if isinstance(c, PublishUdpProfile)] == []
    assert plan.profile == FULL


def test_after_an_incomplete_run_an_untried_server_is_asked_then_backoff() -> None:
    plan = UdpDiscoveryPlan(interval=1000.0, retry_initial=30.0)
    plan.handle_peer(A, (SA,), False, 0.0)
    plan.handle_peer(C, (SC,), False, 0.0)
    run = _runs(plan.handle_timeout(0.0))[0]
    assert run == RunDiscovery(A, SA)  # ties by arrival
    plan.handle_run_finished(run, HALF, 1.0)
    assert plan.handle_timeout(1.0) == [PublishUdpProfile(HALF, SA)]  # better than unknown
    assert plan.poll_timeout() == 2.0
    run = _runs(plan.handle_timeout(2.0))[0]
    assert run == RunDiscovery(C, SC)  # never tried first
    plan.handle_run_finished(run, HALF, 3.0)
    assert plan.handle_timeout(3.0) == []  # not better: nothing new to publish
    assert plan.poll_timeout() == 33.0  # every server tried: back off
    run = _runs(plan.handle_timeout(33.0))[0]
    assert run == RunDiscovery(A, SA)  # the one tried longest ago
    plan.handle_run_finished(run, HALF, 34.0)
    assert plan.poll_timeout() == 94.0  # doubled


def test_new_network_or_a_new_alternate_makes_a_run_due_at_once() -> None:
    plan = UdpDiscoveryPlan(interval=1000.0)
    plan.handle_peer(A, (SA,), False, 0.0)
    run = _runs(plan.handle_timeout(0.0))[0]
    plan.handle_run_finished(run, HALF, 1.0)
    plan.handle_timeout(1.0)
    _runs(plan.handle_timeout(31.0))  # A again (backoff), in flight
    plan.handle_peer(B, (SB,), True, 32.0)  # an alternate while incomplete: due after this run
    plan.handle_run_finished(RunDiscovery(A, SA), HALF, 33.0)
    assert _runs(plan.handle_timeout(33.0)) == [RunDiscovery(B, SB)]
    plan.handle_run_finished(RunDiscovery(B, SB), FULL, 34.0)
    plan.handle_timeout(34.0)
    assert plan.poll_timeout() == 1034.0
    plan.handle_local_ips(40.0)
    assert _runs(plan.handle_timeout(40.0)) == [RunDiscovery(B, SB)]


def test_peers_that_leave_or_stop_serving_are_forgotten_and_a_restart_ends_the_run() -> None:
    plan = UdpDiscoveryPlan(interval=100.0)
    plan.handle_peer(A, (SA,), True, 0.0)
    plan.handle_peer(B, (SB,), True, 0.0)
    plan.handle_peer(A, (), False, 0.0)
    plan.handle_peer_gone(B)
    assert plan.servers == 0 and plan.handle_timeout(0.0) == []
    plan.handle_peer(C, (SC,), True, 1.0)
    assert _runs(plan.handle_timeout(1.0)) == [RunDiscovery(C, SC)]
    plan.handle_driver_restart()
    assert not plan.running
    assert _runs(plan.handle_timeout(200.0)) == [RunDiscovery(C, SC)]
