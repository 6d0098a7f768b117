"""STUN addresses in Identify: the UDP multiaddr, what we advertise, what we accept."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiaddr import Multiaddr

from protocols import (
    AddressError,
    AddressPolicy,
    Identify,
    Keypair,
    UdpAddress,
    WsAddress,
)
from protocols.identify import build_identify, interpret_identify

KEYS = Keypair.generate()
LOOPBACK = AddressPolicy(allow_loopback=True)
LOCAL = WsAddress.parse("/ip4/127.0.0.9/tcp/5000/ws")
REMOTE = WsAddress.parse("/ip4/127.0.0.1/tcp/44000/ws")


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(1, 65535))
def test_udp_address_round_trips_and_matches_multiaddr(ip: ipaddress.IPv4Address,
                                                       port: int) -> None:
    addr = UdpAddress(ip, port)
    assert UdpAddress.parse(addr.to_bytes()) == addr
    assert UdpAddress.parse(str(addr)) == addr
    assert Multiaddr(str(addr)).to_bytes() == addr.to_bytes()


@pytest.mark.parametrize("value", [
    "/ip4/1.2.3.4/tcp/5", "/ip4/1.2.3.4/udp/0", "/ip4/1.2.3.4/udp/70000", "/dns4/a/udp/1",
    "/ip4/::1/udp/1", "/ip4/1.2.3.4/udp/1/quic", "ip4/1.2.3.4/udp/1", "/ip4/1.2.3.4/udp/x",
    b"", b"\x04\x01\x02\x03\x04\x06\x00\x01", Multiaddr("/ip4/1.2.3.4/udp/1").to_bytes() + b"\x00",
])
def test_udp_address_refuses_everything_else(value: str | bytes) -> None:
    with pytest.raises(AddressError):
        UdpAddress.parse(value)


@given(st.binary(max_size=40))
def test_udp_address_decoding_raises_only_address_error(data: bytes) -> None:
    with contextlib.suppress(AddressError):
        UdpAddress.parse(data)


def _identify(stun: tuple[UdpAddress, ...], *, alternate: bool = True,
              policy: AddressPolicy = LOOPBACK) -> Identify:
    return build_identify(public_key=KEYS.public_key, agent_version="t/1", listen_addrs=(),
                          observed_addr=LOCAL, protocols=(), policy=policy, stun_addrs=stun,
                          stun_alternate=alternate)


def test_we_advertise_routable_stun_addresses_with_the_alternate_flag() -> None:
    stun = (UdpAddress.parse("/ip4/127.0.0.1/udp/3478"),)
    message = _identify(stun)
    assert message.stun_addrs == (stun[0].to_bytes(),) and message.stun_alternate
    assert Identify.from_wire(message.to_wire()) == message
    hidden = _identify(stun, policy=AddressPolicy())  # loopback is not routable by default
    assert hidden.stun_addrs == () and not hidden.stun_alternate
    assert "stun_addrs" not in hidden.to_wire()
    # ... but the peer that reached us on 127.0.0.1 may learn our server there
    reached = build_identify(public_key=KEYS.public_key, agent_version="t/1", listen_addrs=(),
                             observed_addr=LOCAL, protocols=(), policy=AddressPolicy(),
                             stun_addrs=stun, stun_alternate=True, reached_ip=stun[0].ip)
    assert reached.stun_addrs == (stun[0].to_bytes(),)


def test_we_accept_a_peers_stun_address_only_on_its_own_ip() -> None:
    own = UdpAddress.parse("/ip4/127.0.0.1/udp/3478")
    elsewhere = UdpAddress.parse("/ip4/127.0.0.7/udp/3478")  # a third party's host
    message = _identify((own, elsewhere))
    outcome = interpret_identify(message, peer_id=KEYS.peer_id, connection_id=1,
                                 local_addr=LOCAL, remote_addr=REMOTE, policy=LOOPBACK)
    assert outcome.event.stun_addrs == (own,)
    assert outcome.event.stun_alternate
    assert any("not on the peer's IP" in reason for _, reason in outcome.skipped)
    strict = interpret_identify(message, peer_id=KEYS.peer_id, connection_id=1,
                                local_addr=LOCAL, remote_addr=REMOTE, policy=AddressPolicy())
    assert strict.event.stun_addrs == () and not strict.event.stun_alternate


def test_an_identify_without_stun_fields_decodes_as_before() -> None:
    """Older peers send no stun fields; unknown fields of newer ones are ignored."""
    wire = _identify(()).to_wire()
    assert Identify.from_wire(wire).stun_addrs == ()
    wire["some_future_field"] = [1, 2]
    assert Identify.from_wire(wire) == _identify(())
    garbage = _identify(()).to_wire() | {"stun_addrs": [b"\x01\x02"]}
    outcome = interpret_identify(Identify.from_wire(garbage), peer_id=KEYS.peer_id,
                                 connection_id=1, local_addr=LOCAL, remote_addr=REMOTE,
                                 policy=LOOPBACK)
    assert outcome.event.stun_addrs == ()
    assert outcome.skipped and "stun address" in outcome.skipped[0][1]
