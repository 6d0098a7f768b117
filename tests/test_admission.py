"""InboundAdmission: caps per IP and subnet, separate pending slots, fair eviction."""

from __future__ import annotations

import ipaddress

import pytest

from protocols import LocalProtocolError
from protocols.node._admission import (
    AdmissionLimits,
    AdmissionRefused,
    EvictConnection,
    InboundAdmission,
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_one_host_holding_every_slot_loses_them_to_newcomers_from_other_networks() -> None:
    adm = InboundAdmission(AdmissionLimits(max_connections=10, per_ip=10, per_subnet=10))
    for cid in range(10):  # a flooder holds every slot
        assert adm.handle_established(cid, ip("203.0.113.7"), inbound=True) is None
    # more from the flooder: refused, it cannot evict its own connections
    assert adm.handle_established(99, ip("203.0.113.7"), inbound=True) == AdmissionRefused(
        "too many connections from this IP")
    for n, cid in enumerate(range(100, 104)):  # honest newcomers from four networks
        decision = adm.handle_established(cid, ip(f"198.51.{n}.1"), inbound=True)
        assert isinstance(decision, EvictConnection)
        assert decision.connection_id == n  # the flooder's oldest first
    stats = adm.statistics()
    assert (stats.established, stats.evicted, stats.networks) == (10, 4, 5)


def test_busy_connections_are_not_evicted_and_an_equal_share_is_not_taken() -> None:
    adm = InboundAdmission(AdmissionLimits(max_connections=4, per_ip=4, per_subnet=4))
    for cid in range(2):
        adm.handle_established(cid, ip("203.0.113.7"), inbound=True)
    for cid in range(2, 4):
        adm.handle_established(cid, ip("198.51.100.1"), inbound=True)
    # both subnets hold 2; a newcomer from a third would make 1: evict the oldest idle one
    decision = adm.handle_established(10, ip("192.0.2.1"), inbound=True, protected={0})
    assert decision == EvictConnection(1, ipaddress.ip_network("203.0.113.0/24"))
    # now 203.0.113/24: 1, 198.51.100/24: 2, 192.0.2/24: 1; a second from 192.0.2 would
    # make 2, which is not fewer than 2: refused
    assert adm.handle_established(11, ip("192.0.2.2"), inbound=True) == AdmissionRefused(
        "connection limit reached")


def test_per_subnet_cap_and_mapped_ipv6_counts_as_ipv4() -> None:
    adm = InboundAdmission(AdmissionLimits(per_ip=8, per_subnet=3))
    assert adm.handle_established(1, ip("203.0.113.1"), inbound=True) is None
    assert adm.handle_established(2, ip("::ffff:203.0.113.2"), inbound=True) is None
    assert adm.handle_established(3, ip("203.0.113.3"), inbound=True) is None
    assert adm.handle_established(4, ip("203.0.113.4"), inbound=True) == AdmissionRefused(
        "too many connections from this network")
    adm.handle_closed(2)
    assert adm.handle_established(4, ip("203.0.113.4"), inbound=True) is None


def test_outbound_connections_are_counted_but_never_refused_or_evicted() -> None:
    adm = InboundAdmission(AdmissionLimits(max_connections=2, per_ip=1, per_subnet=1))
    assert adm.handle_established(1, ip("203.0.113.1"), inbound=False) is None
    assert adm.handle_established(2, ip("203.0.113.1"), inbound=False) is None  # over per_ip
    assert adm.handle_established(3, ip("198.51.100.1"), inbound=True) == AdmissionRefused(
        "connection limit reached")  # full of outbound: nothing evictable
    assert adm.statistics().established == 2


def test_pending_handshakes_have_their_own_slots() -> None:
    adm = InboundAdmission(AdmissionLimits(max_pending=3, pending_per_ip=2))
    assert adm.handle_pending(ip("203.0.113.7")) is None
    assert adm.handle_pending(ip("203.0.113.7")) is None
    assert adm.handle_pending(ip("203.0.113.7")) == AdmissionRefused(
        "too many handshakes in progress from this IP")
    assert adm.handle_pending(ip("198.51.100.1")) is None
    assert adm.handle_pending(ip("192.0.2.1")) == AdmissionRefused(
        "too many handshakes in progress")
    adm.handle_pending_ended(ip("203.0.113.7"))
    assert adm.handle_pending(ip("192.0.2.1")) is None
    with pytest.raises(LocalProtocolError):
        adm.handle_pending_ended(ip("10.9.9.9"))
    # established slots are untouched by any of this
    assert adm.statistics().established == 0 and adm.statistics().pending == 3


def test_closing_returns_every_count_to_zero() -> None:
    adm = InboundAdmission()
    for cid in range(50):
        adm.handle_established(cid, ip(f"198.51.{cid}.1"), inbound=cid % 2 == 0)
    for cid in range(50):
        adm.handle_closed(cid)
    adm.handle_closed(7)  # twice: ignored
    stats = adm.statistics()
    assert (stats.established, stats.networks) == (0, 0)
    assert adm._per_ip == {} and adm._inbound_by_subnet == {}
