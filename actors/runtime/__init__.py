"""Bottom layer of :mod:`actors`: mailboxes, child specs, the supervisor, watches, logging,
the :class:`TimeoutDriver` that runs a sans-io machine's timer, and the :class:`Pulse`
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
from ._supervisor import Supervisor, SupervisorEscalation
from ._watch import Watch, WatchClosed, WatchStatistics, WatchSubscription

__all__ = [
    "ActorGone",
    "ChildRun",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "ChildStatistics",
    "DriverStatistics",
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
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorStatistics",
    "TimedMachine",
    "TimeoutDriver",
    "Watch",
    "WatchClosed",
    "WatchStatistics",
    "WatchSubscription",
    "call",
    "configure_logging",
    "get_logger",
    "node_field",
]
