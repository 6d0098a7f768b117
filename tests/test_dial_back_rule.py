"""Which listener a dial-back must arrive on to count (protocols.dial_back_mismatch).

Pure functions, no trio. ``L`` below is our end of the inbound dial-back
connection; listen addresses are the bound ones (real ports).
"""

from __future__ import annotations

import pytest

from protocols import (
    AddressPolicy,
    Keypair,
    ObservedAddr,
    WsAddress,
    candidate_addresses,
    dial_back_mismatch,
)

PEERS = [Keypair.generate().peer_id for _ in range(3)]
LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"])
WILDCARD = "/ip4/0.0.0.0/tcp/44000/ws"


def _a(text: str) -> WsAddress:
    return WsAddress.parse(text)


def _check(candidate: str, local: str, listens: list[str]) -> str | None:
    return dial_back_mismatch(_a(candidate), _a(local), [_a(t) for t in listens])


@pytest.mark.parametrize(("candidate", "local", "listens"), [
    # our own routable listen address, no NAT
    ("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/198.51.100.5/tcp/44000/ws",
     ["/ip4/198.51.100.5/tcp/44000/ws"]),
    # public host on a wildcard listener: the observed address is the local one
    ("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/198.51.100.5/tcp/44000/ws", [WILDCARD]),
    # port-preserving NAT or port forward: public IP, our listen port, private local IP
    ("/ip4/198.51.100.40/tcp/44000/ws", "/ip4/10.0.0.2/tcp/44000/ws", [WILDCARD]),
    # the NAT's mapping of our listen port (observed port): any matching listener
    ("/ip4/198.51.100.40/tcp/61000/ws", "/ip4/10.0.0.2/tcp/44000/ws", [WILDCARD]),
    # a welcome probe asks about our end of the newcomer's connection
    ("/ip4/127.0.1.1/tcp/40000/ws", "/ip4/127.0.1.1/tcp/40000/ws", ["/ip4/127.0.1.1/tcp/40000/ws"]),
    # /wss listener, peer ids ignored
    (f"/ip4/198.51.100.5/tcp/443/wss/p2p/{PEERS[0]}", "/ip4/198.51.100.5/tcp/443/wss",
     ["/ip4/198.51.100.5/tcp/443/wss"]),
    # IPv6, and a translated candidate whose port is not one of ours
    ("/ip6/2001:db8::1/tcp/50000/ws", "/ip6/fd00::2/tcp/44000/ws", ["/ip6/::/tcp/44000/ws"]),
    # two listeners: the right one
    ("/ip4/198.51.100.40/tcp/44001/ws", "/ip4/10.0.0.2/tcp/44001/ws",
     [WILDCARD, "/ip4/0.0.0.0/tcp/44001/ws"]),
])
def test_dial_back_on_the_listener_of_the_candidate_counts(
        candidate: str, local: str, listens: list[str]) -> None:
    assert _check(candidate, local, listens) is None


