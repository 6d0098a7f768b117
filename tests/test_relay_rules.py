"""The relay's admission rules (sans-io, no Trio): reservations, circuits, limits, time."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import AddressPolicy, Keypair, LocalProtocolError, PeerId
from protocols.relay import (
    CircuitAdmitted,
    CircuitDirection,
    CircuitEnd,
    CircuitExpired,
    CircuitRefused,
    CircuitState,
    RelayConfig,
    RelayRules,
    RelayStatus,
    ReservationExpired,
    ReservationGranted,
    ReservationRefused,
)

LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24", "203.0.113.0/24"])


def peer(n: int) -> PeerId:
    return Keypair.from_seed(n.to_bytes(32, "big")).peer_id


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def rules(**settings: float) -> RelayRules:
    return RelayRules(RelayConfig(**settings), LAB)  # type: ignore[arg-type]


def test_defaults_are_go_libp2ps() -> None:
    config = RelayConfig()
    assert (config.relay_max_reservations, config.relay_max_reservations_per_ip,
            config.relay_max_circuits_per_peer) == (128, 8, 16)
    assert config.relay_reservation_ttl == 3600.0 and config.relay_circuit_duration == 120.0
    assert config.relay_circuit_data == 128 * 1024


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"relay_max_reservations": 0}, "relay_max_reservations must be > 0"),
    ({"relay_circuit_data": 1.5}, "relay_circuit_data must be an integer"),
    ({"relay_reservation_ttl": "1h"}, "relay_reservation_ttl must be a number"),
    ({"relay_max_circuits": True}, "relay_max_circuits must be a number"),
    ({"relay_circuit_duration": 0.5}, "relay_circuit_duration must be >= 1"),
])
def test_bad_settings_name_the_key(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RelayConfig(**kwargs)  # type: ignore[arg-type]


# --- reservations ------------------------------------------------------------------------


def test_a_reservation_is_granted_then_renewed() -> None:
    relay = rules(relay_reservation_ttl=60.0)
    first = relay.handle_reserve(peer(1), ip("198.51.100.1"), now=10.0)
    assert first == ReservationGranted(peer(1), 60, 70.0, renewed=False)
    again = relay.handle_reserve(peer(1), ip("198.51.100.1"), now=40.0)
    assert again == ReservationGranted(peer(1), 60, 100.0, renewed=True)
    stats = relay.statistics()
    assert (stats.reservations, stats.reservations_granted, stats.reservations_renewed) == (1, 1, 1)


def test_reservations_expire_and_poll_timeout_says_when() -> None:
    relay = rules(relay_reservation_ttl=60.0)
    assert relay.poll_timeout() is None
    relay.handle_reserve(peer(1), ip("198.51.100.1"), now=0.0)
    relay.handle_reserve(peer(2), ip("198.51.100.2"), now=5.0)
    assert relay.poll_timeout() == 60.0
    assert relay.handle_timeout(59.9) == []
    assert relay.handle_timeout(60.0) == [ReservationExpired(peer(1))]
    assert relay.has_reservation(peer(2), 64.9) and not relay.has_reservation(peer(2), 65.0)
    assert relay.statistics().reservations_expired == 2
    assert relay.poll_timeout() is None


def test_a_stale_reservation_is_never_used_even_without_handle_timeout() -> None:
    relay = rules(relay_reservation_ttl=60.0)
    relay.handle_reserve(peer(1), ip("198.51.100.1"), now=0.0)
    refused = relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), now=61.0)
    assert isinstance(refused, CircuitRefused) and refused.status is RelayStatus.NO_RESERVATION


@pytest.mark.parametrize(("limit", "ips", "refused_ip"), [
    ({"relay_max_reservations": 2}, ["198.51.100.1", "203.0.113.1"], "203.0.113.9"),
    ({"relay_max_reservations_per_ip": 2}, ["198.51.100.1", "198.51.100.1"], "198.51.100.1"),
    ({"relay_max_reservations_per_subnet": 2}, ["198.51.100.1", "198.51.100.2"],
     "198.51.100.3"),
])
def test_reservation_limits(limit: dict[str, int], ips: list[str], refused_ip: str) -> None:
    relay = rules(**limit)
    for n, address in enumerate(ips):
        assert isinstance(relay.handle_reserve(peer(n), ip(address), 0.0), ReservationGranted)
    refused = relay.handle_reserve(peer(99), ip(refused_ip), 0.0)
    assert isinstance(refused, ReservationRefused)
    assert refused.status is RelayStatus.RESOURCE_LIMIT_EXCEEDED
    # renewing a reservation already held never hits the limit it already counts in
    assert isinstance(relay.handle_reserve(peer(0), ip(ips[0]), 1.0), ReservationGranted)
    # and an ended reservation frees its place
    assert relay.handle_unreserve(peer(0)) and not relay.handle_unreserve(peer(0))
    assert isinstance(relay.handle_reserve(peer(99), ip(refused_ip), 2.0), ReservationGranted)
    assert relay.statistics().reservations_refused == (("RESOURCE_LIMIT_EXCEEDED", 1),)


def test_a_peer_moving_to_a_full_ip_is_refused() -> None:
    relay = rules(relay_max_reservations_per_ip=1)
    relay.handle_reserve(peer(1), ip("198.51.100.1"), 0.0)
    relay.handle_reserve(peer(2), ip("198.51.100.2"), 0.0)
    refused = relay.handle_reserve(peer(2), ip("198.51.100.1"), 1.0)
    assert isinstance(refused, ReservationRefused)


@pytest.mark.parametrize(("address", "why"), [
    ("10.0.0.1", "not routable"), ("127.0.0.1", "not routable"), (None, "relayed connection")])
def test_reservations_from_rejected_addresses_are_denied(address: str | None, why: str) -> None:
    relay = rules()
    refused = relay.handle_reserve(peer(1), None if address is None else ip(address), 0.0)
    assert isinstance(refused, ReservationRefused)
    assert refused.status is RelayStatus.PERMISSION_DENIED and why in refused.reason


def test_ipv4_mapped_addresses_count_as_their_ipv4() -> None:
    relay = rules(relay_max_reservations_per_ip=1)
    relay.handle_reserve(peer(1), ip("198.51.100.1"), 0.0)
    refused = relay.handle_reserve(peer(2), ip("::ffff:198.51.100.1"), 0.0)
    assert isinstance(refused, ReservationRefused)


# --- circuits ----------------------------------------------------------------------------


def reserved(**settings: float) -> RelayRules:
    relay = rules(**settings)
    relay.handle_reserve(peer(1), ip("198.51.100.1"), 0.0)
    return relay


def test_a_circuit_connects_lives_and_ends() -> None:
    relay = reserved(relay_connect_timeout=5.0, relay_circuit_duration=120.0)
    admitted = relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), now=1.0)
    assert isinstance(admitted, CircuitAdmitted)
    assert admitted.limit.duration == 120 and admitted.limit.data == 128 * 1024
    cid = admitted.circuit_id
    assert relay.circuit_state(cid) is CircuitState.CONNECTING
    assert relay.circuit_deadline(cid) == 6.0
    assert relay.handle_established(cid, now=2.0) == 122.0
    assert relay.circuit_state(cid) is CircuitState.ACTIVE
    assert relay.circuits_of(peer(1)) == relay.circuits_of(peer(2)) == 1
    assert relay.handle_data(cid, CircuitDirection.TO_TARGET, 1000)
    assert relay.handle_closed(cid, CircuitEnd.FINISHED)
    assert not relay.handle_closed(cid, CircuitEnd.FINISHED)  # idempotent
    assert relay.circuit_state(cid) is CircuitState.CLOSED
    assert relay.circuits_of(peer(1)) == 0
    stats = relay.statistics()
    assert (stats.circuits, stats.circuits_admitted, stats.circuits_established) == (0, 1, 1)
    assert stats.circuits_ended == (("finished", 1),) and stats.bytes_relayed == 1000


def test_unknown_transitions_raise() -> None:
    relay = reserved()
    admitted = relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), 0.0)
    assert isinstance(admitted, CircuitAdmitted)
    with pytest.raises(LocalProtocolError, match="not active"):
        relay.handle_data(admitted.circuit_id, CircuitDirection.TO_TARGET, 1)
    relay.handle_established(admitted.circuit_id, 0.0)
    with pytest.raises(LocalProtocolError, match="cannot be established when active"):
        relay.handle_established(admitted.circuit_id, 0.0)
    relay.handle_closed(admitted.circuit_id, CircuitEnd.FINISHED)
    with pytest.raises(LocalProtocolError, match="cannot be established when closed"):
        relay.handle_established(admitted.circuit_id, 0.0)
    with pytest.raises(LocalProtocolError, match="never admitted"):
        relay.handle_closed(99, CircuitEnd.FINISHED)


@pytest.mark.parametrize(("src", "src_ip", "dst", "status"), [
    (2, "203.0.113.5", 3, RelayStatus.NO_RESERVATION),
    (2, "10.1.2.3", 1, RelayStatus.PERMISSION_DENIED),
    (2, None, 1, RelayStatus.PERMISSION_DENIED),
    (1, "198.51.100.1", 1, RelayStatus.PERMISSION_DENIED),
])
def test_circuits_are_refused(src: int, src_ip: str | None, dst: int,
                              status: RelayStatus) -> None:
    relay = reserved()
    refused = relay.handle_connect(peer(src), None if src_ip is None else ip(src_ip), peer(dst),
                                   0.0)
    assert isinstance(refused, CircuitRefused) and refused.status is status
    assert relay.statistics().circuits_refused == ((status.name, 1),)


def test_concurrent_circuits_per_peer_count_both_ends() -> None:
    relay = reserved(relay_max_circuits_per_peer=2)
    for src in (2, 3):
        assert isinstance(relay.handle_connect(peer(src), ip("203.0.113.5"), peer(1), 0.0),
                          CircuitAdmitted)
    refused = relay.handle_connect(peer(4), ip("203.0.113.5"), peer(1), 0.0)
    assert isinstance(refused, CircuitRefused)
    assert refused.status is RelayStatus.RESOURCE_LIMIT_EXCEEDED
    relay.handle_closed(1, CircuitEnd.CONNECT_FAILED)
    assert isinstance(relay.handle_connect(peer(4), ip("203.0.113.5"), peer(1), 0.0),
                      CircuitAdmitted)


def test_total_circuits_are_bounded() -> None:
    relay = reserved(relay_max_circuits=1)
    relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), 0.0)
    refused = relay.handle_connect(peer(3), ip("203.0.113.6"), peer(1), 0.0)
    assert isinstance(refused, CircuitRefused) and "1 circuits open" in refused.reason


def test_the_data_limit_holds_each_way() -> None:
    relay = reserved(relay_circuit_data=1000)
    admitted = relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), 0.0)
    assert isinstance(admitted, CircuitAdmitted)
    cid = admitted.circuit_id
    relay.handle_established(cid, 0.0)
    assert relay.handle_data(cid, CircuitDirection.TO_TARGET, 600)
    assert relay.handle_data(cid, CircuitDirection.TO_INITIATOR, 1000)  # its own budget
    assert relay.handle_data(cid, CircuitDirection.TO_TARGET, 400)
    assert not relay.handle_data(cid, CircuitDirection.TO_TARGET, 1)
    assert relay.statistics().bytes_relayed == 2000


@given(st.lists(st.integers(1, 500), max_size=30))
def test_never_more_than_the_data_limit_passes(sizes: list[int]) -> None:
    relay = reserved(relay_circuit_data=2000)
    admitted = relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), 0.0)
    assert isinstance(admitted, CircuitAdmitted)
    relay.handle_established(admitted.circuit_id, 0.0)
    passed = [s for s in sizes
              if relay.handle_data(admitted.circuit_id, CircuitDirection.TO_TARGET, s)]
    assert sum(passed) <= 2000
    if sum(sizes) <= 2000:
        assert passed == sizes


def test_deadlines_connect_timeout_then_duration() -> None:
    relay = reserved(relay_connect_timeout=5.0, relay_circuit_duration=30.0,
                     relay_reservation_ttl=1000.0)
    slow = relay.handle_connect(peer(2), ip("203.0.113.5"), peer(1), 0.0)
    live = relay.handle_connect(peer(3), ip("203.0.113.6"), peer(1), 0.0)
    assert isinstance(slow, CircuitAdmitted) and isinstance(live, CircuitAdmitted)
    relay.handle_established(live.circuit_id, 1.0)
    assert relay.poll_timeout() == 5.0
    assert relay.handle_timeout(5.0) == [CircuitExpired(slow.circuit_id,
                                                        CircuitEnd.CONNECT_FAILED)]
    assert relay.poll_timeout() == 31.0
    assert relay.handle_timeout(31.0) == [CircuitExpired(live.circuit_id,
                                                         CircuitEnd.DURATION_LIMIT)]
    assert relay.statistics().circuits_ended == (("connect-failed", 1), ("duration-limit", 1))
    assert relay.poll_timeout() == 1000.0  # the reservation


# --- the mux lets a circuit's stream live by the circuit's limit ---------------------------


def test_a_stream_deadline_can_be_moved() -> None:
    from protocols import MuxLimits, StreamMux, StreamState

    mux = StreamMux(initiator=True, limits=MuxLimits(stream_timeout=30.0))
    sid = mux.open_stream("/libp2p/circuit/relay/0.2.0/hop", now=0.0)
    assert mux.poll_timeout() == 30.0
    mux.set_deadline(sid, 125.0)
    assert mux.poll_timeout() == 125.0
    assert mux.handle_timeout(100.0) == []
    assert mux.stream_state(sid) is StreamState.OPEN
    assert len(mux.handle_timeout(125.0)) == 2  # StreamErrored, then the error frame
    with pytest.raises(LocalProtocolError, match="not live"):
        mux.set_deadline(sid, 200.0)
