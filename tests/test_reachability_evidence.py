"""Evidence beats a claim: reachability evidence weighed by which dial-back it is about.

Two simulator runs found the rules: in ``liars`` (2 honest AutoNAT servers,
2 that claim every host unreachable, 3 more lying or vanishing) public hosts
stayed ``private`` for good - two verified dial-backs tied two claims and
the hysteresis kept the first, wrong, verdict; under ``churn`` hosts behind
address-restricted NATs turned ``public`` once enough hosts without a second
address (whose dial-backs such a NAT lets in) had answered.
"""

from __future__ import annotations

import random

import pytest

from protocols import (
    DialBackSource,
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
FAR, NEAR = DialBackSource.OTHER_IP, DialBackSource.CONTACTED_IP


def _machine() -> Reachability:
    machine = Reachability(ReachabilityConfig())
    machine.handle_candidates_added((A,), now=0.0)
    return machine


def _report(m: Reachability, server: int, outcome: ProbeOutcome, now: float,
            via: DialBackSource | None = None) -> list[ReachabilityEvent]:
    result = ProbeResult(A, SERVERS[server], outcome, now, via=via)
    return m.handle_probe_result(result, now)


def _changes(events: list[ReachabilityEvent]) -> list[tuple[str, str]]:
    return [(e.old, e.new) for e in events if isinstance(e, ReachabilityChanged)]


def test_two_seen_dial_backs_beat_three_claims() -> None:
    m = _machine()
    for server in (2, 3, 4):
        _report(m, server, U, 1.0, FAR)
    assert m.verdict(A) == "unreachable"
    _report(m, 0, R, 2.0, FAR)
    assert m.verdict(A) == "unreachable"  # one dial-back is not yet a verdict
    assert _changes(_report(m, 1, R, 3.0, FAR)) == [("unreachable", "reachable")]
    assert m.nat_status == "public"


def test_a_majority_claiming_failure_flips_a_reachable_node_at_most_once() -> None:
    """2 honest servers (dial-backs from their second IP), 5 claiming E_DIAL_ERROR,
    answering in random order for 200 rounds: one flip at most, into the truth."""
    rng = random.Random(5)
    m = _machine()
    changes = []
    for round_ in range(200):
        for server in rng.sample(range(7), 3):
            outcome = R if server < 2 else U
            changes += _changes(_report(m, server, outcome, float(round_), FAR))
    assert m.verdict(A) == "reachable"
    assert len(changes) <= 2 and changes[-1][1] == "reachable", changes


def test_dial_backs_from_contacted_ips_cannot_outvote_failures_from_other_ips() -> None:
    """Behind an address-dependent NAT every server without a second address gets its
    dial-back in (from the IP we contacted); two with a second address say theirs
    failed. Five arrivals of the first kind do not make the node public."""
    m = _machine()
    _report(m, 0, U, 1.0, FAR)
    _report(m, 1, U, 1.0, FAR)
    assert m.verdict(A) == "unreachable"
    for server in range(2, 7):
        assert _changes(_report(m, server, R, 2.0, NEAR)) == []
    assert m.verdict(A) == "unreachable"


def test_without_servers_with_a_second_address_the_votes_decide() -> None:
    """The ProbeLab setting (no second addresses): arrivals and failures just vote."""
    m = _machine()
    _report(m, 0, R, 1.0, NEAR)
    _report(m, 1, R, 1.0, NEAR)
    assert m.verdict(A) == "reachable"
    for server in (2, 3, 4):
        _report(m, server, U, 2.0, NEAR)
    assert m.verdict(A) == "unreachable"


def test_via_describes_evidence_only() -> None:
    with pytest.raises(LocalProtocolError, match="via describes evidence"):
        ProbeResult(A, SERVERS[0], ProbeOutcome.TIMEOUT, 1.0, via=FAR)
    with pytest.raises(LocalProtocolError, match="via must be"):
        ProbeResult(A, SERVERS[0], R, 1.0, via=2)  # type: ignore[arg-type]


def test_many_contacted_ip_arrivals_do_not_crowd_out_failures_from_other_ips() -> None:
    """Found under churn: an address keeps the latest evidence of 8 servers, and the
    least recently heard went first - so after a few re-probe rounds through hosts
    without a second address, the two failures from other IPs were dropped and an
    address-restricted host turned public. Evidence about other IPs now goes last."""
    servers = [Keypair.from_seed(bytes([40 + i]) * 32).peer_id for i in range(12)]
    m = _machine()
    for server in servers[:2]:
        m.handle_probe_result(ProbeResult(A, server, U, 1.0, via=FAR), 1.0)
    changes = []
    for i, server in enumerate(servers[2:]):
        now = 2.0 + i
        changes += _changes(m.handle_probe_result(ProbeResult(A, server, R, now, via=NEAR), now))
    assert changes == [] and m.verdict(A) == "unreachable"
    assert set(servers[:2]) <= m.evidence_servers(A, 20.0)


def test_one_failure_from_another_ip_voids_a_public_built_on_contacted_ips() -> None:
    """Found by the simulator once hosts bootstrapped through ``/status``: a host behind
    an address-restricted NAT asked two ordinary hosts (no second address) and a boot
    node. The hosts' dial-backs, from the IPs it had contacted, arrived first and made
    it public; the boot node's failure from its second IP came later, alone, and the
    hysteresis kept the false ``public``. Now that failure voids those arrivals: the
    address is judged afresh (``unknown``), and a second such failure makes it
    ``unreachable`` - one flip, into the truth."""
    m = _machine()
    _report(m, 0, R, 1.0, NEAR)
    assert _changes(_report(m, 1, R, 1.0, NEAR)) == [("unknown", "reachable")]
    assert _changes(_report(m, 2, U, 2.0, FAR)) == [("reachable", "unknown")]
    assert m.nat_status == "unknown"
    _report(m, 3, R, 3.0, NEAR)  # more arrivals of the same kind prove nothing
    assert m.verdict(A) == "unknown"
    assert _changes(_report(m, 4, U, 4.0, FAR)) == [("unknown", "unreachable")]
    assert m.nat_status == "private"


def test_a_failure_from_another_ip_does_not_void_arrivals_from_other_ips() -> None:
    """Rule 3 holds only while such failures outnumber the dial-backs we saw arrive from
    IPs we never contacted: one arrival of that kind keeps the vote as it was."""
    m = _machine()
    _report(m, 0, R, 1.0, FAR)
    _report(m, 1, R, 1.0, NEAR)
    assert m.verdict(A) == "reachable"
    assert _changes(_report(m, 2, U, 2.0, FAR)) == []
    assert m.verdict(A) == "reachable"


def test_contacted_ip_arrivals_wait_for_a_second_ip_probe_in_flight() -> None:
    """Rule 4's wait, found by the churn scenario: an address-restricted host heard two
    ordinary servers (contacted-IP dial-backs) before the boot node's second-IP answer,
    was ``public`` for a second, then flipped. While a second-IP probe is in flight,
    contacted-IP arrivals alone do not make the address reachable."""
    m = _machine()
    assert m.handle_far_probe_started(A, 0.5) == []
    _report(m, 0, R, 1.0, NEAR)
    assert _changes(_report(m, 1, R, 1.0, NEAR)) == [] and m.verdict(A) == "unknown"
    _report(m, 2, U, 1.5, FAR)  # the second-IP answer: address-restricted
    assert m.handle_far_probe_ended(A, 1.5) == [] and m.verdict(A) == "unknown"
    assert m.nat_status == "unknown"  # never public on the way
    held = _machine()  # the probe ends without an answer: the votes decide at once
    held.handle_far_probe_started(A, 0.5)
    _report(held, 0, R, 1.0, NEAR)
    _report(held, 1, R, 1.0, NEAR)
    assert held.verdict(A) == "unknown"
    assert _changes(held.handle_far_probe_ended(A, 16.0)) == [("unknown", "reachable")]
    assert held.nat_status == "public"
    arrived = _machine()  # a second-IP arrival: the wait is over for good
    arrived.handle_far_probe_started(A, 0.5)
    arrived.handle_far_probe_started(A, 0.5)
    _report(arrived, 0, R, 1.0, NEAR)
    _report(arrived, 1, R, 1.2, FAR)
    assert arrived.verdict(A) == "reachable"
    assert arrived.handle_far_probe_ended(A, 2.0) == []
    assert arrived.handle_far_probe_ended(A, 2.0) == []
    assert arrived.handle_far_probe_ended(A, 2.0) == []  # more ends than starts: nothing
    assert arrived.verdict(A) == "reachable"
