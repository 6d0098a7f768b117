"""RelayPathsChanged: the node event that puts a node's relay state into its snapshot.

Theory of operation
-------------------
The relay client knows two things the rest of the node wants to show: the
``/p2p-circuit`` addresses it holds through relays (its reservations), and
the peers it is connected to only through a relay (relayed connections are
side connections, not registered with the Dialer). It sends the whole state
as one event whenever either changes; the node model keeps the latest and
the snapshot exposes it (``relay_addrs``, ``relayed_peers``), next to each
direct connection's ``hole_punched`` flag - together the path to every peer.
Both tuples are bounded so that a busy relay client cannot grow a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core import LocalProtocolError, PeerId
from ._circuit_address import CircuitAddress

__all__ = ["MAX_RELAYED_PEERS", "MAX_RELAY_ADDRS", "RelayPathsChanged"]

MAX_RELAY_ADDRS: Final = 16
MAX_RELAYED_PEERS: Final = 64


@dataclass(frozen=True)
class RelayPathsChanged:
    """Node event: our circuit addresses and the peers we reach only through a relay."""

    relay_addrs: tuple[CircuitAddress, ...] = ()
    relayed_peers: tuple[PeerId, ...] = ()

    def __post_init__(self) -> None:
        if len(self.relay_addrs) > MAX_RELAY_ADDRS or len(self.relayed_peers) > MAX_RELAYED_PEERS:
            raise LocalProtocolError(
                f"RelayPathsChanged holds at most {MAX_RELAY_ADDRS} circuit addresses and "
                f"{MAX_RELAYED_PEERS} relayed peers")
        if not all(isinstance(a, CircuitAddress) for a in self.relay_addrs) \
                or not all(isinstance(p, PeerId) for p in self.relayed_peers):
            raise LocalProtocolError("RelayPathsChanged: CircuitAddress and PeerId values only")

    @classmethod
    def bounded(cls, relay_addrs: tuple[CircuitAddress, ...],
                relayed_peers: tuple[PeerId, ...]) -> RelayPathsChanged:
        return cls(relay_addrs[:MAX_RELAY_ADDRS], relayed_peers[:MAX_RELAYED_PEERS])
