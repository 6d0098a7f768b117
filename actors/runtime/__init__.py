"""Bottom layer of :mod:`actors`: mailboxes, child specs, the supervisor, watches, logging,
the :class:`TimeoutDriver` that runs a sans-io machine's timer, :func:`call_at` (one
timer task for the deadlines of every connection), and the :class:`Pulse`
that tells readers of statistics when to read again.

Every actor logs, so the logger factory (:func:`get_logger`, quiet until the
application configures logging) lives here, with :func:`configure_logging`.

May import: :mod:`protocols` (not the other layers of :mod:`actors`).
"""

from __future__ import annotations

from ._childspec import (
    ChildRun,
    ChildSpec,
    ChildStartError,
    ChildState,
    ChildStatistics,
    Restart,
    SupervisorStatistics,
)
from ._driver import DriverStatistics, TimedMachine, TimeoutDriver
from ._logsetup import configure_logging, get_logger, node_field
from ._mailbox import (
    ActorGone,
    Mailbox,
    MailboxClosed,
    MailboxReceiver,
    MailboxSender,
    MailboxState,
    MailboxStatistics,
    MessageSink,
    ReplySender,
    call,
)
from ._pulse import Pulse
from ._service_notify import ServiceNotifier
from ._supervisor import InjectedFault, Supervisor, SupervisorEscalation
from ._timers import TIMER_TASK_NAME, Timer, TimerService, call_at, current_timer_service
from ._watch import Watch, WatchClosed, WatchStatistics, WatchSubscription

__all__ = [
    "TIMER_TASK_NAME",
    "ActorGone",
    "ChildRun",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "ChildStatistics",
    "DriverStatistics",
    "InjectedFault",
    "Mailbox",
    "MailboxClosed",
    "MailboxReceiver",
    "MailboxSender",
    "MailboxState",
    "MailboxStatistics",
    "MessageSink",
    "Pulse",
    "ReplySender",
    "Restart",
    "ServiceNotifier",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorStatistics",
    "TimedMachine",
    "TimeoutDriver",
    "Timer",
    "TimerService",
    "Watch",
    "WatchClosed",
    "WatchStatistics",
    "WatchSubscription",
    "call",
    "call_at",
    "configure_logging",
    "current_timer_service",
    "get_logger",
    "node_field",
]
