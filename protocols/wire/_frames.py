"""Connection frames: the two handshake frames, then stream and error frames.

Theory of operation
-------------------
A connection carries msgpack maps (see :mod:`protocols.wire._codec`). Before the
handshake completes only two frames are legal, told apart by their ``"t"``
field (docs/architecture.md, "Wire protocol")::

    {"t": "hello", "v": 1, "key": <protobuf public key>, "nonce": <32 bytes>}
    {"t": "auth", "sig": <64-byte Ed25519 signature>}

The signed bytes are :func:`handshake_payload`: ``HANDSHAKE_CONTEXT`` +
the *peer's* nonce + the signer's own protobuf key. The context string
separates these signatures from any other use of the node key.

After the handshake every frame belongs to a stream::

    {"s": <stream id>, "p": <protocol id, first frame only>, "m": <map>, "fin": <bool>}
    {"s": <stream id>, "err": <code>, "fin": true}
    {"s": <stream id>, "w": <credit, 1 .. 2**32-1>}

Frames are told apart by which of ``"m"``, ``"err"`` and ``"w"`` they carry
(exactly one). The third kind, :class:`WindowUpdate`, grants the peer more
send credit on a stream (per-stream flow control, see
:mod:`protocols.wire._flow`); it carries no message and never ends a stream. A stream frame's
``"m"`` is an opaque :data:`WireMap` here; the protocol modules
(:mod:`protocols.identify._identify_msg`, :mod:`protocols.autonat._autonat_msg`) turn it into
typed messages. Stream-id parity, which side may open which stream, and
"frame after fin" belong to the connection state machine, not to the codec.

Decoding is strict about types and bounds but ignores unknown keys, so a
later version can add optional fields. A handshake frame where a stream frame
is expected, or the reverse, raises :class:`~protocols.HandshakeOrderError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias

from ..core import HandshakeOrderError, ValidationError
from ._codec import (
    DEFAULT_LIMITS,
    STRUCTURAL_LIMITS,
    U32_MAX,
    Limits,
    WireMap,
    WireMessage,
    check_bool,
    check_bytes,
    check_int,
    check_str,
    check_tag,
    check_wire_value,
    kind,
    require,
    show,
    unpack,
)

HANDSHAKE_CONTEXT: Final = b"trio-autonat/handshake/1"
HANDSHAKE_VERSION: Final = 1
NONCE_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
MAX_PUBLIC_KEY_SIZE: Final = 128
"""Room for any libp2p protobuf key type but RSA; an Ed25519 key is 36 bytes."""
MAX_PROTOCOL_ID_LEN: Final = 256
MAX_ERROR_CODE_LEN: Final = 64


class ErrorCode(enum.StrEnum):
    """The error codes this implementation sends in error frames."""

    UNSUPPORTED_PROTOCOL = "unsupported-protocol"
    TOO_MANY_STREAMS = "too-many-streams"
    STREAM_TIMEOUT = "stream-timeout"
    BAD_MESSAGE = "bad-message"
    INTERNAL_ERROR = "internal-error"
    FLOW_CONTROL = "flow-control"
    """The peer sent a message on a stream beyond the credit it was granted."""
    RATE_LIMITED = "rate-limited"
    """A request over the server's rate limits (peer exchange)."""


def handshake_payload(their_nonce: bytes, my_public_key_protobuf: bytes) -> bytes:
    """The bytes an ``Auth`` signature covers: context + their nonce + my key."""
    check_bytes(their_nonce, "handshake nonce", NONCE_SIZE, NONCE_SIZE)
    check_bytes(my_public_key_protobuf, "handshake public key", 1, MAX_PUBLIC_KEY_SIZE)
    return HANDSHAKE_CONTEXT + their_nonce + my_public_key_protobuf


@dataclass(frozen=True, slots=True)
class Hello(WireMessage):
    """First handshake frame: protocol version, protobuf public key, fresh nonce."""

    TAG: ClassVar[str] = "hello"

    version: int
    public_key: bytes
    nonce: bytes

    def __post_init__(self) -> None:
        check_int(self.version, "hello.v", 0, U32_MAX)
        check_bytes(self.public_key, "hello.key", 1, MAX_PUBLIC_KEY_SIZE)
        check_bytes(self.nonce, "hello.nonce", NONCE_SIZE, NONCE_SIZE)

    def to_wire(self) -> WireMap:
        return {"t": self.TAG, "v": self.version, "key": self.public_key, "nonce": self.nonce}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, "t", cls.TAG, "hello frame")
        return cls(
            version=check_int(require(obj, "v", "hello frame"), "hello.v", 0, U32_MAX),
            public_key=check_bytes(require(obj, "key", "hello frame"), "hello.key",
                                   1, MAX_PUBLIC_KEY_SIZE),
            nonce=check_bytes(require(obj, "nonce", "hello frame"), "hello.nonce",
                              NONCE_SIZE, NONCE_SIZE),
        )


@dataclass(frozen=True, slots=True)
class Auth(WireMessage):
    """Second handshake frame: the signature over :func:`handshake_payload`."""

    TAG: ClassVar[str] = "auth"

    signature: bytes

    def __post_init__(self) -> None:
        check_bytes(self.signature, "auth.sig", SIGNATURE_SIZE, SIGNATURE_SIZE)

    def to_wire(self) -> WireMap:
        return {"t": self.TAG, "sig": self.signature}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        check_tag(obj, "t", cls.TAG, "auth frame")
        signature = require(obj, "sig", "auth frame")
        return cls(signature=check_bytes(signature, "auth.sig", SIGNATURE_SIZE, SIGNATURE_SIZE))


