"""The node's published values: peer records, observations and the snapshot.

Theory of operation
-------------------
:class:`~protocols.node._node_model.NodeModel` folds events into its own
mutable tables and publishes a :class:`NodeSnapshot` - one immutable value
holding everything a reader may want (lifecycle, listen and reachable
addresses, :class:`PeerRecord` per known peer, live connections, the
:class:`ObservedAddr` each peer reported). Readers (the HTTP API, the
actors, tests) share snapshots freely: nothing in them can change, and
every tuple is sorted, so two snapshots of the same state are equal.

The values validate their own fields at construction (types, bounds from
the ``MAX_*`` constants below, addresses carrying the right ``/p2p/`` id):
a record loaded from disk or built by a test is held to the same rules as
one the model made. Lookups the model does not keep an index for
(:meth:`NodeSnapshot.peer`) build one on first use, once per snapshot.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final, get_args

from ..autonat import NatFiltering, NatMapping, NatStatus
from ..core import LocalProtocolError, PeerId, WsAddress
from ..relay import CircuitAddress
from ..stun import UNKNOWN_UDP_PROFILE, StunAddresses, UdpProfile
from ._events import ConnectionInfo
from ._lifecycle import Lifecycle

__all__ = ["NodeSnapshot", "ObservedAddr", "PeerRecord", "ip_only"]

MAX_ADDRS_PER_PEER: Final = 16
MAX_PROTOCOLS_PER_PEER: Final = 32
MAX_PROTOCOL_LENGTH: Final = 128
MAX_AGENT_LENGTH: Final = 128
MAX_SOURCES_PER_PEER: Final = 4
MAX_SOURCE_LENGTH: Final = 512
MAX_LISTEN_ADDRS: Final = 64
MAX_VERIFIED_PER_PEER: Final = 4



def _check_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"{name} must be a finite number, got {value!r}")


def _check_strings(name: str, values: object, *, count: int, length: int) -> None:
    if not isinstance(values, tuple):
        raise LocalProtocolError(f"{name} must be a tuple, got {type(values).__name__}")
    if len(values) > count:
        raise LocalProtocolError(f"{name} has {len(values)} entries, limit is {count}")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > length:
            raise LocalProtocolError(f"{name} entries must be non-empty strings <= {length} chars")


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """Everything known about one remote peer (persisted by the peer store)."""

    peer_id: PeerId
    addrs: tuple[WsAddress, ...]
    first_seen: float
    last_seen: float
    agent_version: str = ""
    protocols: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    from_bootstrap: bool = False
    verified_addrs: tuple[WsAddress, ...] = ()
    """Addresses our AutoNAT server dialed back successfully, newest first (proof that
    the peer is reachable there; kept in memory only, not in the peer store)."""

    def __post_init__(self) -> None:
        if not isinstance(self.peer_id, PeerId):
            raise LocalProtocolError(f"peer_id must be a PeerId, got {type(self.peer_id).__name__}")
        if not isinstance(self.addrs, tuple) or len(self.addrs) > MAX_ADDRS_PER_PEER:
            raise LocalProtocolError(f"addrs must be a tuple of <= {MAX_ADDRS_PER_PEER} addresses")
        for addr in self.addrs:
            if not isinstance(addr, WsAddress) or addr.peer_id != self.peer_id:
                raise LocalProtocolError(f"address {addr} does not end in /p2p/{self.peer_id}")
        _check_time("first_seen", self.first_seen)
        _check_time("last_seen", self.last_seen)
        if self.last_seen < self.first_seen:
            raise LocalProtocolError("last_seen is before first_seen")
        if not isinstance(self.agent_version, str) or len(self.agent_version) > MAX_AGENT_LENGTH:
            raise LocalProtocolError(f"agent_version must be a string <= {MAX_AGENT_LENGTH} chars")
        _check_strings(
            "protocols", self.protocols, count=MAX_PROTOCOLS_PER_PEER, length=MAX_PROTOCOL_LENGTH
        )
        _check_strings(
            "sources", self.sources, count=MAX_SOURCES_PER_PEER, length=MAX_SOURCE_LENGTH
        )
        if not isinstance(self.from_bootstrap, bool):
            raise LocalProtocolError("from_bootstrap must be a bool")
        if not isinstance(self.verified_addrs, tuple) \
                or len(self.verified_addrs) > MAX_VERIFIED_PER_PEER:
            raise LocalProtocolError(
                f"verified_addrs must be a tuple of <= {MAX_VERIFIED_PER_PEER} addresses")
        for addr in self.verified_addrs:
            if not isinstance(addr, WsAddress) or addr.peer_id != self.peer_id:
                raise LocalProtocolError(f"address {addr} does not end in /p2p/{self.peer_id}")


@dataclass(frozen=True, slots=True)
class ObservedAddr:
    """Our address as ``observer`` saw it on one connection (from Identify)."""

    observer: PeerId
    observed: WsAddress
    local: WsAddress
    observer_addr: WsAddress
    at: float
    connection_id: int = 0


@dataclass(frozen=True)
class NodeSnapshot:
    """An immutable view of the whole node at one moment (tuples only, sorted)."""

    peer_id: PeerId
    lifecycle: Lifecycle
    lifecycle_since: float
    listen_addrs: tuple[WsAddress, ...]
    peers: tuple[PeerRecord, ...]
    connections: tuple[ConnectionInfo, ...]
    observed_addrs: tuple[ObservedAddr, ...]
    started_at: float
    updated_at: float
    revision: int
    nat_status: NatStatus = "unknown"
    nat_mapping: NatMapping = "unknown"
    reachable_addrs: tuple[WsAddress, ...] = ()
    unreachable_addrs: tuple[WsAddress, ...] = ()
    connected_peers: tuple[PeerId, ...] = ()
    """Peers with at least one live connection, sorted, without duplicates (derived
    from ``connections`` when not given; the model passes the list it maintains)."""
    local_ips: tuple[WsAddress, ...] = ()
    """Each distinct local IP of our live connections, once, as an address with port 0
    (what a wildcard listener is reached at; derived like ``connected_peers``)."""
    nat_filtering: NatFiltering = "unknown"
    """TCP filtering (:mod:`protocols.autonat._nat_filtering`)."""
    stun_server: StunAddresses | None = None
    """Where our STUN server answers (None: it does not run)."""
    udp: UdpProfile = UNKNOWN_UDP_PROFILE
    """Our UDP NAT profile (mapping, filtering) from RFC 5780 discovery; unknown until
    measured."""
    hairpinning: bool | None = None
    """Whether we reach ourselves at our confirmed external address through the NAT
    (:mod:`protocols.autonat._hairpinning`); None: not tested, or not applicable."""
    relay_addrs: tuple[CircuitAddress, ...] = ()
    """Our ``/p2p-circuit`` addresses through the relays we hold a reservation on."""
    relayed_peers: tuple[PeerId, ...] = ()
    """Peers we are connected to only through a relay (a direct connection's path is
    in its :class:`ConnectionInfo`: ``hole_punched`` or dialed)."""
    announce_addrs: tuple[WsAddress, ...] = ()
    """Externally visible addresses configured as ours (``announce``): advertised first,
    in Identify and ``/status``; peers verify them by dialing."""

    def __post_init__(self) -> None:
        if self.nat_status not in get_args(NatStatus):
            raise LocalProtocolError(f"nat_status must be one of {get_args(NatStatus)}")
        if self.nat_mapping not in get_args(NatMapping):
            raise LocalProtocolError(f"nat_mapping must be one of {get_args(NatMapping)}")
        if self.nat_filtering not in get_args(NatFiltering):
            raise LocalProtocolError(f"nat_filtering must be one of {get_args(NatFiltering)}")
        if not (self.hairpinning is None or isinstance(self.hairpinning, bool)):
            raise LocalProtocolError(f"hairpinning must be a bool or None, got "
                                     f"{self.hairpinning!r}")
        if self.connections and not self.connected_peers:
            object.__setattr__(self, "connected_peers",
                               tuple(sorted({conn.peer_id for conn in self.connections})))
        if self.connections and not self.local_ips:
            object.__setattr__(self, "local_ips", tuple(sorted(
                {ip_only(conn.local_addr) for conn in self.connections}, key=str)))

    @functools.cached_property
    def _peer_index(self) -> dict[PeerId, PeerRecord]:
        return {record.peer_id: record for record in self.peers}

    def peer(self, peer_id: PeerId) -> PeerRecord | None:
        """The record of ``peer_id`` (an index built on first use, once per snapshot)."""
        return self._peer_index.get(peer_id)

    def connections_to(self, peer_id: PeerId) -> tuple[ConnectionInfo, ...]:
        return tuple(conn for conn in self.connections if conn.peer_id == peer_id)


def ip_only(addr: WsAddress) -> WsAddress:
    return WsAddress(addr.host, addr.kind, 0, False)
