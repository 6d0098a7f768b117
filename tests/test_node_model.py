"""Sans-io NodeModel: lifecycle table, peers, connections, observations, bounds, snapshots."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    LIFECYCLE_TRANSITIONS,
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    DialStatus,
    Direction,
    InboundProbe,
    Keypair,
    Lifecycle,
    LifecycleChanged,
    LifecycleTrigger,
    ListenAddrsChanged,
    LocalProtocolError,
    NodeModel,
    NodeSnapshot,
    PeerId,
    PeerIdentified,
    PeerRecord,
    PeersFound,
    ResponseStatus,
    StateChanged,
    StoredPeersLoaded,
    WsAddress,
    next_lifecycle,
)
from protocols.node._lifecycle import missing_pairs
from protocols.node._snapshot import MAX_ADDRS_PER_PEER, MAX_PROTOCOLS_PER_PEER

S, T = Lifecycle, LifecycleTrigger


def pid(n: int) -> PeerId:
    return Keypair.from_seed(bytes([n]) * 32).peer_id


PEERS = [pid(n) for n in range(1, 13)]
ME = pid(100)


def addr(n: int, port: int = 4001, peer: PeerId | None = None) -> WsAddress:
    return WsAddress(f"198.51.100.{n}", "ip4", port, False, peer)


def up(
    cid: int, peer: PeerId, direction: Direction = Direction.OUTBOUND, at: float = 0.0
) -> ConnectionUp:
    info = ConnectionInfo(cid, peer, direction, addr(200, 4001), addr(cid, 5000 + cid), at)
    return ConnectionUp(info)


def down(cid: int, peer: PeerId) -> ConnectionDown:
    return ConnectionDown(cid, peer, "closed")


def found(*peers: PeerId, source: str = "https://boot/status", boot: bool = True) -> PeersFound:
    addrs = tuple(addr(i + 1, peer=p) for i, p in enumerate(peers))
    return PeersFound(addrs, source, from_bootstrap=boot)


def identified(
    peer: PeerId,
    cid: int = 1,
    observed: WsAddress | None = None,
    listen: tuple[WsAddress, ...] = (),
    protocols: tuple[str, ...] = ("/ipfs/id/1.0.0",),
) -> PeerIdentified:
    return PeerIdentified(
        peer_id=peer,
        connection_id=cid,
        listen_addrs=listen,
        observed_addr=observed,
        local_addr=addr(200, 4001),
        protocols=protocols,
        agent_version="test/1.0",
        observer_addr=addr(cid, 5000 + cid),
    )


LISTEN = ListenAddrsChanged((addr(200),))

# --- lifecycle table ------------------------------------------------------------

EXPECTED = {
    (S.STARTING, T.LISTENING): S.BOOTSTRAPPING,
    (S.STARTING, T.CONNECTION_UP): S.CONNECTED,
    (S.STARTING, T.ALL_CONNECTIONS_LOST): S.STARTING,
    (S.STARTING, T.BOOTSTRAP_PROBE): S.STARTING,
    (S.BOOTSTRAPPING, T.LISTENING): S.BOOTSTRAPPING,
    (S.BOOTSTRAPPING, T.CONNECTION_UP): S.CONNECTED,
    (S.BOOTSTRAPPING, T.ALL_CONNECTIONS_LOST): S.BOOTSTRAPPING,
    (S.BOOTSTRAPPING, T.BOOTSTRAP_PROBE): S.BOOTSTRAPPING,
    (S.CONNECTED, T.LISTENING): S.CONNECTED,
    (S.CONNECTED, T.CONNECTION_UP): S.CONNECTED,
    (S.CONNECTED, T.ALL_CONNECTIONS_LOST): S.BOOTSTRAPPING,
    (S.CONNECTED, T.BOOTSTRAP_PROBE): S.FULLY_CONNECTED,
    (S.FULLY_CONNECTED, T.LISTENING): S.FULLY_CONNECTED,
    (S.FULLY_CONNECTED, T.CONNECTION_UP): S.FULLY_CONNECTED,
    (S.FULLY_CONNECTED, T.ALL_CONNECTIONS_LOST): S.BOOTSTRAPPING,
    (S.FULLY_CONNECTED, T.BOOTSTRAP_PROBE): S.FULLY_CONNECTED,
}


def test_expected_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(Lifecycle, LifecycleTrigger))


@pytest.mark.parametrize(("state", "trigger"), sorted(EXPECTED, key=str))
def test_lifecycle_transition(state: Lifecycle, trigger: LifecycleTrigger) -> None:
    assert next_lifecycle(state, trigger) is EXPECTED[(state, trigger)]


def test_transition_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        LIFECYCLE_TRANSITIONS[(S.STARTING, T.LISTENING)] = S.CONNECTED  # type: ignore[index]


def test_full_lifecycle_through_events() -> None:
    model = NodeModel(ME, started_at=0.0)
    boot = PEERS[0]
    steps: list[tuple[object, Lifecycle, bool]] = [
        (found(boot), S.STARTING, True),
        (LISTEN, S.BOOTSTRAPPING, True),
        (LISTEN, S.BOOTSTRAPPING, False),  # same addresses: nothing new
        (up(1, boot), S.CONNECTED, True),
        (up(2, PEERS[1], Direction.INBOUND), S.CONNECTED, True),
        (down(2, PEERS[1]), S.CONNECTED, True),
    ]
    for now, (event, state, changed) in enumerate(steps, start=1):
        assert bool(model.handle_event(event, float(now))) is changed  # type: ignore[arg-type]
        assert model.lifecycle is state
    assert model.handle_event(probe(boot), 10.0) == [
        LifecycleChanged(S.CONNECTED, S.FULLY_CONNECTED, 10.0), StateChanged(model.revision)]
    snap = model.snapshot(10.0)
    assert (snap.lifecycle, snap.lifecycle_since) == (S.FULLY_CONNECTED, 10.0)
    assert not model.handle_event(probe(boot), 11.0)  # already there
    assert model.handle_event(down(1, boot), 12.0)
    assert model.lifecycle is S.BOOTSTRAPPING
    assert model.handle_event(up(3, boot), 13.0)
    assert model.lifecycle is S.CONNECTED  # must be probed again


def test_probe_from_non_bootstrap_or_unknown_peer_does_not_count() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0], boot=False), 1.0)
    model.handle_event(up(1, PEERS[0]), 2.0)
    assert not model.handle_event(probe(PEERS[0]), 3.0)
    assert not model.handle_event(probe(PEERS[5]), 3.0)
    assert model.lifecycle is S.CONNECTED


def test_table_is_complete_and_a_missing_pair_raises() -> None:
    assert missing_pairs(LIFECYCLE_TRANSITIONS) == []
    assert set(LIFECYCLE_TRANSITIONS) == set(itertools.product(Lifecycle, LifecycleTrigger))
    gap = (S.BOOTSTRAPPING, T.BOOTSTRAP_PROBE)
    holed = {pair: state for pair, state in LIFECYCLE_TRANSITIONS.items() if pair != gap}
    assert missing_pairs(holed) == [gap]
    with pytest.raises(LocalProtocolError, match="'bootstrap_probe' in state 'bootstrapping'"):
        next_lifecycle(*gap, table=holed)
    assert next_lifecycle(S.CONNECTED, T.BOOTSTRAP_PROBE, table=holed) is S.FULLY_CONNECTED


def probe(peer: PeerId) -> InboundProbe:
    return InboundProbe(peer=peer, status=ResponseStatus.OK, at=0.0,
                        dial_status=DialStatus.OK, requested=1)


@pytest.mark.parametrize("listening", [True, False], ids=["bootstrapping", "starting"])
def test_probe_that_races_ahead_of_connection_up_is_not_lost(listening: bool) -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0]), 1.0)
    if listening:
        model.handle_event(LISTEN, 1.0)
    waiting = S.BOOTSTRAPPING if listening else S.STARTING
    assert model.handle_event(probe(PEERS[0]), 2.0) == []  # held: nothing to publish yet
    assert model.lifecycle is waiting  # no connection on record yet: held, not dropped
    assert model.early_probes == (PEERS[0],)
    assert model.handle_event(up(1, PEERS[0]), 3.0)
    snap = model.snapshot(3.0)
    assert (snap.lifecycle, snap.lifecycle_since) == (S.FULLY_CONNECTED, 3.0)
    assert model.early_probes == ()


def test_held_probe_waits_for_its_own_peer_connection() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0], PEERS[1]), 1.0)
    model.handle_event(LISTEN, 1.0)
    model.handle_event(probe(PEERS[0]), 2.0)
    model.handle_event(up(1, PEERS[1]), 3.0)  # another peer's connection
    assert model.lifecycle is S.CONNECTED
    model.handle_event(up(2, PEERS[0]), 4.0)  # the prober's connection, late
    assert model.lifecycle is S.FULLY_CONNECTED


def test_held_probe_from_non_bootstrap_peer_is_not_remembered() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0], boot=False), 1.0)
    model.handle_event(LISTEN, 1.0)
    model.handle_event(probe(PEERS[0]), 2.0)
    assert model.early_probes == ()
    model.handle_event(up(1, PEERS[0]), 3.0)
    assert model.lifecycle is S.CONNECTED


def test_held_probes_are_forgotten_once_fully_connected() -> None:
    model = NodeModel(ME, max_peers=3)
    model.handle_event(found(*PEERS[:3]), 1.0)
    model.handle_event(LISTEN, 1.0)
    for peer in PEERS[:3]:
        model.handle_event(probe(peer), 2.0)
    assert len(model.early_probes) == 3
    model.handle_event(up(1, PEERS[1]), 3.0)
    assert model.lifecycle is S.FULLY_CONNECTED
    assert model.early_probes == ()
    model.handle_event(down(1, PEERS[1]), 4.0)
    model.handle_event(up(2, PEERS[2]), 5.0)
    assert model.lifecycle is S.CONNECTED  # must be probed again


def test_client_without_listener_goes_straight_to_connected() -> None:
    model = NodeModel(ME)
    model.handle_event(up(1, PEERS[0]), 1.0)
    assert model.lifecycle is S.CONNECTED


def test_empty_listen_addrs_do_not_start_bootstrapping() -> None:
    model = NodeModel(ME)
    assert not model.handle_event(ListenAddrsChanged(()), 1.0)
    assert model.lifecycle is S.STARTING


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["up", "down", "listen", "probe"]), st.integers(0, 5))))
def test_connected_states_iff_live_connections(ops: list[tuple[str, int]]) -> None:
    model = NodeModel(ME, max_peers=3)
    model.handle_event(found(*PEERS[:6]), 0.0)
    for now, (op, n) in enumerate(ops):
        if op == "up":
            model.handle_event(up(n, PEERS[n]), float(now))
        elif op == "down":
            model.handle_event(down(n, PEERS[n]), float(now))
        elif op == "listen":
            model.handle_event(LISTEN, float(now))
        else:
            model.handle_event(probe(PEERS[n]), float(now))
        connected = model.lifecycle in (S.CONNECTED, S.FULLY_CONNECTED)
        assert connected == (model.connection_count > 0)
        snap = model.snapshot(float(now))
        assert len(snap.peers) <= max(3, len(snap.connected_peers))
        # the maintained indexes agree with the plain definitions
        assert snap.connected_peers == tuple(sorted({c.peer_id for c in snap.connections}))
        assert list(snap.peers) == sorted(snap.peers, key=lambda r: r.peer_id)
        assert all(snap.peer(r.peer_id) is r for r in snap.peers)
        assert all(model.is_connected(p) == (p in snap.connected_peers) for p in PEERS[:6])
        assert set(model._idle) == {r.peer_id for r in snap.peers} - set(snap.connected_peers)
        assert snap.local_ips == tuple(sorted(
            {WsAddress(c.local_addr.host, c.local_addr.kind, 0, False)
             for c in snap.connections}, key=str))
        assert set(snap.connected_peers) <= {rec.peer_id for rec in snap.peers}


# --- peers ------------------------------------------------------------------------


def test_peers_found_creates_records_with_sources_and_bootstrap_flag() -> None:
    model = NodeModel(ME)
    assert model.handle_event(found(PEERS[0], PEERS[1], ME), 5.0)
    assert model.peer(ME) is None  # never a record for ourselves
    record = model.peer(PEERS[0])
    assert record is not None
    assert record.addrs == (addr(1, peer=PEERS[0]),)
    assert record.sources == ("https://boot/status",)
    assert record.from_bootstrap
    assert (record.first_seen, record.last_seen) == (5.0, 5.0)
    model.handle_event(found(PEERS[0], source="config", boot=False), 9.0)
    record = model.peer(PEERS[0])
    assert record is not None
    assert record.sources == ("config", "https://boot/status")
    assert record.from_bootstrap  # sticky
    assert (record.first_seen, record.last_seen) == (5.0, 9.0)


def test_only_our_own_address_is_no_change() -> None:
    model = NodeModel(ME)
    assert not model.handle_event(found(ME), 1.0)
    assert model.revision == 0


def test_identify_fills_in_agent_protocols_and_addresses() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0]), 1.0)
    listen = (addr(50), addr(51, peer=PEERS[0]), addr(52, peer=PEERS[1]))  # last: wrong peer
    assert model.handle_event(identified(PEERS[0], listen=listen), 2.0)
    record = model.peer(PEERS[0])
    assert record is not None
    assert record.agent_version == "test/1.0"
    assert record.protocols == ("/ipfs/id/1.0.0",)
    assert record.addrs == (
        addr(50, peer=PEERS[0]),
        addr(51, peer=PEERS[0]),
        addr(1, peer=PEERS[0]),
    )


def test_outbound_connection_remembers_the_dialed_address_inbound_does_not() -> None:
    model = NodeModel(ME)
    model.handle_event(up(1, PEERS[0], Direction.OUTBOUND), 1.0)
    model.handle_event(up(2, PEERS[1], Direction.INBOUND), 1.0)
    first, second = model.peer(PEERS[0]), model.peer(PEERS[1])
    assert first is not None and second is not None
    assert first.addrs == (addr(1, 5001, PEERS[0]),)
    assert second.addrs == ()
    assert [rec.peer_id for rec in model.store_records()] == [PEERS[0]]


def test_duplicate_and_unknown_connection_events_change_nothing() -> None:
    model = NodeModel(ME)
    assert model.handle_event(up(1, PEERS[0]), 1.0)
    assert not model.handle_event(up(1, PEERS[0]), 2.0)
    assert not model.handle_event(down(7, PEERS[0]), 2.0)
    assert not model.handle_event(up(2, ME), 2.0)
    assert model.connection_count == 1


def test_per_peer_caps_truncate() -> None:
    model = NodeModel(ME)
    listen = tuple(addr(n) for n in range(1, 40))
    protocols = ("x" * 500, "", *(f"/p/{n}" for n in range(100)), "/p/0")
    model.handle_event(identified(PEERS[0], listen=listen, protocols=protocols), 1.0)
    record = model.peer(PEERS[0])
    assert record is not None
    assert len(record.addrs) == MAX_ADDRS_PER_PEER
    assert record.protocols == protocols[2 : 2 + MAX_PROTOCOLS_PER_PEER]


def test_connection_cap_drops_and_counts() -> None:
    model = NodeModel(ME, max_connections=2)
    assert model.handle_event(up(1, PEERS[0]), 1.0)
    assert model.handle_event(up(2, PEERS[1]), 1.0)
    assert not model.handle_event(up(3, PEERS[2]), 1.0)
    assert model.connection_count == 2
    assert model.statistics().dropped_connections == 1


# --- bounds -------------------------------------------------------------------------


def test_eviction_drops_least_recently_seen_but_never_connected_peers() -> None:
    model = NodeModel(ME, max_peers=3)
    model.handle_event(up(1, PEERS[0]), 0.0)  # oldest, but connected
    for n in range(1, 5):
        model.handle_event(found(PEERS[n]), float(n))
    kept = {rec.peer_id for rec in model.snapshot(5.0).peers}
    assert kept == {PEERS[0], PEERS[3], PEERS[4]}
    model.handle_event(found(PEERS[3]), 6.0)  # refresh 3, so 4 is now the oldest unconnected
    model.handle_event(found(PEERS[5]), 7.0)
    kept = {rec.peer_id for rec in model.snapshot(7.0).peers}
    assert kept == {PEERS[0], PEERS[3], PEERS[5]}


def test_a_peer_that_just_left_is_evicted_after_those_idle_longer() -> None:
    model = NodeModel(ME, max_peers=3)
    model.handle_event(up(1, PEERS[0]), 0.0)
    model.handle_event(found(PEERS[1]), 1.0)
    model.handle_event(found(PEERS[2]), 2.0)
    model.handle_event(down(1, PEERS[0]), 3.0)  # now idle, and the most recently seen
    model.handle_event(found(PEERS[3]), 4.0)
    model.handle_event(found(PEERS[4]), 5.0)
    assert {rec.peer_id for rec in model.snapshot(5.0).peers} == {PEERS[0], PEERS[3], PEERS[4]}


def test_stored_peers_are_evicted_in_last_seen_order_whatever_the_file_order() -> None:
    model = NodeModel(ME, max_peers=2)
    stored = [PeerRecord(p, (addr(n + 1, peer=p),), first_seen=0.0, last_seen=seen)
              for n, (p, seen) in enumerate([(PEERS[0], 9.0), (PEERS[1], 3.0), (PEERS[2], 7.0)])]
    model.handle_stored_peers(stored, 10.0)
    assert {rec.peer_id for rec in model.snapshot(10.0).peers} == {PEERS[0], PEERS[2]}
    model.handle_event(found(PEERS[3]), 11.0)  # the oldest stored one (seen at 7) goes
    assert {rec.peer_id for rec in model.snapshot(11.0).peers} == {PEERS[0], PEERS[3]}


def test_churning_peers_that_only_dialed_in_cannot_flush_dialable_ones() -> None:
    model = NodeModel(ME, max_peers=4)
    model.handle_event(found(PEERS[0], PEERS[1]), 1.0)  # dialable, and the oldest
    for n in range(2, 10):  # fresh ids that connect in and leave: no address at all
        model.handle_event(up(n, PEERS[n], Direction.INBOUND), float(n))
        model.handle_event(down(n, PEERS[n]), float(n) + 0.5)
    kept = {rec.peer_id for rec in model.snapshot(11.0).peers}
    assert {PEERS[0], PEERS[1]} <= kept and len(kept) == 4
    assert kept - {PEERS[0], PEERS[1]} == {PEERS[8], PEERS[9]}  # the newest bare ones


def test_eviction_bound_holds_for_one_big_batch() -> None:
    model = NodeModel(ME, max_peers=4)
    model.handle_event(found(*PEERS), 1.0)
    assert model.peer_count == 4


def test_connected_peers_may_exceed_the_bound_rather_than_be_forgotten() -> None:
    model = NodeModel(ME, max_peers=2)
    for n in range(3):
        model.handle_event(up(n, PEERS[n]), float(n))
    assert model.peer_count == 3
    model.handle_event(down(0, PEERS[0]), 5.0)
    model.handle_event(found(PEERS[6]), 6.0)
    assert model.peer_count <= 3
    assert model.peer(PEERS[1]) is not None and model.peer(PEERS[2]) is not None


# --- observed addresses --------------------------------------------------------------


def test_observed_addresses_are_kept_per_observer() -> None:
    model = NodeModel(ME)
    model.handle_event(identified(PEERS[0], cid=1, observed=addr(9, 40000)), 1.0)
    model.handle_event(identified(PEERS[1], cid=2, observed=addr(9, 40001)), 2.0)
    model.handle_event(identified(PEERS[0], cid=1, observed=addr(9, 40002)), 3.0)  # replaces
    model.handle_event(identified(PEERS[1], cid=2, observed=None), 4.0)  # keeps the old one
    by_observer = {obs.observer: obs for obs in model.snapshot(5.0).observed_addrs}
    assert set(by_observer) == {PEERS[0], PEERS[1]}
    assert by_observer[PEERS[0]].observed == addr(9, 40002)
    assert by_observer[PEERS[0]].at == 3.0
    assert by_observer[PEERS[0]].local == addr(200, 4001)
    assert by_observer[PEERS[0]].observer_addr == addr(1, 5001)
    assert by_observer[PEERS[1]].observed == addr(9, 40001)


def test_observers_are_bounded_oldest_first() -> None:
    model = NodeModel(ME, max_peers=2)
    for n in range(4):
        model.handle_event(identified(PEERS[n], cid=n + 1, observed=addr(9, 40000 + n)), float(n))
    observers = {obs.observer for obs in model.snapshot(5.0).observed_addrs}
    assert observers == {PEERS[2], PEERS[3]}


# --- snapshots --------------------------------------------------------------------------


def test_snapshot_is_frozen_and_made_of_tuples() -> None:
    model = NodeModel(ME, started_at=100.0)
    model.handle_event(found(PEERS[0]), 101.0)
    model.handle_event(up(1, PEERS[0]), 102.0)
    model.handle_event(identified(PEERS[0], observed=addr(9)), 103.0)
    snap = model.snapshot(104.0)
    for spec in dataclasses.fields(snap):
        value = getattr(snap, spec.name)
        assert not isinstance(value, list | dict | set), spec.name
    assert isinstance(snap.peers, tuple) and isinstance(snap.connections, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.lifecycle = Lifecycle.STARTING  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.peers[0].agent_version = "x"  # type: ignore[misc]
    assert (snap.started_at, snap.updated_at) == (100.0, 103.0)
    assert (snap.nat_status, snap.nat_mapping) == ("unknown", "unknown")
    assert snap.reachable_addrs == snap.unreachable_addrs == ()


def test_snapshot_does_not_change_when_the_model_does() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0]), 1.0)
    before = model.snapshot(1.0)
    copy = dataclasses.replace(before)
    model.handle_event(found(PEERS[1]), 2.0)
    model.handle_event(up(1, PEERS[0]), 3.0)
    assert before == copy
    after = model.snapshot(3.0)
    assert after.revision > before.revision
    assert len(after.peers) == 2 and len(before.peers) == 1


def test_snapshot_helpers() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0], PEERS[1]), 1.0)
    model.handle_event(up(1, PEERS[1]), 2.0)
    model.handle_event(up(2, PEERS[1], Direction.INBOUND), 2.0)
    snap = model.snapshot(3.0)
    assert snap.connected_peers == (PEERS[1],)
    assert snap.peer(PEERS[0]) == model.peer(PEERS[0])
    assert snap.peer(PEERS[7]) is None
    assert [c.connection_id for c in snap.connections_to(PEERS[1])] == [1, 2]
    assert snap.peer_id == ME


def test_snapshot_rejects_unknown_nat_values() -> None:
    snap = NodeModel(ME).snapshot(0.0)
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(snap, nat_status="maybe")  # type: ignore[arg-type]
    assert isinstance(dataclasses.replace(snap, nat_status="public"), NodeSnapshot)


# --- seeding and validation ------------------------------------------------------------


def test_stored_peers_seed_skips_self_and_keeps_memory() -> None:
    model = NodeModel(ME, max_peers=3)
    model.handle_event(identified(PEERS[0], listen=(addr(60),)), 50.0)
    stored = [
        PeerRecord(p, (addr(n + 1, peer=p),), first_seen=float(n), last_seen=float(n))
        for n, p in enumerate([PEERS[0], ME, *PEERS[1:5]])
    ]
    assert model.handle_stored_peers(stored, 60.0) == [StoredPeersLoaded(4),
                                                       StateChanged(model.revision)]
    assert model.peer(ME) is None
    record = model.peer(PEERS[0])
    assert record is not None and record.agent_version == "test/1.0"  # memory won
    assert model.peer_count == 3
    assert [rec.peer_id for rec in model.store_records()] == [PEERS[0], PEERS[4], PEERS[3]]


def test_store_records_most_recent_first_and_addressed_only() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0]), 1.0)
    model.handle_event(found(PEERS[1]), 2.0)
    model.handle_event(up(1, PEERS[2], Direction.INBOUND), 3.0)  # no address: not persisted
    assert [rec.peer_id for rec in model.store_records()] == [PEERS[1], PEERS[0]]


def test_unknown_events_are_refused() -> None:
    model = NodeModel(ME)
    assert not model.handles("hello")
    assert model.handles(LISTEN)
    with pytest.raises(LocalProtocolError, match="cannot handle str"):
        model.handle_event("hello", 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"addrs": (addr(1, peer=PEERS[1]),)},
        {"addrs": (addr(1),)},
        {"first_seen": 5.0, "last_seen": 4.0},
        {"last_seen": float("nan")},
        {"protocols": ("",)},
        {"protocols": ["/a"]},
        {"agent_version": "x" * 1000},
        {"sources": tuple(f"s{n}" for n in range(10))},
        {"from_bootstrap": 1},
    ],
)
def test_peer_record_validation(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "peer_id": PEERS[0],
        "addrs": (addr(1, peer=PEERS[0]),),
        "first_seen": 1.0,
        "last_seen": 2.0,
    }
    PeerRecord(**fields)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        PeerRecord(**(fields | changes))  # type: ignore[arg-type]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        NodeModel(ME, max_peers=0)


def test_statistics_are_frozen_and_count_what_the_model_holds() -> None:
    model = NodeModel(ME)
    model.handle_event(found(PEERS[0], PEERS[1]), 1.0)
    model.handle_event(LISTEN, 1.0)
    model.handle_event(probe(PEERS[1]), 1.5)  # held until its connection comes up
    model.handle_event(up(1, PEERS[0]), 2.0)
    model.handle_event(up(2, PEERS[0], Direction.INBOUND), 2.0)
    stats = model.statistics()
    assert (stats.lifecycle, stats.peers, stats.connections, stats.connected_peers,
            stats.early_probes) == (S.CONNECTED, 2, 2, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.peers = 0  # type: ignore[misc]


@pytest.mark.parametrize(("status", "dial_status", "verified"), [
    (ResponseStatus.OK, DialStatus.OK, True),
    (ResponseStatus.OK, DialStatus.E_DIAL_ERROR, False),
    (ResponseStatus.E_INTERNAL_ERROR, DialStatus.UNUSED, False),
])
def test_a_successful_dial_back_verifies_that_address(
        status: ResponseStatus, dial_status: DialStatus, verified: bool) -> None:
    model = NodeModel(ME)
    model.handle_event(up(1, PEERS[0], Direction.INBOUND), 1.0)
    dialed = addr(7)
    model.handle_event(InboundProbe(peer=PEERS[0], status=status, at=2.0,
                                    dial_status=dial_status, dialed=dialed, requested=1), 2.0)
    record = model.peer(PEERS[0])
    assert record is not None
    assert record.verified_addrs == ((dialed.with_peer_id(PEERS[0]),) if verified else ())


def test_relay_paths_reach_the_snapshot_and_an_equal_one_changes_nothing() -> None:
    from protocols.relay import MAX_RELAYED_PEERS, CircuitAddress, RelayPathsChanged

    model = NodeModel(ME)
    relay = WsAddress.parse(f"/ip4/34.83.216.1/tcp/44000/ws/p2p/{pid(1)}")
    paths = RelayPathsChanged((CircuitAddress(relay, ME),), (pid(2),))
    assert model.handle_event(paths, 1.0)  # a change
    snap = model.snapshot(1.0)
    assert snap.relay_addrs == paths.relay_addrs and snap.relayed_peers == (pid(2),)
    assert model.handle_event(RelayPathsChanged(paths.relay_addrs, (pid(2),)), 2.0) == []
    model.handle_event(RelayPathsChanged(), 3.0)
    assert model.snapshot(3.0).relayed_peers == () == model.snapshot(3.0).relay_addrs
    with pytest.raises(LocalProtocolError, match="at most"):
        RelayPathsChanged((), tuple(pid(i) for i in range(MAX_RELAYED_PEERS + 1)))
    bounded = RelayPathsChanged.bounded((), tuple(pid(i) for i in range(MAX_RELAYED_PEERS + 5)))
    assert len(bounded.relayed_peers) == MAX_RELAYED_PEERS
