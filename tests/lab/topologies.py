"""The NAT lab's topologies and scenarios, and how to run autonat nodes inside them.

Theory of operation
-------------------
Every topology has the same "internet": a namespace ``inet`` holding one bridge,
to which every public participant is attached by a veth pair. It uses only
documentation addresses::

    198.51.100.10        nginx (boot cluster behind one URL)
    198.51.100.11-14     boot nodes, each with a second address 203.0.113.11-14
                         (their ``--dialback-source``) and a third 192.0.2.11-14
                         (their ``--stun-alternate``) on the same interface
    198.51.100.20        a host with a public address (scenarios 1, 5, 6)
    198.51.100.30        a home router's WAN address
    198.51.100.40        a carrier-grade NAT's WAN address
    198.51.100.50        coturn's ``turnserver``, the UDP oracle (:mod:`.oracle`),
                         with its RFC 5780 alternate 192.0.2.50

Each internet participant gets its addresses as ``/24`` plus an on-link route
to each of the three documentation networks it has no address in, so they form
one flat internet.
Home LANs (``192.168.1.0/24``) and the carrier-grade NAT link (``100.64.0.0/24``,
inside 100.64.0.0/10) exist only inside the lab's own namespaces. The node
under test always listens on ``0.0.0.0:44000`` and dials out from that port
(``SO_REUSEPORT``), so a port-preserving NAT shows every observer the same
external port and ``--random-fully`` shows each a different one.

Routers (``ip_forward=1``) filter like home routers: outbound connections and
their replies pass; new inbound connections are dropped silently (in FORWARD
and INPUT), except what a scenario forwards on purpose.

**UDP.** Every router treats UDP as its kind of NAT does (RFC 4787 terms;
mapping: which external port a socket gets per destination, filtering: which
senders may reach it through that port):

* ``masquerade`` (and ``double_nat``, ``port_forward``): Linux conntrack NAT
  keeps the socket's port for every destination (endpoint-independent
  mapping) and lets in only replies from the exact address and port a
  datagram went to (address-and-port-dependent filtering, "port-restricted
  cone").
* ``symmetric``: ``--random-fully`` gives every destination its own random
  port (address-and-port-dependent mapping), filtering as above.
* ``full_cone``: port-preserving masquerade; once a socket has sent from a
  port, anyone may send to that port (endpoint-independent filtering).
* ``address_restricted``: port-preserving masquerade; a port lets in every
  port of each IP the socket on it has sent to (address-dependent filtering).
* ``port_forward`` forwards the TCP listen port only: its TCP face is open,
  its UDP behaves like ``masquerade``.

The dynamic nftables sets that emulate full cone and address-restricted
filtering stand for the NAT's UDP mappings; :meth:`Topology.forget_udp_mappings`
empties them between measurements, as if the previous measurement's mappings
had expired (otherwise a later socket that happened to get the same ephemeral
port would inherit them).

A :class:`Scenario` bundles a topology builder with the verdict the probe must
reach, and with what the topology itself must do to plain TCP (checked without
the node by ``test_nat_lab``): how outbound connections are seen from outside,
and whether inbound connections to the public face reach the host from an IP the
host contacted and from one it never contacted.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .linkem import OFFLOAD_OFF, LinkProfile
from .netlab import (
    ConnectResult,
    Lab,
    LabError,
    LabProcess,
    Namespace,
    tcp_connect,
    tcp_listen,
)

LISTEN_PORT = 44000
HTTP_PORT = 7888
PUBLIC_NETWORKS = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24")
LB_IP = "198.51.100.10"
BOOT_IPS = ("198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14")
BOOT_ALT_IPS = ("203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.14")
BOOT_STUN_ALT_IPS = ("192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14")
COTURN_IP, COTURN_ALT_IP = "198.51.100.50", "192.0.2.50"
PUBLIC_HOST_IP = "198.51.100.20"
ROUTER_WAN_IP = "198.51.100.30"
CGNAT_WAN_IP = "198.51.100.40"
LAN_ROUTER_IP, LAN_HOST_IP = "192.168.1.1", "192.168.1.2"
CGN_INNER_IP, CGN_HOME_IP = "100.64.0.1", "100.64.0.2"


# --- topology building blocks ------------------------------------------------------------


@dataclass
class EmulatedLink:
    """A link namespace between a participant and the bridge, and its emulator process."""

    ns: Namespace
    proc: LabProcess
    profile: LinkProfile

    def stop(self) -> dict[str, Any]:
        """Stop the emulator and return its statistics (its last stdout line)."""
        self.proc.stop(grace=5.0)
        lines = self.proc.stdout().strip().splitlines()
        if not lines:
            raise LabError(f"{self.proc.label} printed no statistics\n{self.proc.tail()}")
        doc: dict[str, Any] = json.loads(lines[-1])
        return doc


def _offloads_off(ns: Namespace, ifname: str) -> None:
    """Raw-frame forwarding needs plain frames: no TSO/GSO/GRO, no checksum offload."""
    ns.run("ethtool", "-K", ifname, *OFFLOAD_OFF)


class Internet:
    """The flat public segment: a bridge in namespace ``inet``."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.ns = lab.namespace("inet")
        lab.bridge(self.ns, "br0")
        self._ports = 0
        self.links: list[EmulatedLink] = []

    def attach(self, ns: Namespace, ifname: str, ip: str, *extra_ips: str,
               link: LinkProfile | None = None) -> None:
        """Plug ``ns`` in as ``ifname`` with ``ip`` (and ``extra_ips``), all ``/24``.

        With ``link``, a namespace ``link<N>`` sits between the bridge port and
        ``ns`` (``inet:pN <-> link:uplink``, ``link:downlink <-> ns:ifname``) and runs the
        link emulator (:mod:`.linkem`) with that profile in both directions.
        """
        self._ports += 1
        port = f"p{self._ports}"
        if link is None:
            self.lab.veth(self.ns, port, ns, ifname)
        else:
            self._emulated(port, ns, ifname, link)
        self.ns.ip("link", "set", port, "master", "br0")
        addrs = (ip, *extra_ips)
        for addr in addrs:
            ns.add_addr(ifname, f"{addr}/24")
        for cidr in PUBLIC_NETWORKS:
            network = ipaddress.ip_network(cidr)
            if not any(ipaddress.ip_address(addr) in network for addr in addrs):
                ns.add_route(cidr, "dev", ifname)

    def _emulated(self, port: str, ns: Namespace, ifname: str, profile: LinkProfile) -> None:
        index = len(self.links) + 1
        link_ns = self.lab.namespace(f"link{index}")
        self.lab.veth(self.ns, port, link_ns, "uplink")
        self.lab.veth(link_ns, "downlink", ns, ifname)
        ends = ((self.ns, port), (link_ns, "uplink"), (link_ns, "downlink"), (ns, ifname))
        for where, name in ends:
            _offloads_off(where, name)
        argv = [sys.executable, str(Path(__file__).with_name("linkem.py")), "--a", "uplink",
                "--b", "downlink", *profile.argv(), "--seed", str(index)]
        proc = link_ns.spawn(f"linkem{index}", argv)
        self.lab.wait_until(lambda: "ready" in proc.stderr() or not proc.running(),
                            timeout=10.0, what=f"link emulator {index} to start")
        if not proc.running():
            raise LabError(f"link emulator {index} failed to start\n{proc.tail()}")
        self.links.append(EmulatedLink(link_ns, proc, profile))


