"""Inbound connections awaiting the WebSocket upgrade: the upgrade queue's decisions, carried out.

Theory of operation
-------------------
The sans-io :class:`~protocols.UpgradeQueue` decides, per accepted TCP
connection, whether it may wait for its TLS + WebSocket upgrade (caps in
total, per IP and per subnet; a full queue evicts the oldest waiting
connection of the most-represented network for a newcomer from a less
represented one). :class:`UpgradeGate` is its actor side, one per
transport, shared by its listeners:

* :meth:`UpgradeGate.upgrade` runs in the connection's own task, from
  accept to the end of the upgrade. A refused connection has its socket
  closed at once and the upgrade never starts. An admitted one runs the
  upgrade inside a cancel scope kept under its ticket; when a later
  newcomer evicts it, that scope is cancelled and the socket closed, and
  ``upgrade`` answers None as for a failed upgrade. Whatever way the
  upgrade ends, the ticket is reported done, so the counts hold only
  connections still waiting.
* Refusals and evictions are counted by the queue (``statistics()``; the
  node exports them as ``inbound_refusals_total{reason="upgrade_..."}``
  and ``inbound_upgrades_evicted_total``) and logged once per burst: the
  first one logs a warning at once, later ones are added up and logged
  together with the next one at least :data:`LOG_INTERVAL` seconds later -
  never a line per connection.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio

from protocols import (
    AdmissionRefused,
    EvictConnection,
    UpgradeLimits,
    UpgradeQueue,
    UpgradeStatistics,
)

from ..runtime import get_logger

__all__ = ["LOG_INTERVAL", "UpgradeGate"]

LOG_INTERVAL: Final = 30.0
"""Seconds between two log lines about refused or evicted upgrades."""

_T = TypeVar("_T")

_log = get_logger("actors.transport")


class UpgradeGate:
    """Connections waiting for the upgrade, per transport; see the module docstring."""

    def __init__(self, limits: UpgradeLimits | None = None) -> None:
        self._queue = UpgradeQueue(limits if limits is not None else UpgradeLimits())
        self._waiting: dict[int, trio.CancelScope] = {}
        self._tickets = itertools.count(1)
        self._unlogged: Counter[str] = Counter()
        self._quiet_until = -math.inf

    def statistics(self) -> UpgradeStatistics:
        return self._queue.statistics()

    async def upgrade(self, socket_stream: trio.SocketStream,
                      handshake: Callable[[], Awaitable[_T | None]]) -> _T | None:
        """``await handshake()`` while counted as waiting; None when it was refused or
        evicted (the socket is then closed) or the handshake answered None."""
        ticket = next(self._tickets)
        if not self._admit(ticket, socket_stream):
            socket_stream.socket.close()
            await trio.lowlevel.checkpoint()
            return None
        scope = self._waiting[ticket] = trio.CancelScope()
        try:
            with scope:
                return await handshake()
        finally:
            del self._waiting[ticket]
            self._queue.handle_done(ticket)
            if scope.cancelled_caught:
                socket_stream.socket.close()
        return None  # evicted

    def _admit(self, ticket: int, socket_stream: trio.SocketStream) -> bool:
        try:
            host = socket_stream.socket.getpeername()[0]
        except OSError:  # already gone
            return False
        decision = self._queue.handle_accepted(ticket, ipaddress.ip_address(host.split("%")[0]))
        if isinstance(decision, AdmissionRefused):
            self._note(decision.reason, host)
            return False
        if isinstance(decision, EvictConnection):
            self._waiting[decision.connection_id].cancel()
            self._note("evicted", str(decision.subnet))
        return True

    def _note(self, what: str, where: str) -> None:
        """Count ``what`` for the log; log when the quiet interval has passed."""
        self._unlogged[what] += 1
        now = trio.current_time()
        if now < self._quiet_until:
            return
        _log.warning("inbound connections refused or evicted before the WebSocket upgrade",
                     latest=where, counts=dict(self._unlogged),
                     waiting=self._queue.statistics().pending)
        self._unlogged.clear()
        self._quiet_until = now + LOG_INTERVAL
