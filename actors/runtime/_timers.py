"""Many deadlines, one task: the timers of every connection in a Trio run.

Theory of operation
-------------------
A connection has deadlines (its streams' timeouts, its idle timeout) but
spends nearly all its life waiting for none of them. A task per connection
that sleeps until its next deadline costs a Trio task's memory (task,
context, cancel status, coroutine frames: a few KiB) on every connection a
boot node holds. Instead, :func:`call_at` registers a plain synchronous
callback with the run's :class:`TimerService`: one heap of deadlines and one
*system task* (started on first use, cancelled when the run ends) that
sleeps until the earliest deadline, then calls every callback whose
deadline has passed.

A :class:`Timer` is the handle. :meth:`Timer.reschedule` moves it (a new heap
entry; the old one becomes stale and is skipped when it surfaces - each
entry carries the handle's generation), :meth:`Timer.cancel` disarms it,
:meth:`Timer.close` disarms it for good and lets go of its callback - and so
of the callback's owner, which a stale entry would otherwise keep alive until
it surfaces or is compacted away (a closed connection's idle timer can be
minutes away, and with many live timers compaction waits for many stale ones:
a 1000-host simulation kept as many closed connections as open ones).
Rescheduling to a *later* time is cheapest done lazily by the owner: leave
the timer where it is and, when it fires early, arm it again for the real
deadline - which is how a connection keeps its idle timeout without
touching the heap for every frame. Stale entries are dropped whenever they
outnumber the live timers, so the heap stays within a small factor of the
timers in use.

Callbacks run in the system task and must be quick and never block (they
may start tasks in their owner's nursery). An exception from one is a bug:
it is logged with its traceback and the service goes on, because an error
escaping a system task would crash the whole run.

Time is ``trio.current_time()``, so a ``MockClock`` drives these timers like
any sleep.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Final

import trio

from ._logsetup import get_logger

__all__ = ["TIMER_TASK_NAME", "Timer", "TimerService", "call_at", "current_timer_service"]

TIMER_TASK_NAME: Final = "actors.timer_service"

MIN_COMPACT: Final = 64
"""Below this many heap entries stale ones are simply left to surface."""
_SERVICE: Final = trio.lowlevel.RunVar["TimerService"]("actors.timer_service")
_log = get_logger("actors.timers")


class Timer:
    """A handle from :func:`call_at`: ``reschedule`` it, or ``cancel`` it."""

    __slots__ = ("_callback", "_deadline", "_generation", "_service")

    def __init__(self, service: TimerService, callback: Callable[[], object]) -> None:
        self._service = service
        self._callback = callback
        self._deadline = math.inf
        self._generation = 0

    @property
    def deadline(self) -> float:
        """When it fires; ``inf`` while disarmed."""
        return self._deadline

    def reschedule(self, deadline: float) -> None:
        """Fire at ``deadline`` (``inf``: never) instead of any earlier arrangement."""
        self._generation += 1
        self._service._armed += (deadline < math.inf) - (self._deadline < math.inf)
        self._deadline = deadline
        if deadline < math.inf:
            self._service._push(self, deadline)
        self._service._maybe_compact()

    def cancel(self) -> None:
        self.reschedule(math.inf)

    def close(self) -> None:
        """Disarm for good: the callback (and what it holds) is let go at once."""
        self.cancel()
        self._callback = _closed

    def _fire(self, generation: int) -> bool:
        if generation != self._generation:
            return False  # moved or cancelled since this entry was pushed
        self._deadline = math.inf
        self._generation += 1
        self._service._armed -= 1
        try:
            self._callback()
        except Exception:
            _log.exception("timer callback failed", callback=repr(self._callback))
        return True


def _closed() -> None:
    """What a closed timer calls if its owner reschedules it anyway: nothing."""


class TimerService:
    """One run's heap of deadlines and the system task that serves it."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer, int]] = []
        self._order = itertools.count()
        self._wake = trio.lowlevel.ParkingLot()
        self._armed_at = math.inf
        self._armed = 0
        """Timers with a finite deadline: each has exactly one live entry in the heap."""
        self.fired = 0

    def __len__(self) -> int:
        """Armed timers."""
        return self._armed

    def _push(self, timer: Timer, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._order), timer, timer._generation))
        if deadline < self._armed_at:
            self._wake.unpark_all()

    def _maybe_compact(self) -> None:
        """Drop stale entries once they are 3/4 of the heap: O(1) amortised per change.

        Also what lets go of the owners of cancelled timers (a closed connection)
        instead of keeping them until their old deadline surfaces.
        """
        if len(self._heap) > MIN_COMPACT and len(self._heap) > 4 * self._armed:
            self._heap[:] = [entry for entry in self._heap if entry[2]._generation == entry[3]]
            heapq.heapify(self._heap)

    async def run(self) -> None:
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, timer, generation = heapq.heappop(self._heap)
                self.fired += timer._fire(generation)
            heap = self._heap
            self._armed_at = heap[0][0] if heap else math.inf
            with trio.move_on_at(self._armed_at):
                await self._wake.park()


def call_at(deadline: float, callback: Callable[[], object]) -> Timer:
    """Call ``callback()`` at ``deadline`` (Trio time) from this run's timer task."""
    try:
        service = _SERVICE.get()
    except LookupError:
        service = TimerService()
        _SERVICE.set(service)
        trio.lowlevel.spawn_system_task(service.run, name=TIMER_TASK_NAME)
    timer = Timer(service, callback)
    timer.reschedule(deadline)
    return timer


def current_timer_service() -> TimerService | None:
    """This run's timer service, ``None`` before the first :func:`call_at`."""
    try:
        return _SERVICE.get()
    except LookupError:
        return None
