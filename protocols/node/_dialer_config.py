"""How many connections a node keeps and how it dials them: :class:`DialerConfig`.

Theory of operation
-------------------
The Dialer (docs/architecture.md, "Actors and messages") keeps ``target_peers``
connections, never more than ``max_connections``, and admits inbound ones
fairly: per IP and per subnet caps, separate slots for handshakes in
progress, and eviction instead of refusal when full (the admission rules are
in ``protocols.node._admission``). Before any of that, TCP connections that
have not finished their TLS + WebSocket upgrade are capped the same way
(``max_pending_upgrades*``, handed to the transport as
:meth:`DialerConfig.upgrade_limits`; the rules are in
``protocols.node._upgrade_queue``); with at most ``dial_concurrency`` dials in
flight, each bounded by ``dial_timeout``; a lost peer is redialled after a
jittered delay starting at ``reconnect_initial`` and doubling up to
``reconnect_max``. These values are the ``dialer`` component of
:class:`~protocols.NodeConfig` and are declared only here. Construction
validates them: each must be positive, the reconnect delays ordered, and the
target within the cap; a violation raises :class:`ValueError` naming the
field.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import check_positive_setting
from ._upgrade_queue import UpgradeLimits

__all__ = ["DialerConfig"]


@dataclass(frozen=True)
class DialerConfig:
    """The Dialer's settings (times in seconds); validated at construction."""

    target_peers: int = 8
    """Connections the Dialer tries to keep."""
    max_connections: int = 64
    """Established connections. When full, an inbound newcomer from a less represented
    network evicts the oldest idle inbound connection of the most represented one;
    otherwise it is refused (see ``protocols.node._admission``)."""
    max_connections_per_ip: int = 8
    """Established inbound connections from one IP (peer ids cost nothing)."""
    max_connections_per_subnet: int = 32
    """Established inbound connections from one IPv4 /24 or IPv6 /56."""
    max_pending_handshakes: int = 64
    """Inbound connections in the handshake at once (they take no established slot)."""
    max_pending_per_ip: int = 4
    """Inbound connections from one IP in the handshake at once."""
    max_pending_upgrades: int = 256
    """Inbound TCP connections awaiting the TLS + WebSocket upgrade at once. When full, a
    newcomer from a less represented network evicts the oldest waiting connection of the
    most represented one; otherwise it is closed at once."""
    max_pending_upgrades_per_ip: int = 8
    """Inbound TCP connections from one IP awaiting the upgrade at once."""
    max_pending_upgrades_per_subnet: int = 32
    """Inbound TCP connections from one IPv4 /24 or IPv6 /56 awaiting the upgrade at once."""
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
                     "reconnect_initial", "reconnect_max", "max_connections_per_ip",
                     "max_connections_per_subnet", "max_pending_handshakes",
                     "max_pending_per_ip", "max_pending_upgrades",
                     "max_pending_upgrades_per_ip", "max_pending_upgrades_per_subnet"):
            check_positive_setting(name, getattr(self, name))
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        if self.target_peers > self.max_connections:
            raise ValueError("target_peers must be <= max_connections")

    def upgrade_limits(self) -> UpgradeLimits:
        """The transport's caps on inbound connections awaiting the WebSocket upgrade."""
        return UpgradeLimits(max_pending=self.max_pending_upgrades,
                             per_ip=self.max_pending_upgrades_per_ip,
                             per_subnet=self.max_pending_upgrades_per_subnet)
