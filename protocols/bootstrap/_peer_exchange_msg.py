"""The peer-exchange messages (``/trio-autonat/peers/1``).

Theory of operation
-------------------
A node asks a connected peer for a bounded random sample of the peers it
knows at *verified* addresses (docs/architecture.md, "Wire protocol" and
"Peer exchange"). One stream, one request, one response, both msgpack maps
carried as a stream frame's ``"m"``::

    PeersRequest   {"max": int 1..16}
    PeersResponse  {"peers": [{"peer_id": bytes, "addrs": [bytes, ...]}, ...]}

``peer_id`` is the binary peer id (its multihash, as in ``/p2p/``), each
address a binary multiaddr without ``/p2p/``. Bounds: at most
:data:`MAX_EXCHANGE_PEERS` peers of at most :data:`MAX_EXCHANGE_ADDRS`
addresses each, every address at most
:data:`~protocols.wire.MAX_MULTIADDR_SIZE` bytes - checked once, by the
constructors, so :meth:`PeersResponse.from_wire` refuses an oversized or
malformed answer before anything reads it. Unknown keys are ignored (as in
every message here). Whether an entry is *usable* (a valid peer id, a
dialable address the policy accepts, not ourselves) is decided by
:func:`~protocols.bootstrap.interpret_peers_response`, per entry, so one bad
entry does not discard the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

from ..core import ValidationError
from ..wire import (
    MAX_MULTIADDR_SIZE,
    WireMap,
    WireMessage,
    check_bytes,
    check_bytes_tuple,
    check_int,
    check_tuple,
    kind,
    require,
    wire_tuple,
)

__all__ = [
    "MAX_EXCHANGE_ADDRS",
    "MAX_EXCHANGE_PEERS",
    "PEER_EXCHANGE_PROTOCOL_ID",
    "PeerEntry",
    "PeersRequest",
    "PeersResponse",
]

PEER_EXCHANGE_PROTOCOL_ID: Final = "/trio-autonat/peers/1"
MAX_EXCHANGE_PEERS: Final = 16
"""A request asks for, and a response carries, at most this many peers."""
MAX_EXCHANGE_ADDRS: Final = 4
"""Addresses per peer in a response (our servers send one)."""
MAX_PEER_ID_SIZE: Final = 64
"""A binary peer id: 38 bytes for an Ed25519 identity multihash, 34 for sha2-256."""


@dataclass(frozen=True, slots=True)
class PeersRequest(WireMessage):
    """Ask for up to ``max`` peers."""

    max: int

    def __post_init__(self) -> None:
        check_int(self.max, "peers_request.max", 1, MAX_EXCHANGE_PEERS)

    def to_wire(self) -> WireMap:
        return {"max": self.max}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        return cls(max=require(obj, "max", "peers_request"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """One peer: its binary id and its binary multiaddrs (without ``/p2p/``)."""

    peer_id: bytes
    addrs: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_bytes(self.peer_id, "peer_entry.peer_id", 1, MAX_PEER_ID_SIZE)
        check_bytes_tuple(self.addrs, "peer_entry.addrs", 1, MAX_EXCHANGE_ADDRS,
                          MAX_MULTIADDR_SIZE)

    def to_wire(self) -> WireMap:
        return {"peer_id": self.peer_id, "addrs": list(self.addrs)}

    @classmethod
    def from_wire(cls, obj: object, where: str) -> PeerEntry:
        if not isinstance(obj, dict):
            raise ValidationError(f"{where}: expected a map, got {kind(obj)}")
        return cls(peer_id=require(obj, "peer_id", where),  # type: ignore[arg-type]
                   addrs=wire_tuple(require(obj, "addrs", where),  # type: ignore[arg-type]
                                    f"{where}.addrs"))


@dataclass(frozen=True, slots=True)
class PeersResponse(WireMessage):
    """The sample: at most :data:`MAX_EXCHANGE_PEERS` entries (possibly none)."""

    peers: tuple[PeerEntry, ...]

    def __post_init__(self) -> None:
        check_tuple(self.peers, "peers_response.peers", 0, MAX_EXCHANGE_PEERS)
        for i, entry in enumerate(self.peers):
            if not isinstance(entry, PeerEntry):
                raise ValidationError(
                    f"peers_response.peers[{i}]: expected a PeerEntry, got {kind(entry)}")

    def to_wire(self) -> WireMap:
        return {"peers": [entry.to_wire() for entry in self.peers]}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        raw = wire_tuple(require(obj, "peers", "peers_response"), "peers_response.peers")
        if len(raw) > MAX_EXCHANGE_PEERS:  # before building any entry
            raise ValidationError(f"peers_response.peers: expected 0 to {MAX_EXCHANGE_PEERS} "
                                  f"items, got {len(raw)}")
        return cls(peers=tuple(PeerEntry.from_wire(item, f"peers_response.peers[{i}]")
                               for i, item in enumerate(raw)))
