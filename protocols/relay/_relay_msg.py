"""Circuit Relay v2 messages (``/libp2p/circuit/relay/0.2.0/hop`` and ``.../stop``).

Theory of operation
-------------------
The messages, status codes and their meaning follow the libp2p Circuit
Relay v2 spec (``relay/circuit-v2.md``); only the encoding is ours. Where the
spec's protobufs carry a ``type`` enum, each of our messages is a msgpack map
with a ``"type"`` tag, carried as a stream frame's ``"m"``::

    hop stream (client -> relay, relay -> client)
      {"type": "reserve"}
      {"type": "connect", "peer": <peer id bytes>}
      {"type": "status", "status": int,
       "reservation": {"ttl": u32, "addrs": [bytes, ...]}   (RESERVE answered OK),
       "limit": {"duration": u32, "data": u64}}             (when the relay limits)
    stop stream (relay -> reserved peer, and the answer)
      {"type": "stop-connect", "peer": <initiator's peer id bytes>,
       "limit": {"duration": u32, "data": u64}}
      {"type": "stop-status", "status": int}
    either stream, once the circuit is up (both ways, spliced by the relay)
      {"type": "data", "data": bytes (1 .. MAX_CIRCUIT_DATA)}

Two departures from the spec, both for our wire:

* A reservation carries ``ttl`` (seconds from the answer) instead of the
  spec's absolute Unix ``expire``: our sans-io code keeps time as a
  monotonic ``now``, and a relative time is immune to clock skew between
  relay and client. The client renews well before ``ttl`` on its own clock.
* A relayed connection is a sequence of our connection frames, so the
  circuit carries whole frames, one per ``data`` message, instead of a byte
  stream. The relay forwards each message unchanged and counts its
  ``data`` bytes against the circuit's limit; it can neither read nor alter
  them: the ends seal every frame after an authenticated key exchange
  (:mod:`protocols.relay._circuit_security`), then run our full handshake
  inside.

The spec's reservation voucher (a signed record the reserving peer may hand
out) is not carried yet. Every message is validated once, here, at the
boundary; :func:`decode_hop_message`, :func:`decode_stop_message` and
:func:`decode_circuit_data` dispatch on the tag and refuse a message that
does not belong on their stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias

from ..core import PeerId, ValidationError
from ..wire import (
    MAX_MULTIADDR_SIZE,
    U32_MAX,
    U64_MAX,
    WireMap,
    WireMessage,
    check_bytes,
    check_bytes_tuple,
    check_enum,
    check_int,
    check_tag,
    kind,
    require,
    show,
    wire_tuple,
)

HOP_PROTOCOL_ID: Final = "/libp2p/circuit/relay/0.2.0/hop"
STOP_PROTOCOL_ID: Final = "/libp2p/circuit/relay/0.2.0/stop"
TYPE_KEY: Final = "type"
MAX_RESERVATION_ADDRS: Final = 16
MAX_PEER_ID_SIZE: Final = 128
MAX_CIRCUIT_DATA: Final = 60 * 1024
"""Largest ``data`` payload: one sealed inner frame, leaving room for the outer frame's own
keys inside the default 64 KiB frame (a relayed connection's frames are at most this, less
the seal's tag)."""


class RelayStatus(enum.IntEnum):
    """The spec's ``Status``: the outcome of a hop or stop request."""

    OK = 100
    RESERVATION_REFUSED = 200
    RESOURCE_LIMIT_EXCEEDED = 201
    PERMISSION_DENIED = 202
    CONNECTION_FAILED = 203
    NO_RESERVATION = 204
    MALFORMED_MESSAGE = 400
    UNEXPECTED_MESSAGE = 401


def _check_peer(value: object, field: str) -> bytes:
    data = check_bytes(value, field, 1, MAX_PEER_ID_SIZE)
    try:
        PeerId.from_bytes(data)
    except ValidationError as exc:
        raise ValidationError(f"{field}: not a peer id ({exc})") from None
    return data


@dataclass(frozen=True, slots=True)
class CircuitLimit:
    """What a relay allows one circuit: ``duration`` seconds and ``data`` bytes each way."""

    duration: int
    data: int

    def __post_init__(self) -> None:
        check_int(self.duration, "limit.duration", 1, U32_MAX)
        check_int(self.data, "limit.data", 1, U64_MAX)

    def to_wire(self) -> WireMap:
        return {"duration": self.duration, "data": self.data}

    @classmethod
    def from_wire(cls, obj: object, where: str) -> Self:
        if not isinstance(obj, dict):
            raise ValidationError(f"{where}.limit: expected a map, got {kind(obj)}")
        return cls(duration=check_int(require(obj, "duration", f"{where}.limit"),
                                      f"{where}.limit.duration", 1, U32_MAX),
                   data=check_int(require(obj, "data", f"{where}.limit"),
                                  f"{where}.limit.data", 1, U64_MAX))


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """A granted reservation: valid ``ttl`` more seconds, reachable at ``addrs``
    (the relay's own binary multiaddrs, ending in its ``/p2p/`` id)."""

    ttl: int
    addrs: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        check_int(self.ttl, "reservation.ttl", 1, U32_MAX)
        check_bytes_tuple(self.addrs, "reservation.addrs", 0, MAX_RESERVATION_ADDRS,
                          MAX_MULTIADDR_SIZE)

    def to_wire(self) -> WireMap:
        return {"ttl": self.ttl, "addrs": list(self.addrs)}

    @classmethod
    def from_wire(cls, obj: object, where: str) -> Self:
        if not isinstance(obj, dict):
            raise ValidationError(f"{where}.reservation: expected a map, got {kind(obj)}")
        field = f"{where}.reservation.addrs"
        return cls(ttl=check_int(require(obj, "ttl", f"{where}.reservation"),
                                 f"{where}.reservation.ttl", 1, U32_MAX),
                   addrs=check_bytes_tuple(wire_tuple(obj.get("addrs", []), field), field,
                                           0, MAX_RESERVATION_ADDRS, MAX_MULTIADDR_SIZE))


@dataclass(frozen=True, slots=True)
class HopReserve(WireMessage):
    """Client asks the relay for a reservation (or renews its reservation)."""

    TYPE: ClassVar[str] = "reserve"

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        return cls()


@dataclass(frozen=True, slots=True)
class HopConnect(WireMessage):
    """Client asks the relay for a circuit to ``peer`` (which holds a reservation)."""

    TYPE: ClassVar[str] = "connect"

    peer: bytes

    def __post_init__(self) -> None:
        _check_peer(self.peer, f"{self.TYPE}.peer")

    @property
    def peer_id(self) -> PeerId:
        return PeerId.from_bytes(self.peer)

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "peer": self.peer}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        return cls(peer=_check_peer(require(obj, "peer", cls.TYPE), f"{cls.TYPE}.peer"))


