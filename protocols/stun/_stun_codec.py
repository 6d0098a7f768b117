"""The STUN message codec (RFC 8489, with the RFC 5780 attributes), sans-io.

Theory of operation
-------------------
A STUN message is a 20-byte header followed by attributes::

    0                   1                   2                   3
    |0 0|     message type (14 bits)      |   message length (16 bits)  |
    |                 magic cookie 0x2112A442                            |
    |                 transaction id (96 bits)                           |
    |  type (16)  |  length (16)  |  value, padded to 4 bytes  | ...     |

The message type interleaves a 12-bit *method* (Binding is 0x001) with a
2-bit *class* (request, indication, success response, error response). The
length counts the attributes only and is always a multiple of 4, because
every attribute is padded to a 4-byte boundary (padding bytes may hold any
value; we send zeros unless told otherwise).

:func:`decode_message` is the boundary for untrusted datagrams. It checks,
once: the size against ``max_size`` (a datagram larger than any request we
serve is refused before parsing), the two leading zero bits, the magic
cookie (so RFC 3489 messages, which lack it, are refused), the length field
against the datagram, every attribute's length and padding against what is
left, the number of attributes, and the value of every attribute it knows.
``MESSAGE-INTEGRITY`` may be followed only by ``FINGERPRINT`` (other
attributes after it are ignored, as the standard says); ``FINGERPRINT`` must
be the last attribute and must match, or the datagram is not STUN at all.
Every failure raises :class:`StunDecodeError` and nothing else, whatever the
bytes (a Hypothesis test holds this).

Attributes the codec does not know are kept as :class:`UnknownAttribute`;
those in the comprehension-required range (type < 0x8000) are listed by
:meth:`StunMessage.unknown_required` so that a server can answer 420. The
codec decides nothing about them.

Integrity: ``MESSAGE-INTEGRITY`` is an HMAC-SHA1 over the message up to the
attribute, with the length field counting up to and including it.
:meth:`DecodedMessage.verify_integrity` checks it with a key
(:func:`short_term_key`, or :func:`long_term_key` for the long-term
mechanism), in constant time; :func:`encode_message` computes it.
``FINGERPRINT`` is CRC-32 of the message up to the attribute (length field
counting it) XOR 0x5354554E.

Addresses are :class:`Endpoint` values (an :mod:`ipaddress` IP and a port);
the XOR variants are obfuscated with the magic cookie and, for IPv6, the
transaction id.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass
from typing import Final, Self, TypeAlias, TypeVar

from ..core import DecodeError, ValidationError

__all__ = [
    "BINDING",
    "HEADER_SIZE",
    "MAGIC_COOKIE",
    "MAX_MESSAGE_SIZE",
    "AttrType",
    "Attribute",
    "ChangeRequest",
    "DecodedMessage",
    "Endpoint",
    "ErrorCode",
    "MappedAddress",
    "Nonce",
    "OtherAddress",
    "Realm",
    "ResponseOrigin",
    "Software",
    "StunClass",
    "StunDecodeError",
    "StunMessage",
    "UnknownAttribute",
    "UnknownAttributes",
    "Username",
    "XorMappedAddress",
    "attribute_size",
    "decode_message",
    "encode_message",
    "long_term_key",
    "short_term_key",
]

MAGIC_COOKIE: Final = 0x2112A442
HEADER_SIZE: Final = 20
TRANSACTION_ID_SIZE: Final = 12
BINDING: Final = 0x001
MAX_MESSAGE_SIZE: Final = 1280
"""Default limit for :func:`decode_message`: the IPv6 minimum MTU (a STUN message over
UDP should fit the path MTU; a Binding request is usually under 200 bytes)."""
MAX_ATTRIBUTES: Final = 32
MAX_TEXT_BYTES: Final = 763
"""SOFTWARE, REALM, NONCE and an ERROR-CODE reason: fewer than 128 characters, at most
763 bytes of UTF-8."""
MAX_USERNAME_BYTES: Final = 513
INTEGRITY_SIZE: Final = 20
FINGERPRINT_XOR: Final = 0x5354554E
_FAMILY_IPV4: Final = 0x01
_FAMILY_IPV6: Final = 0x02


class StunDecodeError(DecodeError):
    """A datagram is not a well-formed STUN message (the only error decoding raises)."""


class StunClass(enum.IntEnum):
    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class AttrType(enum.IntEnum):
    """The attribute types this codec parses (others stay :class:`UnknownAttribute`)."""

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    XOR_MAPPED_ADDRESS = 0x0020
    SOFTWARE = 0x8022
    FINGERPRINT = 0x8028
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A transport address: IP and UDP port."""

    ip: IP
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise ValidationError(f"endpoint ip must be an IP address, got {self.ip!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 0 <= self.port <= 0xFFFF:
            raise ValidationError(f"endpoint port must be 0..65535, got {self.port!r}")

    @classmethod
    def of(cls, host: str, port: int) -> Self:
        """From a socket-style ``(host, port)`` (an IPv6 zone id is not accepted)."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError as exc:
            raise ValidationError(f"not an IP address: {host!r}") from exc
        return cls(ip, port)

    def as_tuple(self) -> tuple[str, int]:
        return (str(self.ip), self.port)

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


def _check_text(name: str, text: str, limit: int = MAX_TEXT_BYTES) -> None:
    if not isinstance(text, str):
        raise ValidationError(f"{name} must be a str")
    if len(text) >= 128 or len(text.encode("utf-8", "surrogatepass")) > limit:
        raise ValidationError(f"{name} too long ({len(text)} characters)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{name} is not encodable as UTF-8") from exc


def _check_bytes(name: str, value: bytes, limit: int) -> None:
    if not isinstance(value, bytes) or len(value) > limit:
        raise ValidationError(f"{name} must be bytes of at most {limit}")


@dataclass(frozen=True, slots=True)
class MappedAddress:
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class XorMappedAddress:
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class ResponseOrigin:
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class OtherAddress:
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """RFC 5780: ask the server to answer from its other IP and/or other port."""

    change_ip: bool
    change_port: bool


@dataclass(frozen=True, slots=True)
class Software:
    text: str

    def __post_init__(self) -> None:
        _check_text("SOFTWARE", self.text)


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: int
    reason: str

    def __post_init__(self) -> None:
        if isinstance(self.code, bool) or not isinstance(self.code, int) \
                or not 300 <= self.code <= 699:
            raise ValidationError(f"ERROR-CODE must be 300..699, got {self.code!r}")
        _check_text("ERROR-CODE reason", self.reason)


@dataclass(frozen=True, slots=True)
class UnknownAttributes:
    types: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.types) > MAX_ATTRIBUTES or any(
                isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 0xFFFF
                for t in self.types):
            raise ValidationError("UNKNOWN-ATTRIBUTES must hold at most 32 16-bit types")


@dataclass(frozen=True, slots=True)
class Username:
    value: bytes

    def __post_init__(self) -> None:
        _check_bytes("USERNAME", self.value, MAX_USERNAME_BYTES)


@dataclass(frozen=True, slots=True)
class Realm:
    text: str

    def __post_init__(self) -> None:
        _check_text("REALM", self.text)


@dataclass(frozen=True, slots=True)
class Nonce:
    value: bytes

    def __post_init__(self) -> None:
        _check_bytes("NONCE", self.value, MAX_TEXT_BYTES)


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """An attribute this codec does not parse, kept as its type and raw value."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if isinstance(self.type, bool) or not isinstance(self.type, int) \
                or not 0 <= self.type <= 0xFFFF:
            raise ValidationError(f"attribute type must be 16 bits, got {self.type!r}")
        if self.type in _KNOWN_TYPES:
            raise ValidationError(f"attribute 0x{self.type:04x} has its own class")
        _check_bytes("attribute value", self.value, 0xFFFF)

    @property
    def comprehension_required(self) -> bool:
        return self.type < 0x8000


Attribute: TypeAlias = (
    MappedAddress | XorMappedAddress | ResponseOrigin | OtherAddress | ChangeRequest
    | Software | ErrorCode | UnknownAttributes | Username | Realm | Nonce | UnknownAttribute
)
_A = TypeVar("_A", bound=Attribute)
_KNOWN_TYPES: Final = frozenset(int(t) for t in AttrType)


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A STUN message without its MESSAGE-INTEGRITY and FINGERPRINT (the codec's business)."""

    method: int
    cls: StunClass
    transaction_id: bytes
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.method, bool) or not isinstance(self.method, int) \
                or not 0 <= self.method <= 0xFFF:
            raise ValidationError(f"method must be 12 bits, got {self.method!r}")
        if not isinstance(self.cls, StunClass):
            raise ValidationError(f"class must be a StunClass, got {self.cls!r}")
        if not isinstance(self.transaction_id, bytes) \
                or len(self.transaction_id) != TRANSACTION_ID_SIZE:
            raise ValidationError("transaction id must be 12 bytes")
        if len(self.attributes) > MAX_ATTRIBUTES:
            raise ValidationError(f"more than {MAX_ATTRIBUTES} attributes")

    def first(self, kind: type[_A]) -> _A | None:
        """The first attribute of ``kind`` (only the first occurrence counts)."""
        for attribute in self.attributes:
            if isinstance(attribute, kind):
                return attribute
        return None

    def unknown_required(self) -> tuple[int, ...]:
        """Types of the unknown comprehension-required attributes, in order, once each."""
        seen: dict[int, None] = {}
        for attribute in self.attributes:
            if isinstance(attribute, UnknownAttribute) and attribute.comprehension_required:
                seen[attribute.type] = None
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """What :func:`decode_message` found: the message, its size, and its integrity data."""

    message: StunMessage
    size: int
    has_fingerprint: bool
    integrity: bytes | None
    """The MESSAGE-INTEGRITY value, if present."""
    integrity_input: bytes = b""
    """The bytes the HMAC covers (header with adjusted length + attributes before it)."""

    def verify_integrity(self, key: bytes) -> bool:
        """Whether MESSAGE-INTEGRITY is present and correct for ``key`` (constant time)."""
        if self.integrity is None:
            return False
        expected = hmac.new(key, self.integrity_input, hashlib.sha1).digest()
        return hmac.compare_digest(expected, self.integrity)


def short_term_key(password: str) -> bytes:
    """The short-term credential key: the password's UTF-8 bytes. (The OpaqueString
    preparation of the standard is the caller's: pass the prepared password.)"""
    return password.encode("utf-8")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The long-term credential key MD5(username ":" realm ":" password), the password
    already prepared (SASLprep) by the caller."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()


# --- encoding ------------------------------------------------------------------------


def _message_type(method: int, cls: int) -> int:
    return ((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2)
            | ((cls & 0b01) << 4) | ((cls & 0b10) << 7))


def _split_type(message_type: int) -> tuple[int, int]:
    method = (message_type & 0x000F) | ((message_type >> 1) & 0x0070) \
        | ((message_type >> 2) & 0x0F80)
    cls = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10)
    return method, cls


