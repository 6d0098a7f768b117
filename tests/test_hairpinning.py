"""Sans-io hairpinning: which address is tested, when, and what a result publishes."""

from __future__ import annotations

import itertools

import pytest

from protocols import (
    HairpinningMeasured,
    HairpinOutcome,
    HairpinPlan,
    Keypair,
    LocalProtocolError,
    PublishHairpinning,
    RunHairpinTest,
    WsAddress,
    hairpin_target,
    own_hosts,
)
from protocols.autonat._hairpinning import MAX_GAP, MAX_LOCAL_RETRIES, MIN_GAP

EXTERNAL = WsAddress.parse("/ip4/198.51.100.30/tcp/44000/ws")
OTHER_EXTERNAL = WsAddress.parse("/ip4/198.51.100.31/tcp/44000/ws")
LAN = WsAddress.parse("/ip4/192.168.1.2/tcp/44000/ws")
WILDCARD = WsAddress.parse("/ip4/0.0.0.0/tcp/44000/ws")
LAN_IP = WsAddress.parse("/ip4/192.168.1.2/tcp/0/ws")
PUBLIC_IP = WsAddress.parse("/ip4/198.51.100.30/tcp/0/ws")


def _plan() -> HairpinPlan:
    return HairpinPlan(timeout=5.0)


def _behind_nat(plan: HairpinPlan, reachable: tuple[WsAddress, ...] = (EXTERNAL,),
                now: float = 0.0) -> None:
    plan.handle_addresses(reachable, (WILDCARD,), (LAN_IP,), now)


def _run(plan: HairpinPlan, now: float) -> RunHairpinTest:
    commands = plan.handle_timeout(now)
    tests = [c for c in commands if isinstance(c, RunHairpinTest)]
    assert len(tests) == 1, commands
    return tests[0]


def _published(plan: HairpinPlan, now: float) -> list[PublishHairpinning]:
    return [c for c in plan.handle_timeout(now) if isinstance(c, PublishHairpinning)]


# --- the target ------------------------------------------------------------------------


def test_target_is_the_first_confirmed_address_that_is_not_ours() -> None:
    own = own_hosts((WILDCARD,), (LAN_IP,))
    assert own == {"0.0.0.0", "192.168.1.2"}
    assert hairpin_target((OTHER_EXTERNAL, LAN, EXTERNAL), own) == EXTERNAL
    assert hairpin_target((LAN,), own) is None
    assert hairpin_target((), own) is None


def test_own_hosts_compare_as_ips_and_are_unknown_without_connections() -> None:
    mapped = WsAddress.parse("/ip6/::ffff:198.51.100.30/tcp/0/ws")
    assert hairpin_target((EXTERNAL,), own_hosts((), (mapped,))) is None
    assert own_hosts((WILDCARD,), ()) == frozenset()


def test_target_drops_a_peer_id() -> None:
    with_id = EXTERNAL.with_peer_id(Keypair.generate().peer_id)
    assert hairpin_target((with_id,), frozenset()) == EXTERNAL


@pytest.mark.parametrize(("reachable", "listen", "local_ips"), [
    ((), (WILDCARD,), (LAN_IP,)),  # nothing confirmed (private, or no verdict yet)
    ((EXTERNAL,), (EXTERNAL,), (PUBLIC_IP,)),  # a public host: our own listen address
    ((EXTERNAL,), (WILDCARD,), (PUBLIC_IP,)),  # wildcard listener, our own IP
])
def test_nothing_to_test_without_a_confirmed_external_address(
        reachable: tuple[WsAddress, ...], listen: tuple[WsAddress, ...],
        local_ips: tuple[WsAddress, ...]) -> None:
    plan = _plan()
    plan.handle_addresses(reachable, listen, local_ips, 0.0)
    assert plan.poll_timeout() is None
    assert plan.handle_timeout(100.0) == []
    assert plan.hairpinning is None
    assert plan.statistics().target is None
    assert not plan.statistics().pending


def test_without_local_ips_nothing_is_decided() -> None:
    plan = _plan()
    plan.handle_addresses((EXTERNAL,), (WILDCARD,), (), 0.0)
    assert plan.poll_timeout() is None
    # once decided, losing every connection changes nothing
    _behind_nat(plan)
    test = _run(plan, 0.0)
    plan.handle_test_finished(test, HairpinOutcome.SELF, 0.1)
    assert [p.hairpinning for p in _published(plan, 0.1)] == [True]
    plan.handle_addresses((EXTERNAL,), (WILDCARD,), (), 1.0)
    assert plan.handle_timeout(1.0) == []
    assert plan.hairpinning is True


# --- outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "value"), [
    (HairpinOutcome.SELF, True),
    (HairpinOutcome.FAILED, False),
    (HairpinOutcome.OTHER_PEER, False),
])
def test_an_outcome_publishes_its_answer_once(outcome: HairpinOutcome, value: bool) -> None:
    plan = _plan()
    _behind_nat(plan)
    assert plan.poll_timeout() == 0.0  # the first test runs at once
    test = _run(plan, 0.0)
    assert test == RunHairpinTest(EXTERNAL, 5.0)
    assert plan.statistics().pending and plan.statistics().running
    assert plan.handle_timeout(0.05) == []  # one test at a time
    plan.handle_test_finished(test, outcome, 0.1, "detail")
    [published] = _published(plan, 0.1)
    assert published == PublishHairpinning(value, EXTERNAL, outcome, "detail")
    assert plan.hairpinning is value
    # one test per address: nothing more, ever, while it stays
    _behind_nat(plan, now=1000.0)
    assert plan.poll_timeout() is None
    assert plan.handle_timeout(5000.0) == []
    stats = plan.statistics()
    assert stats.tests == 1 and dict(stats.outcomes) == {outcome.value: 1}
    assert not stats.pending


