"""WebSocket multiaddrs: parsing, canonical forms, round trips, hostile input."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import multiaddr.protocols
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from multiaddr import Multiaddr

from protocols import AddressError, PeerId, PublicKey, WsAddress, parse_addresses

PEER = "12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9"
PEER_ID = PeerId.from_string(PEER)
SHA_PEER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


# --- good addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "kind", "port", "secure", "peer"),
    [
        ("/ip4/1.2.3.4/tcp/44000/ws", "1.2.3.4", "ip4", 44000, False, None),
        (f"/ip4/1.2.3.4/tcp/44000/ws/p2p/{PEER}", "1.2.3.4", "ip4", 44000, False, PEER),
        ("/ip6/::1/tcp/1/wss", "::1", "ip6", 1, True, None),
        ("/ip6/2001:DB8:0:0::7/tcp/443/ws", "2001:db8::7", "ip6", 443, False, None),
        ("/dns4/Boot.Example.COM/tcp/443/wss", "boot.example.com", "dns4", 443, True, None),
        ("/dns6/example.org/tcp/8080/ws", "example.org", "dns6", 8080, False, None),
        ("/dns/example.net/tcp/80/tls/ws", "example.net", "dns", 80, True, None),
        (f"/ip4/10.0.0.1/tcp/0/ws/ipfs/{SHA_PEER}", "10.0.0.1", "ip4", 0, False, SHA_PEER),
        ("/ip4/1.2.3.4/tcp/65535/ws/", "1.2.3.4", "ip4", 65535, False, None),
    ],
)
def test_parse_good(
    text: str, host: str, kind: str, port: int, secure: bool, peer: str | None
) -> None:
    addr = WsAddress.parse(text)
    assert (addr.host, addr.kind, addr.port, addr.secure) == (host, kind, port, secure)
    assert addr.peer_id == (None if peer is None else PeerId.from_string(peer))
    # Every accepted form has one canonical string, binary and Multiaddr form.
    assert WsAddress.parse(str(addr)) == addr
    assert WsAddress.parse(addr.to_bytes()) == addr
    assert WsAddress.parse(addr.to_multiaddr()) == addr
    assert Multiaddr(str(addr)).to_bytes() == addr.to_bytes()


def test_canonical_string() -> None:
    addr = WsAddress.parse(f"/dns4/EXAMPLE.com/tcp/443/tls/ws/ipfs/{PEER}")
    assert str(addr) == f"/dns4/example.com/tcp/443/wss/p2p/{PEER}"


def test_binary_golden_bytes() -> None:
    # Cross-checked against the multiaddr package (py-multiaddr 0.2.0).
    addr = WsAddress.parse(f"/ip4/1.2.3.4/tcp/44000/ws/p2p/{PEER}")
    assert addr.to_bytes().hex() == (
        "0401020304" "06abe0" "dd03" "a503" "26" "002408011220" + PEER_ID.multihash[6:].hex()
    )


def test_urls() -> None:
    assert WsAddress.parse("/ip6/::1/tcp/44000/ws").url() == "ws://[::1]:44000/"
    assert WsAddress.parse("/ip4/1.2.3.4/tcp/443/wss").url("/x") == "wss://1.2.3.4:443/x"
    assert WsAddress.parse("/dns4/a.example/tcp/80/ws").url() == "ws://a.example:80/"
    with pytest.raises(ValueError):
        WsAddress.parse("/ip4/1.2.3.4/tcp/443/wss").url("x")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://1.2.3.4:44000/", "/ip4/1.2.3.4/tcp/44000/ws"),
        ("ws://1.2.3.4:44000", "/ip4/1.2.3.4/tcp/44000/ws"),
        ("WSS://[::1]:9/", "/ip6/::1/tcp/9/wss"),
        ("wss://Example.COM", "/dns/example.com/tcp/443/wss"),
        ("ws://example.com", "/dns/example.com/tcp/80/ws"),
    ],
)
def test_from_url(url: str, expected: str) -> None:
    assert str(WsAddress.from_url(url)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://1.2.3.4:80/",
        "ws://1.2.3.4:99999/",
        "ws://1.2.3.4:80/path",
        "ws://user@1.2.3.4:80/",
        "ws://1.2.3.4:80/?q=1",
        "ws://:80/",
        "ws://[::1/",
        "ws://bad_host!:80/",
        "ws://2130706433/",
    ],
)
def test_from_url_rejects(url: str) -> None:
    with pytest.raises(AddressError):
        WsAddress.from_url(url)


def test_from_url_with_peer_id() -> None:
    addr = WsAddress.from_url("ws://1.2.3.4:5/", PEER_ID)
    assert str(addr) == f"/ip4/1.2.3.4/tcp/5/ws/p2p/{PEER}"
    assert addr.with_peer_id(None) == WsAddress.parse("/ip4/1.2.3.4/tcp/5/ws")


def test_ip_property() -> None:
    assert WsAddress.parse("/ip4/1.2.3.4/tcp/5/ws").ip == ipaddress.IPv4Address("1.2.3.4")
    assert WsAddress.parse("/ip6/::1/tcp/5/ws").ip == ipaddress.IPv6Address("::1")
    assert WsAddress.parse("/dns4/a.example/tcp/5/ws").ip is None


def test_constructor_validates() -> None:
    assert WsAddress("1.2.3.4", "ip4", 1, False) == WsAddress.parse("/ip4/1.2.3.4/tcp/1/ws")
    for args in [
        ("1.2.3.4", "ip5", 1, False),
        ("::1", "ip4", 1, False),
        ("0:0::1", "ip6", 1, False),  # not canonical
        ("Example.com", "dns4", 1, False),  # not canonical
        ("1.2.3.4", "ip4", 70000, False),
        ("1.2.3.4", "ip4", True, False),
        ("1.2.3.4", "ip4", 1, 1),
    ]:
        with pytest.raises(AddressError):
            WsAddress(*args)  # type: ignore[arg-type]


# --- bad addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "starts with '/'"),
        ("/", "empty multiaddr"),
        (b"", "empty multiaddr"),
        ("ip4/1.2.3.4/tcp/1/ws", "starts with '/'"),
        ("/ip4/1.2.3.4/udp/4001/quic-v1", "unsupported transport /udp"),
        (f"/ip4/34.83.215.109/tcp/44000/p2p/{PEER}", r"unsupported transport \(no /ws or /wss\)"),
        ("/ip4/1.2.3.4/tcp/44000", r"no /ws or /wss"),
        ("/ip4/1.2.3.4", "missing /tcp"),
        ("/ip4/1.2.3.4/tcp/1/ws/p2p/xyz", "bad peer id"),
        ("/ip4/1.2.3.4/tcp/1/ws/p2p", "needs a value"),
        (f"/ip4/1.2.3.4/tcp/1/ws/p2p/{PEER}/p2p-circuit", "relay"),
        ("/ip4/1.2.3.4/tcp/1/ws/p2p-circuit", "relay"),
        (f"/ip4/1.2.3.4/tcp/1/ws/p2p/{PEER}/ws", "unexpected /ws after /p2p"),
        ("/ip4/1.2.3.4/tcp/1/http", "unsupported protocol /http after /tcp"),
        ("/ip4/1.2.3.4/tcp/1/tls/http", "/tls must be followed by /ws"),
        ("/ip4/1.2.3.4/tcp/1/tls", "/tls must be followed by /ws"),
        ("/ip4/1.2.3.4/tcp/1/ws/webrtc", "unsupported protocol /webrtc after /ws"),
        ("/ip4/1.2.3.400/tcp/1/ws", "bad /ip4 address"),
        ("/ip4/01.2.3.4/tcp/1/ws", "bad /ip4 address"),
        ("/ip6/fe80::1%eth0/tcp/1/ws", "zones"),
        ("/ip6/1.2.3.4/tcp/1/ws", "bad /ip6 address"),
        ("/ip4/1.2.3.4/tcp/65536/ws", "bad /tcp port"),
        ("/ip4/1.2.3.4/tcp/-1/ws", "bad /tcp port"),
        ("/ip4/1.2.3.4/tcp/1e3/ws", "bad /tcp port"),
        ("/ip4/1.2.3.4/tcp/٣/ws", "bad /tcp port"),  # non-ASCII digit
        ("/ip4/1.2.3.4//tcp/1/ws", "empty component"),
        ("/dnsaddr/bootstrap.libp2p.io/tcp/1/ws", "unsupported address type /dnsaddr"),
        ("/unix/tmp/sock", "unsupported address type /unix"),
        ("/p2p/" + PEER, "unsupported address type /p2p"),
        ("/dns4/exa mple.com/tcp/1/ws", "bad /dns4 name"),
        ("/dns4/-bad.example/tcp/1/ws", "bad /dns4 name"),
        ("/dns4/bad..example/tcp/1/ws", "bad /dns4 name"),
        ("/dns4/b\u00fccher.example/tcp/1/ws", "not ASCII"),
        ("/dns4/" + "a" * 64 + ".example/tcp/1/ws", "bad /dns4 name"),
        ("/dns4/1.2.3.4/tcp/1/ws", "looks like an IP address"),
        ("/dns4/2130706433/tcp/1/ws", "looks like an IP address"),
        ("/dns/0x7f.0.0.1/tcp/1/ws", "looks like an IP address"),
        ("/ip4/1.2.3.4/tcp/1/ws" + "/x" * 600, "limit is 1024"),
        (b"\x04\x01\x02", "truncated"),
        (b"\x80", "truncated inside a varint"),
        (b"\x84\x00\x01\x02\x03\x04", "non-minimal varint"),
        (b"\xff" * 12, "longer than 9 bytes"),
        (b"\x91\x02\x00\x00", "unsupported address type /udp"),
        (b"\x36\x03\xff\xfe\xfd\x06\x00\x01\xdd\x03", "not ASCII"),
        (b"\x04\x01\x02\x03\x04\x06\x00\x01\xdd\x03\xa5\x03\x02\x00\x00", "bad peer id"),
        (b"\xf0\xff\x7f", "unsupported address type /<protocol code"),
        (12345, "expected a multiaddr str or bytes"),
    ],
)
def test_parse_bad(value: object, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        WsAddress.parse(value)


def test_error_text_is_escaped() -> None:
    with pytest.raises(AddressError) as info:
        WsAddress.parse("/evil\nlog-line\x1b[31m/1")
    assert "\n" not in str(info.value)
    assert "\x1b" not in str(info.value)


# --- property tests ---------------------------------------------------------------

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_LABELS = st.text(alphabet=_LOWER + "0123456789", min_size=1, max_size=12)
_TLDS = st.text(alphabet=_LOWER, min_size=2, max_size=6)
_DNS_NAMES = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABELS, max_size=3), _TLDS
)
_PEERS = st.one_of(
    st.builds(lambda raw: PublicKey(raw).peer_id, st.binary(min_size=32, max_size=32)),
    st.builds(lambda digest: PeerId(b"\x12\x20" + digest), st.binary(min_size=32, max_size=32)),
)


_MULTIADDR_PROTOCOL_NAMES = frozenset(
    protocol.name for protocol in multiaddr.protocols.REGISTRY._names_to_protocols.values())


@st.composite
def ws_addresses(draw: st.DrawFn) -> WsAddress:
    kind = draw(st.sampled_from(["ip4", "ip6", "dns", "dns4", "dns6"]))
    if kind in ("ip4", "ip6"):
        host = str(draw(st.ip_addresses(v=4 if kind == "ip4" else 6)))
    else:
        host = draw(_DNS_NAMES)
    return WsAddress(
        host=host,
        kind=kind,
        port=draw(st.integers(0, 65535)),
        secure=draw(st.booleans()),
        peer_id=draw(st.none() | _PEERS),
    )


@given(ws_addresses())
@example(WsAddress(host="ws", kind="dns", port=0, secure=True))  # a host named like a protocol
def test_round_trips(addr: WsAddress) -> None:
    assert WsAddress.parse(str(addr)) == addr
    assert WsAddress.parse(addr.to_bytes()) == addr
    assert WsAddress.parse(addr.to_multiaddr()) == addr
    # Independent oracle: the multiaddr package encodes our string to our bytes - except
    # for a host named like a protocol (/dns/ws/...), which its string parser cannot take
    if addr.host not in _MULTIADDR_PROTOCOL_NAMES:
        assert Multiaddr(str(addr)).to_bytes() == addr.to_bytes()
    assert WsAddress.parse(str(Multiaddr(addr.to_bytes()))) == addr
    from_url = WsAddress.from_url(addr.url(), addr.peer_id)
    assert (from_url.host, from_url.port, from_url.secure) == (addr.host, addr.port, addr.secure)
    assert from_url.peer_id == addr.peer_id
    if addr.kind in ("ip4", "ip6", "dns"):
        assert from_url == addr


@given(st.text(max_size=200))
def test_arbitrary_text_gives_address_or_address_error(text: str) -> None:
    try:
        addr = WsAddress.parse(text)
    except AddressError:
        return
    assert WsAddress.parse(str(addr)) == addr


_TOKENS = st.sampled_from(
    ["", "ip4", "ip6", "dns4", "tcp", "ws", "wss", "tls", "p2p", "1.2.3.4", "::1", "443",
     "0", "a.example", PEER, "x", "p2p-circuit", "udp"]
)


@given(st.lists(_TOKENS, max_size=12).map("/".join))
def test_near_miss_text(text: str) -> None:
    try:
        addr = WsAddress.parse("/" + text)
    except AddressError:
        return
    assert WsAddress.parse(addr.to_bytes()) == addr


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_address_or_address_error(data: bytes) -> None:
    try:
        addr = WsAddress.parse(data)
    except AddressError:
        return
    assert addr.to_bytes().lower() == data.lower()
    assert WsAddress.parse(addr.to_bytes()) == addr


@given(ws_addresses(), st.integers(0, 80), st.binary(min_size=1, max_size=3))
def test_mutated_bytes(addr: WsAddress, index: int, patch: bytes) -> None:
    data = addr.to_bytes()
    index %= len(data)
    mutated = data[:index] + patch + data[index + len(patch) :]
    try:
        again = WsAddress.parse(mutated)
    except AddressError:
        return
    # Canonical up to DNS letter case (names are lower-cased).
    assert again.to_bytes().lower() == mutated.lower()
    assert WsAddress.parse(again.to_bytes()) == again


# --- parse_addresses ------------------------------------------------------------


def test_parse_addresses_reports_and_skips() -> None:
    good, bad = parse_addresses(
        [
            "/ip4/1.2.3.4/tcp/1/ws",
            "/ip4/1.2.3.4/udp/1/quic",
            b"\x04\x01\x02\x03\x04\x06\x00\x02\xdd\x03",
            7,
            None,
            "x" * 5000,
        ],
        limit=10,
    )
    assert [str(a) for a in good] == ["/ip4/1.2.3.4/tcp/1/ws", "/ip4/1.2.3.4/tcp/2/ws"]
    assert [entry for entry, _ in bad] == ["/ip4/1.2.3.4/udp/1/quic", "<int>", "<NoneType>",
                                           "x" * 97 + "..."]
    assert "unsupported transport /udp" in bad[0][1]
    assert "expected a multiaddr string" in bad[1][1]


def test_parse_addresses_limit_is_cheap_and_bounded() -> None:
    values = (f"/ip4/1.2.3.{i % 250}/tcp/1/ws" for i in range(100_000))
    good, bad = parse_addresses(values, limit=5)
    assert len(good) == 5
    assert bad == [("99995 more entries", "over limit of 5 addresses")]


def test_importing_protocols_does_not_import_trio() -> None:
    # multiaddr.resolvers imports trio; the sans-io package must never pull it in.
    code = (
        "import sys, protocols.core._addresses, protocols.core._policy, "
        "protocols.bootstrap._status_doc, protocols.node._keyfile; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'multiaddr') "
        "and (m.split('.')[0] == 'trio' or 'resolvers' in m)); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
