"""Tests of actors._supervisor: restart types, backoff, intensity, escalation,
nesting, mailboxes across incarnations, shutdown order and start-phase failures.

Everything runs in virtual time (``autojump_clock`` or a ``MockClock`` with
``autojump_threshold=0``), and every test is guarded by ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import random
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

from actors import (
    ActorGone,
    ChildSpec,
    ChildStartError,
    ChildState,
    Mailbox,
    MailboxReceiver,
    Restart,
    Supervisor,
    SupervisorEscalation,
)
from protocols import Backoff

GUARD = 1000.0  # virtual seconds
EXACT = Backoff(initial=0.05, multiplier=2.0, maximum=5.0, jitter=0.0)


class Boom(Exception):
    """The failure our scripted children raise."""


@dataclass
class Script:
    """A scripted child: one step per incarnation, then it runs forever.

    Steps: ``"raise"`` (after started), ``"return"`` (after started),
    ``"early"`` (raise before started), ``"silent"`` (never call started),
    a float (run that long after started, then raise), ``"forever"``.
    """

    steps: list[str | float]
    starts: list[float] = field(default_factory=list)
    live: int = 0
    forever: trio.Event = field(default_factory=trio.Event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        n = len(self.starts)
        self.starts.append(trio.current_time())
        step = self.steps[n] if n < len(self.steps) else "forever"
        self.live += 1
        try:
            if step == "early":
                raise Boom(f"early {n}")
            if step == "silent":
                await trio.sleep_forever()
            task_status.started()
            if step == "raise":
                raise Boom(f"boom {n}")
            if step == "return":
                return
            if isinstance(step, float):
                await trio.sleep(step)
                raise Boom(f"late {n}")
            self.forever.set()
            await trio.sleep_forever()
        finally:
            self.live -= 1


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def wait_until(predicate: Callable[[], bool], step: float = 0.001) -> None:
    while not predicate():
        await trio.sleep(step)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- restart types --------------------------------------------------------------


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


async def test_shutdown_is_reverse_start_order_one_child_at_a_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[tuple[float, str]] = []

    def child(name: str) -> Callable[..., Awaitable[None]]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await trio.sleep(1)  # slow start
            events.append((trio.current_time(), f"started {name}"))
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(1)  # slow cleanup
                events.append((trio.current_time(), f"stopped {name}"))

        return run

    sup = Supervisor([ChildSpec(n, child(n)) for n in ("a", "b", "c")])
    reached = False
    with trio.fail_after(GUARD):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                assert trio.current_time() == pytest.approx(3.0)
                scope.cancel()
                await trio.sleep_forever()
            reached = True
    assert scope.cancelled_caught and not reached  # Cancelled was not swallowed
    assert [what for _, what in events] == [
        "started a",
        "started b",
        "started c",
        "stopped c",  # reverse order, and each one only after the next finished
        "stopped b",
        "stopped a",
    ]
    assert [t for t, _ in events] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])


async def test_no_task_left_running_after_the_supervisor_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def with_helpers(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(trio.sleep_forever)
            task_status.started()

    flaky = Script(["raise", 0.5, "early"])
    inner = Supervisor([ChildSpec("flaky", flaky.run)], backoff=EXACT, name="inner")
    sup = Supervisor(
        [ChildSpec("helpers", with_helpers), ChildSpec("inner", inner.run)], backoff=EXACT
    )
    baseline = count_tasks()
    with trio.fail_after(GUARD):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                assert count_tasks() > baseline + 4
                await trio.sleep(0.3)  # in the middle of flaky's restarts
                scope.cancel()
    assert count_tasks() == baseline
    assert flaky.live == 0
    assert not sup.statistics().running and not inner.statistics().running


async def test_cancelled_while_a_child_is_restarting_or_starting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for steps in (["raise"], ["silent"]):
        script = Script(list(steps))
        sup = Supervisor(
            [ChildSpec("c", script.run)], backoff=Backoff(initial=10.0, maximum=10.0, jitter=0.0)
        )
        with trio.fail_after(GUARD), trio.move_on_after(1) as scope:
            await sup.run()
        assert scope.cancelled_caught
        assert script.live == 0


async def test_failure_while_being_stopped_is_logged_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def bad_cleanup(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def fails_on_cancel() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise Boom("cleanup failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fails_on_cancel)
            nursery.start_soon(trio.sleep_forever)
            task_status.started()

    sup = Supervisor([ChildSpec("c", bad_cleanup)])
    with trio.fail_after(GUARD), structlog.testing.capture_logs() as logs:
        with trio.move_on_after(1) as scope:
            await sup.run()
    assert scope.cancelled_caught
    stats = sup.statistics().child("c")
    assert (stats.restarts, stats.last_error) == (0, "Boom('cleanup failed')")
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "child failed while being stopped"
    ]


async def test_base_exceptions_propagate_unchanged_after_orderly_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[str] = []

    async def steady(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            events.append("steady stopped")

    async def interrupted(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(1)
        events.append("interrupt")
        raise KeyboardInterrupt

    sup = Supervisor([ChildSpec("steady", steady), ChildSpec("int", interrupted)])
    with trio.fail_after(GUARD), pytest.raises(KeyboardInterrupt):
        await sup.run()
    assert events == ["interrupt", "steady stopped"]
    assert sup.statistics().child("int").restarts == 0


# -- start phase --------------------------------------------------------------------


async def test_initial_start_failures_are_restarted_before_the_next_child_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = Script(["early", "early"])
    second = Script([])
    sup = Supervisor(
        [ChildSpec("first", first.run), ChildSpec("second", second.run)],
        max_restarts=5,
        backoff=EXACT,
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert trio.current_time() == pytest.approx(0.15)
            assert first.starts == pytest.approx([0.0, 0.05, 0.15])
            assert second.starts == pytest.approx([0.15])
            stats = sup.statistics().child("first")
            assert (stats.restarts, stats.crashes, stats.state) == (2, 2, ChildState.RUNNING)
            nursery.cancel_scope.cancel()


async def test_child_that_keeps_failing_to_start_escalates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    never = Script(["early"] * 100)
    later = Script([])
    sup = Supervisor(
        [ChildSpec("never", never.run), ChildSpec("later", later.run)],
        max_restarts=3,
        backoff=EXACT,
    )
    with trio.fail_after(GUARD), pytest.raises(SupervisorEscalation) as info:
        await sup.run()
    assert str(info.value.__cause__) == "early 3"
    assert later.starts == []  # never got its turn


async def test_start_timeout_is_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    silent = Script(["silent"] * 100)
    sup = Supervisor(
        [ChildSpec("silent", silent.run, start_timeout=2.0)], max_restarts=1, backoff=EXACT
    )
    with trio.fail_after(GUARD), pytest.raises(SupervisorEscalation) as info:
        await sup.run()
    cause = info.value.__cause__
    assert isinstance(cause, ChildStartError) and "within 2.0 s" in str(cause)
    assert silent.starts == pytest.approx([0.0, 2.05])
    assert trio.current_time() == pytest.approx(4.05)
    assert silent.live == 0


async def test_returning_without_started_is_a_failure_even_for_transient(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def lazy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal calls
        calls += 1

    sup = Supervisor(
        [ChildSpec("lazy", lazy, restart=Restart.TRANSIENT)], max_restarts=2, backoff=EXACT
    )
    with trio.fail_after(GUARD), pytest.raises(SupervisorEscalation) as info:
        await sup.run()
    assert isinstance(info.value.__cause__, ChildStartError)
    assert "returned without calling" in str(info.value.__cause__)
    assert calls == 3


async def test_start_failure_on_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([1.0, "early", "early"])
    sup = Supervisor([ChildSpec("c", script.run)], max_restarts=5, backoff=EXACT)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert trio.current_time() == 0
            await script.forever.wait()
            assert script.starts == pytest.approx([0.0, 1.05, 1.15, 1.35])
            stats = sup.statistics().child("c")
            assert (stats.restarts, stats.incarnation, stats.state) == (3, 4, ChildState.RUNNING)
            assert stats.last_error == "Boom('early 2')"
            nursery.cancel_scope.cancel()


async def test_temporary_child_failing_to_start_does_not_block_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    temp = Script(["early"])
    after = Script([])
    sup = Supervisor(
        [ChildSpec("temp", temp.run, restart=Restart.TEMPORARY), ChildSpec("after", after.run)]
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert after.starts == [0.0]
            assert sup.statistics().child("temp").state is ChildState.FAILED
            nursery.cancel_scope.cancel()


# -- misc API ---------------------------------------------------------------------------


async def test_supervisor_without_children_or_with_finished_children_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        await Supervisor([]).run()
        once = Script(["return"])
        sup = Supervisor([ChildSpec("once", once.run, restart=Restart.TRANSIENT)])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
        assert sup.statistics().child("once").state is ChildState.STOPPED


async def test_running_twice_at_once_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    sup = Supervisor([ChildSpec("c", Script([]).run)])
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            with pytest.raises(RuntimeError):
                await sup.run()
            nursery.cancel_scope.cancel()


def test_configuration_is_validated() -> None:
    run = Script([]).run
    with pytest.raises(ValueError):
        Supervisor([ChildSpec("a", run), ChildSpec("a", run)])
    with pytest.raises(ValueError):
        Supervisor([], max_restarts=-1)
    with pytest.raises(ValueError):
        Supervisor([], within=0)
    with pytest.raises(ValueError):
        ChildSpec("", run)
    with pytest.raises(ValueError):
        ChildSpec("a", run, start_timeout=0)
    with pytest.raises(TypeError):
        ChildSpec("a", run, restart="permanent")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ChildSpec("a", None)  # type: ignore[arg-type]
    stats = Supervisor([ChildSpec("a", run)], name="s").statistics()
    with pytest.raises(FrozenInstanceError):
        stats.restarts = 1  # type: ignore[misc]
    with pytest.raises(KeyError):
        stats.child("missing")
    assert stats.child("a").state is ChildState.STOPPED


# -- random failure schedules -----------------------------------------------------------

# One schedule per child: each incarnation either starts and crashes after a
# lifetime (float), crashes before started ("early"), or returns ("return").
step_strategy = st.one_of(
    st.floats(0.0, 3.0).map(lambda x: round(x, 2)), st.sampled_from(["early", "return"])
)


@dataclass
class Observed:
    failures: list[tuple[float, str]] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    returned: set[str] = field(default_factory=set)


def scripted(
    name: str, steps: list[str | float], observed: Observed
) -> Callable[..., Awaitable[None]]:
    incarnation = 0

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal incarnation
        n = incarnation
        incarnation += 1
        observed.starts.append(trio.current_time())
        step = steps[n] if n < len(steps) else "forever"
        label = f"{name}#{n}"
        if step == "early":
            observed.failures.append((trio.current_time(), label))
            raise Boom(label)
        task_status.started()
        if step == "forever":
            await trio.sleep_forever()
        if step == "return":
            observed.failures.append((trio.current_time(), label))
            observed.returned.add(label)
            return
        assert isinstance(step, float)
        await trio.sleep(step)
        observed.failures.append((trio.current_time(), label))
        raise Boom(label)

    return run


def first_over_budget(failures: list[tuple[float, str]], max_restarts: int, within: float) -> int:
    """Index of the first failure that a correct supervisor must escalate on."""
    granted: list[float] = []
    for index, (t, _label) in enumerate(failures):
        if sum(1 for g in granted if t - g < within) >= max_restarts:
            return index
        granted.append(t)
    return -1


@settings(max_examples=50, deadline=None)
@given(
    schedules=st.lists(st.lists(step_strategy, max_size=8), min_size=1, max_size=3),
    max_restarts=st.integers(0, 4),
    within=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    seed=st.integers(0, 1000),
)
def test_random_failure_schedules_respect_the_budget(
    schedules: list[list[str | float]], max_restarts: int, within: float, seed: int
) -> None:
    observed = Observed()
    specs = [
        ChildSpec(f"c{i}", scripted(f"c{i}", steps, observed)) for i, steps in enumerate(schedules)
    ]
    sup = Supervisor(
        specs,
        max_restarts=max_restarts,
        within=within,
        backoff=Backoff(initial=0.05, maximum=0.5, jitter=0.5),
        rng=random.Random(seed),
    )
    outcome: dict[str, Any] = {}

    async def main() -> None:
        with trio.fail_after(GUARD):
            try:
                with trio.move_on_after(200):  # long past every scripted failure
                    await sup.run()
                outcome["ended"] = "cancelled"
            except SupervisorEscalation as exc:
                outcome["ended"] = "escalated"
                outcome["cause"] = None if exc.__cause__ is None else str(exc.__cause__)
                outcome["at"] = trio.current_time()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    event(outcome["ended"])

    failures = sorted(observed.failures)
    index = first_over_budget(failures, max_restarts, within)
    if index < 0:
        assert outcome["ended"] == "cancelled"
        assert sup.statistics().restarts == len(failures)
        assert len(observed.starts) == sum(len(s) for s in schedules) + len(schedules)
    else:
        assert outcome["ended"] == "escalated"
        t_escalation = failures[index][0]
        # nothing restarted after the decisive failure; same-instant failures may tie
        assert all(t == t_escalation for t, _ in failures[index:])
        decisive = {label for t, label in failures if t == t_escalation}
        if outcome["cause"] is None:  # a PERMANENT child returned one time too many
            assert decisive & observed.returned
        else:
            assert outcome["cause"] in decisive
        assert all(start <= t_escalation for start in observed.starts)
        assert sup.statistics().restarts == index
    # the budget itself, directly: no window of `within` seconds holds too many restarts
    restart_times = [t for t, _ in failures[: index if index >= 0 else len(failures)]]
    for t in restart_times:
        assert sum(1 for g in restart_times if 0 <= t - g < within) <= max_restarts


# -- the README example ------------------------------------------------------------------


@pytest.fixture
def demo_module() -> Iterator[Any]:
    path = Path(__file__).parents[1] / "examples" / "supervisor_demo.py"
    spec = importlib.util.spec_from_file_location("supervisor_demo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


async def test_supervisor_demo_runs(
    autojump_clock: trio.testing.MockClock, demo_module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(GUARD), structlog.testing.capture_logs():
        await demo_module.main()
    out = capsys.readouterr().out
    assert "total before the crash: 5" in out
    assert "total after the restart: 7" in out
    assert "restarts=1" in out
