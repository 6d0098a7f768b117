"""AddressPolicy: the one place that decides which addresses are routable.

Theory of operation
-------------------
Every address this node dials, dials back, advertises or serves in
``/status`` passes through one :class:`AddressPolicy` (docs/architecture.md,
"Address policy"). By default only globally routable unicast IPs pass -
Python's ``ip.is_global``, which follows the IANA special-purpose
registries. In particular the documentation
ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and the
carrier-grade NAT range 100.64.0.0/10 are *not* global.

Labs and tests widen the policy explicitly, never implicitly:

* ``public_networks`` - CIDRs treated as public, e.g. a lab that numbers its
  "internet" from 198.51.100.0/24 and its NATs' inside from 10.0.0.0/8;
* ``allow_loopback`` - 127.0.0.0/8, ::1 and the names ``localhost`` /
  ``*.localhost`` (RFC 6761);
* ``allow_private`` - RFC 1918, CGNAT 100.64.0.0/10, link-local, IPv6 ULA
  and link-local (not documentation or reserved ranges);
* ``allow_dns`` - DNS names (on by default). A name is judged before it is
  resolved, so whoever resolves it must check the resulting IPs with
  :meth:`AddressPolicy.is_routable_ip` too.

Unspecified (0.0.0.0, ::), multicast and broadcast addresses and port 0 are
never routable. IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are judged as
the IPv4 address they carry, so ``::ffff:127.0.0.1`` is loopback.

:meth:`AddressPolicy.reason_rejected` is the single decision function; the
boolean methods are derived from it, so a log line always explains a drop.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ._addresses import IP_CACHE_SIZE, IPAddress, WsAddress
from ._errors import AddressError

__all__ = ["AddressPolicy"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PRIVATE_NETWORKS: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "169.254.0.0/16",  # link-local
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
    )
)
_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")


@dataclass(frozen=True)
class AddressPolicy:
    """Which IPs and addresses count as routable (dialable, advertisable)."""

    allow_loopback: bool = False
    allow_private: bool = False
    public_networks: tuple[IPNetwork, ...] = ()
    allow_dns: bool = True

    def __post_init__(self) -> None:
        networks = tuple(self.public_networks)
        for network in networks:
            if not isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise AddressError(f"public_networks holds a non-network {network!r}")
        object.__setattr__(self, "public_networks", networks)

    @classmethod
    def from_strings(
        cls,
        *,
        allow_loopback: bool = False,
        allow_private: bool = False,
        public_networks: Iterable[str] = (),
        allow_dns: bool = True,
    ) -> AddressPolicy:
        """Build a policy from config values; :class:`AddressError` names a bad CIDR."""
        if isinstance(public_networks, str):
            public_networks = [public_networks]
        networks: list[IPNetwork] = []
        for text in public_networks:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except (TypeError, ValueError):
                raise AddressError(
                    f"public_networks: {text!r} is not a CIDR such as 198.51.100.0/24"
                ) from None
        return cls(allow_loopback, allow_private, tuple(networks), allow_dns)

    def is_routable_ip(self, ip: IPAddress) -> bool:
        return self._ip_reason(ip) is None

    def is_routable(self, addr: WsAddress) -> bool:
        return self.reason_rejected(addr) is None

    def filter(self, addrs: Iterable[WsAddress]) -> list[WsAddress]:
        """The routable addresses, in order."""
        return [addr for addr in addrs if self.reason_rejected(addr) is None]

    def reason_rejected(self, addr: WsAddress) -> str | None:
        """Why ``addr`` is not routable under this policy, or ``None`` if it is."""
        if addr.port == 0:
            return f"{addr}: port 0 cannot be dialed"
        ip = addr.ip
        if ip is None:
            return self._name_reason(addr)
        reason = self._ip_reason(ip)
        return None if reason is None else f"{addr}: {reason}"

    def _name_reason(self, addr: WsAddress) -> str | None:
        if not self.allow_dns:
            return f"{addr}: DNS names are not allowed (allow_dns is off)"
        name = addr.host
        if (name == "localhost" or name.endswith(".localhost")) and not self.allow_loopback:
            return f"{addr}: {name} is loopback (allow_loopback is off)"
        return None

    def _ip_reason(self, ip: IPAddress) -> str | None:
        return _ip_reason(self, ip)


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def _ip_reason(policy: AddressPolicy, ip: IPAddress) -> str | None:
    """Why ``policy`` refuses ``ip`` (None: routable). A pure function of two frozen
    values, remembered: every dial, dial-back and advertised address asks, the same
    IPs again and again, and :mod:`ipaddress`'s range tests are slow."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return f"unspecified address {ip}"
    if ip.is_multicast:
        return f"multicast address {ip}"
    if ip == _BROADCAST:
        return f"broadcast address {ip}"
    if any(ip in network for network in policy.public_networks):
        return None
    if ip.is_loopback:
        return None if policy.allow_loopback else f"loopback address {ip} (allow_loopback is off)"
    if ip.is_global:
        return None
    if any(ip in network for network in _PRIVATE_NETWORKS):
        return None if policy.allow_private else f"private address {ip} (allow_private is off)"
    return (
        f"{ip} is not globally routable (documentation or reserved range; "
        "list it in public_networks to treat it as public)"
    )
