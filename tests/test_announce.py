"""The ``announce`` setting: parsed once at the boundary, advertised first everywhere.

Parsing (:func:`protocols.config.announce_address`) accepts a multiaddr or
``HOST:PORT`` and refuses, with the reason, what peers could not use. A node
configured with an announced address puts it first in its snapshot, in
Identify (a peer's record of the node holds it) and in ``/status``; the IP
ones become AutoNAT candidates. In-memory nodes on the autojump clock.
"""

from __future__ import annotations

import argparse
import json

import pytest
import trio

from actors import HttpApi, MemoryNetwork, open_node
from actors.surfaces._cli_settings import load_node_config
from protocols import AddressPolicy, ConfigError, NodeConfig, WsAddress
from protocols.bootstrap import own_addresses
from protocols.config import announce_address
from protocols.identify import advertised_addrs

LOOPBACK = AddressPolicy(allow_loopback=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("/ip4/203.0.113.7/tcp/44000/ws", "/ip4/203.0.113.7/tcp/44000/ws"),
    ("/dns4/boot-0.example.org/tcp/443/wss", "/dns4/boot-0.example.org/tcp/443/wss"),
    ("203.0.113.7:44001", "/ip4/203.0.113.7/tcp/44001/ws"),
    ("[2001:db8::7]:44000", "/ip6/2001:db8::7/tcp/44000/ws"),
    (" 203.0.113.7:44001 ", "/ip4/203.0.113.7/tcp/44001/ws"),
])
def test_announce_accepts_a_multiaddr_or_host_port(text: str, expected: str) -> None:
    assert str(announce_address(text)) == expected


def test_announce_accepts_a_dns_name_with_a_port() -> None:
    addr = announce_address("boot-0.example.org:44000")
    assert (addr.host, addr.port, addr.secure, addr.ip) == ("boot-0.example.org", 44000,
                                                           False, None)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "expected a multiaddr or HOST:PORT"),
    ("203.0.113.7", "needs a port"),
    ("203.0.113.7:", "needs a port"),
    ("0.0.0.0:44000", "wildcard address"),
    ("203.0.113.7:0", "port 0"),
    ("/ip4/203.0.113.7/tcp/44000", "not a usable address"),
    ("/ip4/203.0.113.7/tcp/44000/ws/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
     "must not contain /p2p/"),
])
def test_announce_refuses_what_peers_cannot_use(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        announce_address(text)
    assert "announce" in str(info.value)


def test_node_config_stores_announce_as_multiaddrs_without_duplicates() -> None:
    config = NodeConfig(announce=("203.0.113.7:44001", "/ip4/203.0.113.7/tcp/44001/ws"))
    assert config.announce == ("/ip4/203.0.113.7/tcp/44001/ws",)
    assert config.announce_addrs == (WsAddress.parse("/ip4/203.0.113.7/tcp/44001/ws"),)
    assert NodeConfig().announce == ()


def test_flag_and_environment_reach_the_config_and_errors_name_the_source() -> None:
    flags = argparse.Namespace(announce=["203.0.113.7:44001", "/dns4/b.example.org/tcp/1/ws"])
    config = load_node_config(flags, profile="default", environ={}).config
    assert config.announce == ("/ip4/203.0.113.7/tcp/44001/ws", "/dns4/b.example.org/tcp/1/ws")
    env = {"AUTONAT_ANNOUNCE": "203.0.113.7:44001,203.0.113.8:44002"}
    config = load_node_config(argparse.Namespace(), profile="boot", environ=env).config
    assert [a.port for a in config.announce_addrs] == [44001, 44002]
    with pytest.raises(ConfigError, match=r"--announce.*wildcard"):
        load_node_config(argparse.Namespace(announce=["0.0.0.0:1"]), profile="default",
                         environ={})


def test_announced_addresses_come_after_confirmed_ones_and_before_listen_ones() -> None:
    reachable = WsAddress.parse("/ip4/198.51.100.1/tcp/44000/ws")
    announced = WsAddress.parse("/ip4/203.0.113.7/tcp/44001/ws")
    listen = WsAddress.parse("/ip4/10.0.0.5/tcp/44000/ws")
    assert advertised_addrs(listen_addrs=[listen], reachable_addrs=[reachable],
                            local_addrs=[], announce_addrs=[announced, reachable]) == (
        reachable, announced, listen)


async def test_a_node_advertises_its_announced_address_first(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    announced = "/ip4/127.0.0.9/tcp/44001/ws"
    config_a = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK,
                          announce=("127.0.0.9:44001",))
    config_b = NodeConfig(listen=("/ip4/127.0.0.2/tcp/0/ws",), policy=LOOPBACK)
    with trio.fail_after(60):
        async with open_node(config_a, transport=net.transport("127.0.0.1")) as a, \
                open_node(config_b, transport=net.transport("127.0.0.2")) as b:
            await a.wait_for(lambda s: bool(s.listen_addrs))
            snapshot = a.snapshot()
            assert [str(x) for x in snapshot.announce_addrs] == [announced]
            mine = own_addresses(snapshot, LOOPBACK)
            assert mine[0] == f"{announced}/p2p/{a.peer_id}"
            assert str(a.listen_addrs[0].with_peer_id(a.peer_id)) in mine
            document = json.loads(HttpApi(a, window=4).respond("GET", "/status").body)
            assert document["peer_addrs"][0] == f"{announced}/p2p/{a.peer_id}"
            # Identify: B learns the announced address as one A listens on
            await b.connect(a.listen_addrs[0])

            def learned(snap: object) -> bool:
                record = b.snapshot().peer(a.peer_id)
                return record is not None and WsAddress.parse(announced) in {
                    addr.with_peer_id(None) for addr in record.addrs}
            await b.wait_for(learned)
            record = b.snapshot().peer(a.peer_id)
            assert record is not None
            assert record.addrs[0].with_peer_id(None) == WsAddress.parse(announced)
