"""BehaviourDiscovery against a StunResponder through a simulated NAT, for every mapping x
filtering combination, without sockets or a clock (time is the machine's poll_timeout)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from protocols import LocalProtocolError
from protocols.stun import (
    BINDING,
    MIN_PATH_RTO,
    BehaviourDiscovery,
    Datagram,
    DiscoveryFinished,
    DiscoveryState,
    Endpoint,
    NatBehaviour,
    Retransmission,
    StunAddresses,
    StunClass,
    StunMessage,
    StunResponder,
    UdpProfile,
    XorMappedAddress,
    encode_message,
)

EI = NatBehaviour.ENDPOINT_INDEPENDENT
AD = NatBehaviour.ADDRESS_DEPENDENT
APD = NatBehaviour.ADDRESS_AND_PORT_DEPENDENT
UNKNOWN = NatBehaviour.UNKNOWN
NONE = NatBehaviour.NONE
BEHAVIOURS = (EI, AD, APD)

P = Endpoint.of("192.0.2.10", 3478)
O = Endpoint.of("192.0.2.20", 3479)  # noqa: E741 - the RFC's name for the other address
PRIVATE = Endpoint.of("10.0.0.2", 5000)
PUBLIC_IP = "203.0.113.1"
FAST = Retransmission(rto=0.1, rc=3, rm=2)


@dataclass
class Nat:
    """A NAT (or, with ``translate=False``, a plain filtering firewall) in a few lines:
    a mapping per (source), (source, destination IP) or (source, destination), and a filter
    that admits any host, hosts we sent to, or exact endpoints we sent to."""

    mapping: NatBehaviour
    filtering: NatBehaviour
    translate: bool = True
    mappings: dict[tuple[object, ...], Endpoint] = field(default_factory=dict)
    private_of: dict[Endpoint, Endpoint] = field(default_factory=dict)
    contacted: dict[Endpoint, set[Endpoint]] = field(default_factory=dict)
    dropped: int = 0

    def outbound(self, source: Endpoint, destination: Endpoint) -> Endpoint:
        key: tuple[object, ...] = {
            EI: (source,), AD: (source, destination.ip), APD: (source, destination),
        }[self.mapping]
        if key not in self.mappings:
            public = (Endpoint.of(PUBLIC_IP, 40000 + len(self.mappings)) if self.translate
                      else source)
            self.mappings[key] = public
            self.private_of[public] = source
        public = self.mappings[key]
        self.contacted.setdefault(public, set()).add(destination)
        return public

    def inbound(self, remote: Endpoint, public: Endpoint) -> Endpoint | None:
        private = self.private_of.get(public)
        contacted = self.contacted.get(public, set())
        admitted = private is not None and (
            self.filtering is EI
            or (self.filtering is AD and remote.ip in {c.ip for c in contacted})
            or (self.filtering is APD and remote in contacted))
        if not admitted:
            self.dropped += 1
            return None
        return private


Server = Callable[[bytes, Endpoint, Endpoint, float], list[Datagram]]


def txids() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


@dataclass
class Run:
    profile: UdpProfile
    finished_at: float
    sent_to: list[Endpoint]
    machine: BehaviourDiscovery


def run(nat: Nat | None, server: Server | None, *, local: Endpoint = PRIVATE,
        retransmission: Retransmission = FAST) -> Run:
    machine = BehaviourDiscovery(P, local, retransmission=retransmission, token_bytes=txids())
    now = 0.0
    events = machine.handle_start(now)
    sent_to: list[Endpoint] = []
    for _ in range(1000):
        while (datagram := machine.poll_transmit()) is not None:
            assert datagram.source == local
            sent_to.append(datagram.destination)
            public = nat.outbound(local, datagram.destination) if nat else local
            for answer in (server(datagram.payload, public, datagram.destination, now)
                           if server else []):
                assert answer.destination == public  # never towards anyone else
                private = nat.inbound(answer.source, answer.destination) if nat else local
                if private is not None:
                    events += machine.handle_datagram(answer.payload, answer.source, now)
        if events:
            break
        deadline = machine.poll_timeout()
        assert deadline is not None and deadline > now
        now = deadline
        events += machine.handle_timeout(now)
    else:  # pragma: no cover
        pytest.fail("discovery did not finish")
    assert events == [DiscoveryFinished(machine.profile)] and machine.profile is not None
    assert machine.state is DiscoveryState.DONE
    assert machine.poll_timeout() is None
    return Run(machine.profile, now, sent_to, machine)


def rfc5780_server() -> Server:
    return StunResponder(StunAddresses(P, O)).handle_datagram


@pytest.mark.parametrize(("mapping", "filtering"), list(itertools.product(BEHAVIOURS,
                                                                          BEHAVIOURS)))
def test_every_nat_is_classified(mapping: NatBehaviour, filtering: NatBehaviour) -> None:
    nat = Nat(mapping, filtering)
    result = run(nat, rfc5780_server())
    assert result.profile == UdpProfile(mapping, filtering, Endpoint.of(PUBLIC_IP, 40000))


@pytest.mark.parametrize("filtering", BEHAVIOURS)
def test_no_nat_maps_none_and_still_measures_the_firewall(filtering: NatBehaviour) -> None:
    firewall = Nat(EI, filtering, translate=False)
    result = run(firewall, rfc5780_server())
    assert result.profile == UdpProfile(NONE, filtering, PRIVATE)
    assert O.ip not in {d.ip for d in result.sent_to}  # no mapping tests without a NAT


def test_filtering_tests_come_before_any_datagram_to_the_other_address() -> None:
    result = run(Nat(APD, AD), rfc5780_server())
    to_other = [i for i, d in enumerate(result.sent_to) if d.ip == O.ip]
    to_primary = [i for i, d in enumerate(result.sent_to) if d == P]
    assert to_other and max(to_primary) < min(to_other)


def test_a_server_without_other_address_leaves_both_unknown() -> None:
    result = run(Nat(EI, EI), StunResponder(StunAddresses(P)).handle_datagram)
    assert result.profile == UdpProfile(UNKNOWN, UNKNOWN, Endpoint.of(PUBLIC_IP, 40000))


def test_a_silent_server_leaves_everything_unknown_after_the_retransmissions() -> None:
    result = run(Nat(EI, EI), None)
    assert result.profile == UdpProfile(UNKNOWN, UNKNOWN, None)
    assert result.sent_to == [P] * FAST.rc
    assert result.finished_at == pytest.approx(FAST.give_up_after())
    assert result.machine.statistics().timed_out == 1


def test_a_server_that_ignores_change_request_makes_filtering_unknown() -> None:
    responder = StunResponder(StunAddresses(P, O))

    def ignores_change(data: bytes, source: Endpoint, local: Endpoint,
                       now: float) -> list[Datagram]:
        return [Datagram(d.payload, local, d.destination)
                for d in responder.handle_datagram(data, source, local, now)]

    result = run(Nat(EI, EI), ignores_change)
    assert result.profile.filtering is UNKNOWN
    assert result.profile.mapping is EI


def test_default_retransmission_is_rfc_8489s() -> None:
    machine = BehaviourDiscovery(P, PRIVATE, token_bytes=txids())
    machine.handle_start(0.0)
    sends = []
    now = 0.0
    while machine.state is not DiscoveryState.DONE:
        while machine.poll_transmit() is not None:
            sends.append(now)
        deadline = machine.poll_timeout()
        assert deadline is not None
        now = deadline
        machine.handle_timeout(now)
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert now == 39.5 == Retransmission().give_up_after()


def test_stray_late_and_foreign_datagrams_are_ignored() -> None:
    machine = BehaviourDiscovery(P, PRIVATE, retransmission=FAST, token_bytes=txids())
    machine.handle_start(0.0)
    request = machine.poll_transmit()
    assert request is not None
    wrong_txid = StunMessage(BINDING, StunClass.SUCCESS, bytes(12),
                             (XorMappedAddress(PRIVATE),))
    assert machine.handle_datagram(encode_message(wrong_txid), P, 0.0) == []
    assert machine.handle_datagram(b"not stun", P, 0.0) == []
    assert machine.handle_datagram(request.payload, P, 0.0) == []  # a request, not an answer
    stats = machine.statistics()
    assert (stats.received, stats.ignored, stats.state) == (3, 3, DiscoveryState.TEST_I)


def test_inputs_the_state_does_not_accept_raise() -> None:
    machine = BehaviourDiscovery(P, PRIVATE, token_bytes=txids())
    with pytest.raises(LocalProtocolError, match="datagram not accepted in state idle"):
        machine.handle_datagram(b"", P, 0.0)
    machine.handle_start(0.0)
    with pytest.raises(LocalProtocolError, match="start not accepted in state test-i"):
        machine.handle_start(0.0)
    with pytest.raises(LocalProtocolError, match="families"):
        BehaviourDiscovery(P, Endpoint.of("::1", 1))


@pytest.mark.parametrize(("rto", "rc", "rm"), [(0, 7, 16), (0.5, 0, 16), (0.5, 11, 16),
                                               (0.5, 7, 0)])
def test_retransmission_is_bounded(rto: float, rc: int, rm: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        Retransmission(rto, rc, rm)


PROBE_LIKE = Retransmission(rto=0.5, rc=4, rm=4)  # the probe's udp_rto and udp_sends


def test_later_tests_are_timed_by_test_is_round_trip() -> None:
    # Test I answered at once: the lost filtering tests (port-restricted NAT) give up
    # after 0.05 s x (1 + 2 + 4 + 4) instead of the configured 0.5 s x 11
    result = run(Nat(EI, APD), rfc5780_server(), retransmission=PROBE_LIKE)
    assert result.profile == UdpProfile(EI, APD, Endpoint.of(PUBLIC_IP, 40000))
    assert result.machine.rtt == 0.0
    assert result.finished_at == pytest.approx(MIN_PATH_RTO * 11)
    assert PROBE_LIKE.give_up_after() == pytest.approx(5.5)


def test_a_retransmitted_test_i_measures_nothing() -> None:
    responder = rfc5780_server()
    calls = itertools.count()

    def drops_the_first(data: bytes, source: Endpoint, local: Endpoint,
                        now: float) -> list[Datagram]:
        return [] if next(calls) == 0 else responder(data, source, local, now)

    result = run(Nat(EI, APD), drops_the_first, retransmission=PROBE_LIKE)
    assert result.profile.filtering is APD
    assert result.machine.rtt is None  # which send did the answer answer? (Karn)
    assert result.finished_at == pytest.approx(PROBE_LIKE.rto + PROBE_LIKE.give_up_after())
