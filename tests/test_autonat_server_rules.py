"""AutoNAT server rules: which address to dial, dial data, rate limits (exact windows)."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiaddr import Multiaddr

from protocols import (
    MAX_DIAL_DATA,
    MIN_DIAL_DATA,
    AddressPolicy,
    DialChoice,
    DialDataBudget,
    Keypair,
    LocalProtocolError,
    RateLimiter,
    RateLimitReason,
    RefusalReason,
    ResponseStatus,
    ValidationError,
    WsAddress,
    choose_dial_address,
    dial_data_chunks,
)

LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"])
CLIENT_IP = ipaddress.ip_address("198.51.100.7")
ME = Keypair.generate().peer_id
OTHER = Keypair.generate().peer_id


def _raw(text: str) -> bytes:
    return Multiaddr(text).to_bytes()  # type: ignore[no-any-return]


SAME = _raw("/ip4/198.51.100.7/tcp/44000/ws")
SAME_2 = _raw("/ip4/198.51.100.7/tcp/44001/ws")
OTHER_IP = _raw("/ip4/198.51.100.99/tcp/44000/ws")
PRIVATE = _raw("/ip4/10.0.0.5/tcp/44000/ws")
LOOPBACK = _raw("/ip4/127.0.0.1/tcp/44000/ws")
DNS = _raw("/dns4/example.com/tcp/443/wss")
QUIC = _raw("/ip4/198.51.100.7/udp/4001/quic-v1")
RELAY = _raw(f"/ip4/198.51.100.1/tcp/4001/ws/p2p/{OTHER}/p2p-circuit")


def _choose(addrs: tuple[bytes, ...], allow_other_ip: bool = False,
            rng: random.Random | None = None) -> DialChoice:
    return choose_dial_address(addrs, observed_ip=CLIENT_IP, policy=LAB,
                               allow_other_ip=allow_other_ip, requester=ME, rng=rng)


def test_dials_only_the_first_acceptable_address() -> None:
    choice = _choose((PRIVATE, SAME, SAME_2))
    assert choice.index == 1 and choice.addr == WsAddress.parse(SAME)
    assert choice.dial_data == 0 and choice.status is ResponseStatus.OK
    assert [(r.index, r.reason) for r in choice.rejected] == [(0, RefusalReason.POLICY)]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (RELAY, RefusalReason.RELAY),
        (QUIC, RefusalReason.UNPARSEABLE),
        (b"\xff\xff\xff", RefusalReason.UNPARSEABLE),
        (PRIVATE, RefusalReason.POLICY),
        (LOOPBACK, RefusalReason.POLICY),
        (_raw("/ip4/198.51.100.7/tcp/0/ws"), RefusalReason.POLICY),
        (DNS, RefusalReason.DNS),
        (OTHER_IP, RefusalReason.OTHER_IP),
        (_raw(f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{OTHER}"), RefusalReason.PEER_ID),
    ],
)
def test_refusals(raw: bytes, reason: RefusalReason) -> None:
    choice = _choose((raw,))
    assert not choice.accepted and choice.addr is None and choice.index is None
    assert choice.status is ResponseStatus.E_DIAL_REFUSED
    assert choice.refusal is reason and choice.dial_data == 0


def test_requesters_own_peer_id_is_accepted_and_stripped() -> None:
    choice = _choose((_raw(f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{ME}"),))
    assert choice.addr == WsAddress.parse(SAME)


def test_other_ip_requires_dial_data_when_allowed() -> None:
    choice = _choose((OTHER_IP, SAME), allow_other_ip=True)
    assert choice.index == 0 and choice.dial_data == MIN_DIAL_DATA
    amounts = {_choose((OTHER_IP,), allow_other_ip=True, rng=random.Random(seed)).dial_data
               for seed in range(50)}
    assert all(MIN_DIAL_DATA <= n <= MAX_DIAL_DATA for n in amounts) and len(amounts) > 1
    not_allowed = _choose((OTHER_IP, SAME))
    assert not_allowed.index == 1 and not_allowed.dial_data == 0


def test_unknown_observed_ip_always_needs_dial_data() -> None:
    choice = choose_dial_address((SAME,), observed_ip=None, policy=LAB, allow_other_ip=True)
    assert choice.dial_data == MIN_DIAL_DATA
    refused = choose_dial_address((SAME,), observed_ip=None, policy=LAB, allow_other_ip=False)
    assert refused.refusal is RefusalReason.OTHER_IP


def test_ipv4_mapped_observed_ip_matches() -> None:
    mapped = ipaddress.ip_address("::ffff:198.51.100.7")
    choice = choose_dial_address((SAME,), observed_ip=mapped, policy=LAB, allow_other_ip=False)
    assert choice.accepted and choice.dial_data == 0


@given(st.lists(st.sampled_from([SAME, SAME_2, OTHER_IP, PRIVATE, LOOPBACK, DNS, QUIC, RELAY]),
                min_size=1, max_size=8),
       st.booleans())
def test_choice_is_the_first_acceptable(addrs: list[bytes], allow_other_ip: bool) -> None:
    acceptable = {SAME, SAME_2} | ({OTHER_IP} if allow_other_ip else set())
    choice = _choose(tuple(addrs), allow_other_ip=allow_other_ip)
    first = next((i for i, raw in enumerate(addrs) if raw in acceptable), None)
    assert choice.index == first
    assert len(choice.rejected) == (len(addrs) if first is None else first)
    if first is not None:
        assert (choice.dial_data > 0) == (addrs[first] == OTHER_IP)


def test_dial_choice_validation() -> None:
    with pytest.raises(LocalProtocolError):
        DialChoice(0, None)
    with pytest.raises(LocalProtocolError):
        DialChoice(0, WsAddress.parse(SAME), dial_data=10)


# --- dial data -------------------------------------------------------------------


def test_dial_data_budget() -> None:
    budget = DialDataBudget(30_000)
    chunks = dial_data_chunks(30_000)
    assert sum(chunks) == 30_000 and max(chunks) == 4096 and len(chunks) == 8
    results = [budget.add(size) for size in chunks]
    assert results == [False] * 7 + [True] and budget.complete and budget.remaining == 0
    with pytest.raises(ValidationError):
        budget.add(1)  # nothing more was asked for


def test_dial_data_budget_rejects_bad_chunks() -> None:
    budget = DialDataBudget(30_000)
    with pytest.raises(ValidationError):
        budget.add(4097)
    with pytest.raises(ValidationError):
        budget.add(0)
    with pytest.raises(LocalProtocolError):
        DialDataBudget(10)
    with pytest.raises(LocalProtocolError):
        DialDataBudget(MAX_DIAL_DATA + 1)


def test_last_chunk_may_overshoot_only_within_one_chunk() -> None:
    budget = DialDataBudget(30_001)
    for _ in range(7):
        budget.add(4096)
    assert budget.remaining == 30_001 - 7 * 4096
    assert budget.add(4096) and budget.received < 2 * budget.target


def test_client_refuses_excessive_dial_data() -> None:
    assert dial_data_chunks(100_000)[-1] == 100_000 % 4096
    assert dial_data_chunks(0) == ()
    with pytest.raises(ValidationError):
        dial_data_chunks(100_001)
    with pytest.raises(ValidationError):
        dial_data_chunks(50_000, limit=40_000)


# --- rate limits -----------------------------------------------------------------

PEERS = [Keypair.generate().peer_id for _ in range(70)]


def test_per_peer_rate_limit_with_sliding_window() -> None:
    limiter = RateLimiter(global_per_minute=60, per_peer_per_minute=3, concurrent_per_peer=5)
    peer = PEERS[0]
    for t in (0.0, 10.0, 20.0):
        assert limiter.try_acquire(peer, t) is None
        limiter.release(peer)
    assert limiter.try_acquire(peer, 59.999) is RateLimitReason.PER_PEER
    assert limiter.try_acquire(PEERS[1], 59.999) is None  # other peers unaffected
    assert limiter.try_acquire(peer, 60.0) is None  # the request at 0.0 left the window
    assert limiter.try_acquire(peer, 60.0) is RateLimitReason.PER_PEER
    stats = limiter.statistics()
    assert stats.rejected == ((RateLimitReason.PER_PEER, 2),)
    assert (stats.admitted, stats.tracked_peers) == (5, 2)


def test_global_rate_limit() -> None:
    limiter = RateLimiter(global_per_minute=60, per_peer_per_minute=12, concurrent_per_peer=2)
    for i in range(60):
        assert limiter.try_acquire(PEERS[i], float(i) * 0.5) is None
    assert limiter.try_acquire(PEERS[60], 30.0) is RateLimitReason.GLOBAL
    assert limiter.try_acquire(PEERS[60], 59.99) is RateLimitReason.GLOBAL
    assert limiter.try_acquire(PEERS[60], 60.0) is None  # the first admission expired
    assert limiter.try_acquire(PEERS[61], 60.0) is RateLimitReason.GLOBAL
    assert limiter.statistics().admitted == 61


def test_concurrency_per_peer() -> None:
    limiter = RateLimiter(concurrent_per_peer=2)
    peer = PEERS[0]
    assert limiter.try_acquire(peer, 0.0) is None
    assert limiter.try_acquire(peer, 0.0) is None
    assert limiter.try_acquire(peer, 0.0) is RateLimitReason.CONCURRENT
    assert limiter.in_flight(peer) == 2
    limiter.release(peer)
    assert limiter.try_acquire(peer, 1.0) is None
    limiter.release(peer)
    limiter.release(peer)
    limiter.release(peer)  # extra releases are harmless
    assert limiter.in_flight(peer) == 0


def test_rejections_are_not_counted_against_the_window() -> None:
    limiter = RateLimiter(per_peer_per_minute=1, concurrent_per_peer=5)
    assert limiter.try_acquire(PEERS[0], 0.0) is None
    for t in range(1, 60):
        assert limiter.try_acquire(PEERS[0], float(t)) is RateLimitReason.PER_PEER
    assert limiter.try_acquire(PEERS[0], 60.0) is None


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(global_per_minute=1000, per_peer_per_minute=12)
    for i, peer in enumerate(PEERS):
        limiter.try_acquire(peer, float(i))
        limiter.release(peer)
    # peers admitted at 0..9 s left the window at 69 s
    assert limiter.statistics().tracked_peers == 60
    limiter.try_acquire(PEERS[0], 200.0)
    assert limiter.statistics().tracked_peers == 1
    busy = RateLimiter()
    busy.try_acquire(PEERS[1], 0.0)  # never released: kept while in flight
    busy.try_acquire(PEERS[2], 500.0)
    assert busy.statistics().tracked_peers == 2 and busy.in_flight(PEERS[1]) == 1


def test_rate_limiter_validation() -> None:
    with pytest.raises(ValueError):
        RateLimiter(global_per_minute=-1)
    with pytest.raises(ValueError):
        RateLimiter(window=0.0)


def test_requesters_own_non_routable_ip_is_dialable_but_no_other() -> None:
    global_only = AddressPolicy()
    own = WsAddress.parse("/ip4/127.0.0.1/tcp/44001/ws").to_bytes()
    other = WsAddress.parse("/ip4/127.0.0.2/tcp/44001/ws").to_bytes()
    loopback = ipaddress.ip_address("127.0.0.1")
    choice = choose_dial_address((own,), observed_ip=loopback, policy=global_only,
                                 allow_other_ip=True)
    assert choice.accepted and choice.dial_data == 0
    refused = choose_dial_address((other,), observed_ip=loopback, policy=global_only,
                                  allow_other_ip=True)
    assert not refused.accepted and refused.refusal is RefusalReason.POLICY
    private = WsAddress.parse("/ip4/10.0.0.5/tcp/44001/ws").to_bytes()
    lan = choose_dial_address((private,), observed_ip=ipaddress.ip_address("10.0.0.5"),
                              policy=global_only, allow_other_ip=False)
    assert lan.accepted


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_many_peer_ids_on_one_host_share_that_hosts_limits() -> None:
    limiter = RateLimiter(global_per_minute=1200, per_peer_per_minute=12,
                          concurrent_per_peer=2, per_ip_per_minute=24,
                          per_subnet_per_minute=48, concurrent_per_ip=4)
    ids = [Keypair.generate().peer_id for _ in range(92)]
    host = _ip("203.0.113.7")
    admitted = 0
    for peer in ids[:60]:  # 60 fresh identities, one host, one request each
        if limiter.try_acquire(peer, 1.0, ip=host) is None:
            admitted += 1
            limiter.release(peer, ip=host)
    assert admitted == 24  # the per-IP budget, however many ids
    assert limiter.check(ids[60], 1.0, ip=host) is RateLimitReason.PER_IP
    neighbour = _ip("203.0.113.8")  # same /24: shares the subnet budget
    for peer in ids[60:90]:
        limiter.try_acquire(peer, 2.0, ip=neighbour)
        limiter.release(peer, ip=neighbour)
    assert limiter.check(ids[90], 2.0, ip=_ip("203.0.113.9")) is RateLimitReason.PER_SUBNET
    honest = _ip("198.51.100.1")  # another network is not affected at all
    assert limiter.try_acquire(ids[91], 2.0, ip=honest) is None
    stats = limiter.statistics()
    assert dict(stats.rejected)[RateLimitReason.PER_IP] == 36 + 6  # 30 on the neighbour


def test_concurrency_per_ip_and_mapped_addresses_count_as_ipv4() -> None:
    limiter = RateLimiter(concurrent_per_peer=2, concurrent_per_ip=3)
    host, mapped = _ip("203.0.113.7"), _ip("::ffff:203.0.113.7")
    assert limiter.try_acquire(PEERS[0], 0.0, ip=host) is None
    assert limiter.try_acquire(PEERS[1], 0.0, ip=mapped) is None
    assert limiter.try_acquire(PEERS[2], 0.0, ip=host) is None
    assert limiter.try_acquire(PEERS[3], 0.0, ip=mapped) is RateLimitReason.CONCURRENT_IP
    limiter.release(PEERS[1], ip=mapped)
    assert limiter.try_acquire(PEERS[3], 0.0, ip=host) is None


def test_check_has_no_side_effects_and_memory_returns_to_empty() -> None:
    limiter = RateLimiter(per_peer_per_minute=1)
    host = _ip("203.0.113.7")
    for _ in range(5):
        assert limiter.check(PEERS[0], 0.0, ip=host) is None  # asking admits nothing
    assert limiter.try_acquire(PEERS[0], 0.0, ip=host) is None
    limiter.release(PEERS[0], ip=host)
    assert limiter.statistics().tracked_networks == 2  # the IP and its /24
    limiter.check(PEERS[1], 61.0)
    stats = limiter.statistics()
    assert (stats.tracked_peers, stats.tracked_networks, stats.admitted) == (0, 0, 1)
