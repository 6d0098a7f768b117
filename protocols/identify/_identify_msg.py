"""The Identify message (``/ipfs/id/1.0.0`` and ``/ipfs/id/push/1.0.0``).

Theory of operation
-------------------
Identify tells a peer who we are and what we see: our protocol and agent
versions, our protobuf public key, the addresses we listen on, the address
we observe the peer connecting from (how it learns its public address behind a
NAT) and the protocols we serve. Field names and semantics follow libp2p's
Identify; the encoding is ours: one msgpack map carried as a stream frame's
``"m"``::

    {"protocol_version": str, "agent_version": str, "public_key": bytes,
     "listen_addrs": [bytes, ...], "observed_addr": bytes (omitted if unknown),
     "protocols": [str, ...]}

Addresses stay binary multiaddrs here; :mod:`protocols` address code parses
them, so a peer sending one unusable address does not make the whole message
invalid. The same message is sent on the push protocol when our addresses
change.

Bounds: at most :data:`MAX_LISTEN_ADDRS` addresses of at most
:data:`~protocols.wire._codec.MAX_MULTIADDR_SIZE` bytes each, at most
:data:`MAX_PROTOCOLS` protocol ids, and the encoded message at most
:data:`MAX_IDENTIFY_SIZE` (4 KiB) - checked by :meth:`Identify.encode` and
:meth:`Identify.from_wire`, whose ``max_size`` argument can change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

import msgpack

from ..core import FrameTooLarge
from ..wire import (
    DEFAULT_LIMITS,
    MAX_MULTIADDR_SIZE,
    MAX_PUBLIC_KEY_SIZE,
    Limits,
    WireMap,
    WireMessage,
    check_bytes,
    check_bytes_tuple,
    check_str,
    check_str_tuple,
    pack,
    require,
    wire_tuple,
)

IDENTIFY_PROTOCOL_ID: Final = "/ipfs/id/1.0.0"
IDENTIFY_PUSH_PROTOCOL_ID: Final = "/ipfs/id/push/1.0.0"
MAX_IDENTIFY_SIZE: Final = 4096
MAX_LISTEN_ADDRS: Final = 32
MAX_PROTOCOLS: Final = 64
MAX_VERSION_LEN: Final = 256
MAX_PROTOCOL_LEN: Final = 256


@dataclass(frozen=True, slots=True)
class Identify(WireMessage):
    """What a peer says about itself, and the address it sees us at."""

    protocol_version: str
    agent_version: str
    public_key: bytes
    listen_addrs: tuple[bytes, ...]
    observed_addr: bytes | None
    protocols: tuple[str, ...]

    def __post_init__(self) -> None:
        check_str(self.protocol_version, "identify.protocol_version", 0, MAX_VERSION_LEN)
        check_str(self.agent_version, "identify.agent_version", 0, MAX_VERSION_LEN)
        check_bytes(self.public_key, "identify.public_key", 1, MAX_PUBLIC_KEY_SIZE)
        check_bytes_tuple(self.listen_addrs, "identify.listen_addrs", 0, MAX_LISTEN_ADDRS,
                          MAX_MULTIADDR_SIZE)
        if self.observed_addr is not None:
            check_bytes(self.observed_addr, "identify.observed_addr", 1, MAX_MULTIADDR_SIZE)
        check_str_tuple(self.protocols, "identify.protocols", 0, MAX_PROTOCOLS,
                        MAX_PROTOCOL_LEN)

    def to_wire(self) -> WireMap:
        wire: WireMap = {
            "protocol_version": self.protocol_version,
            "agent_version": self.agent_version,
            "public_key": self.public_key,
            "listen_addrs": list(self.listen_addrs),
        }
        if self.observed_addr is not None:
            wire["observed_addr"] = self.observed_addr
        wire["protocols"] = list(self.protocols)
        return wire

    def encoded_size(self) -> int:
        """Length of :meth:`encode`'s output, without the size check."""
        return len(msgpack.packb(self.to_wire(), use_bin_type=True))

    def encode(self, limits: Limits = DEFAULT_LIMITS, *,
               max_size: int = MAX_IDENTIFY_SIZE) -> bytes:
        """The message map as msgpack; FrameTooLarge when above ``max_size``."""
        data = pack(self.to_wire(), limits)
        _check_size(len(data), max_size)
        return data

    @classmethod
    def from_wire(cls, obj: WireMap, *, max_size: int = MAX_IDENTIFY_SIZE) -> Self:
        """Build from a wire map; the canonical encoding must fit ``max_size``."""
        where = "identify"
        observed = obj.get("observed_addr") if isinstance(obj, dict) else None
        message = cls(
            protocol_version=check_str(require(obj, "protocol_version", where),
                                       f"{where}.protocol_version", 0, MAX_VERSION_LEN),
            agent_version=check_str(require(obj, "agent_version", where),
                                    f"{where}.agent_version", 0, MAX_VERSION_LEN),
            public_key=check_bytes(require(obj, "public_key", where), f"{where}.public_key",
                                   1, MAX_PUBLIC_KEY_SIZE),
            listen_addrs=check_bytes_tuple(
                wire_tuple(require(obj, "listen_addrs", where), f"{where}.listen_addrs"),
                f"{where}.listen_addrs", 0, MAX_LISTEN_ADDRS, MAX_MULTIADDR_SIZE),
            observed_addr=None if observed is None else check_bytes(
                observed, f"{where}.observed_addr", 1, MAX_MULTIADDR_SIZE),
            protocols=check_str_tuple(
                wire_tuple(require(obj, "protocols", where), f"{where}.protocols"),
                f"{where}.protocols", 0, MAX_PROTOCOLS, MAX_PROTOCOL_LEN),
        )
        _check_size(message.encoded_size(), max_size)
        return message


def _check_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise FrameTooLarge(f"identify: encoded message of {size} bytes exceeds the limit "
                            f"of {max_size} bytes")
