"""Client-side AutoNAT choices: candidate addresses and probe servers."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    AddressPolicy,
    Keypair,
    ObservedAddr,
    ProbeServer,
    WsAddress,
    candidate_addresses,
    choose_servers,
)

PEERS = [Keypair.generate().peer_id for _ in range(12)]
LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"])
LISTEN = WsAddress.parse("/ip4/0.0.0.0/tcp/44000/ws")


def _a(text: str) -> WsAddress:
    return WsAddress.parse(text)


def _obs(i: int, observed: str, local_port: int = 51234,
         local_ip: str = "10.0.0.2") -> ObservedAddr:
    return ObservedAddr(PEERS[i], _a(f"/ip4/{observed}/ws"),
                        _a(f"/ip4/{local_ip}/tcp/{local_port}/ws"),
                        _a(f"/ip4/203.0.113.{i + 1}/tcp/4001/ws"), at=0.0)


def test_routable_listen_addresses_only() -> None:
    listen = [LISTEN, _a("/ip4/127.0.0.1/tcp/44000/ws"), _a("/ip4/198.51.100.5/tcp/44000/ws"),
              _a("/ip4/198.51.100.5/tcp/0/ws"), _a("/dns4/node.example.com/tcp/443/wss"),
              _a(f"/ip4/198.51.100.6/tcp/44000/wss/p2p/{PEERS[0]}")]
    assert candidate_addresses(listen, [], LAB) == (
        _a("/ip4/198.51.100.5/tcp/44000/ws"), _a("/ip4/198.51.100.6/tcp/44000/wss"))


def test_observation_from_ephemeral_port_is_translated_onto_listen_port() -> None:
    observations = [_obs(0, "198.51.100.9/tcp/61000")]
    assert candidate_addresses([LISTEN], observations, LAB) == (
        _a("/ip4/198.51.100.9/tcp/44000/ws"),)


def test_observation_from_listen_port_keeps_observed_port_too() -> None:
    observations = [_obs(0, "198.51.100.9/tcp/61000", local_port=44000)]
    result = candidate_addresses([LISTEN], observations, LAB)
    assert set(result) == {_a("/ip4/198.51.100.9/tcp/44000/ws"),
                           _a("/ip4/198.51.100.9/tcp/61000/ws")}
    # a concrete listen IP must match the connection's local IP to count as "same port"
    other_ip = [_a("/ip4/10.0.0.9/tcp/44000/ws")]
    assert candidate_addresses(other_ip, observations, LAB) == (
        _a("/ip4/198.51.100.9/tcp/44000/ws"),)


def test_secure_flag_and_family_come_from_the_listen_address() -> None:
    listen = [_a("/ip4/0.0.0.0/tcp/443/wss"), _a("/ip6/::/tcp/4443/ws")]
    observations = [_obs(0, "198.51.100.9/tcp/61000")]
    assert candidate_addresses(listen, observations, LAB) == (_a("/ip4/198.51.100.9/tcp/443/wss"),)


def test_policy_filters_observations() -> None:
    observations = [_obs(0, "10.0.0.2/tcp/61000"), _obs(1, "127.0.0.1/tcp/61000"),
                    _obs(2, "192.0.2.1/tcp/61000")]
    assert candidate_addresses([LISTEN], observations, LAB) == ()
    loopback = AddressPolicy(allow_loopback=True)
    assert candidate_addresses([LISTEN], observations, loopback) == (
        _a("/ip4/127.0.0.1/tcp/44000/ws"),)


def test_ordered_by_observers_then_listen_then_text() -> None:
    listen = [_a("/ip4/198.51.100.200/tcp/44000/ws"), LISTEN]
    observations = [
        _obs(0, "198.51.100.9/tcp/61000"),
        _obs(1, "198.51.100.8/tcp/61000"),
        _obs(2, "198.51.100.8/tcp/61001"),
        _obs(2, "198.51.100.8/tcp/61002"),  # same observer again: still one
        _obs(3, "198.51.100.7/tcp/61000"),
        _obs(4, "198.51.100.7/tcp/61000"),
        _obs(5, "198.51.100.9/tcp/61000"),
    ]
    assert candidate_addresses(listen, observations, LAB) == (
        _a("/ip4/198.51.100.7/tcp/44000/ws"),
        _a("/ip4/198.51.100.8/tcp/44000/ws"),
        _a("/ip4/198.51.100.9/tcp/44000/ws"),
        _a("/ip4/198.51.100.200/tcp/44000/ws"),
    )
    assert len(candidate_addresses(listen, observations, LAB, limit=2)) == 2


def test_an_address_one_observer_reports_is_dropped_once_another_has_two() -> None:
    """Found by the simulator's ``wrong_observed`` scenario: each lying observer's address
    became a candidate, was probed, failed, and made 22 of 54 hosts ``private`` before
    their real address was confirmed. Once one address is corroborated, the addresses of
    single observers go (listen addresses stay); before that, every address counts."""
    listen = [_a("/ip4/198.51.100.200/tcp/44000/ws"), LISTEN]
    honest = [_obs(i, "198.51.100.8/tcp/61000") for i in range(3)]
    liars = [_obs(3, "198.51.100.66/tcp/61000"), _obs(4, "198.51.100.77/tcp/61000")]
    assert candidate_addresses(listen, honest + liars, LAB) == (
        _a("/ip4/198.51.100.8/tcp/44000/ws"), _a("/ip4/198.51.100.200/tcp/44000/ws"))
    first_two = [honest[0], liars[0]]  # one observer each: nothing is corroborated yet
    assert set(candidate_addresses(listen, first_two, LAB)) == {
        _a("/ip4/198.51.100.8/tcp/44000/ws"), _a("/ip4/198.51.100.66/tcp/44000/ws"),
        _a("/ip4/198.51.100.200/tcp/44000/ws")}


def test_listen_address_also_observed_ranks_by_observers() -> None:
    public = _a("/ip4/198.51.100.5/tcp/44000/ws")
    observations = [_obs(i, "198.51.100.5/tcp/44000", local_port=44000,
                         local_ip="198.51.100.5") for i in range(2)]
    assert candidate_addresses([public], observations, LAB) == (public,)


@given(st.lists(st.tuples(st.integers(0, 11), st.integers(1, 9), st.integers(60000, 60002),
                          st.booleans()), max_size=20))
def test_candidates_are_routable_unique_and_order_independent(
    raw: list[tuple[int, int, int, bool]],
) -> None:
    observations = [_obs(i, f"198.51.100.{host}/tcp/{port}", 44000 if same else 50000)
                    for i, host, port, same in raw]
    result = candidate_addresses([LISTEN], observations, LAB)
    assert len(set(result)) == len(result)
    assert all(LAB.is_routable(addr) and addr.peer_id is None for addr in result)
    assert result == candidate_addresses([LISTEN], list(reversed(observations)), LAB)


# --- servers -----------------------------------------------------------------------


def _server(i: int, ip: str, protocols: tuple[str, ...] = (DIAL_REQUEST_PROTOCOL_ID,)
            ) -> ProbeServer:
    return ProbeServer(PEERS[i], _a(f"/ip4/{ip}/tcp/4001/ws/p2p/{PEERS[i]}"), protocols)


def test_only_dial_request_servers_not_excluded() -> None:
    servers = [_server(0, "198.51.100.1", ()), _server(1, "198.51.100.2"),
               _server(2, "198.51.101.3"), _server(3, "198.51.102.4")]
    chosen = choose_servers(servers, count=3, exclude={PEERS[2]}, rng=random.Random(1))
    assert {s.peer_id for s in chosen} == {PEERS[1], PEERS[3]}
    assert choose_servers(servers, count=0, rng=random.Random(1)) == ()


def test_prefers_distinct_subnets_then_distinct_ips() -> None:
    same_subnet = [_server(i, f"198.51.100.{i + 1}") for i in range(5)]
    same_ip = [_server(5 + i, "203.0.113.7") for i in range(3)]
    lone = [_server(8, "192.0.2.9")]
    for seed in range(30):
        chosen = choose_servers(same_subnet + same_ip + lone, count=3, rng=random.Random(seed))
        subnets = {str(s.addr.host).rsplit(".", 1)[0] for s in chosen}
        assert len(subnets) == 3, seed
        four = choose_servers(same_ip + same_subnet, count=4, rng=random.Random(seed))
        hosts = Counter(s.addr.host for s in four)
        assert hosts["203.0.113.7"] == 1 and len(hosts) == 4  # new IPs before a repeated one


def test_deterministic_with_seeded_rng_and_random_among_equals() -> None:
    servers = [_server(i, f"198.51.{100 + i}.1") for i in range(10)]
    first = choose_servers(servers, count=3, rng=random.Random(42))
    assert first == choose_servers(list(reversed(servers)), count=3, rng=random.Random(42))
    picks = {choose_servers(servers, count=1, rng=random.Random(seed))[0].peer_id
             for seed in range(40)}
    assert len(picks) > 3


def test_duplicate_peers_count_once() -> None:
    servers = [_server(0, "198.51.100.1"), _server(0, "198.51.101.1"),
               _server(1, "198.51.102.1")]
    chosen = choose_servers(servers, count=3, rng=random.Random(0))
    assert sorted(s.peer_id for s in chosen) == sorted([PEERS[0], PEERS[1]])


@pytest.mark.parametrize("count", [-1])
def test_choose_servers_validation(count: int) -> None:
    with pytest.raises(ValueError):
        choose_servers([], count=count, rng=random.Random(0))
