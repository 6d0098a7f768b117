"""Supervisor lifecycle: shutdown order, no leftover tasks, start-phase failures, config.

Virtual time throughout, every test guarded by ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import FrozenInstanceError

import pytest
import structlog
import trio
import trio.testing
from supervisor_support import EXACT, GUARD, Boom, Script, count_tasks

from actors import (
    ChildSpec,
    ChildStartError,
    ChildState,
    Restart,
    Supervisor,
    SupervisorEscalation,
)
from protocols import Backoff


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


