"""Small networks: fewer servers than the threshold can still decide - after settling."""

from __future__ import annotations

from protocols import (
    Keypair,
    ProbeOutcome,
    ProbeResult,
    Reachability,
    ReachabilityConfig,
    WsAddress,
)

ADDR = WsAddress.parse("/ip4/198.51.100.7/tcp/44000/ws")


def _result(outcome: ProbeOutcome, at: float) -> ProbeResult:
    return ProbeResult(addr=ADDR, server=Keypair.generate().peer_id, outcome=outcome, at=at)


def _machine() -> Reachability:
    reach = Reachability(ReachabilityConfig(threshold=2, small_network_settle=5.0))
    reach.handle_candidates_added([ADDR], 0.0)
    return reach


def test_one_server_decides_only_after_the_server_count_settles() -> None:
    reach = _machine()
    assert reach.handle_servers_available(1, 0.0) == []
    reach.handle_probe_result(_result(ProbeOutcome.REACHABLE, 0.5), 0.5)
    assert reach.nat_status == "unknown" and reach.threshold == 2
    assert reach.small_network_until == 5.0
    assert reach.handle_servers_available(1, 4.9) == []
    events = reach.handle_servers_available(1, 5.0)
    assert reach.threshold == 1 and reach.nat_status == "public" and events
    assert reach.small_network_until is None


def test_new_servers_restore_the_full_threshold_at_once() -> None:
    reach = _machine()
    reach.handle_servers_available(1, 0.0)
    reach.handle_servers_available(1, 6.0)
    assert reach.threshold == 1
    reach.handle_servers_available(3, 7.0)
    assert reach.threshold == 2
    reach.handle_probe_result(_result(ProbeOutcome.UNREACHABLE, 7.5), 7.5)
    assert reach.nat_status == "unknown"  # one claim is not enough any more


def test_a_changing_server_count_never_settles() -> None:
    reach = _machine()
    for step in range(10):  # a server arrives or leaves every 3 s
        reach.handle_servers_available(1 + step % 2, step * 3.0)
        assert reach.threshold == 2
    reach.handle_probe_result(_result(ProbeOutcome.UNREACHABLE, 30.0), 30.0)
    assert reach.nat_status == "unknown"


def test_no_server_keeps_threshold_at_least_one() -> None:
    reach = _machine()
    reach.handle_servers_available(0, 0.0)
    reach.handle_servers_available(0, 10.0)
    assert reach.threshold == 1
    assert reach.nat_status == "unknown"  # still no evidence at all


def test_the_settling_is_a_timeout_the_driver_is_told_about() -> None:
    reach = _machine()
    reach.handle_servers_available(1, 0.0)
    reach.handle_probe_result(_result(ProbeOutcome.REACHABLE, 0.5), 0.5)
    assert reach.poll_timeout() == 5.0  # before the evidence expires
    assert reach.handle_timeout(4.9) == [] and reach.threshold == 2
    events = reach.handle_timeout(5.0)  # no new input needed: time alone settles it
    assert reach.threshold == 1 and reach.nat_status == "public" and events
    assert reach.poll_timeout() == 0.5 + reach.config.evidence_ttl
