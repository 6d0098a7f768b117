"""Peer exchange, sans-io: the codec and its validation, the server's sample and limits,
what a client takes from an answer, and when it asks (no Trio)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import (
    AddressPolicy,
    ConnectionInfo,
    ConnectionUp,
    Direction,
    Keypair,
    LocalProtocolError,
    NodeModel,
    PeerId,
    PeerIdentified,
    ValidationError,
    WsAddress,
    unpack,
)
from protocols.autonat import DialStatus, InboundProbe, RateLimitReason, ResponseStatus
from protocols.bootstrap import (
    MAX_EXCHANGE_PEERS,
    PEER_EXCHANGE_PROTOCOL_ID,
    AskForPeers,
    PeerEntry,
    PeerExchangePlan,
    PeersRequest,
    PeersResponse,
    interpret_peers_response,
    peer_exchange_limiter,
    public_peer_addresses,
    sample_peers,
    verified_peers,
)

POLICY = AddressPolicy.from_strings(public_networks=["198.51.100.0/24", "203.0.113.0/24"])
KEYS = [Keypair.generate() for _ in range(24)]
IDS = [k.peer_id for k in KEYS]
ME, SERVER = IDS[0], IDS[1]


def _addr(i: int) -> WsAddress:
    return WsAddress.parse(f"/ip4/198.51.100.{i + 10}/tcp/4001/ws")


# --- codec -----------------------------------------------------------------------------

addrs = st.binary(min_size=1, max_size=64)
entries = st.builds(PeerEntry, peer_id=st.binary(min_size=1, max_size=64),
                    addrs=st.lists(addrs, min_size=1, max_size=4).map(tuple))


@given(st.integers(1, MAX_EXCHANGE_PEERS))
def test_request_round_trips(count: int) -> None:
    message = PeersRequest(count)
    assert PeersRequest.from_wire(unpack(message.encode())) == message


@given(st.lists(entries, max_size=MAX_EXCHANGE_PEERS).map(tuple))
def test_response_round_trips(peers: tuple[PeerEntry, ...]) -> None:
    message = PeersResponse(peers)
    assert PeersResponse.from_wire(unpack(message.encode())) == message


@pytest.mark.parametrize(("wire", "fragment"), [
    ({}, "missing field 'max'"),
    ({"max": 0}, "out of range"),
    ({"max": MAX_EXCHANGE_PEERS + 1}, "out of range"),
    ({"max": True}, "expected an integer"),
    ({"max": "3"}, "expected an integer"),
])
def test_bad_requests(wire: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PeersRequest.from_wire(wire)  # type: ignore[arg-type]


GOOD_ENTRY = {"peer_id": b"\x00\x01", "addrs": [b"\x04"]}


@pytest.mark.parametrize(("wire", "fragment"), [
    ({}, "missing field 'peers'"),
    ({"peers": {}}, "expected an array"),
    ({"peers": [GOOD_ENTRY] * (MAX_EXCHANGE_PEERS + 1)}, "expected 0 to 16 items"),
    ({"peers": [1]}, r"peers\[0\]: expected a map"),
    ({"peers": [{"addrs": [b"\x04"]}]}, "missing field 'peer_id'"),
    ({"peers": [{"peer_id": b"", "addrs": [b"\x04"]}]}, "peer_id: expected 1 to 64 bytes"),
    ({"peers": [{"peer_id": b"x" * 65, "addrs": [b"\x04"]}]}, "peer_id"),
    ({"peers": [{"peer_id": "12D3", "addrs": [b"\x04"]}]}, "expected bytes"),
    ({"peers": [{"peer_id": b"\x00", "addrs": []}]}, "addrs: expected 1 to 4 items"),
    ({"peers": [{"peer_id": b"\x00", "addrs": [b"\x04"] * 5}]}, "addrs: expected 1 to 4"),
    ({"peers": [{"peer_id": b"\x00", "addrs": [b"\x04" * 257]}]}, r"addrs\[0\]"),
    ({"peers": [{"peer_id": b"\x00", "addrs": ["/ip4/1.2.3.4"]}]}, "expected bytes"),
])
def test_bad_responses(wire: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PeersResponse.from_wire(wire)  # type: ignore[arg-type]


def test_unknown_keys_are_ignored() -> None:
    assert PeersRequest.from_wire({"max": 3, "later": 1}) == PeersRequest(3)
    assert PeersResponse.from_wire({"peers": [], "later": 1}) == PeersResponse(())


# --- server: what is sampled ------------------------------------------------------------

CANDIDATES = tuple((IDS[i], _addr(i)) for i in range(2, 22))  # 20 verified peers


def test_sample_is_bounded_random_and_never_the_requester() -> None:
    rng = random.Random(1)
    requester = CANDIDATES[5][0]
    seen: set[bytes] = set()
    for _ in range(50):
        response = sample_peers(CANDIDATES, requester=requester, count=16, rng=rng)
        assert len(response.peers) == 16
        ids = [e.peer_id for e in response.peers]
        assert len(set(ids)) == 16
        assert requester.to_bytes() not in ids
        assert all(len(e.addrs) == 1 for e in response.peers)
        seen |= set(ids)
    assert seen == {p.to_bytes() for p, _ in CANDIDATES} - {requester.to_bytes()}


@pytest.mark.parametrize(("count", "expected"), [(1, 1), (3, 3), (100, MAX_EXCHANGE_PEERS)])
def test_sample_size(count: int, expected: int) -> None:
    response = sample_peers(CANDIDATES, requester=ME, count=count, rng=random.Random(2))
    assert len(response.peers) == expected


def test_sample_of_few_candidates() -> None:
    few = CANDIDATES[:2]
    assert len(sample_peers(few, requester=ME, count=16, rng=random.Random(3)).peers) == 2
    only_requester = sample_peers(few[:1], requester=few[0][0], count=16, rng=random.Random(3))
    assert only_requester.peers == ()
    assert sample_peers((), requester=ME, count=16, rng=random.Random(3)).peers == ()


def test_sample_addresses_are_the_verified_ones_without_p2p() -> None:
    response = sample_peers(CANDIDATES[:1], requester=ME, count=1, rng=random.Random(4))
    (entry,) = response.peers
    assert PeerId.from_bytes(entry.peer_id) == CANDIDATES[0][0]
    assert WsAddress.parse(entry.addrs[0]) == CANDIDATES[0][1].with_peer_id(None)


LOCAL = WsAddress.parse("/ip4/198.51.100.1/tcp/4001/ws")


def _info(peer: PeerId, remote: str, cid: int) -> ConnectionInfo:
    return ConnectionInfo(peer_id=peer, direction=Direction.INBOUND, local_addr=LOCAL,
                          remote_addr=WsAddress.parse(remote), connection_id=cid,
                          opened_at=1.0)


def test_only_verified_addresses_are_candidates() -> None:
    """The /status rule: a connected, identified peer at an address we reached it at
    (dialed back by our server); a peer that only connected to us, even announcing an
    address on its own IP, and a self-announced address at a third party's IP are
    never handed out."""
    model = NodeModel(ME)
    honest, liar, silent, unproven = IDS[2], IDS[3], IDS[4], IDS[5]
    for cid, (peer, remote, announced) in enumerate([
            (honest, "/ip4/198.51.100.20/tcp/5000/ws", "/ip4/198.51.100.20/tcp/4001/ws"),
            (liar, "/ip4/198.51.100.21/tcp/5000/ws", "/ip4/203.0.113.99/tcp/4001/ws"),
            (silent, "/ip4/198.51.100.22/tcp/5000/ws", None),
            (unproven, "/ip4/198.51.100.23/tcp/5000/ws", "/ip4/198.51.100.23/tcp/4001/ws")]):
        model.handle_event(ConnectionUp(_info(peer, remote, cid)), 1.0)
        if announced is not None:
            model.handle_event(PeerIdentified(
                peer_id=peer, listen_addrs=(WsAddress.parse(announced).with_peer_id(peer),),
                observed_addr=None, protocols=(PEER_EXCHANGE_PROTOCOL_ID,), agent_version="a",
                connection_id=cid, local_addr=LOCAL,
                observer_addr=WsAddress.parse(remote)), 1.0)
    for peer, dialed, dial_status in (
            (honest, "/ip4/198.51.100.20/tcp/4001/ws", DialStatus.OK),
            (unproven, "/ip4/198.51.100.23/tcp/4001/ws", DialStatus.E_DIAL_ERROR)):
        model.handle_event(InboundProbe(peer, ResponseStatus.OK, 1.5, dial_status,
                                        WsAddress.parse(dialed)), 1.5)
    snapshot = model.snapshot(2.0)
    chosen = verified_peers(snapshot, POLICY)
    assert chosen == ((honest, WsAddress.parse("/ip4/198.51.100.20/tcp/4001/ws")),)
    # /status lists exactly the same peers
    assert public_peer_addresses(snapshot, POLICY) == tuple(
        str(a.with_peer_id(p)) for p, a in chosen)


# --- server: limits ----------------------------------------------------------------------


def test_limits_per_peer_ip_and_subnet() -> None:
    limiter = peer_exchange_limiter()
    ip = WsAddress.parse("/ip4/198.51.100.7/tcp/1/ws").ip
    for _ in range(2):
        assert limiter.try_acquire(IDS[2], 0.0, ip=ip) is None
        limiter.release(IDS[2], ip=ip)
    assert limiter.try_acquire(IDS[2], 1.0, ip=ip) is RateLimitReason.PER_PEER
    # new peer ids from the same IP: 8 a minute in all
    for peer in IDS[3:9]:
        assert limiter.try_acquire(peer, 2.0, ip=ip) is None
        limiter.release(peer, ip=ip)
    assert limiter.try_acquire(IDS[9], 3.0, ip=ip) is RateLimitReason.PER_IP
    # other IPs of the same /24: 16 a minute in all
    for i, peer in enumerate(IDS[10:18]):
        other = WsAddress.parse(f"/ip4/198.51.100.{100 + i}/tcp/1/ws").ip
        assert limiter.try_acquire(peer, 4.0, ip=other) is None
        limiter.release(peer, ip=other)
    last = WsAddress.parse("/ip4/198.51.100.200/tcp/1/ws").ip
    assert limiter.try_acquire(IDS[18], 5.0, ip=last) is RateLimitReason.PER_SUBNET
    # a minute later everyone may ask again
    assert limiter.try_acquire(IDS[2], 61.0, ip=ip) is None


def test_one_request_at_a_time_per_peer() -> None:
    limiter = peer_exchange_limiter()
    assert limiter.try_acquire(IDS[2], 0.0) is None
    assert limiter.try_acquire(IDS[2], 0.0) is RateLimitReason.CONCURRENT


# --- client: what it believes ------------------------------------------------------------


def _entry(peer: PeerId | bytes, *addrs: str | bytes) -> PeerEntry:
    raw = peer if isinstance(peer, bytes) else peer.to_bytes()
    return PeerEntry(raw, tuple(a if isinstance(a, bytes) else WsAddress.parse(a).to_bytes()
                                for a in addrs))


def test_client_keeps_usable_entries_and_skips_the_rest_one_by_one() -> None:
    good, other = IDS[5], IDS[6]
    response = PeersResponse((
        _entry(good, "/ip4/198.51.100.5/tcp/4001/ws"),
        _entry(ME, "/ip4/198.51.100.6/tcp/4001/ws"),  # ourselves
        _entry(SERVER, "/ip4/198.51.100.7/tcp/4001/ws"),  # the answering peer
        _entry(b"\x99\x01", "/ip4/198.51.100.8/tcp/4001/ws"),  # not a peer id
        _entry(IDS[7], "/ip4/10.0.0.1/tcp/4001/ws"),  # not routable for the policy
        _entry(IDS[8], b"\xff\xff"),  # not a multiaddr
        _entry(IDS[9], f"/ip4/198.51.100.9/tcp/4001/ws/p2p/{other}"),  # someone else's id
        _entry(other, "/ip4/198.51.100.10/tcp/4001/ws", "/ip4/198.51.100.10/tcp/4001/ws"),
    ))
    result = interpret_peers_response(response, own=ME, asked=SERVER, policy=POLICY)
    assert result.addrs == (
        WsAddress.parse(f"/ip4/198.51.100.5/tcp/4001/ws/p2p/{good}"),
        WsAddress.parse(f"/ip4/198.51.100.10/tcp/4001/ws/p2p/{other}"))
    assert len(result.skipped) == 6
    assert all(a.peer_id is not None for a in result.addrs)


# --- client: when it asks ---------------------------------------------------------------


def _plan(**kwargs: object) -> PeerExchangePlan:
    return PeerExchangePlan(threshold=2, **kwargs)  # type: ignore[arg-type]


def test_asks_as_soon_as_a_peer_serves_it_while_servers_are_few() -> None:
    plan = _plan()
    assert plan.handle_servers_available(1, 0.0) == []  # nobody to ask yet
    assert plan.handle_peer_identified(SERVER, [PEER_EXCHANGE_PROTOCOL_ID], 0.1) == [
        AskForPeers(SERVER, MAX_EXCHANGE_PEERS)]
    # in flight: not asked twice
    assert plan.handle_servers_available(1, 0.2) == []
    assert plan.handle_answer(SERVER, 3, 0.3) == []  # answered: not again so soon
    stats = plan.statistics()
    assert (stats.asked, stats.answered, stats.peers_learned, stats.in_flight) == (1, 1, 3, 0)


def test_never_asks_once_servers_reach_the_threshold() -> None:
    plan = _plan()
    plan.handle_servers_available(2, 0.0)
    assert plan.handle_peer_identified(SERVER, [PEER_EXCHANGE_PROTOCOL_ID], 0.0) == []
    assert plan.poll_timeout() is None
    # servers leave: now it asks
    assert plan.handle_servers_available(1, 5.0) == [AskForPeers(SERVER, MAX_EXCHANGE_PEERS)]


def test_peers_without_the_protocol_are_never_asked() -> None:
    plan = _plan()
    assert plan.handle_peer_identified(SERVER, ["/ipfs/id/1.0.0"], 0.0) == []
    assert plan.statistics().askable == 0


def test_bounded_in_flight_and_reask_after_the_interval() -> None:
    plan = _plan(max_in_flight=2, reask_after=60.0)
    for peer in IDS[2:6]:
        plan.handle_peer_identified(peer, [PEER_EXCHANGE_PROTOCOL_ID], 0.0)
    first = plan.handle_servers_available(0, 0.0)
    assert first == []  # the first two were asked as they were identified
    assert plan.statistics().in_flight == 2
    nxt = plan.handle_failed(IDS[2], 1.0)
    assert nxt == [AskForPeers(IDS[4], MAX_EXCHANGE_PEERS)]
    assert plan.handle_answer(IDS[3], 0, 2.0) == [AskForPeers(IDS[5], MAX_EXCHANGE_PEERS)]
    plan.handle_answer(IDS[4], 0, 3.0)
    plan.handle_answer(IDS[5], 0, 3.0)
    assert plan.handle_timeout(30.0) == []
    assert plan.poll_timeout() == 61.0  # IDS[2]: its request ended at 1.0
    assert plan.handle_timeout(60.9) == []
    assert plan.handle_timeout(61.0) == [AskForPeers(IDS[2], MAX_EXCHANGE_PEERS)]
    assert plan.poll_timeout() == 62.0
    assert plan.handle_timeout(62.0) == [AskForPeers(IDS[3], MAX_EXCHANGE_PEERS)]
    assert plan.handle_timeout(63.0) == []  # two in flight already
    assert plan.handle_answer(IDS[2], 0, 64.0) == [AskForPeers(IDS[4], MAX_EXCHANGE_PEERS)]


def test_disconnected_peers_are_not_asked_and_restart_clears_flight() -> None:
    plan = _plan()
    plan.handle_servers_available(0, 0.0)
    assert plan.handle_peer_identified(SERVER, [PEER_EXCHANGE_PROTOCOL_ID], 0.0)
    plan.handle_connection_down(SERVER, 1.0)
    assert plan.statistics().askable == 0
    assert plan.handle_driver_restart(2.0) == []
    assert plan.statistics().in_flight == 0
    # it reconnects at once: not asked again before the interval, then asked
    assert plan.handle_peer_identified(SERVER, [PEER_EXCHANGE_PROTOCOL_ID], 3.0) == []
    assert plan.handle_timeout(62.0) == [AskForPeers(SERVER, MAX_EXCHANGE_PEERS)]


def test_hundreds_of_askable_peers_are_asked_in_the_order_they_became_askable() -> None:
    plan = _plan(max_in_flight=1)
    for peer in [*IDS[2:], *(Keypair.generate().peer_id for _ in range(300))]:
        plan.handle_peer_identified(peer, [PEER_EXCHANGE_PROTOCOL_ID], 0.0)
    plan.handle_servers_available(0, 0.0)
    first = plan.statistics()
    assert (first.asked, first.in_flight) == (1, 1)  # the first identified
    asked = [c.peer for c in plan.handle_answer(IDS[2], 0, 1.0)]
    assert asked == [IDS[3]]  # the order they became askable


def test_an_answer_nobody_asked_for_is_a_driver_bug() -> None:
    with pytest.raises(LocalProtocolError, match="never asked"):
        _plan().handle_answer(SERVER, 1, 0.0)


def test_bad_settings() -> None:
    for kwargs in ({"threshold": 0}, {"threshold": 2, "request_size": 17},
                   {"threshold": 2, "max_in_flight": 0}):
        with pytest.raises(ValueError):
            PeerExchangePlan(**kwargs)  # type: ignore[arg-type]
