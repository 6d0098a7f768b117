"""The hole-punch messages (``/libp2p/dcutr``, DCUtR semantics over our wire).

Theory of operation
-------------------
Two peers joined by a relayed connection open one stream and swap their
observed public addresses, then time a simultaneous TCP open (see
:mod:`protocols.holepunch._holepunch`). Three message kinds, each a msgpack
map carried as a stream frame's ``"m"``, told apart by ``"type"``::

    HolePunchConnect  {"type": "connect", "addrs": [bytes, ...], "mapping": str}
    HolePunchSync     {"type": "sync"}

``addrs`` are the sender's observed (never relay) addresses as binary
multiaddrs without ``/p2p/``, at most :data:`MAX_PUNCH_ADDRS`; ``mapping`` is
the sender's ``nat_mapping`` verdict (``none``, ``endpoint-independent``,
``endpoint-dependent`` or ``unknown``). The mapping is our addition to the
libp2p exchange: with it both ends know before dialing that a NAT which
gives every destination a new port (endpoint-dependent) makes the other
side's SYN miss, and say so instead of spending three attempts.

Bounds are checked once, by the constructors, so ``from_wire`` refuses an
oversized or malformed message before anything reads it. Whether each
address is usable is decided per address by
:func:`~protocols.holepunch.usable_punch_addrs`, so one bad entry does not
discard the others. Unknown keys are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

from ..core import AddressError, AddressPolicy, ValidationError, WsAddress
from ..wire import (
    MAX_MULTIADDR_SIZE,
    WireMap,
    WireMessage,
    check_bytes_tuple,
    check_str,
    check_tag,
    kind,
    require,
    show,
    wire_tuple,
)

__all__ = [
    "HOLEPUNCH_PROTOCOL_ID",
    "MAPPINGS",
    "MAX_PUNCH_ADDRS",
    "HolePunchConnect",
    "HolePunchMessage",
    "HolePunchSync",
    "decode_holepunch_message",
    "own_punch_addrs",
    "usable_punch_addrs",
]

HOLEPUNCH_PROTOCOL_ID: Final = "/libp2p/dcutr"
MAX_PUNCH_ADDRS: Final = 8
"""Addresses a Connect carries at most (observed addresses, one per server seen)."""
MAPPINGS: Final = ("none", "endpoint-independent", "endpoint-dependent", "unknown")


@dataclass(frozen=True, slots=True)
class HolePunchConnect(WireMessage):
    """The sender's observed addresses and what it knows of its NAT's mapping."""

    addrs: tuple[bytes, ...]
    mapping: str = "unknown"

    def __post_init__(self) -> None:
        check_bytes_tuple(self.addrs, "holepunch_connect.addrs", 0, MAX_PUNCH_ADDRS,
                          MAX_MULTIADDR_SIZE)
        check_str(self.mapping, "holepunch_connect.mapping", 1, 32)
        if self.mapping not in MAPPINGS:
            raise ValidationError(f"holepunch_connect.mapping: expected one of "
                                  f"{', '.join(MAPPINGS)}, got {show(self.mapping)}")

    @classmethod
    def of(cls, addrs: tuple[WsAddress, ...], mapping: str) -> HolePunchConnect:
        return cls(tuple(a.with_peer_id(None).to_bytes() for a in addrs[:MAX_PUNCH_ADDRS]),
                   mapping)

    def to_wire(self) -> WireMap:
        return {"type": "connect", "addrs": list(self.addrs), "mapping": self.mapping}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, "type", "connect", "holepunch_connect")
        raw = wire_tuple(require(obj, "addrs", "holepunch_connect"), "holepunch_connect.addrs")
        return cls(addrs=raw,  # type: ignore[arg-type]  # checked by __post_init__
                   mapping=require(obj, "mapping", "holepunch_connect"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class HolePunchSync(WireMessage):
    """"Dial now": the initiator dials half a round trip after sending it."""

    def to_wire(self) -> WireMap:
        return {"type": "sync"}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, "type", "sync", "holepunch_sync")
        return cls()


HolePunchMessage = HolePunchConnect | HolePunchSync

def decode_holepunch_message(obj: object) -> HolePunchMessage:
    """One received message, by its ``"type"``; ValidationError otherwise."""
    if not isinstance(obj, dict):
        raise ValidationError(f"holepunch message: expected a map, got {kind(obj)}")
    tag = obj.get("type")
    if tag == "connect":
        return HolePunchConnect.from_wire(obj)
    if tag == "sync":
        return HolePunchSync.from_wire(obj)
    raise ValidationError(f"holepunch message: unknown type {show(tag)}")


def usable_punch_addrs(message: HolePunchConnect,
                       policy: AddressPolicy) -> tuple[tuple[WsAddress, ...], tuple[str, ...]]:
    """The addresses worth dialing (plain ``/ws``, allowed by ``policy``, no
    ``/p2p/``), and why each other one was skipped."""
    usable: dict[WsAddress, None] = {}
    skipped: list[str] = []
    for raw in message.addrs:
        try:
            addr = WsAddress.parse(raw)
        except AddressError as exc:
            skipped.append(f"{raw.hex()}: {exc}")
            continue
        reason = policy.reason_rejected(addr)
        if reason is None and addr.secure:
            reason = "a hole-punched connection is plain /ws"
        if reason is not None:
            skipped.append(f"{addr}: {reason}")
            continue
        usable[addr.with_peer_id(None)] = None
    return tuple(usable), tuple(skipped)


def own_punch_addrs(reachable: tuple[WsAddress, ...], observed: tuple[WsAddress, ...],
                    policy: AddressPolicy) -> tuple[WsAddress, ...]:
    """The addresses our ``Connect`` announces: confirmed reachable ones first, then
    what peers observed (newest first as given), once each, plain ``/ws`` that
    ``policy`` routes, without ``/p2p/``, at most :data:`MAX_PUNCH_ADDRS`. A relay
    address never gets here: observations are of direct connections only."""
    chosen: dict[WsAddress, None] = {}
    for addr in (*reachable, *observed):
        bare = addr.with_peer_id(None)
        if bare.secure or policy.reason_rejected(bare) is not None:
            continue
        chosen[bare] = None
        if len(chosen) == MAX_PUNCH_ADDRS:
            break
    return tuple(chosen)
