"""Supervisor: restart types, backoff, intensity, escalation, nesting, mailboxes.

Everything runs in virtual time (``autojump_clock`` or a ``MockClock`` with
``autojump_threshold=0``), and every test is guarded by ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable

import pytest
import structlog
import trio
import trio.testing
from supervisor_support import EXACT, GUARD, Boom, Script, gaps, wait_until

from actors import (
    ActorGone,
    ChildSpec,
    ChildState,
    Mailbox,
    MailboxReceiver,
    Restart,
    Supervisor,
    SupervisorEscalation,
)
from protocols import Backoff


@pytest.mark.parametrize(
    ("restart", "steps", "incarnations", "restarts", "final"),
    [
        (Restart.PERMANENT, ["raise", "raise", "raise"], 4, 3, ChildState.RUNNING),
        (Restart.PERMANENT, ["return", "return"], 3, 2, ChildState.RUNNING),
        (Restart.PERMANENT, ["raise", "return", "early"], 4, 3, ChildState.RUNNING),
        (Restart.TRANSIENT, ["raise", "raise", "return"], 3, 2, ChildState.STOPPED),
        (Restart.TRANSIENT, ["return"], 1, 0, ChildState.STOPPED),
        (Restart.TRANSIENT, ["early", "raise"], 3, 2, ChildState.RUNNING),
        (Restart.TEMPORARY, ["raise"], 1, 0, ChildState.FAILED),
        (Restart.TEMPORARY, ["return"], 1, 0, ChildState.STOPPED),
        (Restart.TEMPORARY, ["early"], 1, 0, ChildState.FAILED),
    ],
)
async def test_exact_restart_counts_per_restart_type(
    autojump_clock: trio.testing.MockClock,
    restart: Restart,
    steps: list[str | float],
    incarnations: int,
    restarts: int,
    final: ChildState,
) -> None:
    script = Script(steps)
    sup = Supervisor([ChildSpec("c", script.run, restart=restart)], max_restarts=10, backoff=EXACT)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            await trio.sleep(100)  # far longer than every backoff involved
            stats = sup.statistics().child("c")
            assert len(script.starts) == incarnations
            assert (stats.incarnation, stats.restarts, stats.state) == (
                incarnations,
                restarts,
                final,
            )
            assert sup.statistics().running is (final is ChildState.RUNNING)
            nursery.cancel_scope.cancel()
    assert script.live == 0


# -- backoff in virtual time ------------------------------------------------------


async def test_restart_delays_follow_the_policy(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(["raise"] * 8)
    policy = Backoff(initial=0.05, multiplier=2.0, maximum=1.0, jitter=0.0)
    sup = Supervisor([ChildSpec("c", script.run)], max_restarts=100, within=10.0, backoff=policy)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await script.forever.wait()
            nursery.cancel_scope.cancel()
    assert gaps(script.starts) == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


async def test_backoff_resets_after_a_quiet_period(autojump_clock: trio.testing.MockClock) -> None:
    # crash, crash (fast), then run 30 s quietly, then crash: back to 0.05
    script = Script(["raise", "raise", 30.0, "raise"])
    policy = Backoff(initial=0.05, maximum=5.0, jitter=0.0, reset_after=10.0)
    sup = Supervisor([ChildSpec("c", script.run)], max_restarts=10, backoff=policy)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await script.forever.wait()
            nursery.cancel_scope.cancel()
    assert gaps(script.starts) == pytest.approx([0.05, 0.1, 30.0 + 0.05, 0.1])


async def test_jittered_delays_are_bounded_and_come_from_the_injected_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(["raise"] * 6)
    policy = Backoff(initial=0.05, maximum=5.0, jitter=0.5)
    sup = Supervisor(
        [ChildSpec("c", script.run)], max_restarts=100, backoff=policy, rng=random.Random(1234)
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await script.forever.wait()
            nursery.cancel_scope.cancel()
    observed = gaps(script.starts)
    for attempt, delay in enumerate(observed):
        base = policy.base_delay(attempt)
        assert base * 0.5 <= delay + 1e-9 and delay <= base + 1e-9
    reference_rng = random.Random(1234)
    schedule = policy.schedule()
    expected = [schedule.next_delay(0.0, reference_rng) for _ in observed]
    assert observed == pytest.approx(expected)
    assert len({round(d / policy.base_delay(i), 6) for i, d in enumerate(observed)}) > 1


# -- intensity and escalation --------------------------------------------------------


async def test_intensity_exceeded_escalates_with_the_childs_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(["raise"] * 10)
    sup = Supervisor(
        [ChildSpec("worker", script.run)], max_restarts=2, within=10.0, backoff=EXACT, name="sup"
    )
    with (
        trio.fail_after(GUARD),
        structlog.testing.capture_logs() as logs,
        pytest.raises(SupervisorEscalation) as info,
    ):
        await sup.run()
    escalation = info.value
    assert isinstance(escalation.__cause__, Boom)
    assert str(escalation.__cause__) == "boom 2"  # the third failure, after 2 restarts
    assert (escalation.supervisor, escalation.child) == ("sup", "worker")
    assert len(script.starts) == 3
    stats = sup.statistics()
    assert (stats.restarts, stats.escalations, stats.running) == (2, 1, False)
    child = stats.child("worker")
    assert (child.state, child.crashes, child.last_error) == (
        ChildState.FAILED,
        3,
        "Boom('boom 2')",
    )
    crashes = [e for e in logs if e["event"] == "child crashed; restarting"]
    assert [(e["actor"], e["incarnation"], e["next_delay"]) for e in crashes] == [
        ("worker", 1, 0.05),
        ("worker", 2, 0.1),
    ]
    assert all(isinstance(e["exc_info"], Boom) for e in crashes)
    final = [e for e in logs if e["event"] == "restart intensity exceeded; escalating"]
    assert len(final) == 1 and final[0]["exc_info"] is escalation.__cause__


async def test_restarts_spread_over_time_do_not_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a crash every ~6 s with max 1 restart per 5 s: never more than 1 per window
    script = Script([6.0] * 5)
    sup = Supervisor([ChildSpec("c", script.run)], max_restarts=1, within=5.0, backoff=EXACT)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await script.forever.wait()
            assert sup.statistics().child("c").restarts == 5
            nursery.cancel_scope.cancel()


async def test_single_exception_groups_from_a_childs_nursery_are_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def fail() -> None:
            raise Boom("inner")

        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
            nursery.start_soon(trio.sleep_forever)

    sup = Supervisor([ChildSpec("c", child)], max_restarts=0, backoff=EXACT)
    with trio.fail_after(GUARD), pytest.raises(SupervisorEscalation) as info:
        await sup.run()
    assert type(info.value.__cause__) is Boom
    assert sup.statistics().child("c").last_error == "Boom('inner')"


async def test_escalation_stops_the_other_children_in_reverse_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[str] = []

    def steady(name: str) -> Callable[..., Awaitable[None]]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            events.append(f"start {name}")
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                events.append(f"stop {name}")

        return run

    failing = Script([1.0] * 5)
    sup = Supervisor(
        [
            ChildSpec("a", steady("a")),
            ChildSpec("bad", failing.run),
            ChildSpec("c", steady("c")),
        ],
        max_restarts=1,
        backoff=EXACT,
    )
    with trio.fail_after(GUARD), pytest.raises(SupervisorEscalation):
        await sup.run()
    assert events == ["start a", "start c", "stop c", "stop a"]
    assert [c.state for c in sup.statistics().children] == [
        ChildState.STOPPED,
        ChildState.FAILED,
        ChildState.STOPPED,
    ]


# -- nesting -------------------------------------------------------------------------


async def test_nested_supervisor_escalation_is_a_failure_of_the_outer_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(["raise"] * 100)
    inner = Supervisor([ChildSpec("leaf", script.run)], max_restarts=1, backoff=EXACT, name="inner")
    outer = Supervisor([ChildSpec("inner", inner.run)], max_restarts=2, backoff=EXACT, name="outer")
    with trio.fail_after(GUARD), pytest.raises(SupervisorEscalation) as info:
        await outer.run()
    outer_escalation = info.value
    assert outer_escalation.supervisor == "outer"
    inner_escalation = outer_escalation.__cause__
    assert isinstance(inner_escalation, SupervisorEscalation)
    assert inner_escalation.supervisor == "inner"
    assert isinstance(inner_escalation.__cause__, Boom)
    # 3 runs of the inner supervisor (1 + 2 restarts), each 2 leaf incarnations
    assert len(script.starts) == 6
    assert outer.statistics().child("inner").restarts == 2
    assert inner.statistics().escalations == 3
    assert inner.statistics().child("leaf").restarts == 3  # cumulative across runs
    assert script.live == 0


async def test_nested_start_waits_for_the_whole_subtree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leaf = Script(["early", "early"])  # ready only at 0.05 + 0.1
    other = Script([])
    inner = Supervisor([ChildSpec("leaf", leaf.run)], backoff=EXACT, name="inner")
    outer = Supervisor(
        [ChildSpec("inner", inner.run), ChildSpec("other", other.run)], backoff=EXACT
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(outer.run)
            assert trio.current_time() == pytest.approx(0.15)
            assert other.starts == pytest.approx([0.15])  # started after "inner" was ready
            assert outer.statistics().child("inner").restarts == 0  # the inner absorbed it
            nursery.cancel_scope.cancel()


# -- mailboxes across incarnations ----------------------------------------------------


async def test_message_sent_during_a_restart_reaches_the_next_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[str] = Mailbox(4, name="inbox")
    seen: list[tuple[int, str]] = []
    incarnation = 0

    async def actor(
        inbox: MailboxReceiver[str],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        nonlocal incarnation
        incarnation += 1
        task_status.started()
        async for message in inbox:
            seen.append((incarnation, message))
            if message == "crash":
                raise Boom("asked to")

    sup = Supervisor(
        [ChildSpec("actor", functools.partial(actor, mailbox.receiver()), mailbox=mailbox)],
        backoff=Backoff(initial=2.0, jitter=0.0),
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await mailbox.send("a")
            await mailbox.send("crash")
            await wait_until(lambda: sup.statistics().child("actor").state is ChildState.RESTARTING)
            await mailbox.send("b")  # nobody is receiving right now
            assert mailbox.statistics().buffered == 1
            await wait_until(lambda: len(seen) == 3)
            nursery.cancel_scope.cancel()
    assert seen == [(1, "a"), (1, "crash"), (2, "b")]
    assert trio.current_time() >= 2.0


async def test_temporary_child_exit_makes_its_mailbox_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    stop = trio.Event()

    async def actor(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await stop.wait()

    steady = Script([])
    sup = Supervisor(
        [
            ChildSpec("temp", actor, restart=Restart.TEMPORARY, mailbox=mailbox),
            ChildSpec("steady", steady.run),
        ]
    )
    blocked_error: list[BaseException] = []

    async def blocked_sender() -> None:
        try:
            await mailbox.send(2)
        except ActorGone as exc:
            blocked_error.append(exc)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await mailbox.send(1)
            nursery.start_soon(blocked_sender)
            await trio.sleep(1)
            assert blocked_error == []  # blocked: the mailbox is full
            stop.set()
            await wait_until(lambda: bool(blocked_error))
            with pytest.raises(ActorGone):
                await mailbox.send(3)
            assert sup.statistics().child("temp").state is ChildState.STOPPED
            nursery.cancel_scope.cancel()


async def test_mailbox_is_gone_after_the_supervisor_ends_and_revived_on_rerun(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    script = Script([])
    sup = Supervisor([ChildSpec("c", script.run, mailbox=mailbox)])
    with trio.fail_after(GUARD):
        for _ in range(2):
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                mailbox.send_nowait(1)
                nursery.cancel_scope.cancel()
            with pytest.raises(ActorGone):
                mailbox.send_nowait(1)


# -- shutdown -----------------------------------------------------------------------
