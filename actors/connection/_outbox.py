"""What a connection has to send, and the tasks waiting to send more.

Theory of operation
-------------------
:class:`Outbox` holds encoded frames in the order the connection produced
them (the mux state changes in the same synchronous step, so order on the
wire always matches it). ``put`` never blocks and says when the queue grew
past its hard limit (a peer that does not read); a stream's sender waits for
room (``wait``) while ``send_buffer`` frames are queued. The connection's
writer ``take``s one frame at a time - in flight until ``sent`` - and a frame
may skip the queue only while it is ``idle``: nothing queued, nothing in
flight. Waiters are woken all at once whenever a frame went out or the
connection changed (``wake``); they re-check what they wait for.

Both are slotted and small: a simulation holds one per connection end, tens
of thousands of them.
"""

from __future__ import annotations

import trio

__all__ = ["Outbox", "Parked"]


class Parked:
    """Tasks waiting for a wake-up, woken all at once in the order they came: what
    ``trio.lowlevel.ParkingLot`` does with ``park``/``unpark_all``, in a list instead
    of its ordered dict (two per connection, for as long as the connection lives)."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: list[trio.lowlevel.Task] = []

    async def park(self) -> None:
        task = trio.lowlevel.current_task()
        self._tasks.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            self._tasks.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def unpark_all(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            trio.lowlevel.reschedule(task)


class Outbox:
    """Frames waiting for the writer task. ``put`` never blocks; senders wait for room."""

    __slots__ = ("_frames", "_hard_limit", "_in_flight", "_room", "_waiters", "dead")

    def __init__(self, room: int, hard_limit: int) -> None:
        # a list, not a deque: it holds at most hard_limit frames and is mostly empty,
        # and an empty deque costs some 600 bytes more on every connection
        self._frames: list[bytes] = []
        self._room, self._hard_limit = room, hard_limit
        self._in_flight = False
        self.dead = False
        self._waiters = Parked()

    def __len__(self) -> int:
        return len(self._frames) + self._in_flight

    def has_room(self) -> bool:
        return len(self._frames) < self._room

    def idle(self) -> bool:
        """Nothing queued and nothing being sent: a frame may go out directly."""
        return not self._frames and not self._in_flight

    def put(self, frame: bytes) -> bool:
        """Queue a frame; ``False`` when the queue is past its hard limit."""
        self._frames.append(frame)
        return len(self._frames) <= self._hard_limit

    def take(self) -> bytes | None:
        """The next frame to send (now in flight until :meth:`sent`), None when empty."""
        if not self._frames:
            return None
        self._in_flight = True
        return self._frames.pop(0)

    def sent(self) -> None:
        self._in_flight = False
        self.wake()

    def wake(self) -> None:
        self._waiters.unpark_all()

    async def wait(self) -> None:
        """Park until the next frame went out or :meth:`wake` (callers re-check)."""
        await self._waiters.park()

    async def wait_drained(self) -> None:
        while len(self) and not self.dead:
            await self.wait()
