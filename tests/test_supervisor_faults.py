"""Supervisor.inject_fault: a deliberate crash takes the path of a real one.

Everything runs in virtual time (``autojump_clock``), guarded by ``trio.fail_after``.
"""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.testing
from supervisor_support import EXACT, GUARD, Boom, count_tasks, wait_until

from actors import ChildSpec, ChildState, InjectedFault, Supervisor, SupervisorEscalation


class Worker:
    """A child with a nursery of its own (one helper task) that records its cleanups."""

    def __init__(self, *, fail_on_cancel: bool = False) -> None:
        self.starts: list[float] = []
        self.cleanups = 0
        self.fail_on_cancel = fail_on_cancel

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts.append(trio.current_time())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.cleanups += 1
            if self.fail_on_cancel:
                raise Boom("while unwinding")


def _running(sup: Supervisor, name: str) -> bool:
    return sup.statistics().child(name).state is ChildState.RUNNING


async def _wait_running(sup: Supervisor, name: str) -> None:
    await wait_until(lambda: _running(sup, name))


async def test_an_injected_fault_is_recorded_logged_backed_off_and_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker = Worker()
    sup = Supervisor([ChildSpec("worker", worker.run)], backoff=EXACT, name="sup")
    with trio.fail_after(GUARD), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            tasks = count_tasks()
            sup.inject_fault("worker", "drill")
            await wait_until(lambda: len(worker.starts) == 2)
            assert worker.cleanups == 1  # the first incarnation unwound its nursery
            assert worker.starts[1] - worker.starts[0] == pytest.approx(0.05)  # the backoff
            await wait_until(lambda: _running(sup, "worker"))
            assert count_tasks() == tasks
            stats = sup.statistics()
            child = stats.child("worker")
            assert (stats.restarts, child.restarts, child.crashes, child.faults_injected) == (
                1, 1, 1, 1)
            assert child.last_error == "InjectedFault(\"fault injected into 'worker': drill\")"
            nursery.cancel_scope.cancel()
    [crash] = [e for e in logs if e["event"] == "child crashed; restarting"]
    assert isinstance(crash["exc_info"], InjectedFault) and crash["actor"] == "worker"
    assert crash["exc_info"].__traceback__ is not None  # raised, not just constructed


async def test_injection_is_refused_unless_the_child_is_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker = Worker()
    sup = Supervisor([ChildSpec("worker", worker.run)], backoff=EXACT)
    with pytest.raises(RuntimeError, match="not running"):
        sup.inject_fault("worker")  # the supervisor has not started it
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            with pytest.raises(KeyError):
                sup.inject_fault("nobody")
            sup.inject_fault("worker")
            with pytest.raises(RuntimeError, match="already has a fault pending"):
                sup.inject_fault("worker")
            await wait_until(lambda: sup.statistics().child("worker").state
                             is ChildState.RESTARTING)
            with pytest.raises(RuntimeError, match="restarting, not running"):
                sup.inject_fault("worker")
            await wait_until(lambda: _running(sup, "worker"))
            assert sup.statistics().child("worker").faults_injected == 1
            nursery.cancel_scope.cancel()


async def test_a_real_error_while_unwinding_is_recorded_instead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker = Worker(fail_on_cancel=True)
    sup = Supervisor([ChildSpec("worker", worker.run)], backoff=EXACT)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            sup.inject_fault("worker")
            await wait_until(lambda: len(worker.starts) == 2)
            child = sup.statistics().child("worker")
            assert (child.crashes, child.faults_injected) == (1, 1)
            assert child.last_error == "Boom('while unwinding')"
            worker.fail_on_cancel = False
            nursery.cancel_scope.cancel()


async def test_spaced_injections_never_spend_the_default_restart_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    workers = {name: Worker() for name in ("a", "b")}
    sup = Supervisor([ChildSpec(name, w.run) for name, w in workers.items()])  # 5 in 10 s
    spacing = sup.within / sup.max_restarts * 1.05
    with trio.fail_after(GUARD * 10), structlog.testing.capture_logs() as logs:  # no rendering
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for round_ in range(100):
                for name in workers:
                    await _wait_running(sup, name)
                    sup.inject_fault(name, f"round {round_}")
                    await trio.sleep(spacing)
            stats = sup.statistics()
            assert (stats.restarts, stats.escalations) == (200, 0)
            assert [c.faults_injected for c in stats.children] == [100, 100]
            nursery.cancel_scope.cancel()
    assert sum(e["event"] == "child crashed; restarting" for e in logs) == 200


async def test_injections_too_close_together_escalate_like_real_crashes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker = Worker()
    sup = Supervisor([ChildSpec("worker", worker.run)], max_restarts=2, backoff=EXACT)

    async def drill() -> None:
        for _ in range(3):
            await _wait_running(sup, "worker")
            sup.inject_fault("worker")
            await wait_until(lambda: not _running(sup, "worker"))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drill)  # ends with its third injection
            with pytest.raises(SupervisorEscalation) as info:
                await sup.run()
    assert isinstance(info.value.__cause__, InjectedFault)
    assert sup.statistics().child("worker").state is ChildState.FAILED
