"""Sans-io handshake: two machines wired back to back, and every way it must fail."""

from __future__ import annotations

import pytest

from protocols import (
    BadSignature,
    Handshake,
    HandshakeDone,
    HandshakeEvent,
    HandshakeFailed,
    HandshakeOrderError,
    HandshakeResult,
    HandshakeState,
    HandshakeStatistics,
    HandshakeTimeout,
    Keypair,
    LocalProtocolError,
    PeerIdMismatch,
    SelfConnection,
    SendFrame,
)
from protocols.wire._frames import Auth, Hello, decode_handshake_frame


def _pair(expected: object = "right") -> tuple[Keypair, Keypair, Handshake, Handshake]:
    a_key, b_key = Keypair.generate(), Keypair.generate()
    dialed = b_key.peer_id if expected == "right" else Keypair.generate().peer_id
    dialer = Handshake(a_key, now=0.0, expected_peer=dialed)
    listener = Handshake(b_key, now=0.0)
    return a_key, b_key, dialer, listener


def _sent(events: list[HandshakeEvent]) -> bytes:
    """The one frame ``events`` asks us to send."""
    [event] = events
    assert isinstance(event, SendFrame)
    return event.data


def _start(side: Handshake, now: float = 0.0) -> bytes:
    return _sent(side.handle_start(now))


def _run(dialer: Handshake, listener: Handshake) -> tuple[HandshakeResult, HandshakeResult]:
    hello_a, hello_b = _start(dialer), _start(listener)
    auth_a = _sent(dialer.handle_frame(hello_b, now=0.1))
    auth_b = _sent(listener.handle_frame(hello_a, now=0.1))
    [done_a] = dialer.handle_frame(auth_b, now=0.2)
    [done_b] = listener.handle_frame(auth_a, now=0.2)
    assert isinstance(done_a, HandshakeDone) and isinstance(done_b, HandshakeDone)
    return done_a.result, done_b.result


def test_both_sides_learn_each_others_peer_id() -> None:
    a_key, b_key, dialer, listener = _pair()
    dialer_result, listener_result = _run(dialer, listener)
    assert dialer.state is listener.state is HandshakeState.DONE
    assert dialer_result.peer_id == b_key.peer_id
    assert listener_result.peer_id == a_key.peer_id
    assert listener_result.public_key == a_key.public_key
    assert dialer.statistics() == HandshakeStatistics(HandshakeState.DONE, 2, 2)


def test_each_side_measures_one_round_trip_from_its_hello_to_the_peers_auth() -> None:
    _, _, dialer, listener = _pair()
    hello_a = _start(dialer, now=1.0)
    hello_b = _start(listener, now=1.05)  # the listener starts half a round trip later
    auth_b = _sent(listener.handle_frame(hello_a, now=1.05))
    auth_a = _sent(dialer.handle_frame(hello_b, now=1.1))
    [done_a] = dialer.handle_frame(auth_b, now=1.1)
    [done_b] = listener.handle_frame(auth_a, now=1.15)
    assert isinstance(done_a, HandshakeDone) and isinstance(done_b, HandshakeDone)
    assert done_a.result.rtt == pytest.approx(0.1)
    assert done_b.result.rtt == pytest.approx(0.1)


def test_dialer_rejects_other_peer_id() -> None:
    _, _, dialer, listener = _pair(expected="wrong")
    _start(dialer)
    with pytest.raises(PeerIdMismatch, match="dialed"):
        dialer.handle_frame(_start(listener), now=0.1)
    assert dialer.state is HandshakeState.FAILED
    with pytest.raises(LocalProtocolError, match="after the handshake ended"):
        dialer.handle_frame(b"", now=0.2)


def test_signature_from_another_key_is_rejected() -> None:
    _, _, dialer, listener = _pair()
    _start(dialer)
    dialer.handle_frame(_start(listener), now=0.1)
    forged = Auth(signature=Keypair.generate().sign(b"x" * 10)).encode()
    with pytest.raises(BadSignature, match="does not verify"):
        dialer.handle_frame(forged, now=0.2)


def test_auth_replayed_from_another_connection_is_rejected() -> None:
    # An Auth recorded on one connection signs that connection's nonce only.
    _, b_key, dialer1, listener1 = _pair()
    hello_a1 = _start(dialer1)
    _start(listener1)
    recorded_auth = _sent(listener1.handle_frame(hello_a1, now=0.1))
    dialer2 = Handshake(Keypair.generate(), now=0.0, expected_peer=b_key.peer_id)
    _start(dialer2)
    dialer2.handle_frame(_start(Handshake(b_key, now=0.0)), now=0.1)
    with pytest.raises(BadSignature):
        dialer2.handle_frame(recorded_auth, now=0.2)


def test_auth_before_hello_is_an_order_error() -> None:
    _, _, dialer, _ = _pair()
    _start(dialer)
    with pytest.raises(HandshakeOrderError, match="unexpected Auth"):
        dialer.handle_frame(Auth(signature=b"\x00" * 64).encode(), now=0.1)


def test_second_hello_is_an_order_error() -> None:
    _, _, dialer, listener = _pair()
    _start(dialer)
    hello_b = _start(listener)
    dialer.handle_frame(hello_b, now=0.1)
    with pytest.raises(HandshakeOrderError, match="unexpected Hello"):
        dialer.handle_frame(hello_b, now=0.1)


def test_reflected_hello_is_rejected() -> None:
    key = Keypair.generate()
    side = Handshake(key, now=0.0)
    own_hello = _start(side)
    with pytest.raises(HandshakeOrderError, match="reflection"):
        side.handle_frame(own_hello, now=0.1)