@dataclass(frozen=True)
class BootSite:
    """Where one boot node runs: its namespace, address, dial-back address and RFC 5780
    STUN alternate address (``""``: none)."""

    ns: Namespace
    ip: str
    alt_ip: str
    stun_alt_ip: str = ""

    @property
    def status_url(self) -> str:
        return f"http://{self.ip}:{HTTP_PORT}/status"


@dataclass
class Topology:
    """A built topology: the host under test, its public face, the boot sites."""

    lab: Lab
    internet: Internet
    boots: list[BootSite]
    host: Namespace
    host_ip: str
    face_ip: str
    routers: list[Namespace] = field(default_factory=list)
    link: LinkProfile | None = None
    """The emulated access link of the host under test (its router's WAN behind a NAT)."""
    udp_mapping_sets: tuple[str, ...] = ()
    """The dynamic nftables sets (table ``ip lab_nat`` of the first router) standing for
    its UDP mappings (full cone, address-restricted)."""

    @property
    def face_addr(self) -> str:
        """The multiaddr the internet can reach the host's listen port at, if anything."""
        return f"/ip4/{self.face_ip}/tcp/{LISTEN_PORT}/ws"

    def firewall_dump(self) -> str:
        parts = [f"# {ns.name}\n{ns.ruleset()}" for ns in (*self.routers, self.host)]
        return "\n".join(parts)

    def forget_udp_mappings(self) -> None:
        """Empty the router's dynamic UDP mapping sets (see the module docstring)."""
        for name in self.udp_mapping_sets:
            self.routers[0].run("nft", "flush", "set", "ip", "lab_nat", name)


