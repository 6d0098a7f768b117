"""Mailbox messages that carry live handles or reply channels.

The pure-data events live in :mod:`protocols` (the node's connection events,
Identify's and AutoNAT's events); the messages here exist only between actors
of one process because they hold a live :class:`Connection` (so the receiver
can open streams on it) or a one-shot reply channel (a request that needs an
answer carries its own; see (docs/architecture.md, "Actors and messages")).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocols import ConnectionInfo, Identify, NodeEvent, PeerIdentified, PeersFound, WsAddress

from ..connection import Connection
from ..runtime import ReplySender

LOCAL_STOP: Final = "this node is stopping"
"""``ConnectionDown.reason`` for connections dropped because the Dialer is being stopped
(node shutdown, or a Dialer restart): not news, so what follows is logged at debug."""


@dataclass(frozen=True)
class DialFailed:
    """Answer to :class:`Connect` when no connection resulted."""

    addr: WsAddress
    reason: str


@dataclass(frozen=True)
class Connect:
    """Ask the Dialer for a connection to ``addr`` (which must carry a peer id)."""

    addr: WsAddress
    reply: ReplySender[ConnectionInfo | DialFailed]

    def __post_init__(self) -> None:
        if self.addr.peer_id is None:
            raise ValueError(f"cannot connect to {self.addr}: it lacks /p2p/<peer id>")


@dataclass(frozen=True)
class Punch:
    """Ask the Dialer for a hole-punch dial to ``addr`` (``.../p2p/<peer>``): from the
    listen port, in the WebSocket role ``as_client`` (see ``Transport.punch``), the
    connect and handshakes bounded by ``timeout``; the connection is registered like
    any other. Answered like :class:`Connect`."""

    addr: WsAddress
    as_client: bool
    timeout: float
    reply: ReplySender[ConnectionInfo | DialFailed]

    def __post_init__(self) -> None:
        if self.addr.peer_id is None:
            raise ValueError(f"cannot punch to {self.addr}: it lacks /p2p/<peer id>")


@dataclass(frozen=True)
class ConnectionOpened:
    """A new authenticated connection, with the handle to open streams on it."""

    info: ConnectionInfo
    connection: Connection


@dataclass(frozen=True)
class ConnectionGone:
    """A connection announced by :class:`ConnectionOpened` has ended (``reason``).

    Sent by the Dialer to the same listeners, after the connection's
    ``closed`` event, so that they need no task per connection to notice.
    """

    info: ConnectionInfo
    connection: Connection
    reason: str


@dataclass(frozen=True)
class IdentifyPushed:
    """A peer pushed a new Identify (``/ipfs/id/push/1.0.0``) on a connection."""

    connection: Connection
    message: Identify


DialerCommand = PeersFound | Connect | Punch
ConnectionNotice = ConnectionOpened | ConnectionGone
"""What the Dialer tells its listeners (Identify, AutoNAT) about each connection."""
IdentifyInput = ConnectionOpened | ConnectionGone | IdentifyPushed
AutonatInput = ConnectionOpened | ConnectionGone | PeerIdentified
"""The AutonatProbe's inbox: connections from the Dialer, Identify results from the
IdentifyActor (either may come first for one peer)."""
TrackerEvent = NodeEvent
"""Everything the StatusTracker folds into the node model."""
