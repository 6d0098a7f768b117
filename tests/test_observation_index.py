"""ObservationIndex: incremental candidates and NAT mapping, equal to the batch functions."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    AddressPolicy,
    Keypair,
    ObservationIndex,
    ObservedAddr,
    PeerId,
    WsAddress,
    analyse_nat_mapping,
    candidate_addresses,
)

PEERS = sorted(Keypair.generate().peer_id for _ in range(6))
W = WsAddress.parse

OBSERVED = [W(a) for a in (
    "/ip4/9.9.9.9/tcp/44000/ws", "/ip4/9.9.9.9/tcp/61000/ws", "/ip4/9.9.9.10/tcp/61000/ws",
    "/ip4/198.51.100.7/tcp/44000/ws",  # public only by the policy's public_networks
    "/ip4/10.0.0.9/tcp/44000/ws",  # private: only with allow_private
    "/ip4/127.0.0.1/tcp/44000/ws",  # loopback: only with allow_loopback
    "/ip4/10.0.0.2/tcp/44000/ws",  # our local endpoint itself
    "/ip6/2600::1/tcp/44000/ws", "/ip6/2600::1/tcp/61000/wss", "/ip6/fe80::1/tcp/44000/ws",
    "/ip6/::ffff:9.9.9.9/tcp/44000/ws", "/ip6/::1/tcp/44000/ws",
    "/dns4/example.com/tcp/44000/ws",  # never used
)]
LOCALS = [W(a) for a in (
    "/ip4/10.0.0.2/tcp/44000/ws", "/ip4/10.0.0.2/tcp/51000/ws", "/ip4/9.9.9.9/tcp/44000/ws",
    "/ip6/fd00::2/tcp/44000/ws", "/ip6/2600::1/tcp/44000/wss", "/dns4/local.test/tcp/1/ws",
)]
OBSERVER_ADDRS = [W(a) for a in (
    "/ip4/8.8.8.8/tcp/4001/ws", "/ip4/8.8.8.9/tcp/4001/ws", "/ip6/2600::9/tcp/4001/ws",
    "/ip6/::ffff:8.8.8.8/tcp/4002/ws", "/dns4/peer.example/tcp/4001/ws",
)]
LISTENS = [tuple(W(a) for a in listen) for listen in (
    (),
    ("/ip4/0.0.0.0/tcp/44000/ws",),
    ("/ip4/10.0.0.2/tcp/44000/ws", "/ip6/::/tcp/44000/wss"),
    ("/ip4/198.51.100.5/tcp/44000/ws", "/ip4/0.0.0.0/tcp/51000/wss", "/ip4/0.0.0.0/tcp/0/ws"),
    (f"/ip4/9.9.9.9/tcp/44000/ws/p2p/{PEERS[0]}", "/ip6/2600::1/tcp/44000/ws"),
)]

_Op = tuple[str, int, tuple[int, int, int]]


def _ops(observed: list[int], locals_: list[int],
         observer_addrs: list[int]) -> st.SearchStrategy[list[_Op]]:
    op = st.one_of(
        st.tuples(st.just("observe"), st.integers(0, len(PEERS) - 1),
                  st.tuples(st.sampled_from(observed), st.sampled_from(locals_),
                            st.sampled_from(observer_addrs))),
        st.tuples(st.just("remove"), st.integers(0, len(PEERS) - 1), st.just((0, 0, 0))),
        st.tuples(st.just("listen"), st.integers(0, len(LISTENS) - 1), st.just((0, 0, 0))),
    )
    return st.lists(op, max_size=40)


_EVERYTHING = _ops(list(range(len(OBSERVED))), list(range(len(LOCALS))),
                   list(range(len(OBSERVER_ADDRS))))
_CROWDED = _ops([0, 1, 2], [0, 1], [0, 1, 3])  # one path, few endpoints, two peers per IP


@settings(max_examples=300, deadline=None)
@given(ops=_EVERYTHING, loopback=st.booleans(), private=st.booleans(),
       public=st.booleans(), limit=st.sampled_from([1, 2, 3, 16]),
       max_observers=st.sampled_from([2, 4, 1000]))
def test_the_index_equals_the_batch_functions_after_every_change(
        ops: list[tuple[str, int, tuple[int, int, int]]], loopback: bool, private: bool,
        public: bool, limit: int, max_observers: int) -> None:
    _check(ops, loopback=loopback, private=private, public=public, limit=limit,
           max_observers=max_observers)


@settings(max_examples=300, deadline=None)
@given(ops=_CROWDED, limit=st.sampled_from([1, 2, 16]), max_observers=st.sampled_from([3, 1000]))
def test_the_index_equals_the_batch_functions_with_observers_sharing_ips(
        ops: list[tuple[str, int, tuple[int, int, int]]], limit: int,
        max_observers: int) -> None:
    _check(ops, loopback=False, private=False, public=False, limit=limit,
           max_observers=max_observers)


def _check(ops: list[tuple[str, int, tuple[int, int, int]]], *, loopback: bool, private: bool,
           public: bool, limit: int, max_observers: int) -> None:
    """After each add, replace, remove or listen change: index == batch functions."""
    policy = AddressPolicy.from_strings(
        allow_loopback=loopback, allow_private=private,
        public_networks=["198.51.100.0/24"] if public else [])
    index = ObservationIndex(policy, limit=limit, max_observers=max_observers)
    current: OrderedDict[PeerId, ObservedAddr] = OrderedDict()  # oldest first
    listen: tuple[WsAddress, ...] = ()
    for step, (kind, a, (observed, local, observer_addr)) in enumerate(ops):
        before = (index.candidates, index.nat_mapping)
        if kind == "observe":
            obs = ObservedAddr(PEERS[a], OBSERVED[observed], LOCALS[local],
                               OBSERVER_ADDRS[observer_addr], at=float(step))
            current.pop(obs.observer, None)
            current[obs.observer] = obs
            while len(current) > max_observers:
                current.popitem(last=False)
            changed = index.observe(obs)
        elif kind == "remove":
            current.pop(PEERS[a], None)
            changed = index.remove(PEERS[a])
        else:
            listen = LISTENS[a]
            changed = index.set_listen_addrs(listen)
        expected = candidate_addresses(listen, current.values(), policy, limit=limit)
        report = analyse_nat_mapping(current.values(), policy=policy)
        assert index.candidates == expected
        assert index.nat_mapping_report() == report
        assert index.nat_mapping == report.mapping
        assert index.observations() == tuple(current.values())
        assert len(index) == len(current)
        assert changed == ((expected, report.mapping) != before)


def _obs(i: int, observed: str, *, local: str = "/ip4/10.0.0.2/tcp/51000/ws",
         observer_ip: str | None = None) -> ObservedAddr:
    peer = Keypair.generate().peer_id
    ip = observer_ip or f"8.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
    return ObservedAddr(peer, W(observed), W(local), W(f"/ip4/{ip}/tcp/4001/ws"), at=0.0)


def test_latest_observer_on_an_ip_wins_in_feeding_order() -> None:
    """Two peer ids on one IP: the later one fed decides (batch and index agree)."""
    policy = AddressPolicy()
    first = _obs(0, "/ip4/9.9.9.9/tcp/61000/ws", observer_ip="8.8.8.8")
    second = _obs(1, "/ip4/9.9.9.9/tcp/61001/ws", observer_ip="8.8.8.8")
    other = _obs(2, "/ip4/9.9.9.9/tcp/61001/ws", observer_ip="8.8.4.4")
    index = ObservationIndex(policy)
    for obs in (first, second, other):
        index.observe(obs)
    assert index.nat_mapping == "endpoint-independent"  # second's view, like other's
    assert analyse_nat_mapping([first, second, other], policy=policy).mapping == \
        "endpoint-independent"
    index.observe(first)  # re-fed: now the latest on 8.8.8.8
    assert index.nat_mapping == "endpoint-dependent"
    assert analyse_nat_mapping([second, other, first], policy=policy).mapping == \
        "endpoint-dependent"
    # the batch function also takes "latest" from the input order when one observer repeats
    assert analyse_nat_mapping([first, second, other, first], policy=policy).mapping == \
        "endpoint-dependent"


def test_change_reporting_and_validation() -> None:
    index = ObservationIndex(AddressPolicy())
    assert not index.set_listen_addrs(())
    assert not index.set_listen_addrs([W("/ip4/0.0.0.0/tcp/44000/ws")])  # no candidate
    obs = _obs(0, "/ip4/9.9.9.9/tcp/61000/ws", local="/ip4/10.0.0.2/tcp/44000/ws")
    assert index.observe(obs)  # two candidates appear
    assert index.candidates == (W("/ip4/9.9.9.9/tcp/44000/ws"), W("/ip4/9.9.9.9/tcp/61000/ws"))
    assert not index.observe(obs)  # the same again: nothing visible changes
    assert not index.remove(PEERS[0])  # never observed
    assert index.remove(obs.observer) and index.candidates == ()
    for bad in ({"limit": 0}, {"max_observers": 0}, {"min_observers": 1}):
        with pytest.raises(ValueError):
            ObservationIndex(AddressPolicy(), **bad)


def test_the_oldest_observer_is_dropped_beyond_max_observers() -> None:
    index = ObservationIndex(AddressPolicy(), max_observers=2)
    index.set_listen_addrs([W("/ip4/0.0.0.0/tcp/44000/ws")])
    a, b, c = (_obs(i, f"/ip4/9.9.9.{i + 1}/tcp/44000/ws") for i in range(3))
    index.observe(a)
    index.observe(b)
    index.observe(a)  # a is now the latest: b is the oldest
    index.observe(c)
    assert [o.observer for o in index.observations()] == [a.observer, c.observer]
    assert index.statistics().dropped == 1
    assert set(index.candidates) == {W("/ip4/9.9.9.1/tcp/44000/ws"),
                                     W("/ip4/9.9.9.3/tcp/44000/ws")}


# --- cost: count operations, never time them -------------------------------------------------


def _operations_per_update(observations: list[ObservedAddr], *, warm: int,
                           measured: int) -> float:
    index = ObservationIndex(AddressPolicy(), max_observers=10_000)
    index.set_listen_addrs([W("/ip4/0.0.0.0/tcp/51000/ws")])
    for obs in observations[:warm]:
        index.observe(obs)
    before = index.statistics().operations
    for obs in observations[warm:warm + measured]:
        index.observe(obs)
    assert len(index) == warm + measured
    return (index.statistics().operations - before) / measured


@pytest.mark.parametrize("kind", ["same address", "symmetric NAT"])
def test_an_update_costs_the_same_with_100_or_1000_observers(kind: str) -> None:
    """Every observer reports the same address (a cone NAT), or each its own port (symmetric)."""
    def observed(i: int) -> str:
        port = 61000 if kind == "same address" else 10000 + i
        return f"/ip4/9.9.9.9/tcp/{port}/ws"

    observations = [_obs(i, observed(i)) for i in range(1100)]
    small = _operations_per_update(observations, warm=100, measured=100)
    large = _operations_per_update(observations, warm=1000, measured=100)
    assert large <= small + 2  # O(1) in N (a heap adds O(log U): a few levels at most)
    assert large <= 30


def test_a_replacement_and_a_removal_cost_o1_amortised() -> None:
    observations = [_obs(i, "/ip4/9.9.9.9/tcp/61000/ws") for i in range(1000)]
    index = ObservationIndex(AddressPolicy(), max_observers=10_000)
    index.set_listen_addrs([W("/ip4/0.0.0.0/tcp/51000/ws")])
    for obs in observations:
        index.observe(obs)
    assert index.nat_mapping == "endpoint-independent"
    before = index.statistics().operations
    for i, obs in enumerate(observations[:100]):
        moved = ObservedAddr(obs.observer, W(f"/ip4/9.9.9.9/tcp/{62000 + i}/ws"), obs.local,
                             obs.observer_addr, at=1.0)
        index.observe(moved)  # a symmetric NAT now
        index.remove(observations[500 + i].observer)
    assert (index.statistics().operations - before) / 200 <= 30
    assert index.nat_mapping == "endpoint-independent"  # 800 of 900 still agree (rule 5)
    for i, obs in enumerate(observations[100:500]):
        index.observe(ObservedAddr(obs.observer, W(f"/ip4/9.9.9.9/tcp/{63000 + i}/ws"),
                                   obs.local, obs.observer_addr, at=2.0))
    assert index.nat_mapping == "endpoint-dependent"  # 400 of 900 agree: no majority
    assert index.statistics().rebuilds == 1  # the listen addresses, once
