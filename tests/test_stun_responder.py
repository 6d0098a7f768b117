"""StunResponder: Binding answers, CHANGE-REQUEST, 420, silent drops, rate limits and the
no-amplification invariant (sizes computed here, independently of the responder)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import LocalProtocolError
from protocols.stun import (
    BINDING,
    ChangeRequest,
    Datagram,
    Endpoint,
    ErrorCode,
    MappedAddress,
    OtherAddress,
    ResponseOrigin,
    Software,
    StunAddresses,
    StunClass,
    StunMessage,
    StunResponder,
    StunResponderConfig,
    UnknownAttribute,
    UnknownAttributes,
    XorMappedAddress,
    check_no_amplification,
    decode_message,
    encode_message,
)

P = Endpoint.of("192.0.2.10", 3478)
A = Endpoint.of("192.0.2.20", 3479)
CLIENT = Endpoint.of("198.51.100.7", 40000)
TXID = bytes(range(12))
ADDR_V4 = 12  # an IPv4 address attribute: 4 header + 8 value
ADDR_V6 = 24
FINGERPRINT = 8


def request(*attributes: object, txid: bytes = TXID, fingerprint: bool = False) -> bytes:
    message = StunMessage(BINDING, StunClass.REQUEST, txid, tuple(attributes))  # type: ignore[arg-type]
    return encode_message(message, fingerprint=fingerprint)


def answer(responder: StunResponder, data: bytes, *, source: Endpoint = CLIENT,
           local: Endpoint = P, now: float = 0.0) -> list[Datagram]:
    return responder.handle_datagram(data, source, local, now)


def only(datagrams: list[Datagram]) -> tuple[Datagram, StunMessage]:
    assert len(datagrams) == 1
    decoded = decode_message(datagrams[0].payload)
    assert decoded.has_fingerprint
    return datagrams[0], decoded.message


def test_binding_request_without_alternate() -> None:
    responder = StunResponder(StunAddresses(P))
    data = request()
    sent, message = only(answer(responder, data))
    assert (sent.source, sent.destination) == (P, CLIENT)
    assert (message.cls, message.method, message.transaction_id) == (
        StunClass.SUCCESS, BINDING, TXID)
    assert message.attributes == (XorMappedAddress(CLIENT), ResponseOrigin(P))
    assert message.first(MappedAddress) is None
    assert len(sent.payload) == 20 + 2 * ADDR_V4 + FINGERPRINT == len(data) + 32


def test_binding_request_with_alternate_names_the_other_address() -> None:
    responder = StunResponder(StunAddresses(P, A))
    for local, other in [(P, A), (A, P), (Endpoint(P.ip, A.port), Endpoint(A.ip, P.port)),
                         (Endpoint(A.ip, P.port), Endpoint(P.ip, A.port))]:
        sent, message = only(answer(responder, request(), local=local))
        assert (sent.source, sent.destination) == (local, CLIENT)
        assert message.attributes == (XorMappedAddress(CLIENT), ResponseOrigin(local),
                                      OtherAddress(other))
        assert len(sent.payload) == 20 + 3 * ADDR_V4 + FINGERPRINT == 64


def test_ipv6_answer_size() -> None:
    p6, a6 = Endpoint.of("2001:db8::1", 3478), Endpoint.of("2001:db8::2", 3479)
    client6 = Endpoint.of("2001:db8:1::7", 5000)
    responder = StunResponder(StunAddresses(p6, a6))
    sent, message = only(answer(responder, request(), source=client6, local=p6))
    assert message.first(XorMappedAddress) == XorMappedAddress(client6)
    assert len(sent.payload) == 20 + 3 * ADDR_V6 + FINGERPRINT == 100


@pytest.mark.parametrize(("change_ip", "change_port", "expected"), [
    (False, False, P),
    (True, False, Endpoint(A.ip, P.port)),
    (False, True, Endpoint(P.ip, A.port)),
    (True, True, A),
])
def test_change_request_moves_the_source_never_the_destination(
        change_ip: bool, change_port: bool, expected: Endpoint) -> None:
    responder = StunResponder(StunAddresses(P, A))
    sent, message = only(answer(responder, request(ChangeRequest(change_ip, change_port))))
    assert sent.source == expected
    assert sent.destination == CLIENT
    assert message.first(ResponseOrigin) == ResponseOrigin(expected)
    assert message.first(OtherAddress) == OtherAddress(A)  # relative to where it arrived
    assert responder.statistics().changed == (1 if expected != P else 0)


def test_change_request_received_on_the_alternate_goes_back_to_the_primary() -> None:
    responder = StunResponder(StunAddresses(P, A))
    sent, _ = only(answer(responder, request(ChangeRequest(True, True)), local=A))
    assert (sent.source, sent.destination) == (P, CLIENT)


def test_change_request_without_alternate_is_420() -> None:
    responder = StunResponder(StunAddresses(P))
    data = request(ChangeRequest(True, False))
    sent, message = only(answer(responder, data))
    assert (sent.source, sent.destination) == (P, CLIENT)
    assert message.cls is StunClass.ERROR
    assert message.attributes == (ErrorCode(420, "Unknown Attribute"),
                                  UnknownAttributes((0x0003,)))
    assert responder.statistics().errors == 1
    assert len(sent.payload) <= len(data) + 28 + 8 + FINGERPRINT


def test_change_request_asking_for_no_change_is_answered_without_alternate() -> None:
    responder = StunResponder(StunAddresses(P))
    sent, message = only(answer(responder, request(ChangeRequest(False, False))))
    assert message.cls is StunClass.SUCCESS
    assert sent.source == P


def test_unknown_comprehension_required_attribute_is_420_optional_is_ignored() -> None:
    responder = StunResponder(StunAddresses(P, A))
    priority = UnknownAttribute(0x0024, b"\x6e\x00\x01\xff")
    _, message = only(answer(responder, request(priority, UnknownAttribute(0x0025, b""))))
    assert message.cls is StunClass.ERROR
    assert message.first(UnknownAttributes) == UnknownAttributes((0x0024, 0x0025))
    _, message = only(answer(responder, request(UnknownAttribute(0x8029, bytes(8)))))
    assert message.cls is StunClass.SUCCESS


def test_software_is_sent_only_when_the_request_pays_for_it() -> None:
    responder = StunResponder(StunAddresses(P, A), StunResponderConfig(software="trio-autonat"))
    small = request()
    sent, message = only(answer(responder, small))
    assert message.first(Software) is None
    assert len(sent.payload) == 64
    # SOFTWARE "trio-autonat" takes 16 bytes; a request 16 bytes above the bare header
    # leaves room for it exactly, one 4 bytes short does not.
    padded = request(Software("client-v1.01"))
    assert len(padded) == 36
    sent, message = only(answer(responder, padded))
    assert message.first(Software) == Software("trio-autonat")
    assert len(sent.payload) == 80 == len(padded) + 3 * ADDR_V4 + FINGERPRINT
    shorter = request(Software("client-v"))
    assert len(shorter) == 32
    _, message = only(answer(responder, shorter))
    assert message.first(Software) is None


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x00" * 20, "malformed"),
    (b"GET / HTTP/1.1\r\n\r\n", "malformed"),
    (struct.pack("!HHI", 0x0001, 0, 0) + TXID[:12] + bytes(4), "malformed"),  # RFC 3489
    (encode_message(StunMessage(BINDING, StunClass.SUCCESS, TXID)), "not-binding-request"),
    (encode_message(StunMessage(BINDING, StunClass.INDICATION, TXID)), "not-binding-request"),
    (encode_message(StunMessage(0x003, StunClass.REQUEST, TXID)), "not-binding-request"),
    (request(Software("x" * 100), UnknownAttribute(0x8030, bytes(500))), "too-large"),
])
def test_anything_but_a_binding_request_is_dropped_silently(data: bytes, reason: str) -> None:
    responder = StunResponder(StunAddresses(P, A))
    assert answer(responder, data) == []
    stats = responder.statistics()
    assert stats.dropped == ((reason, 1),)
    assert (stats.received, stats.answered, stats.errors) == (1, 0, 0)


def test_source_port_zero_and_family_mismatch_are_dropped() -> None:
    responder = StunResponder(StunAddresses(P))
    assert answer(responder, request(), source=Endpoint(CLIENT.ip, 0)) == []
    assert answer(responder, request(), source=Endpoint.of("2001:db8::7", 1)) == []
    assert responder.statistics().dropped == (("bad-source", 2),)


def test_a_local_address_that_is_not_the_servers_is_a_driver_bug() -> None:
    responder = StunResponder(StunAddresses(P))
    with pytest.raises(LocalProtocolError, match="not one of its addresses"):
        answer(responder, request(), local=A)


def test_per_ip_rate_limit_and_refill() -> None:
    config = StunResponderConfig(ip_rate=1.0, ip_burst=3)
    responder = StunResponder(StunAddresses(P), config)
    assert [len(answer(responder, request(), now=0.0)) for _ in range(5)] == [1, 1, 1, 0, 0]
    assert len(answer(responder, request(), source=Endpoint.of("198.51.100.8", 1))) == 1
    assert answer(responder, request(), now=0.5) == []
    assert len(answer(responder, request(), now=1.0)) == 1  # one token back after 1 s
    stats = responder.statistics()
    assert dict(stats.dropped) == {"rate-limited-ip": 3}
    assert stats.answered == 5


def test_per_subnet_rate_limit_counts_the_whole_slash_24() -> None:
    config = StunResponderConfig(subnet_rate=1.0, subnet_burst=4)
    responder = StunResponder(StunAddresses(P), config)
    sources = [Endpoint.of(f"198.51.100.{i}", 1000) for i in range(1, 7)]
    assert [len(answer(responder, request(), source=s)) for s in sources] == [1, 1, 1, 1, 0, 0]
    assert len(answer(responder, request(), source=Endpoint.of("198.51.101.1", 1))) == 1
    assert dict(responder.statistics().dropped) == {"rate-limited-subnet": 2}


def test_global_rate_limit() -> None:
    config = StunResponderConfig(global_rate=1.0, global_burst=2)
    responder = StunResponder(StunAddresses(P), config)
    sources = [Endpoint.of(f"203.0.{i}.1", 1000) for i in range(4)]
    assert [len(answer(responder, request(), source=s)) for s in sources] == [1, 1, 0, 0]
    assert dict(responder.statistics().dropped) == {"rate-limited-global": 2}


def test_a_refused_request_takes_no_token_from_the_other_buckets() -> None:
    config = StunResponderConfig(ip_rate=0.001, ip_burst=1, subnet_rate=0.001, subnet_burst=2)
    responder = StunResponder(StunAddresses(P), config)
    assert len(answer(responder, request())) == 1
    for _ in range(5):
        assert answer(responder, request()) == []  # per-IP refusals
    neighbour = Endpoint.of("198.51.100.99", 1)
    assert len(answer(responder, request(), source=neighbour)) == 1


def test_buckets_are_bounded_least_recently_used_first() -> None:
    config = StunResponderConfig(max_buckets=3, ip_burst=1, ip_rate=0.001)
    responder = StunResponder(StunAddresses(P), config)
    for i in range(10):
        answer(responder, request(), source=Endpoint.of(f"10.{i}.0.1", 1))
    stats = responder.statistics()
    assert (stats.ip_buckets, stats.subnet_buckets) == (3, 3)
    assert stats.evicted_buckets == 14


def test_a_retransmitted_request_gets_the_same_answer() -> None:
    responder = StunResponder(StunAddresses(P, A))
    data = request()
    assert answer(responder, data) == answer(responder, data)


def test_the_amplification_check_can_fail() -> None:
    message = StunMessage(BINDING, StunClass.SUCCESS, TXID,
                          (XorMappedAddress(CLIENT), Software("padding to amplify")))
    payload = encode_message(message, fingerprint=True)
    with pytest.raises(LocalProtocolError, match="exceeds"):
        check_no_amplification(20, payload, message)
    check_no_amplification(20 + 24, payload, message)


def test_the_responder_never_times_anything() -> None:
    responder = StunResponder(StunAddresses(P))
    assert responder.poll_timeout() is None
    assert responder.handle_timeout(1.0) == []


@pytest.mark.parametrize(("primary", "alternate"), [
    (P, Endpoint(P.ip, 4000)),
    (P, Endpoint(A.ip, P.port)),
    (P, Endpoint.of("2001:db8::1", 4000)),
])
def test_an_alternate_must_differ_in_ip_and_port(primary: Endpoint, alternate: Endpoint) -> None:
    with pytest.raises(ValueError, match="alternate"):
        StunAddresses(primary, alternate)


# --- no amplification, for any request ----------------------------------------------

request_attributes = st.lists(st.one_of(
    st.builds(Software, st.text(max_size=30)),
    st.builds(ChangeRequest, st.booleans(), st.booleans()),
    st.builds(UnknownAttribute, st.integers(0x0030, 0x7FFF), st.binary(max_size=12)),
    st.builds(UnknownAttribute, st.integers(0x8030, 0xFFFF), st.binary(max_size=12)),
), max_size=6).map(tuple)


def _allowance(message: StunMessage, *, v6: bool, alternate: bool) -> int:
    """What the standards require in the answer, computed from first principles."""
    if message.cls is StunClass.SUCCESS:
        return (ADDR_V6 if v6 else ADDR_V4) * (3 if alternate else 2) + FINGERPRINT
    unknown = message.first(UnknownAttributes)
    assert unknown is not None
    listed = 2 * len(unknown.types)
    error_code = 4 + 4 + len("Unknown Attribute") + 3
    return error_code + 4 + listed + (-listed % 4) + FINGERPRINT


@given(request_attributes, st.booleans(), st.booleans(), st.booleans(),
       st.one_of(st.none(), st.text(min_size=1, max_size=60)))
def test_no_answer_is_larger_than_its_request_plus_required_attributes(
        attributes: tuple[object, ...], v6: bool, alternate: bool, fingerprint: bool,
        software: str | None) -> None:
    if v6:
        primary, alt = Endpoint.of("2001:db8::1", 3478), Endpoint.of("2001:db8::2", 3479)
        source = Endpoint.of("2001:db8:ffff::1", 65535)
    else:
        primary, alt, source = P, A, CLIENT
    addresses = StunAddresses(primary, alt if alternate else None)
    responder = StunResponder(addresses, StunResponderConfig(software=software))
    data = request(*attributes, fingerprint=fingerprint)
    sent = responder.handle_datagram(data, source, primary, 0.0)
    if len(data) > 548:
        assert sent == []
        return
    datagram, message = only(sent)
    assert datagram.destination == source
    assert len(datagram.payload) <= len(data) + _allowance(message, v6=v6, alternate=alternate)
