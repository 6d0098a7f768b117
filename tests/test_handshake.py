"""Sans-io handshake: two machines wired back to back, and every way it must fail."""

from __future__ import annotations

import pytest

from protocols import (
    BadSignature,
    Handshake,
    HandshakeOrderError,
    HandshakeState,
    HandshakeTimeout,
    Keypair,
    LocalProtocolError,
    PeerIdMismatch,
)
from protocols.wire._frames import Auth, Hello, decode_handshake_frame


def _pair(expected: object = "right") -> tuple[Keypair, Keypair, Handshake, Handshake]:
    a_key, b_key = Keypair.generate(), Keypair.generate()
    dialed = b_key.peer_id if expected == "right" else Keypair.generate().peer_id
    dialer = Handshake(a_key, now=0.0, expected_peer=dialed)
    listener = Handshake(b_key, now=0.0)
    return a_key, b_key, dialer, listener


def _run(dialer: Handshake, listener: Handshake) -> None:
    hello_a, hello_b = dialer.start(), listener.start()
    [auth_a] = dialer.receive_frame(hello_b, now=0.1)
    [auth_b] = listener.receive_frame(hello_a, now=0.1)
    assert dialer.receive_frame(auth_b, now=0.2) == []
    assert listener.receive_frame(auth_a, now=0.2) == []


def test_both_sides_learn_each_others_peer_id() -> None:
    a_key, b_key, dialer, listener = _pair()
    _run(dialer, listener)
    assert dialer.done and listener.done
    assert dialer.result.peer_id == b_key.peer_id
    assert listener.result.peer_id == a_key.peer_id
    assert listener.result.public_key == a_key.public_key


def test_result_before_done_is_an_error() -> None:
    _, _, dialer, _ = _pair()
    with pytest.raises(LocalProtocolError, match="only once done"):
        _ = dialer.result


def test_dialer_rejects_other_peer_id() -> None:
    _, _, dialer, listener = _pair(expected="wrong")
    dialer.start()
    with pytest.raises(PeerIdMismatch, match="dialed"):
        dialer.receive_frame(listener.start(), now=0.1)
    assert dialer.state is HandshakeState.FAILED
    with pytest.raises(HandshakeOrderError, match="already failed"):
        dialer.receive_frame(b"", now=0.2)


def test_signature_from_another_key_is_rejected() -> None:
    _, _, dialer, listener = _pair()
    dialer.start()
    dialer.receive_frame(listener.start(), now=0.1)
    forged = Auth(signature=Keypair.generate().sign(b"x" * 10)).encode()
    with pytest.raises(BadSignature, match="does not verify"):
        dialer.receive_frame(forged, now=0.2)


def test_auth_replayed_from_another_connection_is_rejected() -> None:
    # An Auth recorded on one connection signs that connection's nonce only.
    _, b_key, dialer1, listener1 = _pair()
    hello_a1 = dialer1.start()
    listener1.start()
    [recorded_auth] = listener1.receive_frame(hello_a1, now=0.1)
    dialer2 = Handshake(Keypair.generate(), now=0.0, expected_peer=b_key.peer_id)
    dialer2.start()
    dialer2.receive_frame(Handshake(b_key, now=0.0).start(), now=0.1)
    with pytest.raises(BadSignature):
        dialer2.receive_frame(recorded_auth, now=0.2)


def test_auth_before_hello_is_an_order_error() -> None:
    _, _, dialer, _ = _pair()
    dialer.start()
    with pytest.raises(HandshakeOrderError, match="unexpected Auth"):
        dialer.receive_frame(Auth(signature=b"\x00" * 64).encode(), now=0.1)


def test_second_hello_is_an_order_error() -> None:
    _, _, dialer, listener = _pair()
    dialer.start()
    hello_b = listener.start()
    dialer.receive_frame(hello_b, now=0.1)
    with pytest.raises(HandshakeOrderError, match="unexpected Hello"):
        dialer.receive_frame(hello_b, now=0.1)


def test_reflected_hello_is_rejected() -> None:
    key = Keypair.generate()
    side = Handshake(key, now=0.0)
    own_hello = side.start()
    with pytest.raises(HandshakeOrderError, match="reflection"):
        side.receive_frame(own_hello, now=0.1)


def test_hello_with_bad_key_is_rejected() -> None:
    garbage = Hello(version=1, public_key=b"\x08\x00\x12\x02ab", nonce=b"\x07" * 32)
    side = Handshake(Keypair.generate(), now=0.0)
    side.start()
    with pytest.raises(HandshakeOrderError, match="public key"):
        side.receive_frame(garbage.encode(), now=0.1)


def test_wrong_version_is_rejected() -> None:
    _, _, dialer, listener = _pair()
    dialer.start()
    hello = decode_handshake_frame(listener.start())
    assert isinstance(hello, Hello)
    v2 = Hello(version=2, public_key=hello.public_key, nonce=hello.nonce)
    with pytest.raises(HandshakeOrderError, match="version 2"):
        dialer.receive_frame(v2.encode(), now=0.1)


def test_garbage_bytes_are_a_handshake_error() -> None:
    _, _, dialer, _ = _pair()
    dialer.start()
    with pytest.raises(HandshakeOrderError, match="invalid handshake frame"):
        dialer.receive_frame(b"\xc1not msgpack", now=0.1)


def test_timeout_is_reported_by_check_and_by_late_frames() -> None:
    _, _, dialer, listener = _pair()
    dialer.start()
    dialer.check_timeout(9.9)  # still in time
    with pytest.raises(HandshakeTimeout, match="await-hello"):
        dialer.check_timeout(10.0)
    late = Handshake(Keypair.generate(), now=0.0, timeout=1.0)
    late.start()
    with pytest.raises(HandshakeTimeout):
        late.receive_frame(listener.start(), now=1.5)


def test_done_handshake_never_times_out() -> None:
    _, _, dialer, listener = _pair()
    _run(dialer, listener)
    dialer.check_timeout(1e9)
    assert dialer.done
