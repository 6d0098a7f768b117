"""Supervisor under random failure schedules (hypothesis), and the runnable demo.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st
from supervisor_support import GUARD, Boom

from actors import (
    ChildSpec,
    Supervisor,
    SupervisorEscalation,
)
from protocols import Backoff

# -- random failure schedules -----------------------------------------------------------

# One schedule per child: each incarnation either starts and crashes after a
# lifetime (float), crashes before started ("early"), or returns ("return").
step_strategy = st.one_of(
    st.floats(0.0, 3.0).map(lambda x: round(x, 2)), st.sampled_from(["early", "return"])
)


@dataclass
class Observed:
    failures: list[tuple[float, str]] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    returned: set[str] = field(default_factory=set)


def scripted(
    name: str, steps: list[str | float], observed: Observed
) -> Callable[..., Awaitable[None]]:
    incarnation = 0

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal incarnation
        n = incarnation
        incarnation += 1
        observed.starts.append(trio.current_time())
        step = steps[n] if n < len(steps) else "forever"
        label = f"{name}#{n}"
        if step == "early":
            observed.failures.append((trio.current_time(), label))
            raise Boom(label)
        task_status.started()
        if step == "forever":
            await trio.sleep_forever()
        if step == "return":
            observed.failures.append((trio.current_time(), label))
            observed.returned.add(label)
            return
        assert isinstance(step, float)
        await trio.sleep(step)
        observed.failures.append((trio.current_time(), label))
        raise Boom(label)

    return run


def first_over_budget(failures: list[tuple[float, str]], max_restarts: int, within: float) -> int:
    """Index of the first failure that a correct supervisor must escalate on."""
    granted: list[float] = []
    for index, (t, _label) in enumerate(failures):
        if sum(1 for g in granted if t - g < within) >= max_restarts:
            return index
        granted.append(t)
    return -1


@settings(max_examples=50, deadline=None)
@given(
    schedules=st.lists(st.lists(step_strategy, max_size=8), min_size=1, max_size=3),
    max_restarts=st.integers(0, 4),
    within=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    seed=st.integers(0, 1000),
)
def test_random_failure_schedules_respect_the_budget(
    schedules: list[list[str | float]], max_restarts: int, within: float, seed: int
) -> None:
    observed = Observed()
    specs = [
        ChildSpec(f"c{i}", scripted(f"c{i}", steps, observed)) for i, steps in enumerate(schedules)
    ]
    sup = Supervisor(
        specs,
        max_restarts=max_restarts,
        within=within,
        backoff=Backoff(initial=0.05, maximum=0.5, jitter=0.5),
        rng=random.Random(seed),
    )
    outcome: dict[str, Any] = {}

    async def main() -> None:
        with trio.fail_after(GUARD):
            try:
                with trio.move_on_after(200):  # long past every scripted failure
                    await sup.run()
                outcome["ended"] = "cancelled"
            except SupervisorEscalation as exc:
                outcome["ended"] = "escalated"
                outcome["cause"] = None if exc.__cause__ is None else str(exc.__cause__)
                outcome["at"] = trio.current_time()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    event(outcome["ended"])

    failures = sorted(observed.failures)
    index = first_over_budget(failures, max_restarts, within)
    if index < 0:
        assert outcome["ended"] == "cancelled"
        assert sup.statistics().restarts == len(failures)
        assert len(observed.starts) == sum(len(s) for s in schedules) + len(schedules)
    else:
        assert outcome["ended"] == "escalated"
        t_escalation = failures[index][0]
        # nothing restarted after the decisive failure; same-instant failures may tie
        assert all(t == t_escalation for t, _ in failures[index:])
        decisive = {label for t, label in failures if t == t_escalation}
        if outcome["cause"] is None:  # a PERMANENT child returned one time too many
            assert decisive & observed.returned
        else:
            assert outcome["cause"] in decisive
        assert all(start <= t_escalation for start in observed.starts)
        assert sup.statistics().restarts == index
    # the budget itself, directly: no window of `within` seconds holds too many restarts
    restart_times = [t for t, _ in failures[: index if index >= 0 else len(failures)]]
    for t in restart_times:
        assert sum(1 for g in restart_times if 0 <= t - g < within) <= max_restarts


# -- the README example ------------------------------------------------------------------


@pytest.fixture
def demo_module() -> Iterator[Any]:
    path = Path(__file__).parents[1] / "examples" / "supervisor_demo.py"
    spec = importlib.util.spec_from_file_location("supervisor_demo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


async def test_supervisor_demo_runs(
    autojump_clock: trio.testing.MockClock, demo_module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(GUARD), structlog.testing.capture_logs():
        await demo_module.main()
    out = capsys.readouterr().out
    assert "total before the crash: 5" in out
    assert "total after the restart: 7" in out
    assert "restarts=1" in out
