"""Shared helpers for the supervisor tests: scripted children, task counting."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
import trio.testing

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