def _internet_with_boots(lab: Lab, count: int) -> tuple[Internet, list[BootSite]]:
    internet = Internet(lab)
    boots = []
    for index in range(count):
        ns = lab.namespace(f"boot{index + 1}")
        ips = (BOOT_IPS[index], BOOT_ALT_IPS[index], BOOT_STUN_ALT_IPS[index])
        internet.attach(ns, "eth0", *ips)
        boots.append(BootSite(ns, *ips))
    return internet, boots


def _home_lan(lab: Lab, router: Namespace) -> Namespace:
    host = lab.namespace("host")
    lab.veth(router, "lan", host, "eth0")
    router.add_addr("lan", f"{LAN_ROUTER_IP}/24")
    host.add_addr("eth0", f"{LAN_HOST_IP}/24")
    host.add_route("default", "via", LAN_ROUTER_IP)
    return host


def _stateful_wan_filter(router: Namespace) -> None:
    """Home-router filtering: replies pass, new inbound connections vanish (no RST)."""
    for chain in ("FORWARD", "INPUT"):
        router.iptables("-A", chain, "-i", "wan", "-m", "conntrack",
                        "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    router.iptables("-A", "FORWARD", "-i", "wan", "-m", "conntrack",
                    "--ctstate", "NEW,INVALID", "-j", "DROP")
    router.iptables("-A", "INPUT", "-i", "wan", "-j", "DROP")


def _masquerade(router: Namespace, *, random_fully: bool = False) -> None:
    extra = ["--random-fully"] if random_fully else []
    router.iptables("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", *extra)


def _home_router(lab: Lab, internet: Internet, wan_ip: str,
                 link: LinkProfile | None = None) -> tuple[Namespace, Namespace]:
    router = lab.namespace("router", forwarding=True)
    internet.attach(router, "wan", wan_ip, link=link)
    return router, _home_lan(lab, router)


def build_public(lab: Lab, link: LinkProfile | None = None) -> Topology:
    """Scenario 1 (and the base of 5, 6): a host with a public address, no NAT.

    ``link``: the host's access link is emulated (delay, jitter, loss)."""
    internet, boots = _internet_with_boots(lab, 3)
    host = lab.namespace("host")
    internet.attach(host, "eth0", PUBLIC_HOST_IP, link=link)
    return Topology(lab, internet, boots, host, PUBLIC_HOST_IP, PUBLIC_HOST_IP, link=link)


def build_masquerade(lab: Lab, link: LinkProfile | None = None) -> Topology:
    """Scenario 2: port-preserving masquerade with port-restricted filtering.

    ``link``: the router's WAN link is emulated (delay, jitter, loss)."""
    internet, boots = _internet_with_boots(lab, 3)
    router, host = _home_router(lab, internet, ROUTER_WAN_IP, link)
    _masquerade(router)
    _stateful_wan_filter(router)
    return Topology(lab, internet, boots, host, LAN_HOST_IP, ROUTER_WAN_IP, [router], link=link)


def build_symmetric(lab: Lab) -> Topology:
    """Scenario 3: symmetric NAT - every connection gets a random external port."""
    internet, boots = _internet_with_boots(lab, 3)
    router, host = _home_router(lab, internet, ROUTER_WAN_IP)
    _masquerade(router, random_fully=True)
    _stateful_wan_filter(router)
    return Topology(lab, internet, boots, host, LAN_HOST_IP, ROUTER_WAN_IP, [router])


def build_port_forward(lab: Lab) -> Topology:
    """Scenario 4: masquerade plus the listen port forwarded (DNAT) to the host."""
    internet, boots = _internet_with_boots(lab, 3)
    router, host = _home_router(lab, internet, ROUTER_WAN_IP)
    port = str(LISTEN_PORT)
    router.iptables("-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "tcp", "--dport", port,
                    "-j", "DNAT", "--to-destination", f"{LAN_HOST_IP}:{port}")
    router.iptables("-A", "FORWARD", "-i", "wan", "-p", "tcp", "-d", LAN_HOST_IP,
                    "--dport", port, "-m", "conntrack", "--ctstate", "NEW,DNAT", "-j", "ACCEPT")
    _masquerade(router)
    _stateful_wan_filter(router)
    return Topology(lab, internet, boots, host, LAN_HOST_IP, ROUTER_WAN_IP, [router])