@dataclass(frozen=True, slots=True)
class HopStatus(WireMessage):
    """The relay's answer on a hop stream.

    ``reservation`` only on an OK answer to RESERVE; ``limit`` when the relay
    limits circuits (always, here).
    """

    TYPE: ClassVar[str] = "status"

    status: RelayStatus
    reservation: ReservationInfo | None = None
    limit: CircuitLimit | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status",
                           check_enum(self.status, RelayStatus, f"{self.TYPE}.status"))
        if self.reservation is not None and not isinstance(self.reservation, ReservationInfo):
            raise ValidationError(f"{self.TYPE}.reservation: expected a ReservationInfo")
        if self.limit is not None and not isinstance(self.limit, CircuitLimit):
            raise ValidationError(f"{self.TYPE}.limit: expected a CircuitLimit")
        if self.reservation is not None and self.status is not RelayStatus.OK:
            raise ValidationError(f"{self.TYPE}: a reservation comes only with status OK")

    def to_wire(self) -> WireMap:
        wire: WireMap = {TYPE_KEY: self.TYPE, "status": int(self.status)}
        if self.reservation is not None:
            wire["reservation"] = self.reservation.to_wire()
        if self.limit is not None:
            wire["limit"] = self.limit.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        reservation = obj.get("reservation")
        limit = obj.get("limit")
        return cls(
            status=check_enum(require(obj, "status", cls.TYPE), RelayStatus,
                              f"{cls.TYPE}.status"),
            reservation=(None if reservation is None
                         else ReservationInfo.from_wire(reservation, cls.TYPE)),
            limit=None if limit is None else CircuitLimit.from_wire(limit, cls.TYPE))


