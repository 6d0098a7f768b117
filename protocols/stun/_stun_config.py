"""The STUN server's and the UDP discovery client's settings: :class:`StunServerConfig`,
:class:`UdpDiscoveryConfig`.

Theory of operation
-------------------
Both are components of :class:`~protocols.NodeConfig` (``stun`` and ``udp``),
declared and validated here, one flat setting key per field
(docs/architecture.md, "STUN (UDP)").

**Server.** ``stun_listen`` says where the node answers STUN Binding
requests: ``""`` (off, what a plain node does), ``"PORT"`` (on the IP of the
node's first IP listen address, a wildcard included), ``"IP"`` (port
:data:`DEFAULT_STUN_PORT`, 3478) or ``"IP:PORT"`` / ``"[IPv6]:PORT"``.
``stun_alternate`` is the RFC 5780 second address (``"IP"`` or ``"IP:PORT"``;
without a port the primary's port + 1, as coturn does); unset, there is none.
The combination is checked in :meth:`~protocols.NodeConfig.stun_addresses`,
where the listen addresses and ``dialback_source`` are known (the alternate
must not be the ``dialback_source`` IP, see there). The rates and bursts
become the :class:`StunResponderConfig` of the responder.

**Client.** With ``udp_discovery`` on, the node runs RFC 5780 behaviour
discovery against a STUN server its peers advertise in Identify. Each
request is sent ``udp_sends`` times, at 0, RTO, 3 RTO, ... from ``udp_rto``,
and a test without answer is given up ``_RM`` RTOs after its last send (a
lost filtering test is the evidence of a filtering NAT, so this is also how
long a filtered node waits for its answer: 5.5 s at the defaults). A run is
bounded by ``udp_discovery_timeout``, which must leave room for the three
phases (Test I, filtering, mapping); it is repeated every
``udp_discovery_interval`` seconds and when the node's local IPs change.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from ..core import check_positive_setting
from ._discovery import Retransmission
from ._stun_responder import StunResponderConfig

__all__ = ["DEFAULT_STUN_PORT", "StunServerConfig", "UdpDiscoveryConfig", "parse_stun_host_port"]

DEFAULT_STUN_PORT: Final = 3478
_RM: Final = 4
"""RTOs to wait after a request's last send before it counts as lost."""

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_stun_host_port(name: str, text: str,
                         default_port: int | None) -> tuple[IP | None, int | None]:
    """``"PORT"``, ``"IP"``, ``"IP:PORT"`` or ``"[IPv6]:PORT"`` as ``(ip, port)``.

    A missing part is None (a missing port is ``default_port``). ValueError names ``name``.
    """
    text = text.strip()
    host: str | None
    port_text: str | None
    if text.isdigit():
        host, port_text = None, text
    elif text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{name}: expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # a bare IPv4 or IPv6 address
        host, port_text = text, None
    ip: IP | None = None
    if host is not None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{name}: {host!r} is not an IP address (expected PORT, IP, "
                             f"IP:PORT or [IPv6]:PORT)") from None
    if port_text is None:
        return ip, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 0xFFFF:
        raise ValueError(f"{name}: port must be 0..65535, got {port_text!r}")
    return ip, int(port_text)


@dataclass(frozen=True)
class StunServerConfig:
    """Where and how fast this node answers STUN Binding requests; validated at construction."""

    stun_listen: str = ""
    """``""`` = no STUN server; ``"PORT"``, ``"IP"`` (port 3478), ``"IP:PORT"``."""
    stun_alternate: str | None = None
    """RFC 5780 second address, ``"IP"`` or ``"IP:PORT"`` (port: the primary's + 1); unset =
    none. Another IP than ``dialback_source``'s."""
    stun_ip_rate: float = 5.0
    """Answers per second to one source IP (token bucket; bursts of ``stun_ip_burst``)."""
    stun_ip_burst: int = 20
    stun_subnet_rate: float = 20.0
    """Answers per second to one subnet (IPv4 /24, IPv6 /56)."""
    stun_subnet_burst: int = 80
    stun_global_rate: float = 1000.0
    """Answers per second in all."""
    stun_global_burst: int = 2000

    def __post_init__(self) -> None:
        if self.stun_listen:
            parse_stun_host_port("stun_listen", self.stun_listen, DEFAULT_STUN_PORT)
        if self.stun_alternate == "":  # as in files and AUTONAT_STUN_ALTERNATE="": unset
            object.__setattr__(self, "stun_alternate", None)
        if self.stun_alternate is not None:
            ip, _ = parse_stun_host_port("stun_alternate", self.stun_alternate, None)
            if ip is None:
                raise ValueError(f"stun_alternate must name an IP (IP or IP:PORT), "
                                 f"got {self.stun_alternate!r}")
        try:
            self.responder_config()
        except ValueError as exc:
            raise ValueError(f"stun_{exc}") from None

    @property
    def enabled(self) -> bool:
        return bool(self.stun_listen)

    def responder_config(self) -> StunResponderConfig:
        return StunResponderConfig(
            ip_rate=self.stun_ip_rate, ip_burst=self.stun_ip_burst,
            subnet_rate=self.stun_subnet_rate, subnet_burst=self.stun_subnet_burst,
            global_rate=self.stun_global_rate, global_burst=self.stun_global_burst)


@dataclass(frozen=True)
class UdpDiscoveryConfig:
    """How this node measures its UDP NAT profile; validated at construction."""

    udp_discovery: bool = True
    """Run RFC 5780 behaviour discovery against STUN servers that peers advertise."""
    udp_rto: float = 0.5
    """Initial retransmission timeout of a STUN request (doubles after each send)."""
    udp_sends: int = 4
    """Sends of one request before it is given up (RFC 8489's Rc)."""
    udp_discovery_timeout: float = 20.0
    """One discovery run at most; must fit three lost tests (see the module docstring)."""
    udp_discovery_interval: float = 1800.0
    """Measure again this often (and when the node's local IPs change)."""

    def __post_init__(self) -> None:
        for name in ("udp_rto", "udp_sends", "udp_discovery_timeout", "udp_discovery_interval"):
            check_positive_setting(name, getattr(self, name))
        if isinstance(self.udp_sends, bool) or not isinstance(self.udp_sends, int) \
                or self.udp_sends > 10:
            raise ValueError(f"udp_sends must be an integer 1..10, got {self.udp_sends!r}")
        if self.udp_rto > 60:
            raise ValueError(f"udp_rto must be <= 60 seconds, got {self.udp_rto!r}")
        needed = 3 * self.retransmission().give_up_after()
        if self.udp_discovery_timeout < needed:
            raise ValueError(
                f"udp_discovery_timeout ({self.udp_discovery_timeout:g} s) must be >= "
                f"{needed:g} s: three tests that get no answer (udp_rto and udp_sends) "
                "must fit in one run")

    def retransmission(self) -> Retransmission:
        return Retransmission(rto=self.udp_rto, rc=self.udp_sends, rm=_RM)
