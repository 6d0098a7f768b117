"""BootstrapPlan and address selection: schedules in exact virtual time, no I/O."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    AddressPolicy,
    Backoff,
    BootstrapPlan,
    FallBackToPersisted,
    FetchOutcome,
    FetchUrl,
    Keypair,
    LocalProtocolError,
    PeerRecord,
    SkipKind,
    WsAddress,
    fallback_addresses,
    select_addresses,
)

A, B = "http://a.example/status", "http://b.example/status"
EXACT = Backoff(initial=1.0, multiplier=2.0, maximum=8.0, jitter=0.0)
REFETCH = Backoff(initial=30.0, multiplier=2.0, maximum=120.0, jitter=0.0)
FAILURES = [o for o in FetchOutcome if not o.useful]


def _plan(*urls: str, target: int = 3) -> BootstrapPlan:
    return BootstrapPlan(urls, target_peers=target, rng=random.Random(7), backoff=EXACT,
                         refetch=REFETCH)


def _due(plan: BootstrapPlan, now: float) -> list[str]:
    """``handle_timeout``: the URLs it asks to fetch."""
    return [c.url for c in plan.handle_timeout(now) if isinstance(c, FetchUrl)]


def _wake(plan: BootstrapPlan, now: float) -> float | None:
    """``poll_timeout`` once time has been handled at ``now``."""
    plan.handle_timeout(now)
    return plan.poll_timeout()


def _finish(plan: BootstrapPlan, url: str, outcome: FetchOutcome, now: float,
            reason: str = "") -> float | None:
    """``handle_fetch_finished``; returns the retry delay after a failure."""
    assert plan.handle_fetch_finished(url, outcome, now, reason) == []
    return None if outcome.useful else plan.retry_at(url) - now


def _addr(peer: Keypair, host: str = "8.8.8.8", port: int = 44000) -> WsAddress:
    return WsAddress.parse(f"/ip4/{host}/tcp/{port}/ws/p2p/{peer.peer_id}")


# --- per-URL backoff ----------------------------------------------------------------


def test_failed_url_backs_off_exponentially_and_success_resets() -> None:
    plan = _plan(A)
    assert _due(plan, 0.0) == [A]
    assert _due(plan, 0.0) == []  # in flight
    now, delays = 0.0, []
    for outcome in (FetchOutcome.TIMEOUT, FetchOutcome.HTTP_ERROR, FetchOutcome.NETWORK_ERROR,
                    FetchOutcome.BAD_DOCUMENT, FetchOutcome.TOO_LARGE):
        now += 0.5  # the fetch took 0.5 s
        delay = _finish(plan, A, outcome, now)
        assert delay is not None
        delays.append(delay)
        assert _wake(plan, now) == now + delay
        assert _due(plan, now + delay - 0.01) == []
        now += delay
        assert _due(plan, now) == [A]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert _finish(plan, A, FetchOutcome.OK, now + 0.5) is None
    assert _wake(plan, now + 0.5) is None  # nothing wanted, connected count unknown
    plan.handle_connected_count(0, 0.0)
    refetch_at = _wake(plan, now + 0.5)
    assert refetch_at is not None
    assert _due(plan, refetch_at) == [A]
    assert _finish(plan, A, FetchOutcome.TIMEOUT, refetch_at + 1) == 1.0  # back to initial


def test_one_urls_failures_never_delay_another() -> None:
    plan = _plan(A, B)
    assert _due(plan, 0.0) == [A, B]
    assert _finish(plan, A, FetchOutcome.TIMEOUT, 10.0) == 1.0
    assert _finish(plan, B, FetchOutcome.HTTP_ERROR, 0.2) == 1.0
    assert _wake(plan, 0.2) == 1.2
    assert _due(plan, 1.2) == [B]
    assert _due(plan, 11.0) == [A]


def test_empty_document_counts_as_failure() -> None:
    plan = _plan(A)
    _due(plan, 0.0)
    assert _finish(plan, A, FetchOutcome.EMPTY, 1.0) == 1.0
    assert plan.fallback_due()


def test_repeated_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="repeat"):
        BootstrapPlan([A, A], target_peers=1, rng=random.Random())


# --- fallback once per outage ------------------------------------------------------------


def test_fallback_once_per_outage() -> None:
    plan = _plan(A, B)
    assert not plan.fallback_due()  # nothing tried yet
    _due(plan, 0.0)
    _finish(plan, A, FetchOutcome.TIMEOUT, 1.0)
    assert not plan.fallback_due()  # B not tried yet
    _finish(plan, B, FetchOutcome.NETWORK_ERROR, 1.0)
    assert plan.fallback_due()
    plan.handle_fallback_sent(0.0)
    assert not plan.fallback_due()
    for now in (2.0, 4.0, 8.0):  # further failures in the same outage: no second fallback
        _due(plan, now)
        _finish(plan, A, FetchOutcome.TIMEOUT, now)
        _finish(plan, B, FetchOutcome.TIMEOUT, now)
        assert not plan.fallback_due()
    _due(plan, 20.0)
    _finish(plan, A, FetchOutcome.OK, 20.0)  # outage over
    _finish(plan, B, FetchOutcome.TIMEOUT, 20.0)
    assert not plan.fallback_due()
    plan.handle_connected_count(0, 0.0)
    _due(plan, 100.0)  # refetch round: A is wanted again and fails: a new outage
    _finish(plan, A, FetchOutcome.HTTP_ERROR, 100.0)
    assert plan.fallback_due()
    plan.handle_fallback_sent(0.0)
    assert plan.statistics().fallbacks == 2


def test_no_urls_means_fallback_at_once_and_nothing_else() -> None:
    plan = _plan()
    plan.handle_connected_count(0, 0.0)
    assert _due(plan, 0.0) == []
    assert plan.fallback_due()
    plan.handle_fallback_sent(0.0)
    assert not plan.fallback_due()
    assert _wake(plan, 0.0) is None


# --- refetch when below target -----------------------------------------------------------


def test_refetch_below_target_respects_the_growing_minimum_interval() -> None:
    plan = _plan(A, target=3)
    _due(plan, 0.0)
    _finish(plan, A, FetchOutcome.OK, 1.0)
    plan.handle_connected_count(1, 0.0)
    assert _wake(plan, 1.0) == 30.0
    assert _due(plan, 29.9) == []
    assert _due(plan, 30.0) == [A]
    _finish(plan, A, FetchOutcome.OK, 31.0)
    assert _wake(plan, 31.0) == 30.0 + 60.0  # interval doubled
    assert _due(plan, 89.0) == []
    assert _due(plan, 90.0) == [A]
    _finish(plan, A, FetchOutcome.OK, 90.0)
    assert _wake(plan, 90.0) == 90.0 + 120.0  # capped at the maximum
    assert plan.statistics().refetch_rounds == 2


def test_reaching_target_stops_refetching_and_resets_the_interval() -> None:
    plan = _plan(A, target=3)
    _due(plan, 0.0)
    _finish(plan, A, FetchOutcome.OK, 1.0)
    plan.handle_connected_count(1, 0.0)
    assert _due(plan, 30.0) == [A]
    _finish(plan, A, FetchOutcome.OK, 30.0)
    plan.handle_connected_count(3, 0.0)
    assert _wake(plan, 30.0) is None
    assert _due(plan, 1000.0) == []
    # dropped below target: refetch at once (30 s since the last round)
    plan.handle_connected_count(2, 1000.0)
    assert _due(plan, 1000.0) == [A]
    _finish(plan, A, FetchOutcome.OK, 1000.0)
    assert _wake(plan, 1000.0) == 1060.0  # the growth started over: 30 s, then 60 s


def test_connected_count_unknown_means_no_refetch() -> None:
    plan = _plan(A)
    _due(plan, 0.0)
    _finish(plan, A, FetchOutcome.OK, 1.0)
    assert _wake(plan, 1.0) is None
    assert _due(plan, 10_000.0) == []


def test_refetch_respects_a_failing_urls_backoff() -> None:
    plan = _plan(A, B, target=3)
    _due(plan, 0.0)
    _finish(plan, A, FetchOutcome.OK, 0.0)
    for now in (0.0, 1.0, 3.0, 7.0, 15.0, 23.0):  # B fails: delays 1, 2, 4, 8, 8, 8
        _finish(plan, B, FetchOutcome.TIMEOUT, now)
        if now < 23.0:
            assert _due(plan, _wake(plan, now) or 0.0) == [B]
    plan.handle_connected_count(0, 0.0)
    assert _due(plan, 30.0) == [A]  # the refetch round; B still waits for its backoff
    assert _due(plan, 30.9) == []
    assert _due(plan, 31.0) == [B]


def test_abandoned_fetches_become_due_again() -> None:
    plan = _plan(A)
    assert _due(plan, 0.0) == [A]
    plan.handle_driver_restart(0.0)
    assert _due(plan, 0.0) == [A]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(FetchOutcome)), st.floats(0, 50),
                          st.integers(0, 5)), max_size=40))
def test_never_asks_to_wake_up_in_the_past(
        steps: list[tuple[FetchOutcome, float, int]]) -> None:
    plan = BootstrapPlan([A, B], target_peers=3, rng=random.Random(1))
    now, finished = 0.0, 0
    in_flight: list[str] = []
    for outcome, elapsed, connected in steps:
        in_flight += _due(plan, now)
        wake = plan.poll_timeout()
        assert wake is None or wake > now
        plan.handle_connected_count(connected, 0.0)
        now += elapsed
        if in_flight:
            delay = _finish(plan, in_flight.pop(0), outcome, now)
            finished += 1
            assert (delay is None) == outcome.useful
            assert delay is None or 0 < delay <= plan.backoff.maximum
    assert plan.statistics().total_fetches == finished
    assert plan.statistics().in_flight == len(in_flight)


def test_statistics_count_outcomes() -> None:
    plan = _plan(A, B)
    _due(plan, 0.0)
    _finish(plan, A, FetchOutcome.OK, 1.0)
    _finish(plan, B, FetchOutcome.TOO_LARGE, 1.0)
    plan.handle_addresses_selected(5, 2, 1.0)
    stats = plan.statistics()
    assert stats.by_outcome() == {
        "ok": 1, "empty": 0, "http_error": 0, "timeout": 0, "too_large": 1,
        "bad_document": 0, "network_error": 0}
    assert (stats.total_fetches, stats.addresses_found, stats.addresses_skipped) == (2, 5, 2)
    assert (stats.failing_urls, stats.in_flight) == (1, 0)


# --- address selection -------------------------------------------------------------------


def test_select_keeps_every_usable_address_shuffled_and_says_why_others_were_skipped() -> None:
    me, peers = Keypair.generate(), [Keypair.generate() for _ in range(20)]
    good = [_addr(p, host=f"8.8.{i}.1") for i, p in enumerate(peers)]
    mine = _addr(me)
    loopback = _addr(peers[0], host="127.0.0.1")
    private = _addr(peers[1], host="10.0.0.1")
    rejected = [("/ip4/1.2.3.4/tcp/44000", "unsupported transport (no /ws or /wss)"),
                ("garbage", "a multiaddr starts with '/': 'garbage'"),
                ("10 more entries", "over limit of 256 addresses")]
    selection = select_addresses([*good, mine, loopback, private], policy=AddressPolicy(),
                                 local_peer=me.peer_id, rng=random.Random(3), rejected=rejected)
    assert sorted(selection.usable, key=str) == sorted(good, key=str)
    assert list(selection.usable) != good  # shuffled (20 items: equal order is ~impossible)
    reasons = {entry.entry: (entry.kind, entry.reason) for entry in selection.skipped}
    assert reasons[str(mine)] == (SkipKind.OWN_PEER_ID, "that is this node's own peer id")
    assert reasons[str(loopback)][0] is SkipKind.NOT_ROUTABLE
    assert "allow_loopback is off" in reasons[str(loopback)][1]
    assert "allow_private is off" in reasons[str(private)][1]
    assert reasons["/ip4/1.2.3.4/tcp/44000"][0] is SkipKind.UNSUPPORTED_TRANSPORT
    assert reasons["garbage"][0] is SkipKind.INVALID
    assert reasons["10 more entries"][0] is SkipKind.OVER_LIMIT
    assert selection.skipped_by_kind() == {
        "unsupported transport": 1, "invalid": 1, "over limit": 1, "own peer id": 1,
        "not routable": 2}


def test_select_follows_the_policy() -> None:
    me, peer = Keypair.generate(), Keypair.generate()
    loopback = _addr(peer, host="127.0.0.1")
    selection = select_addresses([loopback], policy=AddressPolicy(allow_loopback=True),
                                 local_peer=me.peer_id, rng=random.Random())
    assert selection.usable == (loopback,) and selection.skipped == ()


def test_fallback_addresses_most_recent_first_filtered_and_bounded() -> None:
    me = Keypair.generate()
    old, new, local = Keypair.generate(), Keypair.generate(), Keypair.generate()
    records = [
        PeerRecord(old.peer_id, (_addr(old, "8.8.8.1"), _addr(old, "8.8.8.2")), 1.0, 10.0),
        PeerRecord(new.peer_id, (_addr(new, "8.8.8.3"),), 1.0, 20.0),
        PeerRecord(local.peer_id, (_addr(local, "192.168.1.2"),), 1.0, 30.0),
        PeerRecord(me.peer_id, (_addr(me, "8.8.8.4"),), 1.0, 40.0),
    ]
    selection = fallback_addresses(records, policy=AddressPolicy(), local_peer=me.peer_id,
                                   limit=2)
    assert [a.host for a in selection.usable] == ["8.8.8.3", "8.8.8.1"]
    assert selection.skipped_by_kind() == {"own peer id": 1, "not routable": 1, "over limit": 1}


# --- the sans-io contract ---------------------------------------------------------------


def test_handle_timeout_returns_fetches_then_the_fallback_once_per_outage() -> None:
    plan = _plan(A)
    assert plan.handle_timeout(0.0) == [FetchUrl(A)]
    assert plan.handle_fetch_finished(A, FetchOutcome.TIMEOUT, 0.5) == []  # inputs: no work
    assert plan.poll_timeout() == 0.5  # an input asks for handle_timeout at its own time
    assert plan.handle_timeout(0.5) == [FallBackToPersisted()]
    assert plan.poll_timeout() == 1.5  # the retry; never at or before the time just handled
    assert plan.handle_timeout(0.6) == [FallBackToPersisted()]  # until it is reported sent
    plan.handle_fallback_sent(0.6)
    assert plan.handle_timeout(0.7) == []
    assert plan.handle_timeout(1.5) == [FetchUrl(A)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(FetchOutcome)), st.floats(0, 50),
                          st.integers(0, 5), st.booleans()), max_size=40))
def test_poll_timeout_is_never_at_or_before_the_last_handled_time(
        steps: list[tuple[FetchOutcome, float, int, bool]]) -> None:
    plan = BootstrapPlan([A, B], target_peers=3, rng=random.Random(1))
    now = 0.0
    in_flight: list[str] = []
    for outcome, elapsed, connected, jump in steps:
        for command in plan.handle_timeout(now):
            if isinstance(command, FetchUrl):
                in_flight.append(command.url)
            else:
                plan.handle_fallback_sent(now)
        deadline = plan.poll_timeout()
        assert deadline is None or deadline > now
        plan.handle_connected_count(connected, now)
        if in_flight and not jump:
            plan.handle_fetch_finished(in_flight.pop(0), outcome, now + elapsed)
        now = deadline if jump and deadline is not None else now + elapsed


def test_inputs_the_state_does_not_accept_are_local_protocol_errors() -> None:
    plan = _plan(A)
    with pytest.raises(LocalProtocolError, match="not configured"):
        plan.handle_fetch_finished(B, FetchOutcome.OK, 0.0)
    with pytest.raises(LocalProtocolError, match="not in an outage"):
        plan.handle_fallback_sent(0.0)
    plan.handle_timeout(0.0)
    plan.handle_fetch_finished(A, FetchOutcome.TIMEOUT, 1.0)
    plan.handle_fallback_sent(1.0)
    with pytest.raises(LocalProtocolError, match="fell back already"):
        plan.handle_fallback_sent(1.0)


def test_statistics_are_a_frozen_snapshot() -> None:
    plan = _plan(A)
    before = plan.statistics()
    plan.handle_timeout(0.0)
    assert before.in_flight == 0 and plan.statistics().in_flight == 1
    with pytest.raises(AttributeError):
        before.in_flight = 3  # type: ignore[misc]
