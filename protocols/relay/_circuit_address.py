"""Relayed addresses: ``<relay's WebSocket address>/p2p/RELAY/p2p-circuit/p2p/TARGET``.

Theory of operation
-------------------
A node that holds a reservation on a relay is reachable at the relay's
address followed by ``/p2p-circuit/p2p/<its own id>`` (the libp2p circuit
multiaddr). :class:`CircuitAddress` holds the two halves as validated
values: ``relay`` is a :class:`~protocols.WsAddress` that must carry the
relay's ``/p2p/`` id (the dialer authenticates the relay by it), ``target``
the peer id reached through it. The text form splits at the one
``/p2p-circuit`` component; the binary form (multicodec ``p2p-circuit`` =
0x0122) is split by trying each place where the suffix
``p2p-circuit, p2p`` could start and keeping the one where both halves are
canonical, refusing an address that splits more than one way. Relays of
relays (two ``/p2p-circuit``) are refused: a relay never relays over a
circuit.

:class:`~protocols.WsAddress` itself keeps refusing circuit addresses, so no
existing code path starts dialing them by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core import AddressError, PeerId, ValidationError, WsAddress

__all__ = ["CIRCUIT_COMPONENT", "CircuitAddress"]

CIRCUIT_COMPONENT: Final = "/p2p-circuit"
_P_CIRCUIT_VARINT: Final = b"\xa2\x02"  # uvarint(0x0122)
_P_P2P_VARINT: Final = b"\xa5\x03"  # uvarint(421)
_MAX_LENGTH: Final = 1024


@dataclass(frozen=True)
class CircuitAddress:
    """``relay`` (with its ``/p2p/`` id) ``/p2p-circuit/p2p/`` ``target``."""

    relay: WsAddress
    target: PeerId

    def __post_init__(self) -> None:
        if not isinstance(self.relay, WsAddress) or self.relay.peer_id is None:
            raise AddressError(f"a circuit's relay address must end in /p2p/<relay id>, "
                               f"got {self.relay}")
        if not isinstance(self.target, PeerId):
            raise AddressError(f"a circuit's target must be a PeerId, got {self.target!r}")
        if self.target == self.relay.peer_id:
            raise AddressError(f"a circuit through {self.relay} to the relay itself")

    @property
    def relay_peer(self) -> PeerId:
        assert self.relay.peer_id is not None  # checked at construction
        return self.relay.peer_id

    def __str__(self) -> str:
        return f"{self.relay}{CIRCUIT_COMPONENT}/p2p/{self.target}"

    def to_bytes(self) -> bytes:
        multihash = self.target.to_bytes()
        return (self.relay.to_bytes() + _P_CIRCUIT_VARINT + _P_P2P_VARINT
                + _uvarint(len(multihash)) + multihash)

    @classmethod
    def parse(cls, value: str | bytes) -> CircuitAddress:
        """Parse the text or binary form; :class:`~protocols.AddressError` says what is wrong."""
        if isinstance(value, str):
            return cls._parse_text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return cls._parse_binary(bytes(value))
        raise AddressError(f"expected a circuit multiaddr str or bytes, "
                           f"got {type(value).__name__}")

    @staticmethod
    def is_circuit(value: str | bytes) -> bool:
        """Whether ``value`` looks like a circuit address (cheap; :meth:`parse` decides)."""
        if isinstance(value, str):
            return CIRCUIT_COMPONENT + "/" in value or value.endswith(CIRCUIT_COMPONENT)
        return _P_CIRCUIT_VARINT in value

    @classmethod
    def _parse_text(cls, text: str) -> CircuitAddress:
        if len(text) > _MAX_LENGTH:
            raise AddressError(f"circuit address of {len(text)} characters is too long")
        head, sep, tail = text.partition(CIRCUIT_COMPONENT + "/")
        if not sep:
            raise AddressError(f"not a circuit address (no /p2p-circuit/p2p/<id>): {text[:80]!r}")
        if CIRCUIT_COMPONENT in tail:
            raise AddressError("a circuit address has one /p2p-circuit (no relays of relays)")
        parts = tail.rstrip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("p2p", "ipfs"):
            raise AddressError(f"/p2p-circuit must be followed by exactly /p2p/<target id>, "
                               f"got /{tail[:80]}")
        return cls(WsAddress.parse(head), _peer(parts[1]))

    @classmethod
    def _parse_binary(cls, data: bytes) -> CircuitAddress:
        if len(data) > _MAX_LENGTH:
            raise AddressError(f"circuit address of {len(data)} bytes is too long")
        found: list[CircuitAddress] = []
        start = data.find(_P_CIRCUIT_VARINT)
        while start != -1:
            candidate = _split_at(data, start)
            if candidate is not None:
                found.append(candidate)
            start = data.find(_P_CIRCUIT_VARINT, start + 1)
        if len(found) != 1:
            raise AddressError("not a circuit address (no unambiguous "
                               "/p2p-circuit/p2p/<id> suffix)" if not found else
                               "ambiguous binary circuit address")
        return found[0]


def _split_at(data: bytes, start: int) -> CircuitAddress | None:
    """The address if ``data`` splits into relay + circuit suffix at ``start``, else None."""
    suffix = data[start + len(_P_CIRCUIT_VARINT):]
    if not suffix.startswith(_P_P2P_VARINT):
        return None
    rest = suffix[len(_P_P2P_VARINT):]
    if not rest or rest[0] >= 0x80 or rest[0] != len(rest) - 1:
        return None  # a multihash length is one varint byte for our key types
    try:
        return CircuitAddress(WsAddress.parse(data[:start]), PeerId.from_bytes(rest[1:]))
    except (AddressError, ValidationError):
        return None


def _peer(text: str) -> PeerId:
    try:
        return PeerId.from_string(text)
    except ValidationError as exc:
        raise AddressError(f"circuit target: {exc}") from None


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