def _xor_mask(transaction_id: bytes) -> bytes:
    return struct.pack("!I", MAGIC_COOKIE) + transaction_id


def _pack_endpoint(endpoint: Endpoint, xor_with: bytes | None) -> bytes:
    packed = endpoint.ip.packed
    port = endpoint.port
    if xor_with is not None:
        port ^= MAGIC_COOKIE >> 16
        packed = bytes(a ^ b for a, b in zip(packed, xor_with, strict=False))
    family = _FAMILY_IPV4 if endpoint.ip.version == 4 else _FAMILY_IPV6
    return struct.pack("!BBH", 0, family, port) + packed


def _attribute_value(attribute: Attribute, transaction_id: bytes) -> tuple[int, bytes]:
    match attribute:
        case MappedAddress(endpoint):
            return AttrType.MAPPED_ADDRESS, _pack_endpoint(endpoint, None)
        case XorMappedAddress(endpoint):
            return AttrType.XOR_MAPPED_ADDRESS, _pack_endpoint(endpoint, _xor_mask(transaction_id))
        case ResponseOrigin(endpoint):
            return AttrType.RESPONSE_ORIGIN, _pack_endpoint(endpoint, None)
        case OtherAddress(endpoint):
            return AttrType.OTHER_ADDRESS, _pack_endpoint(endpoint, None)
        case ChangeRequest(change_ip, change_port):
            return AttrType.CHANGE_REQUEST, struct.pack(
                "!I", (0x04 if change_ip else 0) | (0x02 if change_port else 0))
        case Software(text):
            return AttrType.SOFTWARE, text.encode()
        case ErrorCode(code, reason):
            return AttrType.ERROR_CODE, struct.pack("!HBB", 0, code // 100, code % 100) \
                + reason.encode()
        case UnknownAttributes(types):
            return AttrType.UNKNOWN_ATTRIBUTES, b"".join(struct.pack("!H", t) for t in types)
        case Username(value):
            return AttrType.USERNAME, value
        case Realm(text):
            return AttrType.REALM, text.encode()
        case Nonce(value):
            return AttrType.NONCE, value
        case UnknownAttribute(type_, value):
            return type_, value
    raise ValidationError(f"not a STUN attribute: {attribute!r}")  # pragma: no cover


def _pad(length: int) -> int:
    return -length % 4


def attribute_size(attribute: Attribute, transaction_id: bytes = bytes(12)) -> int:
    """Bytes ``attribute`` takes in a message: header, value and padding."""
    _, value = _attribute_value(attribute, transaction_id)
    return 4 + len(value) + _pad(len(value))


INTEGRITY_ATTRIBUTE_SIZE: Final = 4 + INTEGRITY_SIZE
FINGERPRINT_ATTRIBUTE_SIZE: Final = 8


def encode_message(message: StunMessage, *, integrity_key: bytes | None = None,
                   fingerprint: bool = False, padding: int = 0) -> bytes:
    """The bytes of ``message``, with MESSAGE-INTEGRITY (if ``integrity_key``) and then
    FINGERPRINT (if ``fingerprint``) appended. ``padding`` is the padding byte value."""
    fill = bytes([padding])
    body = bytearray()
    for attribute in message.attributes:
        type_, value = _attribute_value(attribute, message.transaction_id)
        if len(value) > 0xFFFF:
            raise ValidationError(f"attribute 0x{type_:04x} too long")
        body += struct.pack("!HH", type_, len(value)) + value + fill * _pad(len(value))

    def header(length: int) -> bytes:
        return struct.pack("!HHI", _message_type(message.method, message.cls), length,
                           MAGIC_COOKIE) + message.transaction_id

    if integrity_key is not None:
        mac = hmac.new(integrity_key, header(len(body) + INTEGRITY_ATTRIBUTE_SIZE) + body,
                       hashlib.sha1).digest()
        body += struct.pack("!HH", AttrType.MESSAGE_INTEGRITY, INTEGRITY_SIZE) + mac
    if fingerprint:
        crc = binascii.crc32(header(len(body) + FINGERPRINT_ATTRIBUTE_SIZE) + body)
        body += struct.pack("!HHI", AttrType.FINGERPRINT, 4, crc ^ FINGERPRINT_XOR)
    if len(body) > 0xFFFF:
        raise ValidationError("message too long")
    return header(len(body)) + bytes(body)


# --- decoding ------------------------------------------------------------------------


def _unpack_endpoint(value: bytes, xor_with: bytes | None) -> Endpoint:
    if len(value) not in (8, 20):
        raise StunDecodeError(f"address attribute of {len(value)} bytes")
    _, family, port = struct.unpack_from("!BBH", value)
    packed = value[4:]
    if (family, len(packed)) not in ((_FAMILY_IPV4, 4), (_FAMILY_IPV6, 16)):
        raise StunDecodeError(f"address family {family} with {len(packed)} address bytes")
    if xor_with is not None:
        port ^= MAGIC_COOKIE >> 16
        packed = bytes(a ^ b for a, b in zip(packed, xor_with, strict=False))
    ip: IP = ipaddress.IPv4Address(packed) if len(packed) == 4 else ipaddress.IPv6Address(packed)
    return Endpoint(ip, port)


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StunDecodeError(f"{name} is not UTF-8") from exc


def _parse_attribute(type_: int, value: bytes, transaction_id: bytes) -> Attribute:
    match type_:
        case AttrType.MAPPED_ADDRESS:
            return MappedAddress(_unpack_endpoint(value, None))
        case AttrType.XOR_MAPPED_ADDRESS:
            return XorMappedAddress(_unpack_endpoint(value, _xor_mask(transaction_id)))
        case AttrType.RESPONSE_ORIGIN:
            return ResponseOrigin(_unpack_endpoint(value, None))
        case AttrType.OTHER_ADDRESS:
            return OtherAddress(_unpack_endpoint(value, None))
        case AttrType.CHANGE_REQUEST:
            if len(value) != 4:
                raise StunDecodeError(f"CHANGE-REQUEST of {len(value)} bytes")
            (flags,) = struct.unpack("!I", value)
            return ChangeRequest(bool(flags & 0x04), bool(flags & 0x02))
        case AttrType.SOFTWARE:
            return Software(_text(value, "SOFTWARE"))
        case AttrType.ERROR_CODE:
            if len(value) < 4:
                raise StunDecodeError(f"ERROR-CODE of {len(value)} bytes")
            number = value[3]
            if number > 99:
                raise StunDecodeError(f"ERROR-CODE number {number}")
            return ErrorCode((value[2] & 0x07) * 100 + number, _text(value[4:], "reason"))
        case AttrType.UNKNOWN_ATTRIBUTES:
            if len(value) % 2:
                raise StunDecodeError("UNKNOWN-ATTRIBUTES of odd length")
            return UnknownAttributes(tuple(t for (t,) in struct.iter_unpack("!H", value)))
        case AttrType.USERNAME:
            return Username(value)
        case AttrType.REALM:
            return Realm(_text(value, "REALM"))
        case AttrType.NONCE:
            return Nonce(value)
    return UnknownAttribute(type_, value)


def decode_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> DecodedMessage:
    """Parse one datagram; raises :class:`StunDecodeError` (only) when it is not a
    well-formed STUN message within ``max_size`` bytes."""
    try:
        return _decode(bytes(data), max_size)
    except ValidationError as exc:
        raise StunDecodeError(str(exc)) from exc


def _decode(data: bytes, max_size: int) -> DecodedMessage:
    if len(data) > max_size:
        raise StunDecodeError(f"{len(data)} bytes, more than {max_size}")
    if len(data) < HEADER_SIZE:
        raise StunDecodeError(f"{len(data)} bytes, shorter than a STUN header")
    message_type, length, cookie = struct.unpack_from("!HHI", data)
    transaction_id = data[8:HEADER_SIZE]
    if message_type & 0xC000:
        raise StunDecodeError("the two leading bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunDecodeError("no magic cookie")
    if length != len(data) - HEADER_SIZE or length % 4:
        raise StunDecodeError(f"length field {length} does not fit {len(data)} bytes")
    attributes: list[Attribute] = []
    integrity: bytes | None = None
    integrity_input = b""
    has_fingerprint = False
    pos = HEADER_SIZE
    count = 0
    while pos < len(data):
        if has_fingerprint:
            raise StunDecodeError("attribute after FINGERPRINT")
        count += 1
        if count > MAX_ATTRIBUTES:
            raise StunDecodeError(f"more than {MAX_ATTRIBUTES} attributes")
        if pos + 4 > len(data):  # pragma: no cover - length % 4 == 0 rules it out
            raise StunDecodeError("truncated attribute header")
        type_, value_len = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + value_len
        if end + _pad(value_len) > len(data):
            raise StunDecodeError(f"attribute 0x{type_:04x} overruns the message")
        value = data[pos + 4:end]
        if type_ == AttrType.FINGERPRINT:
            if value_len != 4:
                raise StunDecodeError(f"FINGERPRINT of {value_len} bytes")
            covered = data[:2] + struct.pack("!H", end - HEADER_SIZE) + data[4:pos]
            if struct.unpack("!I", value)[0] != binascii.crc32(covered) ^ FINGERPRINT_XOR:
                raise StunDecodeError("FINGERPRINT does not match")
            has_fingerprint = True
        elif integrity is not None:
            pass  # attributes after MESSAGE-INTEGRITY (but FINGERPRINT) are ignored
        elif type_ == AttrType.MESSAGE_INTEGRITY:
            if value_len != INTEGRITY_SIZE:
                raise StunDecodeError(f"MESSAGE-INTEGRITY of {value_len} bytes")
            integrity = value
            integrity_input = data[:2] + struct.pack("!H", end - HEADER_SIZE) + data[4:pos]
        else:
            attributes.append(_parse_attribute(type_, value, transaction_id))
        pos = end + _pad(value_len)
    method, cls = _split_type(message_type)
    message = StunMessage(method, StunClass(cls), transaction_id, tuple(attributes))
    return DecodedMessage(message, len(data), has_fingerprint, integrity, integrity_input)
