"""A private node's choice of relays (sans-io): diversity then latency, renewal, backoff,
replacement, release when public."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import Backoff, Keypair, LocalProtocolError, PeerId
from protocols.relay import RelayPlanner, RelayState, ReserveOn


def peer(n: int) -> PeerId:
    return Keypair.from_seed(n.to_bytes(32, "big")).peer_id


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def planner(wanted: int = 2) -> RelayPlanner:
    return RelayPlanner(backoff=Backoff(initial=10.0, maximum=80.0, jitter=0.0),
                        rng=random.Random(1), wanted=wanted)


def test_nothing_happens_while_public_or_unknown() -> None:
    plan = planner()
    assert plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.05, 0.0) == []
    assert plan.poll_timeout() is None and plan.handle_timeout(100.0) == []
    assert plan.handle_reachability(False, 1.0) == []


def test_private_reserves_on_two_relays_diverse_first_then_fastest() -> None:
    plan = planner()
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.010, 0.0)  # fastest
    plan.handle_candidate(peer(2), ip("198.51.100.2"), 0.020, 0.0)  # same /24 as 1
    plan.handle_candidate(peer(3), ip("203.0.113.1"), 0.200, 0.0)  # slow, other subnet
    commands = plan.handle_reachability(True, 1.0)
    assert commands == [ReserveOn(peer(1), False), ReserveOn(peer(3), False)]
    assert plan.state(peer(2)) is RelayState.CANDIDATE


def test_a_candidate_arriving_later_fills_the_gap() -> None:
    plan = planner()
    plan.handle_reachability(True, 0.0)
    assert plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 1.0) == [
        ReserveOn(peer(1), False)]
    assert plan.handle_candidate(peer(2), ip("203.0.113.1"), 0.01, 2.0) == [
        ReserveOn(peer(2), False)]
    assert plan.handle_candidate(peer(3), ip("192.0.2.1"), 0.001, 3.0) == []  # two asked


def test_reservations_are_renewed_halfway() -> None:
    plan = planner(wanted=1)
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 0.0)
    plan.handle_reachability(True, 0.0)
    assert plan.handle_reserved(peer(1), ttl=3600, now=1.0) == []
    assert plan.held() == (peer(1),)
    assert plan.poll_timeout() == 1801.0
    assert plan.handle_timeout(1800.0) == []
    assert plan.handle_timeout(1801.0) == [ReserveOn(peer(1), True)]
    assert plan.held() == (peer(1),)  # still advertised while renewing
    plan.handle_reserved(peer(1), ttl=3600, now=1802.0)
    assert plan.poll_timeout() == 3602.0


def test_a_refused_relay_backs_off_and_another_is_asked() -> None:
    plan = planner(wanted=1)
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 0.0)
    plan.handle_candidate(peer(2), ip("203.0.113.1"), 0.05, 0.0)
    assert plan.handle_reachability(True, 0.0) == [ReserveOn(peer(1), False)]
    assert plan.handle_reserve_failed(peer(1), 1.0) == [ReserveOn(peer(2), False)]
    assert plan.state(peer(1)) is RelayState.BACKOFF
    assert plan.handle_reserve_failed(peer(2), 2.0) == []
    assert plan.poll_timeout() == 11.0  # peer(1): 10 s after its first failure
    assert plan.handle_timeout(11.0) == [ReserveOn(peer(1), False)]
    plan.handle_reserve_failed(peer(1), 12.0)
    assert plan.poll_timeout() == 12.0  # peer(2) is due (2 + 10)
    plan.handle_timeout(12.0)
    plan.handle_reserve_failed(peer(2), 12.5)
    assert plan.poll_timeout() == 32.0  # peer(1): doubled, 20 s after 12


def test_an_abandoned_request_asks_no_other_until_the_next_timeout() -> None:
    plan = planner(wanted=1)
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 0.0)
    plan.handle_candidate(peer(2), ip("203.0.113.1"), 0.05, 0.0)
    plan.handle_reachability(True, 0.0)
    assert plan.handle_reserve_failed(peer(1), 1.0, refill=False) == []
    assert plan.state(peer(2)) is RelayState.CANDIDATE
    assert plan.handle_timeout(1.0) == [ReserveOn(peer(2), False)]  # a restart's first call


def test_a_lost_relay_is_replaced() -> None:
    plan = planner(wanted=1)
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 0.0)
    plan.handle_candidate(peer(2), ip("203.0.113.1"), 0.05, 0.0)
    plan.handle_reachability(True, 0.0)
    plan.handle_reserved(peer(1), 3600, 1.0)
    assert plan.handle_candidate_gone(peer(1), 5.0) == [ReserveOn(peer(2), False)]
    assert plan.held() == () and plan.statistics().lost == 1


def test_becoming_public_releases_everything_and_late_answers_are_ignored() -> None:
    plan = planner()
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 0.0)
    plan.handle_candidate(peer(2), ip("203.0.113.1"), 0.05, 0.0)
    plan.handle_reachability(True, 0.0)
    plan.handle_reserved(peer(1), 3600, 1.0)
    assert plan.handle_reachability(False, 2.0) == []
    assert plan.held() == () and plan.poll_timeout() is None
    assert plan.handle_reserved(peer(2), 3600, 3.0) == []  # asked before we became public
    assert plan.held() == ()
    # private again: both are asked anew
    assert len(plan.handle_reachability(True, 4.0)) == 2


def test_answers_nobody_asked_for_raise() -> None:
    plan = planner()
    with pytest.raises(LocalProtocolError, match="nobody asked"):
        plan.handle_reserved(peer(1), 60, 0.0)
    plan.handle_candidate(peer(1), ip("198.51.100.1"), 0.01, 0.0)
    with pytest.raises(LocalProtocolError, match="nobody asked for \\(candidate\\)"):
        plan.handle_reserve_failed(peer(1), 0.0)


@given(st.lists(st.tuples(st.sampled_from(["cand", "gone", "ok", "fail", "tick", "pub",
                                           "priv"]),
                          st.integers(0, 5)), max_size=60))
def test_never_more_than_wanted_relays_are_held_or_asked(
        steps: list[tuple[str, int]]) -> None:
    plan = planner(wanted=2)
    asked: set[PeerId] = set()
    now = 0.0
    for action, n in steps:
        now += 7.0
        commands: list[ReserveOn] = []
        if action == "cand":
            commands = plan.handle_candidate(peer(n), ip(f"198.51.{n}.1"), n / 100, now)
        elif action == "gone":
            commands = plan.handle_candidate_gone(peer(n), now)
            asked.discard(peer(n))
        elif action in ("ok", "fail") and peer(n) in asked:
            asked.discard(peer(n))
            commands = (plan.handle_reserved(peer(n), 60, now) if action == "ok"
                        else plan.handle_reserve_failed(peer(n), now))
        elif action == "tick":
            commands = plan.handle_timeout(now)
        elif action in ("pub", "priv"):
            commands = plan.handle_reachability(action == "priv", now)
        asked |= {c.relay for c in commands}
        counted = [p for p in (peer(i) for i in range(6))
                   if plan.state(p) in (RelayState.RESERVING, RelayState.HELD,
                                        RelayState.RENEWING)]
        assert len(counted) <= 2
        assert len(plan.held()) <= 2