def _host_firewall(topo: Topology, target: Sequence[str]) -> Topology:
    topo.host.iptables("-A", "INPUT", "-p", "tcp", "--dport", str(LISTEN_PORT),
                       "-m", "conntrack", "--ctstate", "NEW", "-j", *target)
    return topo


def build_firewall_drop(lab: Lab) -> Topology:
    """Scenario 5: public address, host firewall silently dropping inbound connections."""
    return _host_firewall(build_public(lab), ["DROP"])


def build_firewall_reject(lab: Lab) -> Topology:
    """Scenario 6: public address, host firewall rejecting inbound connections (RST)."""
    return _host_firewall(build_public(lab), ["REJECT", "--reject-with", "tcp-reset"])


_ADDRESS_RESTRICTED_NFT = """\
table ip lab_nat {{
    set contacted {{
        type ipv4_addr
        flags dynamic,timeout
        timeout 10m
    }}
    set contacted_udp {{
        type ipv4_addr . inet_service
        flags dynamic,timeout
        timeout 10m
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" ip saddr @contacted tcp dport {port} dnat to {host}:{port}
        iifname "wan" ip saddr . udp dport @contacted_udp dnat to {host}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" ct state new meta l4proto udp \\
            update @contacted_udp {{ ip daddr . udp sport }} accept
        iifname "lan" oifname "wan" ct state new update @contacted {{ ip daddr }} accept
        iifname "wan" oifname "lan" ct status dnat ip saddr @contacted tcp dport {port} accept
        iifname "wan" oifname "lan" ct status dnat ip saddr . udp dport @contacted_udp accept
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }}
}}
"""


def build_address_restricted(lab: Lab) -> Topology:
    """Scenario 7: address-restricted cone NAT (nftables).

    Every outbound TCP connection puts its destination IP in the set ``@contacted``;
    inbound connections to the mapped listen port are forwarded to the host
    from any port of a contacted IP, and dropped from any other IP. UDP keeps
    that per mapping: a datagram out of port p to IP a puts ``a . p`` in
    ``@contacted_udp``, and a datagram to port p of the router is forwarded to
    the host from any port of such an ``a``.
    """
    internet, boots = _internet_with_boots(lab, 3)
    router, host = _home_router(lab, internet, ROUTER_WAN_IP)
    router.nft(_ADDRESS_RESTRICTED_NFT.format(port=LISTEN_PORT, host=LAN_HOST_IP))
    return Topology(lab, internet, boots, host, LAN_HOST_IP, ROUTER_WAN_IP, [router],
                    udp_mapping_sets=("contacted_udp",))


_FULL_CONE_NFT = """\
table ip lab_nat {{
    set mapped {{
        type inet_service
        flags dynamic,timeout
        timeout 10m
    }}
    set mapped_udp {{
        type inet_service
        flags dynamic,timeout
        timeout 10m
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" tcp dport @mapped dnat to {host}
        iifname "wan" udp dport @mapped_udp dnat to {host}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" ct state new update @mapped {{ tcp sport }} accept
        iifname "lan" oifname "wan" ct state new update @mapped_udp {{ udp sport }} accept
        iifname "wan" oifname "lan" ct status dnat tcp dport @mapped accept
        iifname "wan" oifname "lan" ct status dnat udp dport @mapped_udp accept
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }}
}}
"""

def build_full_cone(lab: Lab) -> Topology:
    """Full cone NAT (endpoint-independent filtering, nftables).

    Port-preserving masquerade; once the host has connected out from a port
    (the set ``@mapped``; ``@mapped_udp`` for UDP), inbound connections (and
    datagrams) to that port of the router are forwarded to the host from any IP
    and port. Nothing is forwarded before the host used the port (unlike
    ``port_forward``).
    """
    internet, boots = _internet_with_boots(lab, 3)
    router, host = _home_router(lab, internet, ROUTER_WAN_IP)
    router.nft(_FULL_CONE_NFT.format(host=LAN_HOST_IP))
    return Topology(lab, internet, boots, host, LAN_HOST_IP, ROUTER_WAN_IP, [router],
                    udp_mapping_sets=("mapped_udp",))


