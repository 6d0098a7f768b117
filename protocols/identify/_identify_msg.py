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
     "protocols": [str, ...],
     "stun_addrs": [bytes, ...] (omitted if none), "stun_alternate": true (omitted if false)}

Addresses stay binary multiaddrs here; :mod:`protocols` address code parses
them, so a peer sending one unusable address does not make the whole message
invalid. The same message is sent on the push protocol when our addresses
change.

``stun_addrs`` (our extension, docs/architecture.md "STUN (UDP)") lists the
STUN servers the peer runs, as binary multiaddrs ``/ip4|ip6/<ip>/udp/<port>``
(:class:`~protocols.UdpAddress`), and ``stun_alternate`` says that they
answer RFC 5780 ``CHANGE-REQUEST`` from a second address. Both are left out
when empty, so a message without STUN encodes exactly as before, and a
decoder that does not know them ignores them (libp2p readers skip unknown
fields too): old and new peers interoperate both ways.

Bounds: at most :data:`MAX_LISTEN_ADDRS` addresses of at most
:data:`~protocols.wire._codec.MAX_MULTIADDR_SIZE` bytes each, at most
:data:`MAX_PROTOCOLS` protocol ids, and the encoded message at most
:data:`MAX_IDENTIFY_SIZE` (4 KiB) - checked by :meth:`Identify.encode` and
:meth:`Identify.from_wire`, whose ``max_size`` argument can change it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Self

import msgpack

from ..core import FrameTooLarge, ValidationError
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
    kind,
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
MAX_STUN_ADDRS: Final = 4
MAX_STUN_ADDR_SIZE: Final = 32
"""A binary ``/ip6/<ip>/udp/<port>`` is 21 bytes."""
_MAP_OVERHEAD: Final = 128
"""The map header and its eight keys with their headers, the boolean and the
``stun_addrs`` array header (117 bytes), rounded up."""


@dataclass(frozen=True, slots=True)
class Identify(WireMessage):
    """What a peer says about itself, and the address it sees us at."""

    protocol_version: str
    agent_version: str
    public_key: bytes
    listen_addrs: tuple[bytes, ...]
    observed_addr: bytes | None
    protocols: tuple[str, ...]
    stun_addrs: tuple[bytes, ...] = ()
    stun_alternate: bool = False

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
        check_bytes_tuple(self.stun_addrs, "identify.stun_addrs", 0, MAX_STUN_ADDRS,
                          MAX_STUN_ADDR_SIZE)
        if not isinstance(self.stun_alternate, bool):
            raise ValidationError(
                f"identify.stun_alternate: expected a boolean, got {kind(self.stun_alternate)}")

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
        if self.stun_addrs:
            wire["stun_addrs"] = list(self.stun_addrs)
        if self.stun_alternate:
            wire["stun_alternate"] = True
        return wire

    def encoded_size(self) -> int:
        """Length of :meth:`encode`'s output, without the size check."""
        return len(msgpack.packb(self.to_wire(), use_bin_type=True))

    def encode(self, limits: Limits = DEFAULT_LIMITS, *,
               max_size: int = MAX_IDENTIFY_SIZE) -> bytes:
        """The message map as msgpack; FrameTooLarge when above ``max_size``.

        The constructor already checked every field against bounds that lie
        within ``limits`` (the usual case), so the value walk of :func:`pack`
        would check it twice; it runs only for tighter ``limits``.
        """
        wire = self.to_wire()
        if limits is not DEFAULT_LIMITS and not _fields_within(limits):
            data = pack(wire, limits)
        else:
            data = msgpack.packb(wire, use_bin_type=True)
            if len(data) > limits.max_frame_size:
                raise FrameTooLarge(f"identify: frame of {len(data)} bytes exceeds the limit "
                                    f"of {limits.max_frame_size} bytes")
        _check_size(len(data), max_size)
        return data

    def size_bound(self) -> int:
        """An upper bound of :meth:`encoded_size`, in one pass over the field lengths.

        Every string and byte string costs at most its length plus a 5-byte
        header (UTF-8 at most 4 bytes per character, 1 when ASCII), each array
        5 more, and the map with its keys :data:`_MAP_OVERHEAD`.
        """
        strings = (self.protocol_version, self.agent_version, *self.protocols)
        blobs = (self.public_key, *self.listen_addrs, *self.stun_addrs,
                 *(() if self.observed_addr is None else (self.observed_addr,)))
        text = sum(map(len, strings))
        if not all(map(str.isascii, strings)):
            text *= 4
        return _MAP_OVERHEAD + text + sum(map(len, blobs)) + 5 * (len(strings) + len(blobs) + 2)

    @classmethod
    def from_wire(cls, obj: WireMap, *, max_size: int = MAX_IDENTIFY_SIZE) -> Self:
        """Build from a wire map; the canonical encoding must fit ``max_size``.

        The fields are checked once, by the constructor (whose messages name
        them as ``identify.<field>``); this only finds them and turns arrays
        into tuples. The exact encoded size is computed only when the cheap
        :meth:`size_bound` does not already prove it fits.
        """
        where = "identify"
        observed = obj.get("observed_addr") if isinstance(obj, dict) else None
        stun = obj.get("stun_addrs", []) if isinstance(obj, dict) else []
        alternate = obj.get("stun_alternate", False) if isinstance(obj, dict) else False
        message = cls(
            protocol_version=require(obj, "protocol_version", where),  # type: ignore[arg-type]
            agent_version=require(obj, "agent_version", where),  # type: ignore[arg-type]
            public_key=require(obj, "public_key", where),  # type: ignore[arg-type]
            listen_addrs=wire_tuple(  # type: ignore[arg-type]
                require(obj, "listen_addrs", where), f"{where}.listen_addrs"),
            observed_addr=observed,  # type: ignore[arg-type]
            protocols=wire_tuple(  # type: ignore[arg-type]
                require(obj, "protocols", where), f"{where}.protocols"),
            stun_addrs=wire_tuple(stun, f"{where}.stun_addrs"),  # type: ignore[arg-type]
            stun_alternate=alternate,  # type: ignore[arg-type]
        )
        if message.size_bound() > max_size:
            _check_size(message.encoded_size(), max_size)
        return message


@functools.lru_cache(maxsize=16)
def _fields_within(limits: Limits) -> bool:
    """Do the constructor's field bounds already imply every value fits ``limits``?"""
    return (limits.max_str_len >= max(MAX_VERSION_LEN, MAX_PROTOCOL_LEN)
            and limits.max_bin_len >= max(MAX_PUBLIC_KEY_SIZE, MAX_MULTIADDR_SIZE)
            and limits.max_array_len >= max(MAX_LISTEN_ADDRS, MAX_PROTOCOLS)
            and limits.max_map_len >= 8 and limits.max_depth >= 2)


def _check_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise FrameTooLarge(f"identify: encoded message of {size} bytes exceeds the limit "
                            f"of {max_size} bytes")
