"""The socket side of systemd's notify protocol: a datagram to ``NOTIFY_SOCKET``.

Theory of operation
-------------------
What to send and when is decided in :mod:`protocols.node._service_notify`;
this module only sends. :meth:`ServiceNotifier.from_environ` returns None
when the process was not started by a service manager (no
``NOTIFY_SOCKET``), so callers write ``if notifier: ...`` and pay nothing
otherwise. No library is needed: ``sd_notify(3)`` is one ``sendto`` of
``KEY=value`` lines on an ``AF_UNIX``/``SOCK_DGRAM`` socket.

A send never blocks the event loop and never fails the node: the socket is
non-blocking, and a full or vanished receiver (systemd restarting, a test
that stopped listening) is logged at debug and counted in ``failed``. The
service manager is an observer; the node works without it.

:meth:`ServiceNotifier.run_watchdog` pings ``WATCHDOG=1`` every interval while
``healthy()`` says so (the node passes its supervisor's
:meth:`~actors.runtime.Supervisor.healthy`). When it turns unhealthy the
pings stop, and systemd restarts the service after ``WatchdogSec``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import trio

from protocols.node import encode_notify, notify_address, watchdog_interval

from ._logsetup import get_logger

__all__ = ["ServiceNotifier"]


class ServiceNotifier:
    """Sends sd_notify messages to one address; see the module docstring."""

    def __init__(self, address: str | bytes, *, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog
        """Seconds between two ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``); None: off."""
        self.sent = 0
        self.failed = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)
        self._log = get_logger("actors.service_notify", actor="service_notify")

    def __repr__(self) -> str:
        return f"<ServiceNotifier {self.address!r} watchdog={self.watchdog}>"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ,
                     pid: int | None = None) -> ServiceNotifier | None:
        """The notifier systemd asked for, or None without ``NOTIFY_SOCKET``.

        Raises ``ValueError`` (saying which variable is wrong) for malformed values.
        """
        value = environ.get("NOTIFY_SOCKET", "")
        if not value:
            return None
        address = notify_address(value)
        interval = watchdog_interval(environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID"),
                                     os.getpid() if pid is None else pid)
        return cls(address, watchdog=interval)

    def send(self, **fields: str) -> bool:
        """Send one message; False (logged, counted) when it could not be delivered."""
        data = encode_notify(**fields)
        try:
            self._sock.sendto(data, self.address)
        except OSError as exc:
            self.failed += 1
            self._log.debug("notify failed", fields=sorted(fields), error=str(exc))
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close()

    async def run_watchdog(self, healthy: Callable[[], bool], *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                           ) -> None:
        """``WATCHDOG=1`` every :attr:`watchdog` seconds while ``healthy()``; forever.

        Returns at once when the watchdog is off.
        """
        task_status.started()
        if self.watchdog is None:
            return
        was_healthy = True
        while True:
            ok = healthy()
            if ok:
                self.send(WATCHDOG="1")
            elif was_healthy:
                self._log.warning("supervisor unhealthy: watchdog pings stopped (systemd "
                                  "restarts the service after WatchdogSec)")
            was_healthy = ok
            await trio.sleep(self.watchdog)