HandshakeFrame: TypeAlias = Hello | Auth

_HANDSHAKE_TYPES: Final[dict[str, type[Hello] | type[Auth]]] = {
    Hello.TAG: Hello,
    Auth.TAG: Auth,
}


def decode_handshake_frame(data: bytes, limits: Limits = DEFAULT_LIMITS) -> HandshakeFrame:
    """Decode a ``hello`` or ``auth`` frame; raise a ProtocolError otherwise."""
    obj = unpack(data, limits)
    if "t" not in obj and "s" in obj:
        raise HandshakeOrderError("expected a handshake frame, got a stream frame")
    tag = require(obj, "t", "handshake frame")
    frame_type = _HANDSHAKE_TYPES.get(tag) if isinstance(tag, str) else None
    if frame_type is None:
        raise ValidationError(f"handshake frame: unknown type 't'={show(tag)} "
                              f"(expected 'hello' or 'auth')")
    return frame_type.from_wire(obj)


def _check_stream_id(value: object, where: str) -> int:
    return check_int(value, f"{where}.s", 0, U32_MAX)


@dataclass(frozen=True, slots=True)
class StreamFrame(WireMessage):
    """One message on a stream; ``protocol`` is set on the stream's first frame only.

    ``message`` is a plain map (not hashable); the protocol modules decode it.
    """

    stream_id: int
    protocol: str | None
    message: WireMap
    fin: bool

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id, "stream frame")
        if self.protocol is not None:
            check_str(self.protocol, "stream frame.p", 1, MAX_PROTOCOL_ID_LEN)
        if not isinstance(self.message, dict):
            raise ValidationError(f"stream frame.m: expected a map, got {kind(self.message)}")
        check_wire_value(self.message, STRUCTURAL_LIMITS, "stream frame.m")
        check_bool(self.fin, "stream frame.fin")

    def to_wire(self) -> WireMap:
        wire: WireMap = {"s": self.stream_id}
        if self.protocol is not None:
            wire["p"] = self.protocol
        wire["m"] = self.message
        wire["fin"] = self.fin
        return wire

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        return cls(*cls._wire_fields(obj))

    @classmethod
    def _from_unpacked(cls, obj: WireMap) -> Self:
        """:meth:`from_wire` for a map :func:`unpack` returned: its message already passed
        the codec's checks, which are at least as strict as the structural ones that
        ``__post_init__`` would walk the message for again (every frame limit is within
        the absolute caps, and the message sits one level below the frame)."""
        stream_id, protocol, message, fin = cls._wire_fields(obj)
        frame = object.__new__(cls)
        for name, value in (("stream_id", stream_id), ("protocol", protocol),
                            ("message", message), ("fin", fin)):
            object.__setattr__(frame, name, value)
        return frame

    @staticmethod
    def _wire_fields(obj: WireMap) -> tuple[int, str | None, WireMap, bool]:
        where = "stream frame"
        protocol = obj.get("p") if isinstance(obj, dict) else None
        message = require(obj, "m", where)
        if not isinstance(message, dict):
            raise ValidationError(f"{where}.m: expected a map, got {kind(message)}")
        return (_check_stream_id(require(obj, "s", where), where),
                None if protocol is None else check_str(
                    protocol, f"{where}.p", 1, MAX_PROTOCOL_ID_LEN),
                message,
                check_bool(require(obj, "fin", where), f"{where}.fin"))


@dataclass(frozen=True, slots=True)
class ErrorFrame(WireMessage):
    """Aborts a stream with a code (see :class:`ErrorCode`); always final.

    Unknown codes from newer peers are kept as plain strings.
    """

    stream_id: int
    code: str

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id, "error frame")
        check_str(self.code, "error frame.err", 1, MAX_ERROR_CODE_LEN)

    def to_wire(self) -> WireMap:
        return {"s": self.stream_id, "err": str(self.code), "fin": True}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        where = "error frame"
        if check_bool(require(obj, "fin", where), f"{where}.fin") is not True:
            raise ValidationError(f"{where}.fin: must be true")
        code = check_str(require(obj, "err", where), f"{where}.err", 1, MAX_ERROR_CODE_LEN)
        return cls(stream_id=_check_stream_id(require(obj, "s", where), where), code=code)


@dataclass(frozen=True, slots=True)
class WindowUpdate(WireMessage):
    """Grants the peer ``credit`` more messages on a stream (flow control)."""

    stream_id: int
    credit: int

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id, "window update")
        check_int(self.credit, "window update.w", 1, U32_MAX)

    def to_wire(self) -> WireMap:
        return {"s": self.stream_id, "w": self.credit}

    @classmethod
    def from_wire(cls, obj: WireMap) -> Self:
        where = "window update"
        return cls(stream_id=_check_stream_id(require(obj, "s", where), where),
                   credit=check_int(require(obj, "w", where), f"{where}.w", 1, U32_MAX))


Frame: TypeAlias = StreamFrame | ErrorFrame | WindowUpdate


def decode_stream_frame(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Decode a post-handshake frame; raise a ProtocolError otherwise."""
    obj = unpack(data, limits)
    if "t" in obj:
        raise HandshakeOrderError(f"unexpected handshake frame {show(obj['t'])} "
                                  "after the handshake")
    present = [key for key in ("m", "err", "w") if key in obj]
    if len(present) > 1:
        raise ValidationError(f"stream frame: has both {present[0]!r} and {present[1]!r}")
    if "err" in obj:
        return ErrorFrame.from_wire(obj)
    if "w" in obj:
        return WindowUpdate.from_wire(obj)
    return StreamFrame._from_unpacked(obj)
