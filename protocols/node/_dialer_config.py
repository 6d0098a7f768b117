"""How many connections a node keeps and how it dials them: :class:`DialerConfig`.

Theory of operation
-------------------
The Dialer (docs/architecture.md, "Actors and messages") keeps ``target_peers``
connections, never more than ``max_connections`` (inbound ones beyond it are
refused), with at most ``dial_concurrency`` dials in flight, each bounded by
``dial_timeout``; a lost peer is redialled after a jittered delay starting at
``reconnect_initial`` and doubling up to ``reconnect_max``. These six values
are the ``dialer`` component of :class:`~protocols.NodeConfig` and are
declared only here. Construction validates them: each must be positive, the
reconnect delays ordered, and the target within the cap; a violation raises
:class:`ValueError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import check_positive_setting

__all__ = ["DialerConfig"]


@dataclass(frozen=True)
class DialerConfig:
    """The Dialer's settings (times in seconds); validated at construction."""

    target_peers: int = 8
    """Connections the Dialer tries to keep."""
    max_connections: int = 64
    """Hard cap; inbound connections beyond it are refused."""
    dial_concurrency: int = 8
    """Dials in flight at once."""
    dial_timeout: float = 10.0
    """Per dial, TCP + WebSocket + handshake."""
    reconnect_initial: float = 1.0
    """First reconnect delay after losing a peer; doubles up to ``reconnect_max``."""
    reconnect_max: float = 60.0
    """Cap of the reconnect delay."""

    def __post_init__(self) -> None:
        for name in ("target_peers", "max_connections", "dial_concurrency", "dial_timeout",
                     "reconnect_initial", "reconnect_max"):
            check_positive_setting(name, getattr(self, name))
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        if self.target_peers > self.max_connections:
            raise ValueError("target_peers must be <= max_connections")
