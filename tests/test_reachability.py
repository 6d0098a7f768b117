"""Reachability: evidence, thresholds, hysteresis, lying servers, expiry, probe schedule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    DialResponse,
    DialStatus,
    Keypair,
    LocalProtocolError,
    NatStatusChanged,
    PeerId,
    ProbeOutcome,
    ProbeResult,
    Reachability,
    ReachabilityChanged,
    ReachabilityConfig,
    ReachabilityEvent,
    ResponseStatus,
    WsAddress,
    probe_outcome,
)

SERVERS = [Keypair.generate().peer_id for _ in range(8)]
A = WsAddress.parse("/ip4/198.51.100.7/tcp/44000/ws")
B = WsAddress.parse("/ip4/198.51.100.7/tcp/51000/ws")
R, U = ProbeOutcome.REACHABLE, ProbeOutcome.UNREACHABLE


def _machine(*addrs: WsAddress, **config: object) -> Reachability:
    machine = Reachability(ReachabilityConfig(**config))  # type: ignore[arg-type]
    machine.handle_candidates_added(addrs or (A,), now=0.0)
    return machine


def _report(
    m: Reachability, server: PeerId, outcome: ProbeOutcome, now: float, addr: WsAddress = A
) -> list[ReachabilityEvent]:
    return m.handle_probe_result(ProbeResult(addr, server, outcome, now), now)


def _changes(events: list[ReachabilityEvent]) -> list[tuple[str, str]]:
    return [(e.old, e.new) for e in events if isinstance(e, ReachabilityChanged)]


def test_agreeing_servers_reach_verdict_exactly_at_threshold() -> None:
    m = _machine()
    assert _report(m, SERVERS[0], R, 1.0) == []
    assert m.verdict(A) == "unknown" and m.nat_status == "unknown"
    events = _report(m, SERVERS[1], R, 2.0)
    assert events == [
        ReachabilityChanged(A, "unknown", "reachable", 2.0, 2, 0, "evidence"),
        NatStatusChanged("unknown", "public", 2.0),
    ]
    view = m.snapshot()
    assert view.reachable_addrs == (A,) and view.nat_status == "public"


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_threshold_is_exact(threshold: int) -> None:
    m = _machine(threshold=threshold)
    for i in range(threshold - 1):
        _report(m, SERVERS[i], U, float(i))
        assert m.verdict(A) == "unknown"
    _report(m, SERVERS[threshold - 1], U, 10.0)
    assert m.verdict(A) == "unreachable" and m.nat_status == "private"


def test_same_server_twice_is_one_vote() -> None:
    m = _machine()
    _report(m, SERVERS[0], R, 1.0)
    _report(m, SERVERS[0], R, 2.0)
    assert m.verdict(A) == "unknown"
    assert m.snapshot().addresses[0].reachable_votes == 1


def test_contrary_evidence_must_outnumber() -> None:
    m = _machine()
    _report(m, SERVERS[0], R, 1.0)
    _report(m, SERVERS[1], U, 1.0)
    _report(m, SERVERS[2], U, 1.0)
    assert m.verdict(A) == "unreachable"  # 2 >= threshold and 2 > 1
    _report(m, SERVERS[3], R, 2.0)  # 2 vs 2: keep the verdict (hysteresis)
    assert m.verdict(A) == "unreachable"
    events = _report(m, SERVERS[4], R, 3.0)  # 3 vs 2: flips
    assert _changes(events) == [("unreachable", "reachable")]
    assert NatStatusChanged("private", "public", 3.0) in events


def test_split_evidence_gives_no_verdict() -> None:
    m = _machine(threshold=3)
    for i, outcome in enumerate((R, U, R, U)):
        _report(m, SERVERS[i], outcome, float(i))
    assert m.verdict(A) == "unknown" and m.nat_status == "unknown"


@pytest.mark.parametrize("outcome", [ProbeOutcome.REFUSED, ProbeOutcome.TIMEOUT,
                                     ProbeOutcome.ERROR])
def test_silent_servers_are_not_evidence(outcome: ProbeOutcome) -> None:
    m = _machine()
    for server in SERVERS:
        assert _report(m, server, outcome, 1.0) == []
    assert m.verdict(A) == "unknown"
    _report(m, SERVERS[0], R, 2.0)
    _report(m, SERVERS[1], R, 2.0)
    _report(m, SERVERS[0], outcome, 3.0)  # a later timeout does not erase a vote
    assert m.snapshot().addresses[0].reachable_votes == 2


def test_lying_servers_never_make_us_public() -> None:
    m = _machine()
    for round_ in range(20):
        for server in SERVERS:
            _report(m, server, ProbeOutcome.LIED, float(round_))
    assert m.nat_status == "unknown"
    assert m.distrusted_servers(20.0) == frozenset(SERVERS)
    assert m.snapshot().statistics.distrusted_servers == len(SERVERS)


def test_liar_is_distrusted_for_a_period_and_its_claims_are_dropped() -> None:
    m = _machine(distrust_period=100.0)
    liar = SERVERS[0]
    _report(m, liar, U, 1.0)
    _report(m, SERVERS[1], U, 1.0)
    assert m.verdict(A) == "unreachable"
    events = _report(m, liar, ProbeOutcome.LIED, 2.0)
    assert events == []  # one vote left: hysteresis keeps the verdict
    assert m.snapshot().addresses[0].unreachable_votes == 1
    _report(m, liar, R, 3.0)  # ignored while distrusted
    _report(m, SERVERS[2], R, 3.0)
    assert m.snapshot().addresses[0].reachable_votes == 1
    assert m.snapshot().statistics.ignored == 1
    m.handle_timeout(102.0)
    assert liar not in m.distrusted_servers(102.0)
    _report(m, liar, R, 103.0)
    assert m.verdict(A) == "reachable"


def test_dropping_a_liars_claims_can_return_address_to_unknown() -> None:
    m = _machine()
    _report(m, SERVERS[0], U, 1.0)
    _report(m, SERVERS[1], U, 1.0)
    _report(m, SERVERS[0], ProbeOutcome.LIED, 2.0)
    events = _report(m, SERVERS[1], ProbeOutcome.LIED, 3.0)
    assert events == [ReachabilityChanged(A, "unreachable", "unknown", 3.0, 0, 0, "distrusted"),
                      NatStatusChanged("private", "unknown", 3.0)]


def test_results_for_non_candidates_and_stale_results_are_ignored() -> None:
    m = _machine(evidence_ttl=100.0)
    _report(m, SERVERS[0], R, 1.0, addr=B)
    _report(m, SERVERS[1], R, 1.0, addr=B)
    assert m.verdict(B) == "unknown"
    stale = ProbeResult(A, SERVERS[0], R, at=0.0)
    m.handle_probe_result(stale, now=100.0)
    assert m.snapshot().statistics.ignored == 3


def test_peer_id_suffix_is_ignored() -> None:
    m = _machine()
    me = Keypair.generate().peer_id
    _report(m, SERVERS[0], R, 1.0, addr=A.with_peer_id(me))
    _report(m, SERVERS[1], R, 1.0, addr=A.with_peer_id(me))
    assert m.reachable_addrs == (A,)


def test_expiry_keeps_verdict_until_all_evidence_expired() -> None:
    m = _machine(evidence_ttl=100.0)
    _report(m, SERVERS[0], R, 0.0)
    _report(m, SERVERS[1], R, 50.0)
    assert m.handle_timeout(99.0) == []
    assert m.handle_timeout(100.0) == []  # one vote left: still reachable
    assert m.verdict(A) == "reachable"
    assert m.snapshot().addresses[0].reachable_votes == 1
    events = m.handle_timeout(150.0)
    assert events == [ReachabilityChanged(A, "reachable", "unknown", 150.0, 0, 0, "expired"),
                      NatStatusChanged("public", "unknown", 150.0)]


def test_expiry_never_flips_to_the_opposite_verdict() -> None:
    m = _machine(evidence_ttl=100.0)
    _report(m, SERVERS[0], R, 0.0)
    _report(m, SERVERS[1], R, 0.0)
    _report(m, SERVERS[2], R, 0.0)
    _report(m, SERVERS[3], U, 60.0)
    m.handle_timeout(120.0)  # the reachable votes expired, one unreachable vote left
    assert m.verdict(A) == "reachable"


def test_nat_status_public_beats_private() -> None:
    m = _machine(A, B)
    for server in SERVERS[:2]:
        _report(m, server, U, 1.0, addr=A)
    assert m.nat_status == "private"
    for server in SERVERS[2:4]:
        _report(m, server, R, 2.0, addr=B)
    view = m.snapshot()
    assert view.nat_status == "public" and view.nat_status_since == 2.0
    assert view.reachable_addrs == (B,) and view.unreachable_addrs == (A,)


def test_genuine_change_flips_after_threshold() -> None:
    m = _machine(threshold=2)
    for server in SERVERS[:5]:
        _report(m, server, R, 1.0)
    flips = []
    for i, server in enumerate(SERVERS[:5]):
        flips += _changes(_report(m, server, U, 10.0 + i))
        expected = "unreachable" if i >= 2 else "reachable"  # 3 vs 2 after the third
        assert m.verdict(A) == expected, i
    assert flips == [("reachable", "unreachable")]


def _seeded_flips(seed: int, truth: ProbeOutcome, rounds: int = 200) -> tuple[int, Reachability]:
    """5 servers; in each round 3 random ones answer, each answer honest or noise."""
    rng = random.Random(seed)
    m = _machine(evidence_ttl=600.0)
    noise = (ProbeOutcome.TIMEOUT, ProbeOutcome.REFUSED, ProbeOutcome.ERROR)
    flips = 0
    confirmed = False
    for round_ in range(rounds):
        now = 30.0 * round_
        for server in rng.sample(SERVERS[:5], 3):
            outcome = truth if rng.random() < 0.5 else rng.choice(noise)
            for event in _report(m, server, outcome, now):
                if isinstance(event, ReachabilityChanged):
                    flips += confirmed
                    confirmed = True
        m.handle_timeout(now)
    return flips, m


@pytest.mark.parametrize("seed", range(10))
def test_no_flapping_when_servers_answer_at_random(seed: int) -> None:
    for truth, verdict in ((R, "reachable"), (U, "unreachable")):
        flips, m = _seeded_flips(seed, truth)
        assert flips == 0
        assert m.verdict(A) == verdict


def test_two_lying_servers_cannot_flip_three_honest_ones() -> None:
    """3 honest servers (truly reachable) answer at random; 2 claim E_DIAL_ERROR at random."""
    rng = random.Random(7)
    m = _machine()
    flips_after_all_heard = 0
    for round_ in range(300):
        now = float(round_)
        for i in rng.sample(range(5), 3):
            outcome = R if i < 3 else U
            if rng.random() < 0.3:
                outcome = ProbeOutcome.TIMEOUT
            events = _report(m, SERVERS[i], outcome, now)
            if len(m.evidence_servers(A, now) & set(SERVERS[:3])) == 3:
                flips_after_all_heard += len(_changes(events))
    assert m.verdict(A) == "reachable"
    assert flips_after_all_heard <= 1  # at most the one flip into the truth


def test_five_of_seven_unreliable_servers() -> None:
    """5 of 7 unreliable (timeouts, refusals, OK without a dial-back).

    The case of (docs/architecture.md, "Numbers to beat").
    """
    rng = random.Random(3)
    noise = (ProbeOutcome.TIMEOUT, ProbeOutcome.REFUSED, ProbeOutcome.LIED)
    servers = [Keypair.generate().peer_id for _ in range(7)]
    for truth, verdict in ((R, "reachable"), (U, "unreachable")):
        m = _machine()
        changes = []
        for round_ in range(100):
            for i, server in enumerate(servers):
                outcome = truth if i < 2 else rng.choice(noise)
                changes += _changes(_report(m, server, outcome, float(round_)))
        assert changes == [("unknown", verdict)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(list(ProbeOutcome))), max_size=60))
def test_no_public_without_two_servers_seeing_a_dial_back(
    script: list[tuple[int, ProbeOutcome]],
) -> None:
    m = _machine()
    for step, (server, outcome) in enumerate(script):
        _report(m, SERVERS[server], outcome, float(step))
        if m.nat_status == "public":
            honest = {SERVERS[s] for s, o in script[: step + 1] if o is R}
            assert len(honest) >= 2
    view = m.snapshot()
    assert view.reachable_addrs == tuple(a.addr for a in view.addresses
                                         if a.verdict == "reachable")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from([R, U])), max_size=40))
def test_verdict_matches_the_vote_rule(script: list[tuple[int, ProbeOutcome]]) -> None:
    m = _machine()
    latest: dict[int, ProbeOutcome] = {}
    previous = "unknown"
    for step, (server, outcome) in enumerate(script):
        _report(m, SERVERS[server], outcome, float(step))
        latest[server] = outcome
        yes = sum(o is R for o in latest.values())
        no = len(latest) - yes
        expected = ("reachable" if yes >= 2 and yes > no
                    else "unreachable" if no >= 2 and no > yes else previous)
        assert m.verdict(A) == expected
        previous = expected


# --- candidates and schedule ---------------------------------------------------


def test_new_candidates_are_due_at_once_unknown_first() -> None:
    m = _machine(A)
    _report(m, SERVERS[0], R, 0.0)
    _report(m, SERVERS[1], R, 0.0)
    m.handle_candidates_added([B], now=5.0)
    assert m.addresses_needing_probe(4.0) == []  # A is due at 60, B at 5
    assert m.addresses_needing_probe(5.0) == [B]
    assert m.addresses_needing_probe(60.0) == [B, A]


def test_unknown_address_retries_on_the_retry_backoff() -> None:
    m = _machine()
    times = []
    now = 0.0
    for _ in range(8):
        assert m.addresses_needing_probe(now) == [A]
        assert m.handle_probe_started(A, now) == []
        due = m.next_probe_at()
        assert due is not None
        assert m.addresses_needing_probe(due - 0.001) == []
        times.append(due - now)
        now = due
    assert times == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert m.next_probe_at() == now


def test_confirmed_address_reprobes_with_backoff_and_resets_on_change() -> None:
    m = _machine()
    m.handle_probe_started(A, 0.0)
    _report(m, SERVERS[0], R, 1.0)
    _report(m, SERVERS[1], R, 1.0)
    assert m.snapshot().addresses[0].next_probe_at == 61.0
    now, intervals = 61.0, []
    for _ in range(7):
        m.handle_probe_started(A, now)
        due = m.next_probe_at()
        assert due is not None
        intervals.append(due - now)
        now = due
    assert intervals == [60.0, 120.0, 240.0, 480.0, 960.0, 1800.0, 1800.0]
    for server in SERVERS[:3]:
        _report(m, server, U, now)
    assert m.verdict(A) == "unreachable"
    assert m.snapshot().addresses[0].next_probe_at == now + 60.0
    m.handle_probe_started(A, now + 60.0)
    assert m.next_probe_at() == now + 120.0


def test_address_returning_to_unknown_is_due_immediately() -> None:
    m = _machine(evidence_ttl=100.0)
    _report(m, SERVERS[0], R, 0.0)
    _report(m, SERVERS[1], R, 0.0)
    m.handle_probe_started(A, 60.0)
    m.handle_timeout(100.0)
    assert m.addresses_needing_probe(100.0) == [A]


def test_candidate_set_removes_vanished_addresses() -> None:
    m = _machine(A, B)
    _report(m, SERVERS[0], R, 0.0, addr=A)
    _report(m, SERVERS[1], R, 0.0, addr=A)
    events = m.handle_candidates([B], now=5.0)
    assert events == [ReachabilityChanged(A, "reachable", "unknown", 5.0, 2, 0, "removed"),
                      NatStatusChanged("public", "unknown", 5.0)]
    assert m.candidates == (B,)
    assert m.handle_probe_started(A, 6.0) == []  # not a candidate: nothing scheduled
    assert m.addresses_needing_probe(6.0) == [B]


def test_candidate_and_evidence_bounds() -> None:
    m = Reachability(ReachabilityConfig(max_addrs=3, max_servers_per_addr=3))
    addrs = [WsAddress.parse(f"/ip4/198.51.100.7/tcp/{40000 + i}/ws") for i in range(5)]
    m.handle_candidates_added(addrs[:3], now=0.0)
    _report(m, SERVERS[0], R, 1.0, addr=addrs[0])
    _report(m, SERVERS[1], R, 1.0, addr=addrs[0])
    m.handle_candidates_added(addrs[3:], now=2.0)  # evicts unknown addrs[1] and addrs[2] first
    assert m.candidates == tuple(sorted((addrs[0], addrs[3], addrs[4]), key=str))
    for server in SERVERS[2:8]:
        _report(m, server, U, 3.0, addr=addrs[0])
    assert m.evidence_servers(addrs[0], 3.0) == frozenset(SERVERS[5:8])
    assert m.verdict(addrs[0]) == "unreachable"


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ReachabilityConfig(threshold=0)
    with pytest.raises(ValueError):
        ReachabilityConfig(threshold=4, max_servers_per_addr=3)
    with pytest.raises(ValueError):
        ReachabilityConfig(evidence_ttl=0.0)
    with pytest.raises(LocalProtocolError):  # an event we build: our bug, not a config value
        ProbeResult(A, SERVERS[0], R, at=float("nan"))


# --- classifying a probe ---------------------------------------------------------


def _response(status: ResponseStatus, dial: DialStatus = DialStatus.UNUSED) -> DialResponse:
    return DialResponse(status=status, addr_idx=0, dial_status=dial)


@pytest.mark.parametrize(
    ("response", "verified", "timed_out", "expected"),
    [
        (_response(ResponseStatus.OK, DialStatus.OK), True, False, R),
        (_response(ResponseStatus.OK, DialStatus.E_DIAL_ERROR), True, False, R),
        (None, True, True, R),
        (_response(ResponseStatus.OK, DialStatus.OK), False, False, ProbeOutcome.LIED),
        (_response(ResponseStatus.OK, DialStatus.E_DIAL_ERROR), False, False, U),
        (_response(ResponseStatus.OK, DialStatus.E_DIAL_BACK_ERROR), False, False,
         ProbeOutcome.ERROR),
        (_response(ResponseStatus.E_DIAL_REFUSED), False, False, ProbeOutcome.REFUSED),
        (_response(ResponseStatus.E_REQUEST_REJECTED), False, False, ProbeOutcome.REFUSED),
        (_response(ResponseStatus.E_INTERNAL_ERROR), False, False, ProbeOutcome.ERROR),
        (None, False, True, ProbeOutcome.TIMEOUT),
        (None, False, False, ProbeOutcome.ERROR),
    ],
)
def test_probe_outcome_table(
    response: DialResponse | None, verified: bool, timed_out: bool, expected: ProbeOutcome
) -> None:
    assert probe_outcome(response, dial_back_verified=verified, timed_out=timed_out) is expected
