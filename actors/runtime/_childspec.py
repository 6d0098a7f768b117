"""What a supervisor needs to know about one child: :class:`ChildSpec`.

A child is an async callable ``run(*, task_status=trio.TASK_STATUS_IGNORED)``
- the same shape ``nursery.start`` expects - that calls
``task_status.started()`` once it is ready to serve (listeners bound, state
loaded) and then runs until cancelled. :meth:`Supervisor.run
<actors.Supervisor.run>` has this shape too, so supervisors nest.

Each call of ``run`` is one *incarnation*. The :class:`Restart` type says what
happens when an incarnation ends (the names and meanings are Erlang/OTP's):

* ``PERMANENT`` - always restarted, even after a clean return.
* ``TRANSIENT`` - restarted only after an exception; a clean return stops it.
* ``TEMPORARY`` - never restarted; when it ends, it is gone.

An incarnation that does not call ``started()`` within ``start_timeout``
seconds, or returns without calling it, has failed with
:class:`ChildStartError` (so even a TRANSIENT child is restarted then).

``mailbox`` (optional) is the child's :class:`~actors.Mailbox`. The
supervisor does not deliver it - ``run`` normally closes over a view of it -
but manages its life: it is revived when the supervisor starts the child and
marked gone when the supervisor gives the child up, so senders fail fast.

What a supervisor reports about its children lives here too:
:class:`ChildState` and the frozen snapshots :class:`ChildStatistics` and
:class:`SupervisorStatistics` (``restarts``, ``crashes`` and ``faults_injected``
only grow, so they map directly onto Prometheus counters).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import trio

from ._mailbox import Mailbox

__all__ = [
    "ChildRun",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "ChildStatistics",
    "Restart",
    "SupervisorStatistics",
]


class Restart(Enum):
    """When a child's ended incarnation is replaced by a new one."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildStartError(Exception):
    """An incarnation did not signal readiness (timeout, or returned first)."""


class ChildRun(Protocol):
    """``async def run(*, task_status=trio.TASK_STATUS_IGNORED) -> None``."""

    def __call__(
        self, *, task_status: trio.TaskStatus[None] = ...
    ) -> Awaitable[None]: ...  # pragma: no cover


@dataclass(frozen=True)
class ChildSpec:
    """Name, entry point, restart type, start timeout and mailbox of a child."""

    name: str
    run: ChildRun
    restart: Restart = Restart.PERMANENT
    start_timeout: float = 10.0
    mailbox: Mailbox[Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ChildSpec.name must be a non-empty string")
        if not callable(self.run):
            raise TypeError(f"ChildSpec.run must be callable, got {self.run!r}")
        if not isinstance(self.restart, Restart):
            raise TypeError(f"ChildSpec.restart must be a Restart, got {self.restart!r}")
        timeout = self.start_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"ChildSpec.start_timeout must be a number, got {timeout!r}")
        if math.isnan(timeout) or timeout <= 0:
            raise ValueError(f"ChildSpec.start_timeout must be > 0, got {timeout!r}")
        if self.mailbox is not None and not isinstance(self.mailbox, Mailbox):
            raise TypeError(f"ChildSpec.mailbox must be a Mailbox, got {self.mailbox!r}")


class ChildState(Enum):
    """Where a child is in its life (``statistics().children[i].state``)."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class ChildStatistics:
    """Counters of one child; ``restarts``, ``crashes`` and ``faults_injected`` only grow."""

    name: str
    restart: Restart
    state: ChildState
    incarnation: int
    restarts: int
    crashes: int
    last_error: str | None
    faults_injected: int = 0
    """Crashes caused on purpose by :meth:`Supervisor.inject_fault` (among ``crashes``)."""


@dataclass(frozen=True)
class SupervisorStatistics:
    """A snapshot of a supervisor and its children."""

    name: str
    running: bool
    restarts: int
    escalations: int
    children: tuple[ChildStatistics, ...]

    def child(self, name: str) -> ChildStatistics:
        """The statistics of the child called ``name`` (``KeyError`` if none)."""
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)
