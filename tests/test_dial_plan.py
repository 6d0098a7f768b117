"""DialPlanner: concurrency, target, dedup, backoff - all in plain virtual time."""

from __future__ import annotations

import random

import pytest

from protocols import Backoff, DialPlanner, Keypair, WsAddress

EXACT = Backoff(initial=1.0, multiplier=2.0, maximum=8.0, jitter=0.0)


def _addr(peer: Keypair, port: int = 44000, host: str = "198.51.100.1") -> WsAddress:
    return WsAddress.parse(f"/ip4/{host}/tcp/{port}/ws/p2p/{peer.peer_id}")


def _planner(target: int = 3, concurrency: int = 2, **kw: object) -> DialPlanner:
    return DialPlanner(Keypair.generate().peer_id, target=target, concurrency=concurrency,
                       backoff=EXACT, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_respects_concurrency_and_target() -> None:
    plan = _planner(target=3, concurrency=2)
    peers = [Keypair.generate() for _ in range(5)]
    assert plan.add([_addr(p) for p in peers], now=0.0) == 5
    first = plan.due(0.0)
    assert len(first) == 2 and plan.in_flight == 2
    assert plan.due(0.0) == []  # concurrency exhausted
    plan.connected(first[0].peer_id, 0.1)  # type: ignore[arg-type]
    plan.connected(first[1].peer_id, 0.1)  # type: ignore[arg-type]
    assert len(plan.due(0.2)) == 1  # only one more needed for target 3
    assert plan.due(0.2) == []


def test_never_dials_self_or_connected_or_twice() -> None:
    me = Keypair.generate()
    plan = DialPlanner(me.peer_id, target=5, concurrency=5, backoff=EXACT)
    other = Keypair.generate()
    plan.add([_addr(me), _addr(other), _addr(other, port=44001)], now=0.0)
    assert plan.statistics(0.0).known_peers == 1
    [dial] = plan.due(0.0)
    assert dial.peer_id == other.peer_id
    assert plan.due(0.0) == []  # already dialing
    plan.connected(other.peer_id, 0.0)
    assert plan.due(100.0) == []  # connected


def test_failed_dial_backs_off_exponentially_and_rotates_addresses() -> None:
    plan = _planner(target=1, concurrency=1)
    peer = Keypair.generate()
    a1, a2 = _addr(peer, 1), _addr(peer, 2)
    plan.add([a1, a2], now=0.0)
    now, seen, delays = 0.0, [], []
    for _ in range(5):
        [dial] = plan.due(now)
        seen.append(dial.port)
        delays.append(plan.dial_failed(peer.peer_id, now))
        assert plan.due(now) == []
        assert plan.next_wakeup(now) == now + delays[-1]
        now += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert seen == [1, 2, 1, 2, 1]


def test_lost_peer_is_redialed_after_initial_delay_and_failures_reset() -> None:
    plan = _planner(target=1, concurrency=1)
    peer = Keypair.generate()
    plan.add([_addr(peer)], now=0.0)
    plan.due(0.0)
    plan.dial_failed(peer.peer_id, 0.0)
    plan.due(1.0)
    plan.connected(peer.peer_id, 1.0)
    assert plan.disconnected(peer.peer_id, 50.0) == 1.0
    assert plan.due(50.5) == []
    assert [a.peer_id for a in plan.due(51.0)] == [peer.peer_id]


def test_fresh_peers_are_preferred_over_failing_ones() -> None:
    plan = _planner(target=1, concurrency=1)
    bad, fresh = Keypair.generate(), Keypair.generate()
    plan.add([_addr(bad)], now=0.0)
    plan.due(0.0)
    plan.dial_failed(bad.peer_id, 0.0)
    plan.add([_addr(fresh)], now=5.0)
    [dial] = plan.due(5.0)
    assert dial.peer_id == fresh.peer_id


def test_bounded_peer_table_evicts_idle_failing_peers_first() -> None:
    plan = _planner(target=1, concurrency=1, max_peers=3)
    keys = [Keypair.generate() for _ in range(3)]
    plan.add([_addr(k) for k in keys], now=0.0)
    [dial] = plan.due(0.0)
    plan.dial_failed(dial.peer_id, 0.0)  # type: ignore[arg-type]
    newcomer = Keypair.generate()
    assert plan.add([_addr(newcomer)], now=1.0) == 1
    assert plan.statistics(1.0).known_peers == 3
    # the failing peer was the one forgotten: re-adding it counts as new
    assert plan.add([_addr(Keypair.generate())], now=2.0) == 1
    assert dial.peer_id is not None
    assert plan.add([WsAddress.parse(str(dial))], now=3.0) == 1


@pytest.mark.parametrize("seed", range(20))
def test_random_schedules_never_exceed_limits(seed: int) -> None:
    rng = random.Random(seed)
    plan = DialPlanner(Keypair.generate().peer_id, target=4, concurrency=2,
                       rng=random.Random(seed))
    keys = [Keypair.generate() for _ in range(8)]
    plan.add([_addr(k) for k in keys], now=0.0)
    now, dialing = 0.0, []
    for _ in range(200):
        dialing += [a.peer_id for a in plan.due(now)]
        stats = plan.statistics(now)
        assert stats.in_flight <= 2
        assert stats.connected + stats.in_flight <= 4
        if dialing and rng.random() < 0.5:
            pid = dialing.pop(rng.randrange(len(dialing)))
            (plan.connected if rng.random() < 0.5 else plan.dial_failed)(pid, now)  # type: ignore[operator, arg-type]
        elif rng.random() < 0.2:
            connected = [k.peer_id for k in keys if plan._peers[k.peer_id].connected]
            if connected:
                plan.disconnected(rng.choice(connected), now)
        now += rng.random()
