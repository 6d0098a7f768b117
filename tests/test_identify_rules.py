"""Identify rules: what we advertise, and what we accept from untrusted peers."""

from __future__ import annotations

import pytest

from protocols import AddressPolicy, Keypair, ValidationError, WsAddress
from protocols.identify import advertised_addrs, build_identify, interpret_identify
from protocols.identify._identify_msg import Identify

LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"])
LOOPBACK_OK = AddressPolicy(allow_loopback=True)


def _ma(text: str) -> WsAddress:
    return WsAddress.parse(text)


def test_build_advertises_only_routable_addresses_without_peer_id() -> None:
    me = Keypair.generate()
    msg = build_identify(
        public_key=me.public_key, agent_version="t/1",
        listen_addrs=[_ma(f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{me.peer_id}"),
                      _ma("/ip4/127.0.0.1/tcp/44000/ws"), _ma("/ip4/10.0.0.2/tcp/44000/ws"),
                      _ma("/ip4/198.51.100.7/tcp/44000/ws")],
        observed_addr=_ma("/ip4/203.0.113.9/tcp/5555/ws"),
        protocols=["/ipfs/id/1.0.0"], policy=LAB)
    assert [WsAddress.parse(a) for a in msg.listen_addrs] == [_ma("/ip4/198.51.100.7/tcp/44000/ws")]
    assert msg.observed_addr == _ma("/ip4/203.0.113.9/tcp/5555/ws").to_bytes()
    assert msg.public_key == me.public_key.to_protobuf()


def _answer(peer: Keypair, addrs: list[bytes], observed: bytes | None = None,
            key: bytes | None = None) -> Identify:
    return Identify(protocol_version="x", agent_version="peer/1",
                    public_key=key or peer.public_key.to_protobuf(), listen_addrs=tuple(addrs),
                    observed_addr=observed, protocols=("/ipfs/id/1.0.0",))


def _interpret(msg: Identify, peer: Keypair, policy: AddressPolicy = LAB):  # type: ignore[no-untyped-def]
    return interpret_identify(msg, peer_id=peer.peer_id, connection_id=7,
                              local_addr=_ma("/ip4/127.0.0.1/tcp/44000/ws"),
                              remote_addr=_ma("/ip4/127.0.0.2/tcp/5000/ws"), policy=policy)


def test_accepts_routable_addresses_and_attaches_peer_id() -> None:
    peer = Keypair.generate()
    good = _ma("/ip4/198.51.100.9/tcp/44000/ws").to_bytes()
    outcome = _interpret(_answer(peer, [good], observed=good), peer)
    expected = _ma(f"/ip4/198.51.100.9/tcp/44000/ws/p2p/{peer.peer_id}")
    assert outcome.event.listen_addrs == (expected,)
    assert outcome.event.observed_addr == _ma("/ip4/198.51.100.9/tcp/44000/ws")
    assert outcome.event.connection_id == 7 and outcome.event.agent_version == "peer/1"
    assert outcome.skipped == ()


def test_never_stores_non_routable_or_foreign_or_garbage_addresses() -> None:
    peer, other = Keypair.generate(), Keypair.generate()
    addrs = [_ma("/ip4/127.0.0.1/tcp/1/ws").to_bytes(), _ma("/ip4/192.168.1.2/tcp/1/ws").to_bytes(),
             _ma(f"/ip4/198.51.100.3/tcp/1/ws/p2p/{other.peer_id}").to_bytes(),
             b"\xff\xfe garbage", _ma("/ip4/198.51.100.4/tcp/1/ws").to_bytes()]
    outcome = _interpret(_answer(peer, addrs), peer)
    assert [str(a) for a in outcome.event.listen_addrs] == [
        f"/ip4/198.51.100.4/tcp/1/ws/p2p/{peer.peer_id}"]
    reasons = " | ".join(r for _, r in outcome.skipped)
    assert len(outcome.skipped) == 4
    assert "another peer id" in reasons


def test_loopback_kept_only_when_policy_allows() -> None:
    peer = Keypair.generate()
    msg = _answer(peer, [_ma("/ip4/127.0.0.5/tcp/9/ws").to_bytes()])
    assert _interpret(msg, peer, LAB).event.listen_addrs == ()
    assert len(_interpret(msg, peer, LOOPBACK_OK).event.listen_addrs) == 1


def test_key_of_another_peer_rejects_the_whole_answer() -> None:
    peer, impostor = Keypair.generate(), Keypair.generate()
    with pytest.raises(ValidationError, match="carries the key of"):
        _interpret(_answer(peer, [], key=impostor.public_key.to_protobuf()), peer)
    with pytest.raises(ValidationError, match="unusable public key"):
        _interpret(_answer(peer, [], key=b"\x08\x01\x12\x03abc"), peer)


def test_bad_observed_address_is_skipped_not_fatal() -> None:
    peer = Keypair.generate()
    outcome = _interpret(_answer(peer, [], observed=b"\x00\x01\x02"), peer)
    assert outcome.event.observed_addr is None
    assert "observed address" in outcome.skipped[0][1]


# --- advertised_addrs: which of our addresses we tell peers about ----------------------


def test_advertised_puts_reachable_first_and_drops_duplicates() -> None:
    listen = _ma("/ip4/198.51.100.7/tcp/4001/ws")
    reachable = _ma("/ip4/203.0.113.9/tcp/4001/ws")
    assert advertised_addrs(listen_addrs=[listen], reachable_addrs=[reachable, listen],
                            local_addrs=[]) == (reachable, listen)


def test_advertised_replaces_a_wildcard_listener_by_the_local_ips_in_use() -> None:
    v4_any = _ma("/ip4/0.0.0.0/tcp/4001/ws")
    v6_any = _ma("/ip6/::/tcp/4002/wss")
    locals_ = [_ma("/ip4/10.0.0.5/tcp/50000/ws"), _ma("/ip4/10.0.0.5/tcp/50001/ws"),
               _ma("/ip6/2001:db8::5/tcp/50002/ws"), _ma("/ip4/192.0.2.8/tcp/50003/ws")]
    assert advertised_addrs(listen_addrs=[v4_any, v6_any], reachable_addrs=[],
                            local_addrs=locals_) == (
        _ma("/ip4/10.0.0.5/tcp/4001/ws"), _ma("/ip4/192.0.2.8/tcp/4001/ws"),
        _ma("/ip6/2001:db8::5/tcp/4002/wss"))


def test_advertised_wildcard_without_connections_advertises_nothing() -> None:
    assert advertised_addrs(listen_addrs=[_ma("/ip4/0.0.0.0/tcp/4001/ws")],
                            reachable_addrs=[], local_addrs=[]) == ()



def test_equal_protocol_lists_from_different_peers_are_kept_once() -> None:
    def answer(peer: Keypair, protocols: list[str]) -> Identify:
        # built from fresh strings, as each decoded message is
        return Identify(protocol_version="x", agent_version="peer/1",
                        public_key=peer.public_key.to_protobuf(), listen_addrs=(),
                        observed_addr=None, protocols=tuple("".join(p) for p in protocols))

    names = ["/ipfs/id/1.0.0", "/libp2p/autonat/2/dial-request", "/x/shared-test/1"]
    a, b = Keypair.generate(), Keypair.generate()
    first = _interpret(answer(a, names), a).event.protocols
    second = _interpret(answer(b, names), b).event.protocols
    assert first == second == tuple(names)
    assert first is second  # one copy for both peers' records
    other = _interpret(answer(b, [*names, "/y/1"]), b).event.protocols
    assert other == (*names, "/y/1")
