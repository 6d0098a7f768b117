"""A one_for_one supervisor for Trio actors, after Erlang/OTP.

Theory of operation
-------------------
``await nursery.start(supervisor.run)`` opens one nursery and starts the
children in order, one task per child. Each child task runs a loop of
*incarnations* of its :class:`~actors.ChildSpec`: call ``spec.run``, wait for
it to end, decide, maybe sleep, repeat. The next child is started only once
the previous one called ``task_status.started()`` (or was given up), and
``supervisor.run`` itself reports started once every child did - so a parent
that awaited ``nursery.start`` knows the whole subtree is ready.

When an incarnation ends (one_for_one: only that child is affected):

* the restart type decides: PERMANENT always restarts, TRANSIENT only after
  an exception, TEMPORARY never. A child that is not restarted is *stopped*
  (clean end) or *failed* (ended by an exception) and its mailbox is marked
  gone;
* otherwise the restart is checked against the supervisor-wide
  :class:`~protocols.RestartIntensity` (at most ``max_restarts`` restarts in
  any ``within`` seconds). Over budget, the supervisor *escalates*: it stops
  all children and raises :class:`SupervisorEscalation` with the child's
  exception as ``__cause__``. A parent supervisor sees that as a failure of
  its own child, so failures climb the tree until some level can absorb them;
* within budget, the child task sleeps the child's own
  :class:`~protocols.BackoffSchedule` delay (jittered, exponential, reset
  after a quiet period) and starts the next incarnation.

Every crash is logged through structlog (actor, incarnation, next delay,
traceback) and counted; :meth:`Supervisor.statistics` exposes the counters.

Start phase: an incarnation that raises, returns, or stays silent for
``start_timeout`` seconds before calling ``started()`` has failed like any
other (:class:`~actors.ChildStartError` when it did not raise itself).

Shutdown and cancellation: each child task runs inside its own *shielded*
cancel scope, so cancelling the supervisor does not reach the children all at
once. Instead the supervisor's own task, in a shielded ``finally``, cancels
the children in reverse start order and waits for each to finish before
cancelling the previous one - a child may rely on the children started
before it until it is gone. Then the supervisor's ``Cancelled`` continues to
propagate: it is never swallowed. The same ordered shutdown precedes an
escalation. A ``BaseException`` that is not an ``Exception`` (e.g.
``KeyboardInterrupt``, ``SystemExit``) raised by a child is never treated as a
crash: the supervisor shuts down in order and re-raises it unchanged.

Exception groups: with strict exception groups (trio >= 0.25), a child that
uses its own nursery fails with an ``ExceptionGroup``. Groups that hold a
single exception (nested any depth) are unwrapped for logging, statistics and
``__cause__``; larger groups are kept whole.

Fault injection: :meth:`Supervisor.inject_fault` crashes a running child
on purpose, for tests and operations (chaos drills, checking that a restart
really leaves no task, connection or file descriptor behind). Each
incarnation runs inside a cancel scope of its own; ``inject_fault`` cancels
it, so the incarnation's code unwinds exactly as it does when a task of its
own nursery crashes (``finally`` blocks run, its nursery and everything in it
close), and then :class:`InjectedFault` is raised in the child's task at the
incarnation boundary. From there it takes the path of any other crash:
recorded as the child's last error, logged with its traceback, counted in
``crashes`` and ``restarts`` (and in ``faults_injected``), checked against the
restart intensity and delayed by the child's backoff. An injected fault
therefore spends the restart budget like a real one: at the defaults (5
restarts in 10 s, supervisor-wide) injections spaced more than
``within / max_restarts`` seconds apart never escalate. Only a RUNNING child
(started, no fault pending) can be crashed; anything else is refused with
``RuntimeError``, so one call is always one crash.

The supervisor returns normally when no child is left running (all stopped
or failed without escalation), and when it is restarted by a parent it starts
over: fresh intensity window, fresh backoff, revived mailboxes. Counters in
:meth:`Supervisor.statistics` accumulate across runs (Prometheus counters).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from protocols import Backoff, BackoffSchedule, RestartIntensity

from ._childspec import (
    ChildSpec,
    ChildStartError,
    ChildState,
    ChildStatistics,
    Restart,
    SupervisorStatistics,
)
from ._logsetup import get_logger

# The statistics types live in _childspec; re-exported here for importers of this module.
__all__ = [
    "ChildState",
    "ChildStatistics",
    "InjectedFault",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorStatistics",
]


class SupervisorEscalation(Exception):
    """A child exceeded the restart intensity; ``__cause__`` is its last error.

    ``__cause__`` is None only when the decisive incarnation of a PERMANENT
    child returned normally (the message says so).
    """

    def __init__(self, supervisor: str, child: str, message: str) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child


class InjectedFault(Exception):
    """The crash :meth:`Supervisor.inject_fault` raises into a running child, on purpose."""

    def __init__(self, child: str, reason: str) -> None:
        super().__init__(f"fault injected into {child!r}: {reason}")
        self.child = child
        self.reason = reason


class _IncarnationStatus:
    """The ``task_status`` handed to one incarnation."""

    def __init__(self, on_started: Callable[[], None]) -> None:
        self._on_started = on_started
        self.called = False

    def __repr__(self) -> str:
        return f"<supervisor task status started={self.called}>"

    def started(self, value: object = None) -> None:
        if self.called:
            raise RuntimeError("called 'started' twice on the same task status")
        self.called = True
        self._on_started()


class _Child:
    """Book-keeping for one child: cumulative counters plus per-run state."""

    def __init__(self, spec: ChildSpec, backoff: Backoff) -> None:
        self.spec = spec
        self.backoff = backoff
        self.state = ChildState.STOPPED
        self.incarnation = 0
        self.restarts = 0
        self.crashes = 0
        self.faults_injected = 0
        self.last_error: str | None = None
        self.fault_scope: trio.CancelScope | None = None  # of the running incarnation
        self.fault: InjectedFault | None = None  # injected, not raised yet
        self.new_run()

    def new_run(self) -> None:
        self.scope = trio.CancelScope(shield=True)
        self.done = trio.Event()
        self.schedule: BackoffSchedule = self.backoff.schedule()
        self.launched = False
        self.settled = False  # started once, or given up

    def statistics(self) -> ChildStatistics:
        return ChildStatistics(
            name=self.spec.name,
            restart=self.spec.restart,
            state=self.state,
            incarnation=self.incarnation,
            restarts=self.restarts,
            crashes=self.crashes,
            last_error=self.last_error,
            faults_injected=self.faults_injected,
        )


@dataclass(frozen=True)
class _Stop:
    child: str
    error: BaseException | None
    fatal: bool  # a BaseException to re-raise as is, rather than an escalation


def _unwrap(exc: Exception) -> Exception:
    """Strip single-exception groups (a child's own nursery) down to the leaf."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _contains_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(trio.Cancelled) is not None
    return isinstance(exc, trio.Cancelled)


class Supervisor:
    """Runs children one_for_one with backoff, restart intensity and escalation."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        max_restarts: int = 5,
        within: float = 10.0,
        backoff: Backoff | None = None,
        name: str = "supervisor",
        rng: random.Random | None = None,
    ) -> None:
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")
        RestartIntensity(max_restarts, within)  # validates the arguments
        self.name = name
        self.max_restarts = max_restarts
        self.within = within
        self.backoff = backoff if backoff is not None else Backoff()
        self._rng = rng if rng is not None else random.Random()
        self._children = [_Child(spec, self.backoff) for spec in children]
        self._log = get_logger("actors.supervisor", supervisor=name)
        self._running = False
        self._restarts = 0
        self._escalations = 0
        self._intensity = RestartIntensity(max_restarts, within)
        self._stop: _Stop | None = None
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} children={[c.spec.name for c in self._children]}>"

    @property
    def children(self) -> tuple[ChildSpec, ...]:
        return tuple(child.spec for child in self._children)

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name,
            running=self._running,
            restarts=self._restarts,
            escalations=self._escalations,
            children=tuple(child.statistics() for child in self._children),
        )

    def healthy(self) -> bool:
        """True while running with no escalation under way and no child given up as failed.

        What the service manager's watchdog is fed from (``WATCHDOG=1`` only
        while healthy, see :class:`~actors.runtime.ServiceNotifier`): a child
        restarting within the budget is healthy, an escalation or a failed
        child that will not come back is not.
        """
        return (self._running and self._stop is None
                and all(child.state is not ChildState.FAILED for child in self._children))

    def inject_fault(self, child_name: str, reason: str = "injected for testing") -> None:
        """Crash the running incarnation of ``child_name`` with :class:`InjectedFault`.

        For tests and operations; see "Fault injection" in the module docstring.
        Raises ``KeyError`` for an unknown child and ``RuntimeError`` unless the
        child is RUNNING with no fault already pending.
        """
        child = self._find(child_name)
        if child.state is not ChildState.RUNNING or child.fault_scope is None:
            raise RuntimeError(f"child {child_name!r} is {child.state.value}, not running")
        if child.fault is not None:
            raise RuntimeError(f"child {child_name!r} already has a fault pending")
        child.fault = InjectedFault(child_name, reason)
        child.faults_injected += 1
        child.fault_scope.cancel()

    def _find(self, child_name: str) -> _Child:
        for child in self._children:
            if child.spec.name == child_name:
                return child
        raise KeyError(child_name)

    # -- the supervisor's own task ------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start all children in order, supervise them, shut down in reverse.

        Reports started once every child did. Returns when no child is left;
        raises :class:`SupervisorEscalation` when the restart intensity is
        exceeded.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._running = True
        self._intensity = RestartIntensity(self.max_restarts, self.within)
        self._stop = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._start_children(nursery)
                    if self._stop is None:
                        task_status.started()
                    while self._stop is None and not all(c.done.is_set() for c in self._live()):
                        await self._wait_for_change()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._shutdown()
        finally:
            self._running = False
        self._raise_outcome()

    def _live(self) -> list[_Child]:
        return [child for child in self._children if child.launched]

    async def _start_children(self, nursery: trio.Nursery) -> None:
        for child in self._children:
            child.new_run()
        for child in self._children:
            if child.spec.mailbox is not None:
                child.spec.mailbox.revive()
            child.launched = True
            nursery.start_soon(self._supervise, child, name=f"{self.name}/{child.spec.name}")
            while not child.settled and self._stop is None:
                await self._wait_for_change()
            if self._stop is not None:
                return

    async def _wait_for_change(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _shutdown(self) -> None:
        for child in reversed(self._live()):
            if not child.done.is_set():
                self._log.debug("stopping child", actor=child.spec.name)
            child.scope.cancel()
            await child.done.wait()
        for child in self._children:
            if child.state not in (ChildState.STOPPED, ChildState.FAILED):
                child.state = ChildState.STOPPED
            self._give_up(child, f"supervisor {self.name!r} ended")

    def _raise_outcome(self) -> None:
        stop = self._stop
        if stop is None:
            return
        if stop.fatal:
            assert stop.error is not None
            raise stop.error
        self._escalations += 1
        message = (
            f"supervisor {self.name!r}: child {stop.child!r} needed more than "
            f"{self.max_restarts} restarts within {self.within} s"
        )
        if stop.error is None:
            message += " (its last incarnation returned without an error)"
        raise SupervisorEscalation(self.name, stop.child, message) from stop.error

    # -- one task per child ---------------------------------------------------

    async def _supervise(self, child: _Child) -> None:
        try:
            with child.scope:
                await self._incarnations(child)
        except Exception as exc:
            # An incarnation failed while we cancelled it: its group of
            # Cancelled + errors, minus the Cancelled our scope absorbed.
            if not child.scope.cancel_called:
                raise  # a bug in the supervisor itself: let the nursery have it
            self._record_error(child, _unwrap(exc))
            self._log_stop_failure(child, _unwrap(exc))
        except BaseException as exc:
            if _contains_cancelled(exc):
                raise
            child.state = ChildState.FAILED
            self._halt(_Stop(child.spec.name, exc, fatal=True))
        finally:
            if child.state not in (ChildState.STOPPED, ChildState.FAILED):
                child.state = ChildState.STOPPED
            child.settled = True
            child.done.set()
            self._notify()

    async def _incarnations(self, child: _Child) -> None:
        while not child.scope.cancel_called:
            child.incarnation += 1
            child.state = ChildState.STARTING
            self._notify()
            error = await self._run_once(child)
            if error is not None:
                self._record_error(child, error)
            if child.scope.cancel_called:
                if error is not None:
                    self._log_stop_failure(child, error)
                return
            if not self._wants_restart(child, error):
                self._retire(child, error)
                return
            now = trio.current_time()
            if not self._intensity.record(now):
                self._escalate(child, error)
                return
            delay = child.schedule.next_delay(now, self._rng)
            child.restarts += 1
            self._restarts += 1
            child.state = ChildState.RESTARTING
            self._log_restart(child, error, delay)
            self._notify()
            await trio.sleep(delay)

    async def _run_once(self, child: _Child) -> Exception | None:
        spec = child.spec
        # one scope for the start deadline and for injected faults (a fault is injected
        # only once the child runs, when the deadline is gone): one scope fewer per child
        scope = trio.CancelScope(deadline=trio.current_time() + spec.start_timeout)

        def on_started() -> None:
            scope.deadline = math.inf
            child.state = ChildState.RUNNING
            child.settled = True
            self._notify()

        status = _IncarnationStatus(on_started)
        child.fault_scope = scope
        try:
            with scope:
                await spec.run(task_status=status)
            self._raise_injected(child)
        except Exception as exc:
            return _unwrap(exc)
        finally:
            child.fault_scope = None
            child.fault = None
        if scope.cancelled_caught:  # not a fault: that was raised above
            return ChildStartError(
                f"child {spec.name!r} did not call task_status.started() "
                f"within {spec.start_timeout} s"
            )
        if not status.called:
            return ChildStartError(
                f"child {spec.name!r} returned without calling task_status.started()"
            )
        return None

    @staticmethod
    def _raise_injected(child: _Child) -> None:
        """Raise a fault injected into the incarnation that just ended (its own crash)."""
        if child.fault is not None:
            raise child.fault

    # -- decisions ------------------------------------------------------------

    @staticmethod
    def _wants_restart(child: _Child, error: Exception | None) -> bool:
        restart = child.spec.restart
        if restart is Restart.PERMANENT:
            return True
        if restart is Restart.TRANSIENT:
            return error is not None
        return False

    def _record_error(self, child: _Child, error: Exception) -> None:
        child.crashes += 1
        child.last_error = repr(error)

    def _retire(self, child: _Child, error: Exception | None) -> None:
        child.state = ChildState.STOPPED if error is None else ChildState.FAILED
        fields: dict[str, Any] = {
            "actor": child.spec.name,
            "incarnation": child.incarnation,
            "restart": child.spec.restart.value,
            "next_delay": None,
        }
        if error is None:
            self._log.info("child finished; not restarted", **fields)
        else:
            self._log.error("child crashed; not restarted", exc_info=error, **fields)
        self._give_up(child, f"child {child.spec.name!r} {child.state.value}")

    def _escalate(self, child: _Child, error: Exception | None) -> None:
        child.state = ChildState.FAILED
        self._log.error(
            "restart intensity exceeded; escalating",
            actor=child.spec.name,
            incarnation=child.incarnation,
            max_restarts=self.max_restarts,
            within=self.within,
            next_delay=None,
            exc_info=error,
        )
        self._halt(_Stop(child.spec.name, error, fatal=False))

    def _halt(self, stop: _Stop) -> None:
        if self._stop is None:
            self._stop = stop
        self._notify()

    def _give_up(self, child: _Child, reason: str) -> None:
        child.settled = True
        if child.spec.mailbox is not None:
            child.spec.mailbox.mark_gone(reason)

    def _log_restart(self, child: _Child, error: Exception | None, delay: float) -> None:
        fields: dict[str, Any] = {
            "actor": child.spec.name,
            "incarnation": child.incarnation,
            "restart": child.spec.restart.value,
            "restarts": child.restarts,
            "next_delay": delay,
        }
        if error is None:
            self._log.warning("child returned; restarting", **fields)
        else:
            self._log.error("child crashed; restarting", exc_info=error, **fields)

    def _log_stop_failure(self, child: _Child, error: Exception) -> None:
        self._log.error(
            "child failed while being stopped",
            actor=child.spec.name,
            incarnation=child.incarnation,
            next_delay=None,
            exc_info=error,
        )
