"""DialPlanner: concurrency, target, dedup, backoff - all in plain virtual time."""

from __future__ import annotations

import random

import pytest

from protocols import Backoff, DialPeer, DialPlanner, Keypair, LocalProtocolError, WsAddress

EXACT = Backoff(initial=1.0, multiplier=2.0, maximum=8.0, jitter=0.0)


def _addr(peer: Keypair, port: int = 44000, host: str = "198.51.100.1") -> WsAddress:
    return WsAddress.parse(f"/ip4/{host}/tcp/{port}/ws/p2p/{peer.peer_id}")


def _planner(target: int = 3, concurrency: int = 2, **kw: object) -> DialPlanner:
    return DialPlanner(Keypair.generate().peer_id, target=target, concurrency=concurrency,
                       backoff=EXACT, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def _add(plan: DialPlanner, addrs: list[WsAddress], now: float) -> int:
    """``handle_peers_found``; returns how many peers it added."""
    before = plan.statistics().peers_learned
    assert plan.handle_peers_found(addrs, now) == []  # an input never starts work itself
    return plan.statistics().peers_learned - before


def _due(plan: DialPlanner, now: float) -> list[WsAddress]:
    commands = plan.handle_timeout(now)
    assert all(isinstance(c, DialPeer) for c in commands)
    return [c.addr for c in commands]


def _failed(plan: DialPlanner, peer: object, now: float) -> float:
    """``handle_dial_failed``; returns the backoff delay."""
    plan.handle_dial_failed(peer, now)  # type: ignore[arg-type]
    retry_at = plan.retry_at(peer)  # type: ignore[arg-type]
    assert retry_at is not None
    return retry_at - now


def test_respects_concurrency_and_target() -> None:
    plan = _planner(target=3, concurrency=2)
    peers = [Keypair.generate() for _ in range(5)]
    assert _add(plan, [_addr(p) for p in peers], 0.0) == 5
    first = _due(plan, 0.0)
    assert len(first) == 2 and plan.in_flight == 2
    assert _due(plan, 0.0) == []  # concurrency exhausted
    plan.handle_connected(first[0].peer_id, 0.1)  # type: ignore[arg-type]
    plan.handle_connected(first[1].peer_id, 0.1)  # type: ignore[arg-type]
    assert len(_due(plan, 0.2)) == 1  # only one more needed for target 3
    assert _due(plan, 0.2) == []


def test_never_dials_self_or_connected_or_twice() -> None:
    me = Keypair.generate()
    plan = DialPlanner(me.peer_id, target=5, concurrency=5, backoff=EXACT)
    other = Keypair.generate()
    _add(plan, [_addr(me), _addr(other), _addr(other, port=44001)], 0.0)
    assert plan.statistics().known_peers == 1
    [dial] = _due(plan, 0.0)
    assert dial.peer_id == other.peer_id
    assert _due(plan, 0.0) == []  # already dialing
    plan.handle_connected(other.peer_id, 0.0)
    assert _due(plan, 100.0) == []  # connected


def test_failed_dial_backs_off_exponentially_and_rotates_addresses() -> None:
    plan = _planner(target=1, concurrency=1)
    peer = Keypair.generate()
    a1, a2 = _addr(peer, 1), _addr(peer, 2)
    _add(plan, [a1, a2], 0.0)
    now, seen, delays = 0.0, [], []
    for _ in range(5):
        [dial] = _due(plan, now)
        seen.append(dial.port)
        delays.append(_failed(plan, peer.peer_id, now))
        assert _due(plan, now) == []
        assert plan.poll_timeout() == now + delays[-1]
        now += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert seen == [1, 2, 1, 2, 1]


def test_lost_peer_is_redialed_after_initial_delay_and_failures_reset() -> None:
    plan = _planner(target=1, concurrency=1)
    peer = Keypair.generate()
    _add(plan, [_addr(peer)], 0.0)
    _due(plan, 0.0)
    plan.handle_dial_failed(peer.peer_id, 0.0)
    _due(plan, 1.0)
    plan.handle_connected(peer.peer_id, 1.0)
    plan.handle_disconnected(peer.peer_id, 50.0)
    assert plan.retry_at(peer.peer_id) == 51.0
    assert _due(plan, 50.5) == []
    assert [a.peer_id for a in _due(plan, 51.0)] == [peer.peer_id]


def test_fresh_peers_are_preferred_over_failing_ones() -> None:
    plan = _planner(target=1, concurrency=1)
    bad, fresh = Keypair.generate(), Keypair.generate()
    _add(plan, [_addr(bad)], 0.0)
    _due(plan, 0.0)
    plan.handle_dial_failed(bad.peer_id, 0.0)
    _add(plan, [_addr(fresh)], 5.0)
    [dial] = _due(plan, 5.0)
    assert dial.peer_id == fresh.peer_id


def test_boot_nodes_are_dialed_before_the_peers_their_documents_list() -> None:
    """Found by the simulator once hosts bootstrapped through ``/status``: each document
    lists its boot node first, then other peers; the first document's peers filled the
    dial budget before the second document's boot node was dialed, so hosts held one
    boot node - the only AutoNAT servers with a second dial-back address - among 8
    peers. The owners of bootstrap documents now go first."""
    plan = _planner(target=4, concurrency=4)
    boots = [Keypair.generate() for _ in range(3)]
    others = [Keypair.generate() for _ in range(9)]
    for i, boot in enumerate(boots):
        listed = [_addr(boot)] + [_addr(p) for p in others[3 * i:3 * i + 3]]
        assert plan.handle_peers_found(listed, float(i), boot=boot.peer_id) == []
    dials = {a.peer_id for a in _due(plan, 3.0)}
    assert {b.peer_id for b in boots} <= dials and len(dials) == 4
    unmarked = _planner(target=4, concurrency=4)  # the same documents, owners not given
    for i, boot in enumerate(boots):
        _add(unmarked, [_addr(boot)] + [_addr(p) for p in others[3 * i:3 * i + 3]], float(i))
    assert {a.peer_id for a in _due(unmarked, 3.0)} == {boots[0].peer_id} | {
        p.peer_id for p in others[:3]}


def test_boot_nodes_are_dialed_beyond_a_target_reached_before_their_documents_came() -> None:
    """Found by the churn scenario: a host's first document filled its target of 8 with
    ordinary peers before the other boot nodes' documents arrived, so it held one boot
    node - one server that dials back from a second IP - and an address-restricted host
    stayed ``unknown`` for a minute. A boot node is dialed beyond the target (within
    the concurrency), and redialed after it is lost even when the target is met."""
    plan = _planner(target=2, concurrency=3)
    first, late = Keypair.generate(), Keypair.generate()
    others = [Keypair.generate() for _ in range(4)]
    plan.handle_peers_found([_addr(first)] + [_addr(p) for p in others[:2]], 0.0,
                            boot=first.peer_id)
    dials = _due(plan, 0.0)
    for addr in dials:
        plan.handle_connected(addr.peer_id, 0.1)  # type: ignore[arg-type]
    assert plan.connected_count == 2 and _due(plan, 0.2) == []  # the target is met
    plan.handle_peers_found([_addr(late)] + [_addr(p) for p in others[2:]], 1.0,
                            boot=late.peer_id)
    assert plan.poll_timeout() == 1.0
    assert [a.peer_id for a in _due(plan, 1.0)] == [late.peer_id]  # the boot node only
    plan.handle_connected(late.peer_id, 1.1)
    assert _due(plan, 1.2) == [] and plan.poll_timeout() is None  # no one else: target met
    plan.handle_disconnected(late.peer_id, 5.0)
    retry = plan.retry_at(late.peer_id)
    assert retry is not None and retry > 5.0
    assert _due(plan, 5.0) == [] and plan.poll_timeout() == retry  # it wakes for the boot
    assert [a.peer_id for a in _due(plan, retry)] == [late.peer_id]
    ordinary = _planner(target=2, concurrency=3)  # the same without owners: target holds
    _add(ordinary, [_addr(first)] + [_addr(p) for p in others[:2]], 0.0)
    for addr in _due(ordinary, 0.0):
        ordinary.handle_connected(addr.peer_id, 0.1)  # type: ignore[arg-type]
    _add(ordinary, [_addr(late)] + [_addr(p) for p in others[2:]], 1.0)
    assert _due(ordinary, 1.0) == []


def test_bounded_peer_table_evicts_idle_failing_peers_first() -> None:
    plan = _planner(target=1, concurrency=1, max_peers=3)
    keys = [Keypair.generate() for _ in range(3)]
    _add(plan, [_addr(k) for k in keys], 0.0)
    [dial] = _due(plan, 0.0)
    plan.handle_dial_failed(dial.peer_id, 0.0)  # type: ignore[arg-type]
    newcomer = Keypair.generate()
    assert _add(plan, [_addr(newcomer)], 1.0) == 1
    assert plan.statistics().known_peers == 3
    # the failing peer was the one forgotten: re-adding it counts as new
    assert _add(plan, [_addr(Keypair.generate())], 2.0) == 1
    assert dial.peer_id is not None
    assert _add(plan, [WsAddress.parse(str(dial))], 3.0) == 1


@pytest.mark.parametrize("seed", range(20))
def test_random_schedules_never_exceed_limits(seed: int) -> None:
    rng = random.Random(seed)
    plan = DialPlanner(Keypair.generate().peer_id, target=4, concurrency=2,
                       rng=random.Random(seed))
    keys = [Keypair.generate() for _ in range(8)]
    _add(plan, [_addr(k) for k in keys], 0.0)
    now, dialing = 0.0, []
    for _ in range(200):
        dialing += [a.peer_id for a in _due(plan, now)]
        stats = plan.statistics()
        assert stats.in_flight <= 2
        assert stats.connected + stats.in_flight <= 4
        if dialing and rng.random() < 0.5:
            pid = dialing.pop(rng.randrange(len(dialing)))
            (plan.handle_connected if rng.random() < 0.5 else plan.handle_dial_failed)(pid, now)  # type: ignore[arg-type]
        elif rng.random() < 0.2:
            connected = [k.peer_id for k in keys if plan._peers[k.peer_id].connected]
            if connected:
                plan.handle_disconnected(rng.choice(connected), now)
        now += rng.random()


# --- the sans-io contract ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_poll_timeout_is_never_at_or_before_the_last_handled_time(seed: int) -> None:
    rng = random.Random(seed)
    plan = DialPlanner(Keypair.generate().peer_id, target=3, concurrency=2,
                       rng=random.Random(seed))
    keys = [Keypair.generate() for _ in range(6)]
    _add(plan, [_addr(k) for k in keys], 0.0)
    now, dialing = 0.0, []
    for _ in range(200):
        dialing += [a.peer_id for a in _due(plan, now)]
        deadline = plan.poll_timeout()
        assert deadline is None or deadline > now
        if dialing and rng.random() < 0.5:
            pid = dialing.pop(rng.randrange(len(dialing)))
            if rng.random() < 0.5:
                plan.handle_connected(pid, now)  # type: ignore[arg-type]
            else:
                plan.handle_dial_failed(pid, now)  # type: ignore[arg-type]
            assert plan.poll_timeout() == now  # an input asks for handle_timeout at once
        now = deadline if deadline is not None and rng.random() < 0.5 else now + rng.random()


def test_an_input_makes_handle_timeout_due_at_its_time() -> None:
    plan = _planner(target=1, concurrency=1)
    assert plan.poll_timeout() is None
    assert _due(plan, 1.0) == []
    assert plan.poll_timeout() is None
    peer = Keypair.generate()
    _add(plan, [_addr(peer)], 3.0)
    assert plan.poll_timeout() == 3.0
    assert _due(plan, 3.0) == [_addr(peer)]
    assert plan.poll_timeout() is None  # dialing: only an outcome can create work


def test_losing_a_connection_that_is_not_up_is_a_local_protocol_error() -> None:
    plan = _planner()
    peer = Keypair.generate()
    with pytest.raises(LocalProtocolError, match="unknown"):
        plan.handle_disconnected(peer.peer_id, 0.0)
    _add(plan, [_addr(peer)], 0.0)
    _due(plan, 0.0)
    with pytest.raises(LocalProtocolError, match="not connected"):
        plan.handle_disconnected(peer.peer_id, 1.0)


def test_statistics_are_frozen() -> None:
    plan = _planner()
    stats = plan.statistics()
    with pytest.raises(AttributeError):
        stats.known_peers = 5  # type: ignore[misc]


def test_peers_that_dialed_in_are_forgotten_when_they_leave_and_never_redialed() -> None:
    planner = _planner(target=2, concurrency=2, max_peers=3)
    clients = [Keypair.generate() for _ in range(50)]
    for n, client in enumerate(clients):  # 50 probe clients dial in, one after another
        planner.handle_connected(client.peer_id, float(n))
        assert planner.statistics().known_peers == 1
        planner.handle_disconnected(client.peer_id, float(n) + 0.5)
        assert planner.statistics().known_peers == 0  # gone: nothing is kept
    assert _due(planner, 100.0) == [] and planner.poll_timeout() is None
    # connected clients do not take the places of the peers we learn of
    for client in clients[:10]:
        planner.handle_connected(client.peer_id, 200.0)
    assert _add(planner, [_addr(Keypair.generate()) for _ in range(3)], 200.0) == 3
    assert planner.statistics().known_peers == 13
    # a client we later learn an address for is an ordinary peer: redialed when lost
    _add(planner, [_addr(clients[0])], 201.0)
    planner.handle_disconnected(clients[0].peer_id, 202.0)
    assert planner.retry_at(clients[0].peer_id) == 203.0


def test_a_node_at_its_target_does_no_per_peer_work_per_event() -> None:
    planner = _planner(target=2, concurrency=2, max_peers=5000)
    _add(planner, [_addr(Keypair.generate()) for _ in range(2000)], 0.0)
    for peer in [Keypair.generate().peer_id for _ in range(2)]:
        planner.handle_connected(peer, 0.0)
    planner.handle_timeout(0.0)
    planner._peers = _CountingDict(planner._peers)  # type: ignore[assignment]
    for n in range(100):  # inbound clients come and go
        peer = Keypair.generate().peer_id
        planner.handle_connected(peer, float(n))
        planner.poll_timeout()
        planner.handle_timeout(float(n))
        planner.handle_disconnected(peer, float(n))
        planner.poll_timeout()
    assert planner._peers.scans == 0  # type: ignore[attr-defined]


class _CountingDict(dict):  # type: ignore[type-arg]
    """Counts iterations over all peers (what would make cost grow with the table)."""

    scans = 0

    def values(self):  # type: ignore[no-untyped-def]
        type(self).scans += 1
        return super().values()

    def items(self):  # type: ignore[no-untyped-def]
        type(self).scans += 1
        return super().items()