def test_a_local_error_is_retried_a_bounded_number_of_times() -> None:
    plan = _plan()
    _behind_nat(plan)
    now = 0.0
    starts = []
    for _ in range(MAX_LOCAL_RETRIES):
        deadline = plan.poll_timeout()
        assert deadline is not None
        now = max(now, deadline)
        test = _run(plan, now)
        starts.append(now)
        plan.handle_test_finished(test, HairpinOutcome.LOCAL_ERROR, now + 0.1)
        assert _published(plan, now + 0.1) == []
        assert plan.hairpinning is None
    assert plan.poll_timeout() is None  # given up on this address
    assert plan.handle_timeout(now + MAX_GAP * 4) == []
    assert starts[1] - starts[0] >= MIN_GAP  # with the gap in between


def _next_test(plan: HairpinPlan, now: float) -> tuple[float, RunHairpinTest]:
    """Drive the plan's timer (publications on the way) until it starts a test."""
    for _ in range(10):
        deadline = plan.poll_timeout()
        assert deadline is not None
        now = max(now, deadline)
        tests = [c for c in plan.handle_timeout(now) if isinstance(c, RunHairpinTest)]
        if tests:
            return now, tests[0]
    raise AssertionError("no test started")


# --- changes ------------------------------------------------------------------------------


def test_a_new_address_unpublishes_then_retests_after_the_gap() -> None:
    plan = _plan()
    _behind_nat(plan)
    test = _run(plan, 0.0)
    plan.handle_test_finished(test, HairpinOutcome.SELF, 0.1)
    _published(plan, 0.1)
    _behind_nat(plan, (OTHER_EXTERNAL,), now=1.0)
    published = _published(plan, 1.0)
    assert published == [PublishHairpinning(None, None)]  # not carried over
    assert plan.poll_timeout() == MIN_GAP  # the gap after the first start
    assert plan.statistics().pending
    test = _run(plan, MIN_GAP)
    assert test.addr == OTHER_EXTERNAL
    plan.handle_test_finished(test, HairpinOutcome.FAILED, MIN_GAP + 0.1)
    assert [p.hairpinning for p in _published(plan, MIN_GAP + 0.1)] == [False]


def test_losing_the_confirmed_address_publishes_null() -> None:
    plan = _plan()
    _behind_nat(plan)
    plan.handle_test_finished(_run(plan, 0.0), HairpinOutcome.FAILED, 0.1)
    _published(plan, 0.1)
    _behind_nat(plan, (), now=2.0)
    assert _published(plan, 2.0) == [PublishHairpinning(None, None)]
    assert plan.hairpinning is None and plan.poll_timeout() is None


def test_a_result_for_a_stale_address_is_dropped() -> None:
    plan = _plan()
    _behind_nat(plan)
    test = _run(plan, 0.0)
    _behind_nat(plan, (OTHER_EXTERNAL,), now=0.5)
    assert plan.poll_timeout() is None  # the running test blocks the next one
    plan.handle_test_finished(test, HairpinOutcome.SELF, 1.0)
    assert _published(plan, 1.0) == []
    assert plan.hairpinning is None
    assert _run(plan, MIN_GAP).addr == OTHER_EXTERNAL


def test_a_flapping_address_backs_off_exponentially_and_never_loops() -> None:
    plan = _plan()
    starts = []
    now = 0.0
    for index in range(12):
        _behind_nat(plan, (EXTERNAL if index % 2 == 0 else OTHER_EXTERNAL,), now=now)
        now, test = _next_test(plan, now)
        starts.append(now)
        plan.handle_test_finished(test, HairpinOutcome.FAILED, now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[:4] == [MIN_GAP, 2 * MIN_GAP, 4 * MIN_GAP, 8 * MIN_GAP]
    assert max(gaps) == MAX_GAP
    # a quiet MAX_GAP resets it
    now += 2 * MAX_GAP
    _behind_nat(plan, (EXTERNAL,), now=now)
    test = _run(plan, now)
    plan.handle_test_finished(test, HairpinOutcome.FAILED, now)
    _behind_nat(plan, (OTHER_EXTERNAL,), now=now + 1)
    _published(plan, now + 1)
    assert plan.poll_timeout() == now + MIN_GAP


def test_a_restart_makes_the_interrupted_test_due_again() -> None:
    plan = _plan()
    _behind_nat(plan)
    test = _run(plan, 0.0)
    plan.handle_driver_restart()
    assert plan.poll_timeout() == MIN_GAP
    with pytest.raises(LocalProtocolError):
        plan.handle_test_finished(test, HairpinOutcome.SELF, 0.1)  # not in flight any more
    assert _run(plan, MIN_GAP).addr == EXTERNAL


def test_the_measured_event_validates() -> None:
    assert HairpinningMeasured(None).addr is None
    with pytest.raises(LocalProtocolError):
        HairpinningMeasured(True)  # a result needs its address
    with pytest.raises(LocalProtocolError):
        HairpinningMeasured(1, EXTERNAL)  # type: ignore[arg-type]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        HairpinPlan(timeout=0.0)
    with pytest.raises(LocalProtocolError):
        HairpinPlan(min_gap=10.0, max_gap=5.0)
