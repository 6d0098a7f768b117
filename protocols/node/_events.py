"""Events that actors exchange about the node's connections (pure data, no I/O).

Theory of operation
-------------------
Actors share no mutable state. What one actor learns it publishes as one of
these frozen dataclasses into another actor's mailbox, and the StatusTracker
folds all of them into the node's single source of truth. Keeping them here,
free of trio and of live connection objects, lets the decision code (the
node model, the reachability machine) be tested with plain function calls.
Events that must carry a live connection handle (so a receiver can open
streams on it) wrap one of these in ``actors``.

The events a protocol produces live with its rules, below this layer:
``PeerIdentified`` in :mod:`protocols.identify`, the probe events
(``ProbeResult``, ``InboundProbe``, ``ReachabilityUpdate``) in
:mod:`protocols.autonat`. :data:`~protocols.NodeEvent` is the union of all
of them that the node model accepts.

Every event is validated at construction, so a malformed event is a bug at
its producer rather than a surprise at its consumer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..core import LocalProtocolError, PeerId, WsAddress


class Direction(enum.Enum):
    """Who opened a connection."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True)
class PeersFound:
    """Candidate peer addresses from one source (a bootstrap URL, config, the peer store)."""

    addrs: tuple[WsAddress, ...]
    source: str
    from_bootstrap: bool = False
    owner: PeerId | None = None
    """For a bootstrap document: its own ``peer_id`` - the boot node, dialed before the
    peers its document lists (it has the most peers to tell about, and dials back from
    a second IP where configured)."""

    def __post_init__(self) -> None:
        for addr in self.addrs:
            if addr.peer_id is None:
                raise LocalProtocolError(f"PeersFound address {addr} lacks a /p2p/ peer id")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What is known about one live, authenticated connection."""

    connection_id: int
    peer_id: PeerId
    direction: Direction
    local_addr: WsAddress
    remote_addr: WsAddress
    opened_at: float
    hole_punched: bool = False
    """Made by a hole punch (a TCP simultaneous open timed over a relayed connection),
    not by an ordinary dial or accept."""


@dataclass(frozen=True)
class ConnectionUp:
    info: ConnectionInfo


@dataclass(frozen=True)
class ConnectionDown:
    connection_id: int
    peer_id: PeerId
    reason: str


@dataclass(frozen=True)
class ListenAddrsChanged:
    """The Dialer's listeners are bound (or rebound) to these addresses."""

    addrs: tuple[WsAddress, ...]
