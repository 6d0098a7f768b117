"""Restart pacing: jittered exponential backoff and restart intensity.

Two small, clock-free decision helpers used by the supervisor (and by any
actor that retries something, e.g. reconnects):

:class:`Backoff` is an immutable *policy*. The delay before retry number
``attempt`` (0-based) is ``min(maximum, initial * multiplier**attempt)``,
scaled down by a random factor in ``(1 - jitter, 1]`` so that many nodes
that failed together do not retry in lockstep. The jittered delay therefore
never exceeds the un-jittered one, and ``jitter=0`` gives exact, predictable
delays (what tests use). With the defaults the delays are roughly
0.05, 0.1, 0.2, ... 3.2, 5, 5, ... seconds.

:class:`BackoffSchedule` is the per-user *state* of that policy: it counts
consecutive attempts and forgets them after a quiet period. The quiet period
is measured from the moment the last retry was due (``failure time + delay``):
a child that then runs for ``reset_after`` seconds without failing starts
again at ``initial``.

:class:`RestartIntensity` is Erlang/OTP's restart intensity as a sliding
window: each restart is recorded with its time; a restart at time ``t``
still counts at time ``now`` while ``now - t < within``. When recording one
more restart would put more than ``max_restarts`` in the window, the budget
is exhausted and the caller (the supervisor) must give up and escalate.
Consequently every half-open window ``(a, a + within]`` ever contains at
most ``max_restarts`` granted restarts.

Nothing here reads a clock or a global random generator: time is passed in as
``now`` and randomness as a :class:`random.Random`, so the helpers are exact
under a mock clock and a seeded generator.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffSchedule", "RestartIntensity"]


def _require_finite(name: str, value: float, *, positive: bool) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Backoff:
    """Exponential, jittered backoff policy (immutable; share it freely).

    ``initial``: first delay in seconds (> 0). ``multiplier``: growth factor
    (>= 1). ``maximum``: cap (>= initial). ``jitter``: fraction in [0, 1) by
    which a delay may be shortened at random. ``reset_after``: quiet period in
    seconds after which a :class:`BackoffSchedule` starts over at ``initial``.
    """

    initial: float = 0.05
    multiplier: float = 2.0
    maximum: float = 5.0
    jitter: float = 0.2
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        _require_finite("initial", self.initial, positive=True)
        _require_finite("multiplier", self.multiplier, positive=True)
        _require_finite("maximum", self.maximum, positive=True)
        _require_finite("jitter", self.jitter, positive=False)
        _require_finite("reset_after", self.reset_after, positive=False)
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.maximum < self.initial:
            raise ValueError(f"maximum ({self.maximum!r}) must be >= initial ({self.initial!r})")
        if self.jitter >= 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")

    def base_delay(self, attempt: int) -> float:
        """The un-jittered delay before retry ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            grown = self.initial * self.multiplier**attempt
        except OverflowError:
            return self.maximum
        return min(self.maximum, grown)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay: ``base_delay(attempt) * (1 - jitter * u)``, u in [0, 1)."""
        base = self.base_delay(attempt)
        if self.jitter == 0:
            return base
        return base * (1.0 - self.jitter * rng.random())

    def schedule(self) -> BackoffSchedule:
        """A fresh per-user state for this policy."""
        return BackoffSchedule(self)


class BackoffSchedule:
    """Consecutive-attempt counter for one :class:`Backoff` user.

    Call :meth:`next_delay` at every failure; it returns how long to wait
    before retrying and resets itself after a quiet period.
    """

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self._attempt = 0
        self._retry_due: float | None = None

    @property
    def attempt(self) -> int:
        """Index of the next delay (0 after a reset)."""
        return self._attempt

    def next_delay(self, now: float, rng: random.Random) -> float:
        """Record a failure at ``now`` and return the delay before the retry."""
        quiet_since = self._retry_due
        if quiet_since is not None and now - quiet_since >= self.policy.reset_after:
            self._attempt = 0
        delay = self.policy.delay(self._attempt, rng)
        self._attempt += 1
        self._retry_due = now + delay
        return delay

    def reset(self) -> None:
        """Forget all previous failures."""
        self._attempt = 0
        self._retry_due = None


class RestartIntensity:
    """Sliding-window restart budget: at most ``max_restarts`` per ``within`` seconds."""

    def __init__(self, max_restarts: int, within: float) -> None:
        if not isinstance(max_restarts, int) or isinstance(max_restarts, bool):
            raise TypeError(f"max_restarts must be an int, got {type(max_restarts).__name__}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        _require_finite("within", within, positive=True)
        self.max_restarts = max_restarts
        self.within = within
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.within:
            self._times.popleft()

    def count(self, now: float) -> int:
        """Restarts still inside the window at ``now``."""
        self._expire(now)
        return len(self._times)

    def record(self, now: float) -> bool:
        """Ask for one restart at ``now``.

        Returns True (and counts it) when the budget allows it; False when it
        would exceed ``max_restarts`` within ``within`` seconds - the caller
        must then escalate. A refused restart is not counted.
        """
        if self._times and now < self._times[-1]:
            raise ValueError(f"time went backwards: {now!r} < {self._times[-1]!r}")
        self._expire(now)
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True

    def reset(self) -> None:
        """Forget every recorded restart."""
        self._times.clear()
