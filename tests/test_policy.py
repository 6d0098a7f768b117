"""AddressPolicy: the routability matrix (docs/architecture.md, "Address policy")."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import AddressError, AddressPolicy, WsAddress

DEFAULT = AddressPolicy()
LOOPBACK = AddressPolicy(allow_loopback=True)
PRIVATE = AddressPolicy(allow_private=True)
LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24", "203.0.113.0/24"])
LAB6 = AddressPolicy.from_strings(public_networks=["2001:db8::/32"])
EVERYTHING = AddressPolicy.from_strings(
    allow_loopback=True,
    allow_private=True,
    public_networks=["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "2001:db8::/32"],
)
POLICIES = {
    "default": DEFAULT,
    "loopback": LOOPBACK,
    "private": PRIVATE,
    "lab": LAB,
    "lab6": LAB6,
    "everything": EVERYTHING,
}

# ip -> the policies (by name) that accept it
MATRIX: dict[str, set[str]] = {
    # globally routable
    "8.8.8.8": set(POLICIES),
    "34.83.215.109": set(POLICIES),
    "2001:4860:4860::8888": set(POLICIES),
    "2606:4700::1111": set(POLICIES),
    # loopback
    "127.0.0.1": {"loopback", "everything"},
    "127.255.0.9": {"loopback", "everything"},
    "::1": {"loopback", "everything"},
    "::ffff:127.0.0.1": {"loopback", "everything"},  # IPv4-mapped is judged as IPv4
    # private (RFC 1918, CGNAT, link-local, ULA)
    "10.1.2.3": {"private", "everything"},
    "172.16.0.1": {"private", "everything"},
    "172.31.255.254": {"private", "everything"},
    "192.168.1.1": {"private", "everything"},
    "100.64.0.1": {"private", "everything"},
    "169.254.10.10": {"private", "everything"},
    "fd00::1": {"private", "everything"},
    "fe80::1": {"private", "everything"},
    "::ffff:10.0.0.1": {"private", "everything"},
    # documentation: not global, not private - only via public_networks
    "198.51.100.7": {"lab", "everything"},
    "203.0.113.9": {"lab", "everything"},
    "192.0.2.1": {"everything"},
    "2001:db8::7": {"lab6", "everything"},
    # reserved / benchmarking / this-network: never, unless listed
    "240.0.0.1": set(),
    "198.18.0.1": set(),
    "0.1.2.3": set(),
    # never, whatever the policy
    "0.0.0.0": set(),
    "::": set(),
    "255.255.255.255": set(),
    "224.0.0.1": set(),
    "239.255.255.250": set(),
    "ff02::1": set(),
}


@pytest.mark.parametrize("ip_text", sorted(MATRIX))
@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_matrix(ip_text: str, policy_name: str) -> None:
    policy = POLICIES[policy_name]
    ip = ipaddress.ip_address(ip_text)
    expected = policy_name in MATRIX[ip_text]
    assert policy.is_routable_ip(ip) is expected
    kind = "ip4" if ip.version == 4 else "ip6"
    addr = WsAddress(str(ip), kind, 44000, False)
    assert policy.is_routable(addr) is expected
    reason = policy.reason_rejected(addr)
    assert (reason is None) is expected
    if reason is not None:
        assert str(addr) in reason


def test_public_networks_cannot_make_unspecified_or_multicast_routable() -> None:
    policy = AddressPolicy.from_strings(public_networks=["0.0.0.0/0", "::/0"])
    assert policy.is_routable_ip(ipaddress.ip_address("203.0.113.1"))
    for text in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"):
        assert not policy.is_routable_ip(ipaddress.ip_address(text))


def test_reasons_say_what_to_change() -> None:
    def reason(policy: AddressPolicy, text: str) -> str:
        result = policy.reason_rejected(WsAddress.parse(text))
        assert result is not None
        return result

    assert "allow_loopback is off" in reason(DEFAULT, "/ip4/127.0.0.1/tcp/1/ws")
    assert "allow_private is off" in reason(DEFAULT, "/ip4/10.0.0.1/tcp/1/ws")
    assert "public_networks" in reason(DEFAULT, "/ip4/198.51.100.1/tcp/1/ws")
    assert "port 0" in reason(EVERYTHING, "/ip4/8.8.8.8/tcp/0/ws")
    assert "multicast" in reason(EVERYTHING, "/ip4/224.0.0.1/tcp/1/ws")
    assert "unspecified" in reason(EVERYTHING, "/ip6/::/tcp/1/ws")
    assert "allow_dns is off" in reason(
        AddressPolicy(allow_dns=False), "/dns4/boot.example.com/tcp/443/wss"
    )


def test_dns_names() -> None:
    name = WsAddress.parse("/dns4/boot.example.com/tcp/443/wss")
    assert DEFAULT.is_routable(name)
    assert not AddressPolicy(allow_dns=False).is_routable(name)
    for local in ("/dns/localhost/tcp/1/ws", "/dns4/node.localhost/tcp/1/ws"):
        assert not DEFAULT.is_routable(WsAddress.parse(local))
        assert LOOPBACK.is_routable(WsAddress.parse(local))
        assert not AddressPolicy(allow_loopback=True, allow_dns=False).is_routable(
            WsAddress.parse(local)
        )


def test_port_zero_is_never_routable() -> None:
    assert not EVERYTHING.is_routable(WsAddress.parse("/ip4/8.8.8.8/tcp/0/ws"))
    assert not EVERYTHING.is_routable(WsAddress.parse("/dns/a.example/tcp/0/ws"))


def test_filter_keeps_order() -> None:
    addrs = [
        WsAddress.parse(text)
        for text in (
            "/ip4/8.8.8.8/tcp/1/ws",
            "/ip4/127.0.0.1/tcp/1/ws",
            "/ip4/198.51.100.2/tcp/1/ws",
            "/ip6/2606:4700::1111/tcp/1/wss",
        )
    ]
    assert DEFAULT.filter(addrs) == [addrs[0], addrs[3]]
    assert LAB.filter(reversed(addrs)) == [addrs[3], addrs[2], addrs[0]]


def test_from_strings() -> None:
    policy = AddressPolicy.from_strings(
        allow_loopback=True, public_networks=("198.51.100.0/24", "2001:db8::/32", "192.0.2.5")
    )
    assert policy.allow_loopback and not policy.allow_private and policy.allow_dns
    assert policy.public_networks == (
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.5/32"),
    )
    assert AddressPolicy.from_strings(public_networks="10.0.0.0/8").public_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
    )


@pytest.mark.parametrize("bad", ["198.51.100.0/33", "banana", "", "1.2.3.4/24/1", "::/200"])
def test_from_strings_names_the_bad_cidr(bad: str) -> None:
    with pytest.raises(AddressError, match=re.escape(repr(bad))):
        AddressPolicy.from_strings(public_networks=["10.0.0.0/8", bad])


def test_constructor_validates_networks_and_freezes_them() -> None:
    policy = AddressPolicy(public_networks=[ipaddress.ip_network("10.0.0.0/8")])  # type: ignore[arg-type]
    assert isinstance(policy.public_networks, tuple)
    with pytest.raises(AddressError):
        AddressPolicy(public_networks=("10.0.0.0/8",))  # type: ignore[arg-type]
    same = AddressPolicy(public_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    assert policy == same
    assert hash(policy) == hash(same)


@given(st.ip_addresses())
def test_default_policy_is_is_global_for_unicast(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    judged = mapped or ip
    special = judged.is_multicast or judged.is_unspecified or str(judged) == "255.255.255.255"
    assert DEFAULT.is_routable_ip(ip) == (judged.is_global and not special)
    # Widening never narrows.
    if DEFAULT.is_routable_ip(ip):
        assert all(policy.is_routable_ip(ip) for policy in POLICIES.values())