def build_double_nat(lab: Lab) -> Topology:
    """Scenario 8: home NAT behind a carrier-grade NAT (100.64.0.0/10), both masquerading."""
    internet, boots = _internet_with_boots(lab, 3)
    cgnat = lab.namespace("cgnat", forwarding=True)
    internet.attach(cgnat, "wan", CGNAT_WAN_IP)
    home = lab.namespace("router", forwarding=True)
    lab.veth(cgnat, "lan", home, "wan")
    cgnat.add_addr("lan", f"{CGN_INNER_IP}/24")
    home.add_addr("wan", f"{CGN_HOME_IP}/24")
    home.add_route("default", "via", CGN_INNER_IP)
    host = _home_lan(lab, home)
    for router in (cgnat, home):
        _masquerade(router)
        _stateful_wan_filter(router)
    return Topology(lab, internet, boots, host, LAN_HOST_IP, CGNAT_WAN_IP, [cgnat, home])


# --- scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What ``autonat probe --json`` must say. ``nat_mapping`` / ``nat_filtering`` (TCP)
    and ``udp_mapping`` / ``udp_filtering`` (its ``udp`` object) ``None``: not asserted.

    ``profile_may_be_unknown``: ``nat_mapping`` and ``nat_filtering`` may also be
    ``unknown`` - on a very lossy path the probe can end at its verdict before two
    observers saw the listen port (a dial from it failed, or fell back to an
    ephemeral port) or before enough servers vouched for the filtering. Unknown is
    an honest answer; any other wrong value still fails.
    """

    nat_status: str
    nat_mapping: str | None
    reachable_at_face: bool
    nat_filtering: str | None = None
    profile_may_be_unknown: bool = False
    udp_mapping: str | None = None
    udp_filtering: str | None = None
    hairpinning: str | None = None
    """``"true"``, ``"false"`` or ``"null"`` as in the probe's JSON; ``None``: not asserted."""

    def describe(self) -> str:
        text = self.nat_status
        if self.nat_mapping is not None:
            text += f", {self.nat_mapping}"
        if self.nat_filtering is not None:
            text += f", filtering {self.nat_filtering}"
        if self.profile_may_be_unknown:
            text += " (or unknown)"
        if self.hairpinning is not None:
            text += f", hairpin {self.hairpinning}"
        return text

    def describe_udp(self) -> str:
        """The expected UDP profile, ``-`` when nothing of it is asserted."""
        if self.udp_mapping is None and self.udp_filtering is None:
            return "-"
        return f"{self.udp_mapping or 'any'}, filtering {self.udp_filtering or 'any'}"

    @property
    def asserts_udp(self) -> bool:
        return self.udp_mapping is not None or self.udp_filtering is not None

    def hairpinning_ok(self, got: object) -> bool:
        return self.hairpinning is None or json.dumps(got) == self.hairpinning

    def mapping_ok(self, got: object) -> bool:
        return self._ok(self.nat_mapping, got)

    def filtering_ok(self, got: object) -> bool:
        return self._ok(self.nat_filtering, got)

    def udp_problems(self, got: object, source: str = "udp") -> list[str]:
        """How ``got`` (a ``{"mapping", "filtering"}`` object) differs from the expected UDP
        profile; ``source`` names it in the messages."""
        doc = got if isinstance(got, dict) else {}
        problems = []
        for key, want in (("mapping", self.udp_mapping), ("filtering", self.udp_filtering)):
            if want is not None and doc.get(key) != want:
                problems.append(f"{source} {key} {doc.get(key)!r}, expected {want!r}")
        return problems

    def _ok(self, want: str | None, got: object) -> bool:
        if want is None or got == want:
            return True
        return self.profile_may_be_unknown and got == "unknown"


@dataclass(frozen=True)
class PlainTcp:
    """What the topology does to plain TCP (checked without the node).

    ``outbound``: how two observers see connections from the host's port 44000 -
    ``same`` (the host's own address), ``preserved`` (the face IP, port 44000 for
    both) or ``random`` (the face IP, different ports). ``inbound_contacted`` /
    ``inbound_other``: connecting to the face's port 44000 from an IP the host
    contacted / never contacted - ``ok``, ``timeout`` (dropped) or ``refused``.
    """

    outbound: str
    inbound_contacted: str
    inbound_other: str


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    build: Callable[[Lab], Topology]
    expect: Expectation
    plain_tcp: PlainTcp
    dialback_source: bool = True
    informational: bool = False
    link: LinkProfile | None = None
    """The host's emulated access link (``LINK_SCENARIOS``); ``None``: a plain veth."""
    stun_alternate: bool = True
    """Boot nodes serve STUN with an RFC 5780 alternate (``--stun-alternate``), so the
    probe measures the UDP profile and the oracle (:mod:`.oracle`) can run."""


EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("public", "public host, no NAT", build_public,
             Expectation("public", "none", True, EI, udp_mapping="none", udp_filtering=EI),
             PlainTcp("same", "ok", "ok")),
    Scenario("masquerade", "NAT: masquerade (port-restricted)", build_masquerade,
             Expectation("private", EI, False, APD, udp_mapping=EI, udp_filtering=APD),
             PlainTcp("preserved", "timeout", "timeout")),
    Scenario("symmetric", "NAT: symmetric (--random-fully)", build_symmetric,
             Expectation("private", "endpoint-dependent", False, "unknown",
                         udp_mapping=APD, udp_filtering=APD),
             PlainTcp("random", "timeout", "timeout")),
    Scenario("port_forward", "NAT: TCP listen port forwarded (DNAT), UDP not",
             build_port_forward,
             Expectation("public", EI, True, EI, udp_mapping=EI, udp_filtering=APD),
             PlainTcp("preserved", "ok", "ok")),
    Scenario("full_cone", "NAT: full cone (endpoint-independent filtering)", build_full_cone,
             Expectation("public", EI, True, EI, udp_mapping=EI, udp_filtering=EI),
             PlainTcp("preserved", "ok", "ok")),
    Scenario("firewall_drop", "host firewall: DROP inbound TCP", build_firewall_drop,
             Expectation("private", "none", False, APD, udp_mapping="none", udp_filtering=EI),
             PlainTcp("same", "timeout", "timeout")),
    Scenario("firewall_reject", "host firewall: REJECT inbound TCP", build_firewall_reject,
             Expectation("private", "none", False, APD, udp_mapping="none", udp_filtering=EI),
             PlainTcp("same", "refused", "refused")),
    Scenario("address_restricted", "NAT: address-restricted, dialback_source",
             build_address_restricted,
             Expectation("private", EI, False, AD, udp_mapping=EI, udp_filtering=AD),
             PlainTcp("preserved", "ok", "timeout")),
    Scenario("address_restricted_contrast", "  same, boot nodes WITHOUT dialback_source",
             build_address_restricted,
             Expectation("public", EI, True, "unknown", udp_mapping=EI, udp_filtering=AD),
             PlainTcp("preserved", "ok", "timeout"), dialback_source=False, informational=True),
    Scenario("double_nat", "double NAT (CGNAT + home NAT)", build_double_nat,
             Expectation("private", EI, False, APD, udp_mapping=EI, udp_filtering=APD),
             PlainTcp("preserved", "timeout", "timeout")),
)

LINK_PROFILES: tuple[LinkProfile, ...] = (
    LinkProfile(40.0),
    LinkProfile(50.0),
    LinkProfile(150.0, jitter_ms=20.0),
    LinkProfile(50.0, loss=0.02),
    LinkProfile(50.0, loss=0.10),
    LinkProfile(50.0, loss=0.25),
)
"""Access-link profiles, per direction: "40 ms" is 40 ms one-way each way (+80 ms RTT)."""


VERY_LOSSY = 0.25
"""From this loss rate on, ``nat_mapping`` and ``nat_filtering`` may honestly stay
``unknown`` (see :class:`Expectation`); ``nat_status`` must still be right."""


def _link_scenarios() -> tuple[Scenario, ...]:
    """For every link profile: a public host (``public_<tag>``) and the same host behind
    the port-restricted masquerade (``masquerade_<tag>``), the link on its access link.

    Their boot nodes serve STUN without an RFC 5780 alternate: the UDP profile is
    not measured there (a lossy link would make lost filtering tests look like a
    filtering NAT), so their probes never wait for it."""
    scenarios = []
    for profile in LINK_PROFILES:
        lossy = profile.loss >= VERY_LOSSY
        scenarios.append(Scenario(
            f"public_{profile.key}", f"public host, link {profile.describe()}",
            functools.partial(build_public, link=profile),
            Expectation("public", "none", True, "endpoint-independent",
                        profile_may_be_unknown=lossy),
            PlainTcp("same", "ok", "ok"), link=profile))
        scenarios.append(Scenario(
            f"masquerade_{profile.key}", f"NAT: masquerade, link {profile.describe()}",
            functools.partial(build_masquerade, link=profile),
            Expectation("private", "endpoint-independent", False,
                        "address-and-port-dependent", profile_may_be_unknown=lossy),
            PlainTcp("preserved", "timeout", "timeout"), link=profile))
    return tuple(replace(scenario, stun_alternate=False) for scenario in scenarios)


