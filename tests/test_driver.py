"""TimeoutDriver: the one loop that runs a sans-io machine's timer (virtual time)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import DriverStatistics, TimeoutDriver
from actors.runtime import TimedMachine


class Alarm:
    """A machine that wants ``handle_timeout`` at each time in ``times`` (in order)."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)
        self.handled: list[float] = []
        self.fixed: float | None = None
        """When set, ``poll_timeout`` always returns it (a machine that never moves on)."""

    def poll_timeout(self) -> float | None:
        if self.fixed is not None:
            return self.fixed
        return self.times[0] if self.times else None

    def handle_timeout(self, now: float) -> list[str]:
        self.handled.append(now)
        due = [t for t in self.times if t <= now]
        self.times = [t for t in self.times if t > now]
        return [f"alarm {t:g}" for t in due]


def test_alarm_is_a_timed_machine() -> None:
    machine: TimedMachine[str] = Alarm()
    assert machine.poll_timeout() is None


async def _start(driver: TimeoutDriver[str],
                 nursery: trio.Nursery) -> list[tuple[float, list[str]]]:
    got: list[tuple[float, list[str]]] = []

    async def collect(commands: list[str]) -> None:
        got.append((trio.current_time(), commands))

    nursery.start_soon(driver.run, collect)
    await trio.testing.wait_all_tasks_blocked()
    return got


async def test_handles_at_once_then_exactly_at_poll_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    machine = Alarm(start + 2.5, start + 7.0)
    driver = TimeoutDriver[str](machine)
    async with trio.open_nursery() as nursery:
        got = await _start(driver, nursery)
        assert machine.handled == [start]  # at once: a new incarnation picks up what is due
        await trio.sleep(10.0)
        nursery.cancel_scope.cancel()
    assert machine.handled == [start, start + 2.5, start + 7.0]
    assert got == [(start + 2.5, ["alarm 2.5"]), (start + 7.0, ["alarm 7"])]
    assert driver.statistics() == DriverStatistics(timeouts_handled=3, wakes=0,
                                                   stale_deadlines=0)


async def test_wake_runs_it_early_and_rereads_poll_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    machine = Alarm(start + 100.0)
    driver = TimeoutDriver[str](machine)
    async with trio.open_nursery() as nursery:
        got = await _start(driver, nursery)
        await trio.sleep(1.0)
        machine.times.insert(0, start + 3.0)  # an input moved the deadline earlier
        driver.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert machine.handled == [start, start + 1.0]  # woken early, at the wake's time
        await trio.sleep(5.0)
        assert got == [(start + 3.0, ["alarm 3"])]
        nursery.cancel_scope.cancel()
    assert driver.statistics().wakes == 1


async def test_a_wake_during_the_callback_is_not_lost(
        autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    machine = Alarm(start + 1.0)
    driver = TimeoutDriver[str](machine)

    async def slow(commands: list[str]) -> None:
        await trio.sleep(0.5)
        driver.wake()  # an input arrived while the commands were being performed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run, slow)
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert machine.handled == [start, start + 1.0, start + 1.5]


async def test_a_deadline_in_the_past_never_spins(
        autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    machine = Alarm()
    machine.fixed = start - 5.0  # a machine bug: the deadline never moves on
    driver = TimeoutDriver[str](machine)
    async with trio.open_nursery() as nursery:
        await _start(driver, nursery)
        await trio.sleep(1000.0)
        assert machine.handled == [start]  # handled once, then waits for a wake only
        driver.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert machine.handled == [start, start + 1000.0]
        nursery.cancel_scope.cancel()
    assert driver.statistics().stale_deadlines == 2


async def test_a_deadline_equal_to_the_time_just_handled_is_stale_too(
        autojump_clock: trio.testing.MockClock) -> None:
    machine = Alarm()
    driver = TimeoutDriver[str](machine)
    async with trio.open_nursery() as nursery:
        machine.fixed = trio.current_time()
        await _start(driver, nursery)
        await trio.sleep(50.0)
        nursery.cancel_scope.cancel()
    assert len(machine.handled) == 1
    assert driver.statistics().stale_deadlines == 1


async def test_stops_on_cancel_and_can_run_again(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    machine = Alarm(start + 1.0, start + 30.0)
    driver = TimeoutDriver[str](machine)
    with trio.move_on_after(10.0) as scope:
        await driver.run(_ignore)
    assert scope.cancelled_caught
    assert machine.handled == [start, start + 1.0]
    with trio.move_on_after(100.0):  # a new incarnation continues the same machine
        await driver.run(_ignore)
    assert machine.handled == [start, start + 1.0, start + 10.0, start + 30.0]


async def test_a_failing_callback_propagates(autojump_clock: trio.testing.MockClock) -> None:
    machine = Alarm(trio.current_time())

    async def boom(commands: list[str]) -> None:
        raise RuntimeError("bug in the actor")

    with pytest.raises(RuntimeError, match="bug in the actor"):
        await TimeoutDriver[str](machine).run(boom)


async def _ignore(commands: list[str]) -> None:
    assert commands  # the driver never hands over an empty batch
