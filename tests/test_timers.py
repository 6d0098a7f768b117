"""The run's timer service: many deadlines served by one task, on Trio's clock."""

from __future__ import annotations

import gc
import math
import weakref

import trio
import trio.testing

from actors.runtime import TIMER_TASK_NAME, call_at, current_timer_service


def _tasks_named(name: str) -> int:
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += task.name == name
        stack.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return count


async def test_callbacks_fire_at_their_deadlines_in_order(autojump_clock: trio.testing.MockClock
                                                          ) -> None:
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0)):
        call_at(start + delay, lambda name=name: fired.append((name, trio.current_time() - start)))
    await trio.sleep(10)
    assert fired == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert _tasks_named(TIMER_TASK_NAME) == 1


async def test_reschedule_and_cancel(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[str] = []
    start = trio.current_time()
    earlier = call_at(start + 5, lambda: fired.append("earlier"))
    later = call_at(start + 1, lambda: fired.append("later"))
    gone = call_at(start + 2, lambda: fired.append("gone"))
    earlier.reschedule(start + 0.5)
    later.reschedule(start + 4)
    gone.cancel()
    assert gone.deadline == math.inf
    await trio.sleep(0.75)
    assert fired == ["earlier"] and earlier.deadline == math.inf
    await trio.sleep(10)
    assert fired == ["earlier", "later"]
    service = current_timer_service()
    assert service is not None and len(service) == 0 and service.fired == 2


async def test_a_failing_callback_is_logged_and_the_service_goes_on(
        autojump_clock: trio.testing.MockClock) -> None:
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug")

    start = trio.current_time()
    call_at(start + 1, broken)
    call_at(start + 2, lambda: fired.append("after"))
    await trio.sleep(5)
    assert fired == ["after"]


async def test_cancelled_timers_do_not_keep_their_owners_alive(
        autojump_clock: trio.testing.MockClock) -> None:
    class Owner:
        def tick(self) -> None: ...

    owners = [Owner() for _ in range(1000)]
    refs = [weakref.ref(owner) for owner in owners]
    far = trio.current_time() + 3600
    timers = [call_at(far, owner.tick) for owner in owners]
    keep = call_at(far, lambda: None)
    for timer in timers:
        timer.cancel()
    del owners, timers
    gc.collect()
    assert sum(ref() is not None for ref in refs) < 100  # stale entries were compacted away
    assert keep.deadline == far
    service = current_timer_service()
    assert service is not None and len(service) == 1


async def test_closed_timers_let_go_of_their_owners_at_once_among_many_live_ones(
        autojump_clock: trio.testing.MockClock) -> None:
    class Owner:
        def tick(self) -> None: ...

    far = trio.current_time() + 3600
    live = [call_at(far, lambda: None) for _ in range(1000)]  # no compaction with these
    owners = [Owner() for _ in range(500)]
    refs = [weakref.ref(owner) for owner in owners]
    timers = [call_at(far, owner.tick) for owner in owners]
    for timer in timers:
        timer.close()
    del owners
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0
    service = current_timer_service()
    assert service is not None and len(service) == len(live)
    timers[0].reschedule(trio.current_time() + 1)  # a closed timer may still be moved
    await trio.sleep(2)
    assert service.fired == 1


async def test_moving_a_timer_many_times_keeps_the_heap_bounded(
        autojump_clock: trio.testing.MockClock) -> None:
    timer = call_at(trio.current_time() + 10, lambda: None)
    for step in range(10_000):
        timer.reschedule(trio.current_time() + 10 + step % 7)
    service = current_timer_service()
    assert service is not None
    assert len(service._heap) <= 100
