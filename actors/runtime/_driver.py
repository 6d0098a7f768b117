"""The one loop that drives a sans-io machine's timer.

See docs/architecture.md, "The sans-io contract".

Theory of operation
-------------------
A machine on the contract says when it wants time to pass with
``poll_timeout()`` and does its timed work in ``handle_timeout(now)``, which
returns commands. :class:`TimeoutDriver` is the actor side of that: its
:meth:`TimeoutDriver.run` loop

1. calls ``handle_timeout(trio.current_time())`` at once (so a new actor
   incarnation picks up whatever is due) and awaits the ``on_commands``
   callback with the commands, when there are any;
2. reads ``poll_timeout()`` and sleeps until then, or until :meth:`wake` is
   called - whichever comes first - and starts over.

The actor feeds inputs to the machine itself (``handle_<input>(..., now)``)
and then calls :meth:`TimeoutDriver.wake`, so that the driver re-reads
``poll_timeout()`` and hands over what the input made due. A ``wake()`` that
arrives while the callback runs is kept: the loop runs once more right after.

**A deadline in the past never spins.** If ``poll_timeout()`` is not later
than the ``now`` just given to ``handle_timeout``, the machine had its chance
at that time and did not move the deadline: the driver counts it
(:attr:`DriverStatistics.stale_deadlines`) and waits for :meth:`wake` only.
So a machine bug costs a stalled timer, not a core.

Bounded: one pending wake-up flag, no queue. Cancel the task running
:meth:`run` to stop it; the callback runs inside the loop, so a cancellation
during it leaves the callback's own state to the callback.

Waiting costs little, because every actor has a driver and a simulation has
thousands of actors: the task parks itself (``wait_task_rescheduled``), and
the deadline is one timer of the run's timer service
(:func:`~actors.runtime.call_at`) that wakes it - no cancel scope and no
event per wait.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NoReturn, Protocol, TypeVar

import trio

from ._timers import call_at

__all__ = ["DriverStatistics", "TimedMachine", "TimeoutDriver"]

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


class TimedMachine(Protocol[C_co]):
    """What :class:`TimeoutDriver` needs of a sans-io machine."""

    def poll_timeout(self) -> float | None: ...

    def handle_timeout(self, now: float) -> Sequence[C_co]: ...


@dataclass(frozen=True)
class DriverStatistics:
    timeouts_handled: int
    """Calls of ``handle_timeout``."""
    wakes: int
    """Calls of :meth:`TimeoutDriver.wake`."""
    stale_deadlines: int
    """Deadlines not later than the time just handled (ignored until the next wake)."""


class TimeoutDriver(Generic[C]):
    """Drives one machine's ``poll_timeout``/``handle_timeout``; see the module docstring."""

    def __init__(self, machine: TimedMachine[C]) -> None:
        self._machine = machine
        self._woken = False
        self._parked: trio.lowlevel.Task | None = None
        self._handled = self._wakes = self._stale = 0

    def wake(self) -> None:
        """An input changed the machine: re-read ``poll_timeout()`` and run it now."""
        self._wakes += 1
        self._woken = True
        self._resume()

    def _resume(self) -> None:
        """Wake the loop if it is waiting (a wake-up or the deadline's timer)."""
        task, self._parked = self._parked, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def _park(self) -> None:
        self._parked = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._parked = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def statistics(self) -> DriverStatistics:
        return DriverStatistics(self._handled, self._wakes, self._stale)

    async def run(self, on_commands: Callable[[list[C]], Awaitable[None]]) -> NoReturn:
        """Loop until cancelled, handing every non-empty batch of commands to ``on_commands``."""
        timer = call_at(math.inf, self._resume)
        try:
            while True:
                self._woken = False
                now = trio.current_time()
                commands = list(self._machine.handle_timeout(now))
                self._handled += 1
                if commands:
                    await on_commands(commands)
                deadline = self._machine.poll_timeout()
                if deadline is not None and deadline <= now:
                    if not self._woken:  # an input at this very time woke us: not stale
                        self._stale += 1
                    deadline = None
                if self._woken:
                    await trio.lowlevel.checkpoint()
                    continue
                timer.reschedule(math.inf if deadline is None else deadline)
                await self._park()
        finally:
            timer.close()
