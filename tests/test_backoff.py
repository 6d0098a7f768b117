"""Sans-io tests of protocols.core._backoff: Backoff, BackoffSchedule, RestartIntensity."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import Backoff, BackoffSchedule, RestartIntensity


def test_module_does_not_import_trio() -> None:
    source = Path(__file__).parents[1] / "protocols" / "core" / "_backoff.py"
    tree = ast.parse(source.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    assert not any(name.split(".")[0] == "trio" for name in names)


# -- Backoff policy -----------------------------------------------------------


def test_default_policy_doubles_from_50ms_to_5s() -> None:
    policy = Backoff()
    delays = [policy.base_delay(n) for n in range(10)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_huge_attempt_is_capped_not_overflowing() -> None:
    assert Backoff().base_delay(10_000) == 5.0
    assert Backoff(multiplier=1.0).base_delay(10_000) == 0.05


def test_zero_jitter_is_exact() -> None:
    policy = Backoff(initial=0.1, maximum=1.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(0, 40),
    jitter=st.floats(0.0, 0.99),
)
def test_jitter_stays_within_bounds(seed: int, attempt: int, jitter: float) -> None:
    policy = Backoff(jitter=jitter)
    base = policy.base_delay(attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert base * (1 - jitter) - 1e-12 <= delay <= base
    assert delay > 0


def test_jitter_spreads_delays() -> None:
    policy = Backoff(jitter=0.5)
    rng = random.Random(7)
    delays = {policy.delay(3, rng) for _ in range(50)}
    assert len(delays) == 50
    assert min(delays) < 0.4 * 0.6 and max(delays) > 0.4 * 0.9


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial": 0}, ValueError),
        ({"initial": -1}, ValueError),
        ({"initial": math.inf}, ValueError),
        ({"multiplier": 0.5}, ValueError),
        ({"maximum": 0.01}, ValueError),
        ({"jitter": 1.0}, ValueError),
        ({"jitter": -0.1}, ValueError),
        ({"reset_after": -1}, ValueError),
        ({"reset_after": math.nan}, ValueError),
        ({"initial": "1"}, TypeError),
        ({"jitter": True}, TypeError),
    ],
)
def test_policy_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen_and_rejects_negative_attempt() -> None:
    policy = Backoff()
    with pytest.raises(AttributeError):
        policy.initial = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        policy.base_delay(-1)


# -- BackoffSchedule ----------------------------------------------------------


def test_schedule_grows_then_resets_after_quiet_period() -> None:
    policy = Backoff(initial=1.0, maximum=8.0, jitter=0.0, reset_after=10.0)
    schedule = policy.schedule()
    rng = random.Random(0)
    assert isinstance(schedule, BackoffSchedule)
    assert schedule.next_delay(0.0, rng) == 1.0  # retry due at 1
    assert schedule.next_delay(1.5, rng) == 2.0  # due at 3.5
    assert schedule.next_delay(4.0, rng) == 4.0  # due at 8
    assert schedule.attempt == 3
    # quiet for 9.99 s after the retry was due: not yet reset
    assert schedule.next_delay(17.99, rng) == 8.0  # due at 25.99
    # quiet for exactly reset_after: reset to the first delay
    assert schedule.next_delay(35.99, rng) == 1.0
    assert schedule.attempt == 1
    schedule.reset()
    assert schedule.attempt == 0
    assert schedule.next_delay(36.0, rng) == 1.0


def test_schedule_with_jitter_is_reproducible_from_the_seed() -> None:
    policy = Backoff(jitter=0.3)
    first = policy.schedule()
    second = policy.schedule()
    rng1, rng2 = random.Random(42), random.Random(42)
    assert [first.next_delay(0.0, rng1) for _ in range(5)] == [
        second.next_delay(0.0, rng2) for _ in range(5)
    ]


# -- RestartIntensity ---------------------------------------------------------


def test_intensity_allows_max_restarts_per_window() -> None:
    intensity = RestartIntensity(3, 10.0)
    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert intensity.record(3.0) is False  # a fourth within 10 s
    assert intensity.count(3.0) == 3  # the refused one is not counted
    assert intensity.record(9.999) is False
    assert intensity.record(10.0) is True  # the one at 0.0 left the window
    assert intensity.count(10.0) == 3
    assert intensity.count(100.0) == 0
    intensity.reset()
    assert intensity.count(0.0) == 0


def test_zero_restarts_refuses_everything() -> None:
    intensity = RestartIntensity(0, 5.0)
    assert intensity.record(0.0) is False
    assert intensity.record(100.0) is False


def test_intensity_rejects_time_going_backwards_and_bad_arguments() -> None:
    intensity = RestartIntensity(2, 1.0)
    intensity.record(5.0)
    with pytest.raises(ValueError):
        intensity.record(4.0)
    with pytest.raises(ValueError):
        RestartIntensity(-1, 1.0)
    with pytest.raises(ValueError):
        RestartIntensity(1, 0.0)
    with pytest.raises(TypeError):
        RestartIntensity(1.5, 1.0)  # type: ignore[arg-type]


@given(
    max_restarts=st.integers(0, 6),
    within=st.floats(0.5, 20.0),
    gaps=st.lists(st.floats(0.0, 5.0), max_size=60),
)
def test_intensity_matches_brute_force_window(
    max_restarts: int, within: float, gaps: list[float]
) -> None:
    intensity = RestartIntensity(max_restarts, within)
    granted: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        in_window = sum(1 for g in granted if now - g < within)
        expected = in_window < max_restarts
        assert intensity.record(now) is expected
        if expected:
            granted.append(now)
    # the invariant the supervisor relies on: no window holds too many
    for t in granted:
        assert sum(1 for g in granted if 0 <= t - g < within) <= max_restarts
