"""UpgradeQueue: caps per IP, subnet and in total for connections awaiting the upgrade."""

from __future__ import annotations

from ipaddress import ip_address as ip
from ipaddress import ip_network as net

import pytest

from protocols import (
    AdmissionRefused,
    EvictConnection,
    LocalProtocolError,
    UpgradeLimits,
    UpgradeQueue,
)


def test_an_ip_or_a_subnet_at_its_cap_is_refused_and_others_go_on() -> None:
    queue = UpgradeQueue(UpgradeLimits(max_pending=100, per_ip=2, per_subnet=3))
    assert queue.handle_accepted(1, ip("203.0.113.7")) is None
    assert queue.handle_accepted(2, ip("::ffff:203.0.113.7")) is None  # the same host
    assert queue.handle_accepted(3, ip("203.0.113.7")) == AdmissionRefused("upgrade_ip")
    assert queue.handle_accepted(4, ip("203.0.113.8")) is None
    assert queue.handle_accepted(5, ip("203.0.113.9")) == AdmissionRefused("upgrade_subnet")
    assert queue.handle_accepted(6, ip("198.51.100.1")) is None  # another network
    queue.handle_done(1)
    assert queue.handle_accepted(7, ip("203.0.113.9")) is None
    stats = queue.statistics()
    assert stats.pending == 4
    assert stats.refused == (("upgrade_ip", 1), ("upgrade_subnet", 1))


def test_a_full_queue_evicts_the_oldest_of_the_most_represented_subnet() -> None:
    queue = UpgradeQueue(UpgradeLimits(max_pending=6, per_ip=8, per_subnet=8))
    for ticket in range(4):  # a flooder: four waiting from 203.0.113/24
        assert queue.handle_accepted(ticket, ip(f"203.0.113.{ticket + 1}")) is None
    assert queue.handle_accepted(10, ip("198.51.100.1")) is None
    assert queue.handle_accepted(11, ip("198.51.100.2")) is None  # full: 4 + 2
    assert queue.handle_accepted(20, ip("192.0.2.1")) == EvictConnection(0, net("203.0.113.0/24"))
    assert queue.handle_accepted(21, ip("192.0.2.2")) == EvictConnection(1, net("203.0.113.0/24"))
    # now 203.0.113/24: 2, 198.51.100/24: 2, 192.0.2/24: 2; a third from 192.0.2 would
    # make 3, more than any other: refused; so is another from the flooder
    assert queue.handle_accepted(22, ip("192.0.2.3")) == AdmissionRefused("upgrade_full")
    assert queue.handle_accepted(5, ip("203.0.113.9")) == AdmissionRefused("upgrade_full")
    # a fourth network still evicts, from one of the subnets with two
    decision = queue.handle_accepted(30, ip("10.1.2.3"))
    assert isinstance(decision, EvictConnection) and decision.connection_id in (2, 10, 20)
    queue.handle_done(decision.connection_id)  # the evicted one's task reports too: ignored
    assert queue.statistics().pending == 6 and queue.statistics().evicted == 3


def test_a_flooder_cannot_evict_its_own_connections() -> None:
    queue = UpgradeQueue(UpgradeLimits(max_pending=4, per_ip=8, per_subnet=8))
    for ticket in range(4):
        assert queue.handle_accepted(ticket, ip("203.0.113.7")) is None
    assert queue.handle_accepted(4, ip("203.0.113.8")) == AdmissionRefused("upgrade_full")
    assert queue.statistics().evicted == 0


def test_the_largest_subnet_is_tracked_as_counts_go_up_and_down() -> None:
    queue = UpgradeQueue(UpgradeLimits(max_pending=5, per_ip=8, per_subnet=8))
    for ticket in range(3):
        queue.handle_accepted(ticket, ip("203.0.113.1"))
    queue.handle_accepted(3, ip("198.51.100.1"))
    queue.handle_accepted(4, ip("198.51.100.2"))
    for ticket in range(3):  # the flooder's connections finished their upgrade
        queue.handle_done(ticket)
    queue.handle_accepted(5, ip("203.0.113.1"))
    queue.handle_accepted(6, ip("203.0.113.1"))
    queue.handle_accepted(7, ip("203.0.113.1"))  # full again: 198.51.100/24: 2, 203.0.113/24: 3
    assert queue.handle_accepted(8, ip("192.0.2.1")) == EvictConnection(5, net("203.0.113.0/24"))
    # 203.0.113/24: 2, 198.51.100/24: 2; a second from 192.0.2 would make 2 as well
    assert queue.handle_accepted(9, ip("192.0.2.2")) == AdmissionRefused("upgrade_full")
    assert queue.handle_accepted(10, ip("10.0.0.1")) in (
        EvictConnection(3, net("198.51.100.0/24")), EvictConnection(6, net("203.0.113.0/24")))


def test_ipv6_counts_per_56_and_every_count_returns_to_zero() -> None:
    queue = UpgradeQueue(UpgradeLimits(max_pending=50, per_ip=1, per_subnet=2))
    assert queue.handle_accepted(1, ip("2001:db8:0:1::1")) is None
    assert queue.handle_accepted(2, ip("2001:db8:0:2::1")) is None  # the same /56
    assert queue.handle_accepted(3, ip("2001:db8:0:3::1")) == AdmissionRefused("upgrade_subnet")
    assert queue.handle_accepted(4, ip("2001:db8:0:100::1")) is None  # another /56
    with pytest.raises(LocalProtocolError):
        queue.handle_accepted(4, ip("192.0.2.1"))
    for ticket in (1, 2, 4, 4):
        queue.handle_done(ticket)
    assert queue.statistics().pending == 0
    assert queue._per_ip == {} and queue._by_subnet == {} and queue._buckets == {}
    assert queue._largest == 0


@pytest.mark.parametrize("bad", [{"max_pending": 0}, {"per_ip": True}, {"ipv4_prefix": 33}])
def test_limits_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        UpgradeLimits(**bad)  # type: ignore[arg-type]
