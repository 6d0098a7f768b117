"""status_document: a NodeSnapshot as the Pyrsia-compatible /status document."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from protocols import (
    AddressPolicy,
    ConnectionInfo,
    Direction,
    Keypair,
    Lifecycle,
    LocalProtocolError,
    NodeSnapshot,
    ObservedAddr,
    PeerId,
    PeerRecord,
    RoundRobin,
    StatusDocument,
    StatusListing,
    ValidationError,
    WsAddress,
    build_status_document,
    own_addresses,
    parse_status_document,
    public_peer_addresses,
    status_document,
)

STRICT = AddressPolicy()
PYRSIA_STATUS = (
    b'{"peers_count":1,"peer_id":"12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9",'
    b'"peer_addrs":["/ip4/34.83.215.109/tcp/44000/p2p/'
    b'12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9"]}'
)


def _pid(i: int) -> PeerId:
    return Keypair.from_seed(bytes([i]) * 32).peer_id


ME = _pid(0)


def _addr(host: str, peer: PeerId | None = None, port: int = 44000) -> WsAddress:
    return WsAddress(host, "ip4", port, False, peer)


def _record(i: int, *hosts: str, identified: bool = True) -> PeerRecord:
    peer = _pid(i)
    return PeerRecord(peer, tuple(_addr(h, peer) for h in hosts), first_seen=1.0, last_seen=2.0,
                      agent_version="trio-autonat/0.1.0" if identified else "")


def _conn(cid: int, i: int, direction: Direction = Direction.OUTBOUND) -> ConnectionInfo:
    return ConnectionInfo(cid, _pid(i), direction, _addr("34.83.215.1"),
                          _addr(f"34.83.216.{i}"), opened_at=1.0)


def _observed(i: int, host: str) -> ObservedAddr:
    return ObservedAddr(_pid(i), _addr(host), _addr("10.0.0.2"), _addr(f"34.83.216.{i}"), at=1.0)


def _snapshot(**kw: object) -> NodeSnapshot:
    base = NodeSnapshot(
        peer_id=ME, lifecycle=Lifecycle.CONNECTED, lifecycle_since=1.0,
        listen_addrs=(_addr("34.83.215.1"), _addr("0.0.0.0", port=44001)),
        peers=(), connections=(), observed_addrs=(), started_at=1.0, updated_at=2.0, revision=3)
    return replace(base, **kw)  # type: ignore[arg-type]


def _doc(snapshot: NodeSnapshot, *, policy: AddressPolicy = STRICT,
         rr: RoundRobin | None = None, **kw: object) -> StatusDocument:
    args: dict[str, object] = {"version": "1.2.3", "uptime_s": 12.5, "probes_served": 7}
    args.update(kw)
    return status_document(snapshot, policy=policy, round_robin=rr or RoundRobin(),
                           **args)  # type: ignore[arg-type]


def _own(host: str) -> str:
    return str(_addr(host, ME))


def test_fields_one_by_one() -> None:
    peers = (_record(1, "34.83.216.1"), _record(2, "34.83.216.2"))
    snap = _snapshot(
        peers=peers, connections=(_conn(1, 1), _conn(2, 2), _conn(3, 2)),
        nat_status="public", nat_mapping="endpoint-independent",
        nat_filtering="address-dependent", reachable_addrs=(_addr("34.83.215.1"),),
        observed_addrs=(_observed(1, "34.83.215.1"), _observed(2, "34.83.215.1")),
        hairpinning=False)
    doc = _doc(snap)
    assert doc.peer_id == str(ME)
    assert doc.peers_count == 2  # distinct connected peers, not connections
    assert doc.connections == 3
    assert doc.peer_addrs[0] == _own("34.83.215.1")
    assert set(doc.peer_addrs[1:]) == {str(r.addrs[0]) for r in peers}
    assert doc.nat_status == "public"
    assert doc.nat_mapping == "endpoint-independent"
    assert doc.state == "connected"
    assert doc.uptime_s == 12.5
    assert doc.probes_served == 7
    assert doc.version == "1.2.3"
    assert dict(doc.extra) == {"reachable_addrs": ("/ip4/34.83.215.1/tcp/44000/ws",),
                               "observed_addrs": ("/ip4/34.83.215.1/tcp/44000/ws",),
                               "nat_filtering": "address-dependent",
                               "hairpinning": False}
    assert json.loads(build_status_document(doc))["hairpinning"] is False
    untested = _doc(_snapshot())
    assert dict(untested.extra)["hairpinning"] is None
    assert json.loads(build_status_document(untested))["hairpinning"] is None


def test_document_is_pyrsia_shaped_and_parses() -> None:
    snap = _snapshot(peers=(_record(1, "34.83.216.1"),), connections=(_conn(1, 1),))
    body = build_status_document(_doc(snap))
    ours, pyrsia = json.loads(body), json.loads(PYRSIA_STATUS)
    assert list(ours)[:3] == list(pyrsia)  # same keys, same order, first
    for key, value in pyrsia.items():
        assert type(ours[key]) is type(value), key
    assert all(isinstance(entry, str) and "/p2p/" in entry for entry in ours["peer_addrs"])
    parsed = parse_status_document(body)
    assert parsed.rejected == ()
    assert parsed.peer_id == ME
    assert [str(a) for a in parsed.addresses] == ours["peer_addrs"]
    assert parsed.document.state == "connected"
    assert parsed.document.probes_served == 7


def test_own_addresses_are_routable_listen_addresses_before_a_verdict() -> None:
    snap = _snapshot()  # 34.83.215.1 and the unspecified 0.0.0.0
    assert own_addresses(snap, STRICT) == (_own("34.83.215.1"),)
    assert _doc(snap).peer_addrs == (_own("34.83.215.1"),)


def test_own_addresses_are_reachable_ones_once_known() -> None:
    snap = _snapshot(reachable_addrs=(_addr("34.83.215.9"),))
    assert own_addresses(snap, STRICT) == (_own("34.83.215.9"),)


def test_non_routable_own_addresses_are_never_listed() -> None:
    snap = _snapshot(listen_addrs=(_addr("127.0.0.1"), _addr("10.1.2.3")),
                     reachable_addrs=(_addr("192.168.1.1"),))
    assert own_addresses(snap, STRICT) == ()
    assert own_addresses(snap, AddressPolicy(allow_loopback=True)) == (_own("127.0.0.1"),)
    assert own_addresses(snap, AddressPolicy(allow_private=True)) == (_own("192.168.1.1"),)
    assert dict(_doc(snap).extra)["reachable_addrs"] == ()


def test_explicit_own_addresses_are_filtered_too() -> None:
    snap = _snapshot()
    doc = _doc(snap, own=(_addr("34.83.215.50"), _addr("127.0.0.1")))
    assert doc.peer_addrs == (_own("34.83.215.50"),)


def test_confirmed_public_peers_are_connected_identified_and_routable() -> None:
    snap = _snapshot(
        peers=(
            _record(1, "34.83.216.1"),                      # yes: we dialed it there
            _record(2, "34.83.216.2"),                      # not connected
            _record(3, "34.83.216.3", identified=False),    # never answered Identify
            _record(4, "10.0.0.4"),                         # private only
            _record(5, "127.0.0.1", "34.83.216.5"),         # the address we reached it at
            _record(6, "34.83.216.6"),                      # only connected to us
        ),
        connections=(_conn(1, 1), _conn(3, 3), _conn(5, 5), _conn(6, 6, Direction.INBOUND),
                     ConnectionInfo(4, _pid(4), Direction.OUTBOUND, _addr("10.0.0.1"),
                                    _addr("10.0.0.4"), opened_at=1.0)))
    assert public_peer_addresses(snap, STRICT) == (
        str(_addr("34.83.216.1", _pid(1))), str(_addr("34.83.216.5", _pid(5))))
    with_private = public_peer_addresses(snap, AddressPolicy(allow_private=True))
    assert str(_addr("10.0.0.4", _pid(4))) in with_private


def test_a_peer_that_only_connected_to_us_is_not_handed_out() -> None:
    # its own IP proves the host, not that anyone can reach it there (most sit behind NAT)
    record = _record(6, "34.83.216.6")
    inbound = _snapshot(peers=(record,), connections=(_conn(1, 6, Direction.INBOUND),))
    assert public_peer_addresses(inbound, STRICT) == ()
    proven = replace(record, verified_addrs=record.addrs)  # until our server dialed it back
    assert public_peer_addresses(replace(inbound, peers=(proven,)), STRICT) == (
        str(record.addrs[0]),)


def test_a_peer_cannot_point_newcomers_at_a_third_party() -> None:
    # connected from 34.83.216.7, it announces a victim's address (and its own, later)
    liar = _record(7, "8.8.8.8")
    snap = _snapshot(peers=(liar,), connections=(_conn(1, 7, Direction.INBOUND),))
    assert public_peer_addresses(snap, STRICT) == ()
    # dialed at 34.83.216.7: that address is handed out, never the announced one
    snap = _snapshot(peers=(liar,), connections=(_conn(1, 7),))
    assert public_peer_addresses(snap, STRICT) == (str(_addr("34.83.216.7", _pid(7))),)


def test_an_address_our_server_dialed_back_is_verified_on_any_ip() -> None:
    # a multi-homed peer: connected from 34.83.216.8, reachable (proven) on 8.8.4.8
    proven = _addr("8.8.4.8", _pid(8), port=4001)
    record = replace(_record(8, "8.8.4.8"), verified_addrs=(proven,))
    snap = _snapshot(peers=(record,), connections=(_conn(1, 8, Direction.INBOUND),))
    assert public_peer_addresses(snap, STRICT) == (str(proven),)


def test_peer_identified_by_protocols_only_counts() -> None:
    record = replace(_record(1, "34.83.216.1", identified=False), protocols=("/ipfs/id/1.0.0",))
    snap = _snapshot(peers=(record,), connections=(_conn(1, 1),))
    assert public_peer_addresses(snap, STRICT) == (str(record.addrs[0]),)


def test_successive_documents_rotate_the_window() -> None:
    records = tuple(_record(i, f"34.83.216.{i}") for i in range(1, 6))
    snap = _snapshot(peers=records, connections=tuple(_conn(i, i) for i in range(1, 6)))
    rr = RoundRobin(window=2)
    windows = [_doc(snap, rr=rr).peer_addrs for _ in range(3)]
    assert all(w[0] == _own("34.83.215.1") and len(w) == 3 for w in windows)
    handed_out = {entry for w in windows for entry in w[1:]}
    assert handed_out == set(public_peer_addresses(snap, STRICT))
    assert windows[0] != windows[1]


def test_a_kept_listing_gives_the_same_documents_and_rotates_the_window() -> None:
    records = tuple(_record(i, f"34.83.216.{i}") for i in range(1, 6))
    snap = _snapshot(peers=records, connections=tuple(_conn(i, i) for i in range(1, 6)),
                     observed_addrs=(_observed(1, "34.83.215.9"),))
    listing = StatusListing.of(snap, STRICT)
    fresh, kept = RoundRobin(window=2), RoundRobin(window=2)
    for _ in range(4):
        assert _doc(snap, rr=kept, listing=listing) == _doc(snap, rr=fresh)


def test_a_listing_of_another_snapshot_is_refused() -> None:
    listing = StatusListing.of(_snapshot(), STRICT)
    with pytest.raises(LocalProtocolError, match="another snapshot"):
        _doc(_snapshot(revision=4), listing=listing)


def test_observed_addresses_are_distinct_routable_and_capped() -> None:
    observed = tuple(_observed(i, f"34.83.217.{i}") for i in range(1, 30))
    observed += (_observed(40, "10.9.9.9"), _observed(41, "34.83.217.1"))
    doc = _doc(_snapshot(observed_addrs=observed))
    listed = dict(doc.extra)["observed_addrs"]
    assert isinstance(listed, tuple)
    assert len(listed) == 16
    assert len(set(listed)) == 16
    assert not any("10.9.9.9" in str(entry) for entry in listed)


def test_uptime_is_validated_and_clamped() -> None:
    assert _doc(_snapshot(), uptime_s=-3.0).uptime_s == 0.0
    with pytest.raises(LocalProtocolError):
        _doc(_snapshot(), uptime_s=float("nan"))
    with pytest.raises(ValidationError):  # the StatusDocument's own field check
        _doc(_snapshot(), probes_served=-1)


def test_empty_node_document() -> None:
    snap = _snapshot(lifecycle=Lifecycle.STARTING, listen_addrs=())
    doc = _doc(snap)
    assert (doc.peers_count, doc.peer_addrs, doc.connections, doc.state) == (
        0, (), 0, "starting")
    assert parse_status_document(build_status_document(doc)).addresses == ()
