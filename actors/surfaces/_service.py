"""A running node's conversation with its service manager (systemd ``Type=notify``).

Theory of operation
-------------------
``autonat node``/``boot`` start :func:`run_service_notify` once the node is
up - ``open_node`` returned (the Dialer bound its listeners, every actor
reported started) and the HTTP API is serving - so its first message,
``READY=1`` with the first ``STATUS=``, means "listening". Then three things
run until the daemon shuts down:

* ``STATUS=`` follows the node's snapshots through a
  :class:`protocols.node.StatusThrottle` (verdict changes only, rate-limited);
* ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` while the node's supervisor is
  :meth:`~actors.runtime.Supervisor.healthy`;
* on cancellation (SIGTERM/SIGINT: the shutdown begins) ``STOPPING=1``.

Without ``NOTIFY_SOCKET`` (:func:`service_notifier` returns None) none of it runs.
What is sent when is decided in :mod:`protocols.node._service_notify`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import trio

from protocols.node import STATUS_MIN_INTERVAL, StatusThrottle

from ..node import Node
from ..runtime import ServiceNotifier

__all__ = ["run_service_notify", "service_notifier"]


def service_notifier(environ: Mapping[str, str] = os.environ) -> ServiceNotifier | None:
    """The notifier the environment asks for (None: not started by a service manager).

    Raises ``ValueError`` naming the malformed variable.
    """
    return ServiceNotifier.from_environ(environ)


async def run_service_notify(
    node: Node, notifier: ServiceNotifier, *, status_interval: float = STATUS_MIN_INTERVAL,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``READY=1`` now, then ``STATUS=``/``WATCHDOG=1`` until cancelled, then ``STOPPING=1``."""
    throttle = StatusThrottle(status_interval)
    throttle.offer(node.snapshot())
    ready = {"READY": "1"}
    text = throttle.poll(trio.current_time())
    if text is not None:
        ready["STATUS"] = text
    try:
        notifier.send(**ready)
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run_watchdog, node.supervisor.healthy)
            task_status.started()
            await _follow_status(node, notifier, throttle)
    finally:
        notifier.send(STOPPING="1")


async def _follow_status(node: Node, notifier: ServiceNotifier, throttle: StatusThrottle,
                         ) -> None:
    """Send ``STATUS=`` as the throttle allows, until the node's watch closes."""
    subscription = node.subscribe()
    closed = False
    while not closed or throttle.due() is not None:
        due = throttle.due()
        wait = math.inf if due is None else max(0.0, due - trio.current_time())
        if closed and due is not None:
            await trio.sleep(wait)
        else:
            with trio.move_on_after(wait):
                try:
                    throttle.offer(await subscription.__anext__())
                except StopAsyncIteration:
                    closed = True
        text = throttle.poll(trio.current_time())
        if text is not None:
            notifier.send(STATUS=text)
