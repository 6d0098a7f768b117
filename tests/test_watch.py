"""Watch: latest-value semantics, slow subscribers, wait_for, close."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import Watch, WatchClosed


async def collect(watch: Watch[int], out: list[int], delay: float = 0.0) -> None:
    async for value in watch.subscribe():
        out.append(value)
        if delay:
            await trio.sleep(delay)


async def test_get_set_and_version() -> None:
    watch: Watch[int] = Watch()
    assert watch.version == 0
    with pytest.raises(LookupError):
        watch.get()
    watch.set(1)
    watch.set(2)
    assert (watch.get(), watch.version) == (2, 2)
    assert Watch(7).version == 1


async def test_subscriber_gets_current_value_then_each_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = Watch(0)
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, watch, seen)
        for value in range(1, 4):
            await trio.sleep(1)
            watch.set(value)
        await trio.sleep(1)
        watch.close()
    assert seen == [0, 1, 2, 3]


async def test_slow_subscriber_skips_intermediate_values_but_gets_the_latest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = Watch(0)
    slow: list[int] = []
    fast: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, watch, slow, 10.0)
        nursery.start_soon(collect, watch, fast)
        await trio.sleep(1)
        for value in range(1, 21):
            watch.set(value)
            await trio.sleep(1)
        await trio.sleep(30)
        assert slow[-1] == 20
        watch.close()
    assert fast == list(range(21))
    assert slow[0] == 0 and slow[-1] == 20
    assert len(slow) < 6  # it woke every 10 s, not once per value
    assert slow == sorted(set(slow))


async def test_close_delivers_the_unseen_latest_value_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = Watch(0)
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, watch, seen, 5.0)
        await trio.sleep(1)
        watch.set(1)
        watch.set(2)
        watch.close()
    assert seen == [0, 2]


async def test_subscription_on_an_empty_watch_waits_for_the_first_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch: Watch[int] = Watch()
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, watch, seen)
        await trio.sleep(5)
        assert seen == []
        assert watch.statistics().tasks_waiting == 1
        watch.set(42)
        await trio.sleep(1)
        watch.close()
    assert seen == [42]
    assert watch.statistics().tasks_waiting == 0


async def test_subscribe_after_close_yields_the_last_value_and_ends() -> None:
    watch = Watch(3)
    watch.close()
    watch.close()  # idempotent
    assert [value async for value in watch.subscribe()] == [3]
    empty: Watch[int] = Watch()
    empty.close()
    assert [value async for value in empty.subscribe()] == []


async def test_set_after_close_raises() -> None:
    watch = Watch(1)
    watch.close()
    with pytest.raises(WatchClosed):
        watch.set(2)
    assert watch.get() == 1
    assert isinstance(WatchClosed(), trio.ClosedResourceError)


async def test_wait_for_returns_the_current_value_when_it_matches() -> None:
    watch = Watch(10)
    assert await watch.wait_for(lambda v: v >= 10) == 10


async def test_wait_for_waits_for_a_matching_value(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch(0)
    result: list[int] = []

    async def waiter() -> None:
        result.append(await watch.wait_for(lambda v: v % 5 == 0 and v > 0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        for value in range(1, 8):
            await trio.sleep(1)
            watch.set(value)
    assert result == [5]


async def test_wait_for_raises_when_closed_first(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch(0)

    async def closer() -> None:
        await trio.sleep(3)
        watch.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(closer)
        with pytest.raises(WatchClosed):
            await watch.wait_for(lambda v: v > 0)


async def test_wait_for_is_cancellable(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch(0)
    with trio.move_on_after(5) as scope:
        await watch.wait_for(lambda v: v > 0)
    assert scope.cancelled_caught
    assert watch.statistics().tasks_waiting == 0


async def test_next_value_is_a_checkpoint(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch(0)
    with trio.CancelScope() as scope:
        scope.cancel()
        await watch.subscribe().__anext__()
        pytest.fail("a ready value must still pass a checkpoint")
    assert scope.cancelled_caught
