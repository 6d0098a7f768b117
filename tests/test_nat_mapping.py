"""NAT mapping classification: table-driven cases, path grouping, independence of observers."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    AddressPolicy,
    Keypair,
    NatMapping,
    ObservedAddr,
    PeerId,
    WsAddress,
    analyse_nat_mapping,
    classify_nat_mapping,
)

PEERS = [Keypair.generate().peer_id for _ in range(6)]
LOCAL = "192.168.1.5:44000"


def _ws(endpoint: str) -> WsAddress:
    host, port = endpoint.rsplit(":", 1)
    kind = "ip6" if ":" in host else "ip4"
    return WsAddress.parse(f"/{kind}/{host.strip('[]')}/tcp/{port}/ws")


def _obs(observer: int | PeerId, observed: str, local: str = LOCAL,
         observer_ip: str | None = None) -> ObservedAddr:
    peer = PEERS[observer] if isinstance(observer, int) else observer
    index = PEERS.index(peer) if peer in PEERS else 99
    remote = observer_ip or f"203.0.113.{10 + index}"
    return ObservedAddr(peer, _ws(observed), _ws(local), _ws(f"{remote}:4001"), at=0.0)


CASES: list[tuple[str, list[ObservedAddr], NatMapping]] = [
    ("no observations", [], "unknown"),
    ("one observer", [_obs(0, "198.18.0.1:44000")], "unknown"),
    ("same observer twice", [_obs(0, "8.8.4.4:1000"), _obs(0, "8.8.4.4:2000")], "unknown"),
    ("public host, no NAT",
     [_obs(0, "9.9.9.9:44000", "9.9.9.9:44000"), _obs(1, "9.9.9.9:44000", "9.9.9.9:44000")],
     "none"),
    ("cone NAT, port preserved",
     [_obs(0, "9.9.9.9:44000"), _obs(1, "9.9.9.9:44000"), _obs(2, "9.9.9.9:44000")],
     "endpoint-independent"),
    ("cone NAT, port translated",
     [_obs(0, "9.9.9.9:61000"), _obs(1, "9.9.9.9:61000")], "endpoint-independent"),
    ("symmetric NAT", [_obs(0, "9.9.9.9:61000"), _obs(1, "9.9.9.9:61001")],
     "endpoint-dependent"),
    ("address pool", [_obs(0, "9.9.9.9:61000"), _obs(1, "9.9.9.10:61000")],
     "endpoint-dependent"),
    ("different local ports are not compared",
     [_obs(0, "9.9.9.9:61000", "192.168.1.5:50001"),
      _obs(1, "9.9.9.9:61001", "192.168.1.5:50002")], "unknown"),
    ("two peer ids on one IP count once",
     [_obs(0, "9.9.9.9:61000", observer_ip="203.0.113.50"),
      _obs(1, "9.9.9.9:61001", observer_ip="203.0.113.50")], "unknown"),
    ("DNS observed addresses are ignored",
     [_obs(0, "9.9.9.9:61000"),
      ObservedAddr(PEERS[1], WsAddress.parse("/dns4/example.com/tcp/1/ws"), _ws(LOCAL),
                   _ws("203.0.113.11:4001"), at=0.0)], "unknown"),
    ("IPv4-mapped IPv6 is the IPv4 address",
     [_obs(0, "[::ffff:9.9.9.9]:61000"), _obs(1, "9.9.9.9:61000")], "endpoint-independent"),
    ("IPv6 without NAT",
     [_obs(0, "[2606:4700::1]:44000", "[2606:4700::1]:44000"),
      _obs(1, "[2606:4700::1]:44000", "[2606:4700::1]:44000")], "none"),
]


@pytest.mark.parametrize(("observations", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_classification_table(observations: list[ObservedAddr], expected: NatMapping) -> None:
    assert classify_nat_mapping(observations) == expected


def test_loopback_observers_are_not_compared_with_internet_observers() -> None:
    observations = [
        _obs(0, "127.0.0.1:44000", "127.0.0.1:44000", observer_ip="127.0.0.1"),
        _obs(1, "9.9.9.9:61000"),
        _obs(2, "9.9.9.9:61000"),
        _obs(3, "192.168.1.5:44000", observer_ip="192.168.1.7"),  # a LAN peer
    ]
    report = analyse_nat_mapping(observations)
    assert report.mapping == "endpoint-independent"
    assert report.scope == "public" and report.observers == 2
    assert report.local == ("192.168.1.5", 44000)
    assert report.external == (("9.9.9.9", 61000),)


def test_public_path_preferred_over_larger_lan_group() -> None:
    lan = [_obs(i, "192.168.1.5:44000", observer_ip=f"192.168.1.{20 + i}") for i in range(4)]
    wan = [_obs(4, "9.9.9.9:61000"), _obs(5, "9.9.9.9:61002")]
    assert classify_nat_mapping(lan) == "none"
    assert classify_nat_mapping(lan + wan) == "endpoint-dependent"


def test_loopback_lab_and_policy_filter() -> None:
    lab = [_obs(i, "127.0.0.1:44000", "127.0.0.1:44000", observer_ip=f"127.0.0.{2 + i}")
           for i in range(3)]
    assert classify_nat_mapping(lab) == "none"
    assert classify_nat_mapping(lab, policy=AddressPolicy()) == "unknown"  # loopback dropped
    assert classify_nat_mapping(lab, policy=AddressPolicy(allow_loopback=True)) == "none"


def test_policy_public_networks_define_the_public_path() -> None:
    policy = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"], allow_private=True)
    observations = [
        _obs(0, "198.51.100.1:61000", "10.0.0.2:44000"),
        _obs(1, "198.51.100.1:61000", "10.0.0.2:44000"),
        _obs(2, "10.0.0.2:44000", "10.0.0.2:44000", observer_ip="10.0.0.3"),
        _obs(3, "10.0.0.2:44000", "10.0.0.2:44000", observer_ip="10.0.0.4"),
        _obs(4, "10.0.0.2:44000", "10.0.0.2:44000", observer_ip="10.0.0.5"),
    ]
    report = analyse_nat_mapping(observations, policy=policy)
    assert (report.mapping, report.scope) == ("endpoint-independent", "public")


def test_latest_observation_of_a_peer_wins() -> None:
    observations = [_obs(0, "9.9.9.9:1000"), _obs(1, "9.9.9.9:2000"), _obs(0, "9.9.9.9:2000")]
    assert classify_nat_mapping(observations) == "endpoint-independent"


def test_min_observers() -> None:
    observations = [_obs(i, "9.9.9.9:61000") for i in range(3)]
    assert classify_nat_mapping(observations, min_observers=3) == "endpoint-independent"
    assert classify_nat_mapping(observations, min_observers=4) == "unknown"
    with pytest.raises(ValueError):
        classify_nat_mapping(observations, min_observers=1)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(60000, 60003)), max_size=12))
def test_mapping_agrees_with_distinct_ports(pairs: list[tuple[int, int]]) -> None:
    latest = {peer: port for peer, port in pairs}
    observations = [_obs(peer, f"9.9.9.9:{port}") for peer, port in pairs]
    result = classify_nat_mapping(observations)
    top = max(Counter(latest.values()).values(), default=0)
    if len(latest) < 2:
        assert result == "unknown"
    elif top >= 2 and 2 * top > len(latest):  # rule 5: a majority of at least two
        assert result == "endpoint-independent"
    else:
        assert result == "endpoint-dependent"


@pytest.mark.parametrize(("honest", "liars", "collude", "expected"), [
    (5, 2, False, "endpoint-independent"),  # the simulator's wrong_observed scenario
    (5, 2, True, "endpoint-independent"),
    (3, 2, True, "endpoint-independent"),
    (2, 2, True, "endpoint-dependent"),  # no majority: nothing to trust
    (1, 1, False, "endpoint-dependent"),  # two observers that disagree, as before
])
def test_a_majority_of_observers_outweighs_observers_that_lie(
        honest: int, liars: int, collude: bool, expected: NatMapping) -> None:
    """Identify's observed address is the observer's word: a liar reporting another
    endpoint must not make a cone NAT look symmetric while most observers agree."""
    peers = [Keypair.from_seed(bytes([100 + i]) * 32).peer_id for i in range(honest + liars)]
    observations = [_obs(peers[i], "9.9.9.9:61000", observer_ip=f"203.0.113.{i + 1}")
                    for i in range(honest)]
    for k in range(liars):
        seen = "9.9.9.7:62000" if collude else f"9.9.9.{20 + k}:{62000 + k}"
        observations.append(_obs(peers[honest + k], seen, observer_ip=f"198.51.100.{k + 1}"))
    assert classify_nat_mapping(observations) == expected
