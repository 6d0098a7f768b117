"""Pulse: readers wake when it beats, at once when it already did, and never otherwise."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import Pulse


async def test_a_waiter_wakes_on_the_next_beat(autojump_clock: trio.testing.MockClock) -> None:
    pulse = Pulse()
    woke: list[float] = []

    async def reader() -> None:
        await pulse.wait_past(pulse.count)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(reader)
        await trio.sleep(7)
        assert woke == []  # nothing happened: nobody wakes, however long
        pulse.beat()
    assert woke == [7.0, 7.0]
    assert pulse.count == 1


async def test_a_beat_before_the_wait_is_not_missed() -> None:
    pulse = Pulse()
    seen = pulse.count
    pulse.beat()  # between the reading and the wait
    with trio.fail_after(1):
        await pulse.wait_past(seen)  # returns at once


async def test_waiting_past_the_current_count_blocks(
        autojump_clock: trio.testing.MockClock) -> None:
    pulse = Pulse()
    pulse.beat()
    with pytest.raises(trio.TooSlowError), trio.fail_after(60):
        await pulse.wait_past(pulse.count)
