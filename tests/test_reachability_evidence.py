"""Evidence beats a claim: dial-backs from an IP we never contacted outweigh E_DIAL_ERROR claims.

The simulator's ``liars`` scenario (2 honest AutoNAT servers, 2 that claim
every host unreachable, 3 more lying or vanishing) left public hosts
``private`` for good: two verified dial-backs tied two claims and the
hysteresis kept the first, wrong, verdict. These are the rule's unit tests.
"""

from __future__ import annotations

import random

import pytest

from protocols import (
    Keypair,
    LocalProtocolError,
    ProbeOutcome,
    ProbeResult,
    Reachability,
    ReachabilityChanged,
    ReachabilityConfig,
    ReachabilityEvent,
    WsAddress,
)

SERVERS = [Keypair.from_seed(bytes([i]) * 32).peer_id for i in range(7)]
A = WsAddress.parse("/ip4/198.51.100.7/tcp/44000/ws")
R, U = ProbeOutcome.REACHABLE, ProbeOutcome.UNREACHABLE


def _machine() -> Reachability:
    machine = Reachability(ReachabilityConfig())
    machine.handle_candidates_added((A,), now=0.0)
    return machine


def _report(m: Reachability, server: int, outcome: ProbeOutcome, now: float, *,
            other_ip: bool = False) -> list[ReachabilityEvent]:
    result = ProbeResult(A, SERVERS[server], outcome, now, from_other_ip=other_ip)
    return m.handle_probe_result(result, now)


def _changes(events: list[ReachabilityEvent]) -> list[tuple[str, str]]:
    return [(e.old, e.new) for e in events if isinstance(e, ReachabilityChanged)]


def test_two_seen_dial_backs_beat_three_claims() -> None:
    m = _machine()
    for server in (2, 3, 4):
        _report(m, server, U, 1.0)
    assert m.verdict(A) == "unreachable"
    _report(m, 0, R, 2.0, other_ip=True)
    assert m.verdict(A) == "unreachable"  # one dial-back is not yet a verdict
    assert _changes(_report(m, 1, R, 3.0, other_ip=True)) == [("unreachable", "reachable")]
    assert m.nat_status == "public"


def test_a_majority_claiming_failure_flips_a_reachable_node_at_most_once() -> None:
    """2 honest servers (dial-backs from their second IP), 5 claiming E_DIAL_ERROR,
    answering in random order for 200 rounds: one flip at most, into the truth."""
    rng = random.Random(5)
    m = _machine()
    changes = []
    for round_ in range(200):
        for server in rng.sample(range(7), 3):
            honest = server < 2
            changes += _changes(_report(m, server, R if honest else U, float(round_),
                                        other_ip=honest))
    assert m.verdict(A) == "reachable"
    assert len(changes) <= 2 and changes[-1][1] == "reachable", changes


def test_dial_backs_from_the_contacted_ip_only_vote() -> None:
    """An address-dependent filter lets a dial-back from the IP we contacted in: those
    prove less, so three claims still outvote two of them."""
    m = _machine()
    _report(m, 0, R, 1.0)
    _report(m, 1, R, 1.0)
    assert m.verdict(A) == "reachable"
    for server in (2, 3, 4):
        _report(m, server, U, 2.0)
    assert m.verdict(A) == "unreachable"


def test_only_a_reachable_result_comes_from_another_ip() -> None:
    with pytest.raises(LocalProtocolError, match="from_other_ip"):
        ProbeResult(A, SERVERS[0], U, 1.0, from_other_ip=True)
    with pytest.raises(LocalProtocolError, match="from_other_ip"):
        ProbeResult(A, SERVERS[0], R, 1.0, from_other_ip=1)  # type: ignore[arg-type]