@dataclass(frozen=True, slots=True)
class StopConnect(WireMessage):
    """The relay tells a reserved peer that ``peer`` opens a circuit to it, under ``limit``."""

    TYPE: ClassVar[str] = "stop-connect"

    peer: bytes
    limit: CircuitLimit | None = None

    def __post_init__(self) -> None:
        _check_peer(self.peer, f"{self.TYPE}.peer")
        if self.limit is not None and not isinstance(self.limit, CircuitLimit):
            raise ValidationError(f"{self.TYPE}.limit: expected a CircuitLimit")

    @property
    def peer_id(self) -> PeerId:
        return PeerId.from_bytes(self.peer)

    def to_wire(self) -> WireMap:
        wire: WireMap = {TYPE_KEY: self.TYPE, "peer": self.peer}
        if self.limit is not None:
            wire["limit"] = self.limit.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        limit = obj.get("limit")
        return cls(peer=_check_peer(require(obj, "peer", cls.TYPE), f"{cls.TYPE}.peer"),
                   limit=None if limit is None else CircuitLimit.from_wire(limit, cls.TYPE))


@dataclass(frozen=True, slots=True)
class StopStatus(WireMessage):
    """The reserved peer's answer to :class:`StopConnect`."""

    TYPE: ClassVar[str] = "stop-status"

    status: RelayStatus

    def __post_init__(self) -> None:
        object.__setattr__(self, "status",
                           check_enum(self.status, RelayStatus, f"{self.TYPE}.status"))

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "status": int(self.status)}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        return cls(status=check_enum(require(obj, "status", cls.TYPE), RelayStatus,
                                     f"{cls.TYPE}.status"))


@dataclass(frozen=True, slots=True)
class CircuitData(WireMessage):
    """One message of the circuit: a key-exchange message, then sealed frames of the
    relayed connection - opaque to the relay."""

    TYPE: ClassVar[str] = "data"

    data: bytes

    def __post_init__(self) -> None:
        check_bytes(self.data, f"{self.TYPE}.data", 1, MAX_CIRCUIT_DATA)

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "data": self.data}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        return cls(data=check_bytes(require(obj, "data", cls.TYPE), f"{cls.TYPE}.data",
                                    1, MAX_CIRCUIT_DATA))


HopMessage: TypeAlias = HopReserve | HopConnect | HopStatus
StopMessage: TypeAlias = StopConnect | StopStatus
RelayMessage: TypeAlias = HopMessage | StopMessage | CircuitData

_HOP_TYPES: Final[dict[str, type[HopMessage]]] = {
    cls.TYPE: cls for cls in (HopReserve, HopConnect, HopStatus)}
_STOP_TYPES: Final[dict[str, type[StopMessage]]] = {
    cls.TYPE: cls for cls in (StopConnect, StopStatus)}


def _tag(m: WireMap, where: str, known: dict[str, type]) -> str:
    if not isinstance(m, dict):
        raise ValidationError(f"{where}: expected a map, got {kind(m)}")
    tag = require(m, TYPE_KEY, where)
    if not isinstance(tag, str) or tag not in known:
        names = ", ".join(sorted(known))
        raise ValidationError(f"{where}: unexpected type {show(tag)} (expected {names})")
    return tag


def decode_hop_message(m: WireMap) -> HopMessage:
    """A hop stream's message (before the circuit is up)."""
    return _HOP_TYPES[_tag(m, "hop message", _HOP_TYPES)].from_wire(m)


def decode_stop_message(m: WireMap) -> StopMessage:
    """A stop stream's message (before the circuit is up)."""
    return _STOP_TYPES[_tag(m, "stop message", _STOP_TYPES)].from_wire(m)


def decode_circuit_data(m: WireMap) -> CircuitData:
    """A message on a circuit that is up: only ``data`` is legal there."""
    _tag(m, "circuit message", {CircuitData.TYPE: CircuitData})
    return CircuitData.from_wire(m)
