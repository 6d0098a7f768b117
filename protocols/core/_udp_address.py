"""UDP transport addresses as multiaddrs: ``/ip4/<ip>/udp/<port>`` and ``/ip6/<ip>/udp/<port>``.

Theory of operation
-------------------
A node advertises its STUN server in Identify (docs/architecture.md,
"STUN (UDP)") as a binary multiaddr of exactly this shape: ``ip4`` (code 4,
4 bytes) or ``ip6`` (code 41, 16 bytes), then ``udp`` (code 273, 2 bytes big
endian). Nothing else is accepted - no DNS names (a datagram goes to the IP
the peer names, resolved by nobody), no trailing components, no zone ids -
and every failure is an :class:`AddressError`, so an Identify with one bad
entry loses only that entry. The text form is the canonical multiaddr string.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from ._addresses import IPAddress
from ._errors import AddressError

__all__ = ["UdpAddress"]

_P_IP4: Final = b"\x04"
_P_IP6: Final = b"\x29"
_P_UDP: Final = b"\x91\x02"  # uvarint(273)
_MAX_TEXT: Final = 64


@dataclass(frozen=True, slots=True)
class UdpAddress:
    """An IP and a UDP port (port 0 is refused: nothing can be sent there)."""

    ip: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise AddressError(f"udp address ip must be an IP address, got {self.ip!r}")
        if type(self.port) is not int or not 1 <= self.port <= 0xFFFF:
            raise AddressError(f"udp port must be an integer 1..65535, got {self.port!r}")

    @classmethod
    def parse(cls, value: str | bytes) -> UdpAddress:
        """A binary or text multiaddr ``/ip4|ip6/<ip>/udp/<port>``; AddressError otherwise."""
        if isinstance(value, bytes):
            return cls._from_bytes(value)
        if not isinstance(value, str):
            raise AddressError(f"expected a multiaddr str or bytes, got {type(value).__name__}")
        parts = value.split("/")
        if len(value) > _MAX_TEXT or len(parts) != 5 or parts[0] or parts[1] not in (
                "ip4", "ip6") or parts[3] != "udp":
            raise AddressError(f"not a /ip4|ip6/<ip>/udp/<port> address: {value[:_MAX_TEXT]!r}")
        try:
            ip = ipaddress.ip_address(parts[2])
        except ValueError:
            raise AddressError(f"bad IP in {value!r}") from None
        if (ip.version == 4) != (parts[1] == "ip4") or not parts[4].isdigit() \
                or len(parts[4]) > 5:
            raise AddressError(f"bad IP or port in {value!r}")
        return cls(ip, int(parts[4]))

    @classmethod
    def _from_bytes(cls, data: bytes) -> UdpAddress:
        if len(data) == 1 + 4 + 2 + 2 and data[:1] == _P_IP4 and data[5:7] == _P_UDP:
            return cls(ipaddress.IPv4Address(data[1:5]), int.from_bytes(data[7:9], "big"))
        if len(data) == 1 + 16 + 2 + 2 and data[:1] == _P_IP6 and data[17:19] == _P_UDP:
            return cls(ipaddress.IPv6Address(data[1:17]), int.from_bytes(data[19:21], "big"))
        raise AddressError(f"not a binary /ip4|ip6/<ip>/udp/<port> multiaddr: 0x{data[:40].hex()}")

    def to_bytes(self) -> bytes:
        kind = _P_IP4 if self.ip.version == 4 else _P_IP6
        return kind + self.ip.packed + _P_UDP + self.port.to_bytes(2, "big")

    def __str__(self) -> str:
        return f"/ip{self.ip.version}/{self.ip}/udp/{self.port}"
