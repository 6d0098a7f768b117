"""Is our WebSocket listener able to serve a peer? The rules of the ``/healthz`` self-check.

Theory of operation
-------------------
A process that runs is not a node that works: a listener can be wedged (the
accept loop stuck, every file descriptor taken, the handshake starved) while
the supervisor and the HTTP API look fine. What a load balancer or an
orchestrator needs to know - is it worth sending a peer here? - is answered
only by serving one. So the node *is* its own peer: it dials its own
listener over loopback, from a fresh port, and runs our handshake; the
handshake ends in ``SelfConnection`` exactly when our own listener accepted
the connection and answered with our key (the same self-dial the hairpin
test uses). Any other ending - refused, reset, another peer id, no answer
within ``timeout`` - is a failure with its reason.

Cost: checks run *on demand* (a health request) and a result is reused for
``interval`` seconds, and only one check runs at a time (the others wait
for it), so a probe every second from several probers costs at most one
loopback connection per ``interval``; a node nobody asks costs nothing.
A request therefore sees a wedged listener within ``interval + timeout``
seconds of it wedging: the cached success expires after ``interval``, and
the next check fails after at most ``timeout``.

:class:`ListenerCheckPlan` keeps the last result and decides whether it is
still fresh; :func:`self_check_target` picks what to dial: the first plain
``/ws`` listener, a wildcard (``0.0.0.0``, ``::``) replaced by the loopback
address of its family. A node that listens only on ``/wss`` is not dialed
(its certificate names a host, not the loopback address); its health is
then the supervisor's alone, and says so. Time is an argument, so the rules
are tested without sockets or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..core import WsAddress

__all__ = ["DEFAULT_CHECK_INTERVAL", "DEFAULT_CHECK_TIMEOUT", "ListenerCheckPlan",
           "ListenerHealth", "self_check_target"]

DEFAULT_CHECK_INTERVAL: Final = 5.0
"""Seconds a check's result is reused."""
DEFAULT_CHECK_TIMEOUT: Final = 2.0
"""Seconds the self-dial (connect, WebSocket upgrade, handshake) may take."""


@dataclass(frozen=True)
class ListenerHealth:
    """The result of one self-check (``ok``) and why it failed (``reason``)."""

    ok: bool
    reason: str
    """Empty when ``ok``; otherwise what went wrong, for the 503 answer."""
    checked_at: float | None
    """Loop time of the check; None: no check was possible (not listening, ``/wss`` only)."""
    address: WsAddress | None = None
    """What was dialed."""


def self_check_target(listen_addrs: Iterable[WsAddress]) -> WsAddress | None:
    """The first plain ``/ws`` listen address, a wildcard IP made loopback; None if none."""
    for addr in listen_addrs:
        if addr.secure or addr.port == 0:
            continue
        plain = addr.with_peer_id(None)
        if plain.ip is not None and plain.ip.is_unspecified:
            host, kind = ("127.0.0.1", "ip4") if plain.ip.version == 4 else ("::1", "ip6")
            return WsAddress(host, kind, plain.port, False)
        return plain
    return None


class ListenerCheckPlan:
    """The last self-check result and whether it is fresh; see the module docstring."""

    def __init__(self, *, interval: float = DEFAULT_CHECK_INTERVAL,
                 timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
        for name, value in (("interval", interval), ("timeout", timeout)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        self.interval = float(interval)
        self.timeout = float(timeout)
        self._last: ListenerHealth | None = None
        self.checks = 0
        """Self-checks finished (each one loopback connection)."""
        self.failures = 0

    @property
    def last(self) -> ListenerHealth | None:
        return self._last

    def cached(self, now: float) -> ListenerHealth | None:
        """The last result while it is younger than ``interval``; None: check now."""
        last = self._last
        if last is None or last.checked_at is None or now - last.checked_at >= self.interval:
            return None
        return last

    def handle_result(self, address: WsAddress, ok: bool, detail: str,
                      now: float) -> ListenerHealth:
        """A self-dial of ``address`` finished at ``now``; the new health."""
        self.checks += 1
        if not ok:
            self.failures += 1
        reason = "" if ok else (f"the WebSocket listener {address} did not serve our own "
                                f"connection: {detail}")
        self._last = ListenerHealth(ok, reason, now, address)
        return self._last

    def unchecked(self, listen_addrs: tuple[WsAddress, ...]) -> ListenerHealth:
        """The health when :func:`self_check_target` found nothing to dial (not cached)."""
        if not listen_addrs:
            return ListenerHealth(False, "the node is not listening (yet)", None)
        return ListenerHealth(True, "", None)