@pytest.mark.parametrize(("candidate", "local", "listens", "reason"), [
    # the server dialed our other listener on the same IP
    ("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/198.51.100.5/tcp/44001/ws",
     ["/ip4/198.51.100.5/tcp/44000/ws", "/ip4/198.51.100.5/tcp/44001/ws"], "listener port 44001"),
    # our end is no listener at all (wrong port, or a specific-IP listener on another IP)
    ("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/198.51.100.5/tcp/51234/ws",
     ["/ip4/198.51.100.5/tcp/44000/ws"], "none of our listeners"),
    ("/ip4/198.51.100.40/tcp/44000/ws", "/ip4/10.0.0.3/tcp/44000/ws",
     ["/ip4/10.0.0.2/tcp/44000/ws"], "none of our listeners"),
    # asked about our public listen IP, arrived at our private one
    ("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/10.0.0.2/tcp/44000/ws",
     ["/ip4/198.51.100.5/tcp/44000/ws", "/ip4/10.0.0.2/tcp/44000/ws"], "listen addresses"),
    # translated candidate standing for listen port 44000 arrived on listener 44001
    ("/ip4/198.51.100.40/tcp/44000/ws", "/ip4/10.0.0.2/tcp/44001/ws",
     [WILDCARD, "/ip4/0.0.0.0/tcp/44001/ws"], "listen port 44000"),
    # /wss candidate, /ws listener (also for a NAT-mapped port)
    ("/ip4/198.51.100.40/tcp/44443/wss", "/ip4/10.0.0.2/tcp/44000/ws",
     [WILDCARD, "/ip4/0.0.0.0/tcp/44443/wss"], "/wss"),
    ("/ip4/198.51.100.40/tcp/61000/wss", "/ip4/10.0.0.2/tcp/44000/ws",
     [WILDCARD, "/ip4/0.0.0.0/tcp/44443/wss"], "/wss"),
    # IPv4 candidate, IPv6 listener
    ("/ip4/198.51.100.40/tcp/44000/ws", "/ip6/fd00::2/tcp/44000/ws",
     [WILDCARD, "/ip6/::/tcp/44000/ws"], "IPv4"),
    # DNS names are never candidates
    ("/dns4/node.example.com/tcp/44000/ws", "/ip4/10.0.0.2/tcp/44000/ws", [WILDCARD], "no IP"),
])
def test_dial_back_on_another_listener_is_not_evidence(
        candidate: str, local: str, listens: list[str], reason: str) -> None:
    problem = _check(candidate, local, listens)
    assert problem is not None
    assert reason in problem


def test_no_listen_addresses_means_no_listener() -> None:
    problem = _check("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/198.51.100.5/tcp/44000/ws", [])
    assert problem is not None and "none of our listeners" in problem


def test_every_candidate_counts_when_the_nat_delivers_it_to_its_listener() -> None:
    # The rule is the inverse of candidate_addresses: a NATed node on 0.0.0.0:44000
    # and 0.0.0.0:44443/wss (LAN IP 10.0.0.2), observed through a port-preserving
    # mapping and through a port-changing one; every candidate, delivered by the NAT
    # to the listener it was derived from, is evidence, and not on the other one.
    listens = [_a(WILDCARD), _a("/ip4/0.0.0.0/tcp/44443/wss")]
    observations = [
        ObservedAddr(PEERS[0], _a("/ip4/198.51.100.40/tcp/44000/ws"),
                     _a("/ip4/10.0.0.2/tcp/44000/ws"), _a("/ip4/198.51.100.1/tcp/4001/ws"), 0.0),
        ObservedAddr(PEERS[1], _a("/ip4/198.51.100.40/tcp/61000/wss"),
                     _a("/ip4/10.0.0.2/tcp/44443/wss"), _a("/ip4/198.51.100.2/tcp/4001/ws"), 0.0),
        # a second observer of that mapping (a single observer's address is dropped once
        # another address is corroborated: candidate_addresses, "Corroboration")
        ObservedAddr(PEERS[2], _a("/ip4/198.51.100.40/tcp/61000/wss"),
                     _a("/ip4/10.0.0.2/tcp/44443/wss"), _a("/ip4/198.51.100.3/tcp/4001/ws"), 0.0),
    ]
    candidates = candidate_addresses(listens, observations, LAB)
    assert {c.port for c in candidates} == {44000, 44443, 61000}
    for candidate in candidates:
        # 61000 is the NAT's mapping of the /wss listener's port
        home = 44443 if candidate.secure else 44000
        other = 44000 if candidate.secure else 44443
        scheme = "wss" if candidate.secure else "ws"
        on_home = _a(f"/ip4/10.0.0.2/tcp/{home}/{scheme}")
        on_other = _a(f"/ip4/10.0.0.2/tcp/{other}/{'ws' if candidate.secure else 'wss'}")
        assert dial_back_mismatch(candidate, on_home, listens) is None, candidate
        assert dial_back_mismatch(candidate, on_other, listens) is not None, candidate