LINK_SCENARIOS: tuple[Scenario, ...] = _link_scenarios()
"""The delay/loss scenarios, run apart from ``SCENARIOS`` (``run_matrix --links``)."""
SCENARIOS_BY_KEY = {scenario.key: scenario for scenario in (*SCENARIOS, *LINK_SCENARIOS)}


# --- the boot cluster -------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterTopology:
    """Boot sites behind nginx (``lb``), a public host, and a home host behind a NAT."""

    public: Topology
    lb: Namespace
    home: Topology


def build_cluster(lab: Lab) -> ClusterTopology:
    """Four boot sites and nginx on the internet; a public host (``host``) and a host
    (``home``) behind a port-restricted masquerading router, both to bootstrap from."""
    internet, boots = _internet_with_boots(lab, 4)
    lb = lab.namespace("lb")
    internet.attach(lb, "eth0", LB_IP)
    host = lab.namespace("pub")
    internet.attach(host, "eth0", PUBLIC_HOST_IP)
    router, home = _home_router(lab, internet, ROUTER_WAN_IP)
    _masquerade(router)
    _stateful_wan_filter(router)
    return ClusterTopology(
        Topology(lab, internet, boots, host, PUBLIC_HOST_IP, PUBLIC_HOST_IP), lb,
        Topology(lab, internet, boots, home, LAN_HOST_IP, ROUTER_WAN_IP, [router]))


# --- plain TCP checks of a topology (no node involved) -----------------------------------

PLAIN_PORT = 9000


def check_plain_tcp(topo: Topology, spec: PlainTcp) -> list[str]:
    """Check ``spec`` against the built topology with tiny TCP tools; return the problems.

    Through an emulated link, timeouts grow with the link's round trip and, on a
    lossy link, every connection is tried up to :data:`LOSSY_ATTEMPTS` times (see
    :func:`_connect`). The tools are stopped before returning, so the node can use
    the ports afterwards.
    """
    tools = [tcp_listen(boot.ns, boot.ip, PLAIN_PORT, label=f"tcp-{boot.ns.short}")
             for boot in topo.boots[:3]]
    try:
        seen = []
        for boot in topo.boots[:3]:
            result = _connect(topo, topo.host, boot.ip, PLAIN_PORT, base_timeout=2.0,
                              source=(topo.host_ip, LISTEN_PORT))
            if result.seen_as is None:
                return [f"outbound to {boot.ip} failed: {result.error}"]
            seen.append(result.seen_as)
        problems = _check_outbound(topo, spec.outbound, seen)
        tools.append(tcp_listen(topo.host, "0.0.0.0", LISTEN_PORT, label="tcp-host"))
        problems += _check_inbound(topo, spec)
        return problems
    finally:
        for tool in tools:
            tool.stop(grace=2.0)


LOSSY_ATTEMPTS = 3
"""Connection attempts through a lossy link. One attempt sends SYNs at 0, 1 and 3 s;
at 25 % loss each way a SYN's round trip fails with p = 0.44, so an open port looks
closed to one attempt with p = 0.44**3 = 0.08 and to three with p = 0.0007."""


def _attempt_timeout(base: float, link: LinkProfile | None) -> float:
    """``base`` plus two round trips of the link; on a lossy link at least three SYNs."""
    if link is None:
        return base
    rtt = 2.0 * (link.delay_ms + link.jitter_ms) / 1000.0
    timeout = base + 2.0 * rtt
    return max(timeout, 3.5 + 2.0 * rtt) if link.loss > 0.0 else timeout


