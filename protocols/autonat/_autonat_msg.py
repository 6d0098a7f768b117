"""AutoNAT v2 messages (``/libp2p/autonat/2/dial-request`` and ``.../dial-back``).

Theory of operation
-------------------
The messages, fields and status codes are those of the libp2p AutoNAT v2
spec (``autonat/autonat-v2.md``); only the encoding is ours. Where the spec
wraps messages in a protobuf ``oneof``, each of our messages is a msgpack map
with a ``"type"`` tag, carried as a stream frame's ``"m"``::

    dial-request stream (client -> server, server -> client)
      {"type": "dial-request", "addrs": [bytes, ...], "nonce": u64,
       "filtering": true   (optional, ours)}
      {"type": "dial-data-request", "addr_idx": u32, "num_bytes": u64}
      {"type": "dial-data-response", "data": bytes (1..4096)}
      {"type": "dial-response", "status": int, "addr_idx": u32, "dial_status": int,
       "dial_backs": [{"source": int, "dial_status": int}, ...]   (optional, ours)}
    dial-back stream (server -> client on a fresh connection, and the answer)
      {"type": "dial-back", "nonce": u64}
      {"type": "dial-back-response", "status": int}

:func:`decode_autonat_message` dispatches on the tag. Status codes are
IntEnums with the spec's numbers; a value the spec does not define is a
:class:`~protocols.ValidationError`, because guessing what an unknown status
means would turn a peer's word into evidence. Which message may appear on
which stream, and in which order, is the probe state machine's business.

``filtering`` (a request) and ``dial_backs`` (its response) are our
backward-compatible additions. A client that sets ``filtering`` can tell
the server's two dial-backs apart, so the server may make both; a client
that does not (an older one, or another implementation) counts any arrival
of its nonce as reachability, so it gets today's single dial-back, else an
address-restricted NAT would let the extra same-IP dial-back in and make it
believe it is public. ``dial_backs`` is (docs/architecture.md,
"AutoNAT server rules"): what a server that measures filtering attempted
and what happened to each attempt, one entry per :class:`DialBackSource`
(at most two, distinct sources). It is omitted when empty, so a response
without it encodes exactly as before, and older decoders ignore unknown
keys; a response without it decodes as ``dial_backs=()``.

Bounds: 1 to :data:`MAX_DIAL_ADDRS` candidate addresses per request (the
server dials only one), each a binary multiaddr of at most
:data:`~protocols.wire._codec.MAX_MULTIADDR_SIZE` bytes; dial-data chunks carry 1 to
:data:`MAX_DIAL_DATA_CHUNK` bytes, as in the spec (an empty chunk would make
no progress towards the requested amount).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias

from ..core import ValidationError
from ..wire import (
    MAX_MULTIADDR_SIZE,
    U32_MAX,
    U64_MAX,
    WireMap,
    WireMessage,
    check_bool,
    check_bytes,
    check_bytes_tuple,
    check_enum,
    check_int,
    check_tag,
    check_tuple,
    kind,
    require,
    show,
    wire_tuple,
)

DIAL_REQUEST_PROTOCOL_ID: Final = "/libp2p/autonat/2/dial-request"
DIAL_BACK_PROTOCOL_ID: Final = "/libp2p/autonat/2/dial-back"
DIAL_BACK_OTHER_IP_PROTOCOL_ID: Final = "/trio-autonat/dial-back-other-ip/1"
"""Listed in Identify by a dial-request server that dials back from a second IP
(``dialback_source``): a capability, not a conversation (a stream opened on it is
closed at once). A client asks such a server first about an address no dial-back
from an IP it never contacted has spoken about yet - only that can tell a public
address from one behind an address-dependent filter."""
MAX_DIAL_ADDRS: Final = 16
MAX_DIAL_DATA_CHUNK: Final = 4096
TYPE_KEY: Final = "type"


class ResponseStatus(enum.IntEnum):
    """``DialResponse.ResponseStatus``: did the server accept the request?"""

    E_INTERNAL_ERROR = 0
    E_REQUEST_REJECTED = 100
    E_DIAL_REFUSED = 101
    OK = 200


class DialStatus(enum.IntEnum):
    """``DialStatus``: what happened when the server dialed (``UNUSED`` if it did not)."""

    UNUSED = 0
    E_DIAL_ERROR = 100
    E_DIAL_BACK_ERROR = 101
    OK = 200


class DialBackSource(enum.IntEnum):
    """Where a server's dial-back came from (``DialResponse.dial_backs``).

    ``CONTACTED_IP``: the IP the client sent its request to, on a fresh
    ephemeral port; ``OTHER_IP``: the server's second address
    (``dialback_source``), an IP the client never contacted.
    """

    CONTACTED_IP = 1
    OTHER_IP = 2


class DialBackStatus(enum.IntEnum):
    """``DialBackResponse.DialBackStatus``."""

    OK = 0


@dataclass(frozen=True, slots=True)
class DialRequest(WireMessage):
    """Client asks the server to dial one of ``addrs`` and send back ``nonce``.

    ``filtering`` (optional, ours): the client tells dial-backs from the
    address it contacted and from another apart, so the server may make both
    (see the module docstring); omitted on the wire when false.
    """

    TYPE: ClassVar[str] = "dial-request"

    addrs: tuple[bytes, ...]
    nonce: int
    filtering: bool = False

    def __post_init__(self) -> None:
        _check_addrs(self.addrs, f"{self.TYPE}.addrs")
        check_int(self.nonce, f"{self.TYPE}.nonce", 0, U64_MAX)
        check_bool(self.filtering, f"{self.TYPE}.filtering")

    def to_wire(self) -> WireMap:
        wire: WireMap = {TYPE_KEY: self.TYPE, "addrs": list(self.addrs), "nonce": self.nonce}
        if self.filtering:
            wire["filtering"] = True
        return wire

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        field = f"{cls.TYPE}.addrs"
        return cls(
            addrs=_check_addrs(wire_tuple(require(obj, "addrs", cls.TYPE), field), field),
            nonce=check_int(require(obj, "nonce", cls.TYPE), f"{cls.TYPE}.nonce", 0, U64_MAX),
            filtering=check_bool(obj.get("filtering", False), f"{cls.TYPE}.filtering"),
        )


def _check_addrs(value: object, field: str) -> tuple[bytes, ...]:
    return check_bytes_tuple(value, field, 1, MAX_DIAL_ADDRS, MAX_MULTIADDR_SIZE)


@dataclass(frozen=True, slots=True)
class DialDataRequest(WireMessage):
    """Server asks for ``num_bytes`` of dial data before dialing ``addrs[addr_idx]``."""

    TYPE: ClassVar[str] = "dial-data-request"

    addr_idx: int
    num_bytes: int

    def __post_init__(self) -> None:
        check_int(self.addr_idx, f"{self.TYPE}.addr_idx", 0, U32_MAX)
        check_int(self.num_bytes, f"{self.TYPE}.num_bytes", 0, U64_MAX)

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "addr_idx": self.addr_idx, "num_bytes": self.num_bytes}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        return cls(
            addr_idx=check_int(require(obj, "addr_idx", cls.TYPE), f"{cls.TYPE}.addr_idx",
                               0, U32_MAX),
            num_bytes=check_int(require(obj, "num_bytes", cls.TYPE), f"{cls.TYPE}.num_bytes",
                                0, U64_MAX),
        )


@dataclass(frozen=True, slots=True)
class DialDataResponse(WireMessage):
    """One chunk of dial data (only ``len(data)`` counts towards the request)."""

    TYPE: ClassVar[str] = "dial-data-response"

    data: bytes

    def __post_init__(self) -> None:
        check_bytes(self.data, f"{self.TYPE}.data", 1, MAX_DIAL_DATA_CHUNK)

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "data": self.data}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        data = require(obj, "data", cls.TYPE)
        return cls(data=check_bytes(data, f"{cls.TYPE}.data", 1, MAX_DIAL_DATA_CHUNK))


@dataclass(frozen=True, slots=True)
class DialBackAttempt:
    """One dial-back a server attempted for a request, and how it went."""

    source: DialBackSource
    dial_status: DialStatus

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", check_enum(self.source, DialBackSource,
                                                      "dial_backs.source"))
        object.__setattr__(self, "dial_status", check_enum(self.dial_status, DialStatus,
                                                           "dial_backs.dial_status"))

    def to_wire(self) -> WireMap:
        return {"source": int(self.source), "dial_status": int(self.dial_status)}


MAX_DIAL_BACKS: Final = len(DialBackSource)


def _check_dial_backs(value: object, field: str) -> tuple[DialBackAttempt, ...]:
    items = check_tuple(value, field, 0, MAX_DIAL_BACKS)
    attempts: list[DialBackAttempt] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):  # from the wire
            where = f"{field}[{i}]"
            item = DialBackAttempt(
                source=check_enum(require(item, "source", where), DialBackSource,
                                  f"{where}.source"),
                dial_status=check_enum(require(item, "dial_status", where), DialStatus,
                                       f"{where}.dial_status"))
        if not isinstance(item, DialBackAttempt):
            raise ValidationError(f"{field}[{i}]: expected a map, got {kind(item)}")
        attempts.append(item)
    if len({attempt.source for attempt in attempts}) != len(attempts):
        raise ValidationError(f"{field}: one attempt per source at most")
    return tuple(attempts)


@dataclass(frozen=True, slots=True)
class DialResponse(WireMessage):
    """Server's verdict on a request; ``dial_status`` says how its dial went.

    ``dial_backs`` (optional, ours): every dial-back attempted for the
    request, by source (see the module docstring); empty from servers that
    do not report them. ``dial_status`` stays the reachability answer: the
    dial-back from the second address when the server has one, else the one
    from its primary address.

    Integer values are accepted and stored as the enum member.
    """

    TYPE: ClassVar[str] = "dial-response"

    status: ResponseStatus
    addr_idx: int
    dial_status: DialStatus
    dial_backs: tuple[DialBackAttempt, ...] = ()

    def __post_init__(self) -> None:
        status = check_enum(self.status, ResponseStatus, f"{self.TYPE}.status")
        check_int(self.addr_idx, f"{self.TYPE}.addr_idx", 0, U32_MAX)
        dial_status = check_enum(self.dial_status, DialStatus, f"{self.TYPE}.dial_status")
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "dial_status", dial_status)
        object.__setattr__(self, "dial_backs",
                           _check_dial_backs(self.dial_backs, f"{self.TYPE}.dial_backs"))

    def attempt(self, source: DialBackSource) -> DialStatus | None:
        """How the dial-back from ``source`` went, or None when none was reported."""
        for attempt in self.dial_backs:
            if attempt.source == source:
                return attempt.dial_status
        return None

    def to_wire(self) -> WireMap:
        wire: WireMap = {TYPE_KEY: self.TYPE, "status": int(self.status),
                         "addr_idx": self.addr_idx, "dial_status": int(self.dial_status)}
        if self.dial_backs:
            wire["dial_backs"] = [attempt.to_wire() for attempt in self.dial_backs]
        return wire

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        field = f"{cls.TYPE}.dial_backs"
        backs = obj.get("dial_backs", [])
        return cls(
            status=check_enum(require(obj, "status", cls.TYPE), ResponseStatus,
                              f"{cls.TYPE}.status"),
            addr_idx=check_int(require(obj, "addr_idx", cls.TYPE), f"{cls.TYPE}.addr_idx",
                               0, U32_MAX),
            dial_status=check_enum(require(obj, "dial_status", cls.TYPE), DialStatus,
                                   f"{cls.TYPE}.dial_status"),
            dial_backs=_check_dial_backs(wire_tuple(backs, field), field),
        )


@dataclass(frozen=True, slots=True)
class DialBack(WireMessage):
    """Sent by the server on a fresh connection: the nonce proves the dial-back."""

    TYPE: ClassVar[str] = "dial-back"

    nonce: int

    def __post_init__(self) -> None:
        check_int(self.nonce, f"{self.TYPE}.nonce", 0, U64_MAX)

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "nonce": self.nonce}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        nonce = require(obj, "nonce", cls.TYPE)
        return cls(nonce=check_int(nonce, f"{cls.TYPE}.nonce", 0, U64_MAX))


@dataclass(frozen=True, slots=True)
class DialBackResponse(WireMessage):
    """Client's acknowledgement of a dial-back."""

    TYPE: ClassVar[str] = "dial-back-response"

    status: DialBackStatus = DialBackStatus.OK

    def __post_init__(self) -> None:
        status = check_enum(self.status, DialBackStatus, f"{self.TYPE}.status")
        object.__setattr__(self, "status", status)

    def to_wire(self) -> WireMap:
        return {TYPE_KEY: self.TYPE, "status": int(self.status)}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, TYPE_KEY, cls.TYPE, cls.TYPE)
        status = require(obj, "status", cls.TYPE)
        return cls(status=check_enum(status, DialBackStatus, f"{cls.TYPE}.status"))


AutonatMessage: TypeAlias = (
    DialRequest | DialDataRequest | DialDataResponse | DialResponse | DialBack | DialBackResponse
)

_MESSAGE_TYPES: Final[dict[str, type[AutonatMessage]]] = {
    cls.TYPE: cls
    for cls in (DialRequest, DialDataRequest, DialDataResponse, DialResponse, DialBack,
                DialBackResponse)
}


def decode_autonat_message(m: WireMap) -> AutonatMessage:
    """Turn a stream frame's ``"m"`` map into the AutoNAT message its tag names."""
    if not isinstance(m, dict):
        raise ValidationError(f"autonat message: expected a map, got {kind(m)}")
    tag = require(m, TYPE_KEY, "autonat message")
    message_type = _MESSAGE_TYPES.get(tag) if isinstance(tag, str) else None
    if message_type is None:
        known = ", ".join(sorted(_MESSAGE_TYPES))
        raise ValidationError(f"autonat message: unknown type {show(tag)} (known: {known})")
    return message_type.from_wire(m)