def test_a_node_reaching_itself_is_recognised_on_both_ends_after_full_proof() -> None:
    key = Keypair.generate()
    dialer = Handshake(key, now=0.0, expected_peer=key.peer_id)  # a hairpin test
    listener = Handshake(key, now=0.0)
    hello_a, hello_b = _start(dialer), _start(listener)
    auth_a = _sent(dialer.handle_frame(hello_b, now=0.1))  # answered like any Hello
    auth_b = _sent(listener.handle_frame(hello_a, now=0.1))
    with pytest.raises(SelfConnection, match="this node itself"):
        dialer.handle_frame(auth_b, now=0.2)
    with pytest.raises(SelfConnection):
        listener.handle_frame(auth_a, now=0.2)
    assert dialer.state is listener.state is HandshakeState.FAILED


def test_a_hello_with_our_key_from_an_impostor_fails_its_signature() -> None:
    key = Keypair.generate()
    side = Handshake(key, now=0.0)
    _start(side)
    fake = Hello(version=1, public_key=key.public_key.to_protobuf(), nonce=b"\x05" * 32)
    side.handle_frame(fake.encode(), now=0.1)
    with pytest.raises(BadSignature):
        side.handle_frame(Auth(signature=b"\x00" * 64).encode(), now=0.2)


def test_our_own_key_where_another_peer_was_dialed_is_a_mismatch() -> None:
    key = Keypair.generate()
    dialer = Handshake(key, now=0.0, expected_peer=Keypair.generate().peer_id)
    _start(dialer)
    with pytest.raises(PeerIdMismatch):
        dialer.handle_frame(_start(Handshake(key, now=0.0)), now=0.1)


def test_hello_with_bad_key_is_rejected() -> None:
    garbage = Hello(version=1, public_key=b"\x08\x00\x12\x02ab", nonce=b"\x07" * 32)
    side = Handshake(Keypair.generate(), now=0.0)
    _start(side)
    with pytest.raises(HandshakeOrderError, match="public key"):
        side.handle_frame(garbage.encode(), now=0.1)


def test_wrong_version_is_rejected() -> None:
    _, _, dialer, listener = _pair()
    _start(dialer)
    hello = decode_handshake_frame(_start(listener))
    assert isinstance(hello, Hello)
    v2 = Hello(version=2, public_key=hello.public_key, nonce=hello.nonce)
    with pytest.raises(HandshakeOrderError, match="version 2"):
        dialer.handle_frame(v2.encode(), now=0.1)


def test_garbage_bytes_are_a_handshake_error() -> None:
    _, _, dialer, _ = _pair()
    _start(dialer)
    with pytest.raises(HandshakeOrderError, match="invalid handshake frame"):
        dialer.handle_frame(b"\xc1not msgpack", now=0.1)


def test_poll_timeout_is_the_deadline_only_while_the_handshake_runs() -> None:
    _, _, dialer, listener = _pair()
    assert dialer.poll_timeout() is None  # not started: nothing to wait for
    assert dialer.handle_timeout(1e9) == []
    _start(dialer)
    assert dialer.poll_timeout() == 10.0
    dialer.handle_frame(_start(listener), now=0.1)
    assert dialer.poll_timeout() == 10.0  # one deadline for the whole exchange
    done, other = _pair()[2:]
    _run(done, other)
    assert done.poll_timeout() is None


def test_timeout_is_an_event_from_handle_timeout_and_from_late_frames() -> None:
    _, _, dialer, listener = _pair()
    _start(dialer)
    assert dialer.handle_timeout(9.9) == []  # still in time
    [failed] = dialer.handle_timeout(10.0)
    assert isinstance(failed, HandshakeFailed)
    assert isinstance(failed.error, HandshakeTimeout)
    assert failed.reason == ("handshake did not complete before its deadline "
                             "(stuck in await-hello)")
    assert dialer.state is HandshakeState.FAILED
    assert dialer.poll_timeout() is None and dialer.handle_timeout(11.0) == []
    with pytest.raises(LocalProtocolError, match="after the handshake ended"):
        dialer.handle_frame(_start(listener), now=11.0)

    late = Handshake(Keypair.generate(), now=0.0, timeout=1.0)
    _start(late)
    hello = _start(Handshake(Keypair.generate(), now=0.0))
    [failed] = late.handle_frame(hello, now=1.5)  # not read: the deadline passed
    assert isinstance(failed, HandshakeFailed) and "await-hello" in failed.reason
    assert late.statistics().frames_received == 0


def test_start_after_the_deadline_fails_at_once() -> None:
    side = Handshake(Keypair.generate(), now=0.0, timeout=1.0)
    [failed] = side.handle_start(2.0)
    assert isinstance(failed, HandshakeFailed)
    assert side.statistics() == HandshakeStatistics(HandshakeState.FAILED, 0, 0)


def test_done_handshake_never_times_out() -> None:
    _, _, dialer, listener = _pair()
    _run(dialer, listener)
    assert dialer.handle_timeout(1e9) == []
    assert dialer.state is HandshakeState.DONE
    with pytest.raises(LocalProtocolError, match="stream mux"):
        dialer.handle_frame(b"", now=1.0)  # later frames belong to the mux


def test_calls_the_state_does_not_accept_are_local_errors() -> None:
    side = Handshake(Keypair.generate(), now=0.0)
    with pytest.raises(LocalProtocolError, match="before handle_start"):
        side.handle_frame(b"", now=0.0)
    _start(side)
    with pytest.raises(LocalProtocolError, match="twice"):
        side.handle_start(0.0)