def _connect(topo: Topology, ns: Namespace, ip: str, port: int, *, base_timeout: float,
             source: tuple[str, int]) -> ConnectResult:
    """:func:`tcp_connect`, retried through a lossy link until a definite answer.

    A connection or a refusal (RST) is definite - loss cannot forge either - so the
    first one ends the attempts. A timeout may be the loss's doing, so on a lossy
    link it counts only when all :data:`LOSSY_ATTEMPTS` attempts time out (then a
    dropping firewall is what the check still demands). Without loss: one attempt,
    exactly as before.
    """
    link = topo.link
    attempts = LOSSY_ATTEMPTS if link is not None and link.loss > 0.0 else 1
    timeout = _attempt_timeout(base_timeout, link)
    result = ConnectResult(False, error="no attempt")
    for _ in range(attempts):
        result = tcp_connect(ns, ip, port, timeout=timeout, source=source)
        if result.ok or result.error != "timeout":
            return result
    return result


def _check_inbound(topo: Topology, spec: PlainTcp) -> list[str]:
    problems = []
    boot = topo.boots[0]
    for source_ip, want in ((boot.ip, spec.inbound_contacted), (boot.alt_ip, spec.inbound_other)):
        result = _connect(topo, boot.ns, topo.face_ip, LISTEN_PORT, base_timeout=1.5,
                          source=(source_ip, 0))
        got = "ok" if result.ok else _inbound_error(result.error)
        if got != want:
            problems.append(f"inbound from {source_ip} to {topo.face_ip}:{LISTEN_PORT}: "
                            f"{got} ({result.error or result.seen_as}), expected {want}")
    return problems


def _inbound_error(error: str | None) -> str:
    return {"timeout": "timeout", "ConnectionRefusedError": "refused"}.get(error or "", str(error))


def _check_outbound(topo: Topology, kind: str, seen: list[tuple[str, int]]) -> list[str]:
    ips = {ip for ip, _ in seen}
    ports = [port for _, port in seen]
    want_ip = topo.host_ip if kind == "same" else topo.face_ip
    problems = []
    if ips != {want_ip}:
        problems.append(f"outbound seen from {sorted(ips)}, expected {want_ip}")
    if kind in ("same", "preserved") and set(ports) != {LISTEN_PORT}:
        problems.append(f"outbound ports {ports}, expected {LISTEN_PORT} for every observer")
    if kind == "random" and len(set(ports)) < 2:
        problems.append(f"outbound ports {ports}, expected them to differ per observer")
    return problems


# --- hairpinning (kept apart, at the end, to ease merging) ---------------------------------


def _hairpin_rules(router: Namespace) -> None:
    """The classic hairpin NAT: a LAN connection to the WAN IP's forwarded port is DNATed
    to the host like one from the WAN, and SNATed to the router's LAN address, so the
    host's answer goes back through the router (not straight to itself)."""
    port = str(LISTEN_PORT)
    router.iptables("-t", "nat", "-A", "PREROUTING", "-i", "lan", "-d", ROUTER_WAN_IP,
                    "-p", "tcp", "--dport", port, "-j", "DNAT",
                    "--to-destination", f"{LAN_HOST_IP}:{port}")
    router.iptables("-t", "nat", "-A", "POSTROUTING", "-o", "lan", "-s", "192.168.1.0/24",
                    "-d", LAN_HOST_IP, "-p", "tcp", "--dport", port, "-j", "MASQUERADE")


def build_port_forward_hairpin(lab: Lab) -> Topology:
    """``port_forward`` plus the hairpin rules: the host reaches itself at the WAN IP."""
    topo = build_port_forward(lab)
    _hairpin_rules(topo.routers[0])
    return topo


HAIRPINNING: dict[str, str] = {
    "public": "null",  # no NAT: not applicable
    "masquerade": "null",  # private: nothing confirmed to test
    "firewall_drop": "null",
    "port_forward": "false",  # DNAT from the WAN only: the router refuses the LAN's dial
    "full_cone": "false",
}
"""The hairpinning each scenario must report (scenarios not named: not asserted)."""


def _with_hairpinning(scenarios: Sequence[Scenario]) -> tuple[Scenario, ...]:
    return tuple(dataclasses.replace(s, expect=dataclasses.replace(
        s.expect, hairpinning=HAIRPINNING[s.key])) if s.key in HAIRPINNING else s
        for s in scenarios)


SCENARIOS = (*_with_hairpinning(SCENARIOS), Scenario(
    "port_forward_hairpin", "NAT: port forward with hairpin NAT", build_port_forward_hairpin,
    Expectation("public", "endpoint-independent", True, EI, hairpinning="true"),
    PlainTcp("preserved", "ok", "ok")))
SCENARIOS_BY_KEY = {scenario.key: scenario for scenario in (*SCENARIOS, *LINK_SCENARIOS)}
