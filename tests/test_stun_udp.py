"""STUN on real UDP sockets over loopback: the server with an alternate on 127.0.0.2, the
discovery client against it, and raw datagrams (no timed assertions; fail_after guards)."""

from __future__ import annotations

import socket as stdsocket

import pytest
import trio
import trio.testing

from actors.transport import discover_udp_profile, open_stun_server
from protocols.stun import (
    BINDING,
    ChangeRequest,
    Endpoint,
    NatBehaviour,
    OtherAddress,
    ResponseOrigin,
    Retransmission,
    StunClass,
    StunMessage,
    UdpProfile,
    XorMappedAddress,
    decode_message,
    encode_message,
)

PRIMARY = Endpoint.of("127.0.0.1", 0)
ALTERNATE = Endpoint.of("127.0.0.2", 0)
FAST = Retransmission(rto=0.2, rc=3, rm=4)
GUARD = 20


def binding(txid: bytes, *attributes: ChangeRequest) -> bytes:
    return encode_message(StunMessage(BINDING, StunClass.REQUEST, txid, attributes),
                          fingerprint=True)


async def client_socket() -> tuple[trio.socket.SocketType, Endpoint]:
    sock = trio.socket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    return sock, Endpoint.of(host, port)


async def test_server_binds_the_four_rfc5780_addresses() -> None:
    with trio.fail_after(GUARD):
        async with open_stun_server(PRIMARY, ALTERNATE) as server:
            addresses = server.addresses
            assert addresses.alternate is not None
            assert addresses.primary.ip == PRIMARY.ip and addresses.primary.port != 0
            assert addresses.alternate.ip == ALTERNATE.ip and addresses.alternate.port != 0
            assert len(set(addresses.locals())) == 4


async def test_discovery_on_loopback_finds_no_nat_and_open_filtering() -> None:
    with trio.fail_after(GUARD):
        async with open_stun_server(PRIMARY, ALTERNATE) as server:
            profile = await discover_udp_profile(server.addresses.primary,
                                                 local_ip="127.0.0.1", retransmission=FAST)
            stats = server.statistics()
    assert profile.mapping is NatBehaviour.NONE
    assert profile.filtering is NatBehaviour.ENDPOINT_INDEPENDENT
    assert profile.mapped is not None and str(profile.mapped.ip) == "127.0.0.1"
    assert stats.responder.answered >= 2 and stats.responder.changed >= 1
    assert stats.send_errors == 0


async def test_discovery_without_alternate_cannot_tell_filtering() -> None:
    with trio.fail_after(GUARD):
        async with open_stun_server(PRIMARY) as server:
            profile = await discover_udp_profile(server.addresses.primary,
                                                 local_ip="127.0.0.1", retransmission=FAST)
    assert (profile.mapping, profile.filtering) == (NatBehaviour.NONE, NatBehaviour.UNKNOWN)


async def test_change_request_is_answered_from_the_other_address_to_the_requester() -> None:
    with trio.fail_after(GUARD):
        async with open_stun_server(PRIMARY, ALTERNATE) as server:
            addresses = server.addresses
            assert addresses.alternate is not None
            sock, me = await client_socket()
            with sock:
                await sock.sendto(b"\x00\x01garbage, dropped without an answer",
                                  addresses.primary.as_tuple())
                await sock.sendto(b"\x00" * 2000, addresses.primary.as_tuple())
                txid = b"change-both!"
                await sock.sendto(binding(txid, ChangeRequest(True, True)),
                                  addresses.primary.as_tuple())
                data, source = await sock.recvfrom(2048)
            stats = server.statistics().responder
    message = decode_message(data).message
    assert message.transaction_id == txid  # the junk before it drew nothing
    assert Endpoint.of(*source) == addresses.alternate
    assert message.first(ResponseOrigin) == ResponseOrigin(addresses.alternate)
    assert message.first(OtherAddress) == OtherAddress(addresses.alternate)
    assert message.first(XorMappedAddress) == XorMappedAddress(me)
    assert dict(stats.dropped) == {"malformed": 1, "too-large": 1}


async def test_discovery_against_a_silent_server_ends_unknown(
        autojump_clock: trio.testing.MockClock) -> None:
    silent = trio.socket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    with silent:
        await silent.bind(("127.0.0.1", 0))
        server = Endpoint.of(*silent.getsockname())
        with trio.fail_after(100):
            start = trio.current_time()
            profile = await discover_udp_profile(server, local_ip="127.0.0.1")
            elapsed = trio.current_time() - start
        assert profile == UdpProfile(NatBehaviour.UNKNOWN, NatBehaviour.UNKNOWN, None)
        assert elapsed == Retransmission().give_up_after()  # virtual time: RFC 8489's 39.5 s
        with trio.fail_after(100):
            start = trio.current_time()
            profile = await discover_udp_profile(server, local_ip="127.0.0.1", timeout=5.0)
            elapsed = trio.current_time() - start
        assert profile.mapping is NatBehaviour.UNKNOWN
        assert elapsed == 5.0


@pytest.mark.parametrize("alternate", [Endpoint.of("127.0.0.1", 0), Endpoint.of("::1", 0),
                                       Endpoint.of("127.0.0.2", 40001)])
async def test_an_unusable_alternate_is_refused_before_binding(alternate: Endpoint) -> None:
    with pytest.raises(ValueError, match="alternate"):
        async with open_stun_server(Endpoint.of("127.0.0.1", 40001), alternate):
            pass  # pragma: no cover
