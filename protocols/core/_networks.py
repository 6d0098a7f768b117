"""Which network an IP belongs to, for limits that must hold per host and per subnet.

Theory of operation
-------------------
Peer ids cost nothing: one host can make thousands. A limit that must stop
one host (or one operator's block of addresses) is therefore also kept per
IP and per *subnet*: the IPv4 /24 or the IPv6 /56 around the IP by default
(what one customer or one small hosting allocation typically holds). An
IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) counts as its IPv4 address,
so a dual-stack listener cannot be used to dodge a limit.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Final, TypeVar

from ._addresses import IPAddress

__all__ = ["DEFAULT_IPV4_PREFIX", "DEFAULT_IPV6_PREFIX", "IPNetwork", "check_network_limits",
           "count_down", "plain_ip", "subnet_of"]

DEFAULT_IPV4_PREFIX: Final = 24
DEFAULT_IPV6_PREFIX: Final = 56

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_Key = TypeVar("_Key", bound=Hashable)


def plain_ip(ip: IPAddress) -> IPAddress:
    """``ip``, with an IPv4-mapped IPv6 address turned into its IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def subnet_of(ip: IPAddress, *, ipv4_prefix: int = DEFAULT_IPV4_PREFIX,
              ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> IPNetwork:
    """The subnet ``ip`` is counted in (see the module docstring). Remembered: every
    connection and request asks for the same few peers' subnets, and building an
    ``ipaddress`` network is not cheap (the answer is immutable, so sharing it is safe)."""
    ip = plain_ip(ip)
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return ipaddress.ip_network((ip, prefix), strict=False)


def check_network_limits(limits: object, counts: Iterable[str], *, ipv4_prefix: int,
                         ipv6_prefix: int) -> None:
    """ValueError unless each of the ``counts`` fields of ``limits`` is an int >= 1 and the
    prefixes fit their address family."""
    for name in counts:
        value = getattr(limits, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not 0 <= ipv4_prefix <= 32 or not 0 <= ipv6_prefix <= 128:
        raise ValueError("ipv4_prefix must be 0..32 and ipv6_prefix 0..128")


def count_down(counts: Counter[_Key], key: _Key) -> None:
    """One less of ``key``; a count that reaches zero is removed (per-IP and per-subnet
    counters stay as small as the set of hosts and networks with connections)."""
    counts[key] -= 1
    if not counts[key]:
        del counts[key]
