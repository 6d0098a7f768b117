"""End-to-end security of relayed connections (sans-io): the authenticated key exchange and
the sealed frames; golden vectors, a man in the middle, tampering, replay, reordering."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import (
    BadSignature,
    DecodeError,
    HandshakeOrderError,
    Keypair,
    LocalProtocolError,
    PeerIdMismatch,
    ProtocolError,
)
from protocols.relay import (
    CIRCUIT_SECURITY_CONTEXT,
    SEAL_OVERHEAD,
    CircuitKeyExchange,
    CircuitKeys,
    FrameOpener,
    FrameSealer,
)

A = Keypair.from_seed(bytes(range(32)))
B = Keypair.from_seed(bytes(range(1, 33)))
EPH_A, EPH_B = bytes([7]) * 32, bytes([9]) * 32

# Pinned outputs of the exchange above (deterministic: fixed keys, Ed25519 signatures are
# deterministic). A change here is a change of the relayed-connection wire format.
GOLDEN_KEY_A = (
    "83a174ab636972637569742d6b6579a36b6579c4240801122003a107bff3ce10be1d70dd18e74bc09967e4d"
    "6309ba50d5f1ddc8664125531b8a3657068c42013be4feaeaf204c7fd3358fc9c00721881d174278128227e"
    "c674f37f7fe97b6d")
GOLDEN_SIG_A = (
    "82a174ab636972637569742d736967a3736967c4404c74c7700bb9c90110ddd6a41ccb3867812c0e56016fc"
    "dc0786c8cf58c9905092ce5c5d954457d3211e4f5cd485622ce594688102f6ef9946e19e9d0e89a9e0e")
GOLDEN_TO_TARGET = "9b9a7c8cf5ba288203d2dd442dc2c3fb2f80e4bcb63ccb2653e442d3793b75ce"
GOLDEN_TO_INITIATOR = "967dbf75dee2c6242e8ee72711583ba924f6cca02bd66506cda5ae2c7db0097b"
GOLDEN_SEALED = "4b918bc23b5473f145885fcf9d69788dedf484a609"


def pair(ephemeral: bool = True) -> tuple[CircuitKeyExchange, CircuitKeyExchange]:
    return (CircuitKeyExchange(A, initiator=True, expected_peer=B.peer_id,
                               ephemeral=EPH_A if ephemeral else None),
            CircuitKeyExchange(B, initiator=False, ephemeral=EPH_B if ephemeral else None))


def run(a: CircuitKeyExchange, b: CircuitKeyExchange) -> tuple[CircuitKeys, CircuitKeys]:
    key_a, key_b = a.handle_start(), b.handle_start()
    sig_a, sig_b = a.handle_message(key_b), b.handle_message(key_a)
    assert isinstance(sig_a, bytes) and isinstance(sig_b, bytes)
    keys_a, keys_b = a.handle_message(sig_b), b.handle_message(sig_a)
    assert isinstance(keys_a, CircuitKeys) and isinstance(keys_b, CircuitKeys)
    return keys_a, keys_b


def test_golden_exchange() -> None:
    a, b = pair()
    key_a = a.handle_start()
    assert key_a.hex() == GOLDEN_KEY_A
    # independent of our code: the documented map
    assert msgpack.unpackb(key_a, raw=False) == {
        "t": "circuit-key", "key": A.public_key.to_protobuf(),
        "eph": bytes.fromhex(GOLDEN_KEY_A[-64:])}
    sig_a = a.handle_message(b.handle_start())
    assert isinstance(sig_a, bytes) and sig_a.hex() == GOLDEN_SIG_A
    b.handle_message(key_a)
    keys_b = b.handle_message(sig_a)
    assert isinstance(keys_b, CircuitKeys)
    assert keys_b.receive_key.hex() == GOLDEN_TO_TARGET
    assert keys_b.send_key.hex() == GOLDEN_TO_INITIATOR
    assert FrameSealer(bytes.fromhex(GOLDEN_TO_TARGET)).seal(b"frame").hex() == GOLDEN_SEALED


def test_both_ends_agree_and_learn_each_other() -> None:
    keys_a, keys_b = run(*pair(ephemeral=False))
    assert keys_a.peer_id == B.peer_id and keys_b.peer_id == A.peer_id
    assert keys_a.send_key == keys_b.receive_key and keys_a.receive_key == keys_b.send_key
    assert keys_a.send_key != keys_a.receive_key


def test_the_initiator_refuses_another_peer_than_the_one_it_dialed() -> None:
    a = CircuitKeyExchange(A, initiator=True, expected_peer=Keypair.generate().peer_id)
    b = CircuitKeyExchange(B, initiator=False)
    a.handle_start()
    with pytest.raises(PeerIdMismatch, match="other end is"):
        a.handle_message(b.handle_start())
    with pytest.raises(LocalProtocolError, match="failed"):
        a.handle_message(b"")


def test_a_relay_in_the_middle_is_caught() -> None:
    """The relay runs its own exchange with each end, passing their messages on but with
    its own ephemeral keys (it cannot forge the signatures)."""
    a, b = pair(ephemeral=False)
    mitm_eph = CircuitKeyExchange(Keypair.generate(), initiator=True).handle_start()
    relay_eph = msgpack.unpackb(mitm_eph, raw=False)["eph"]

    def swap(message: bytes) -> bytes:
        decoded = msgpack.unpackb(message, raw=False)
        decoded["eph"] = relay_eph
        return msgpack.packb(decoded, use_bin_type=True)

    key_a, key_b = a.handle_start(), b.handle_start()
    sig_a = a.handle_message(swap(key_b))
    sig_b = b.handle_message(swap(key_a))
    assert isinstance(sig_a, bytes) and isinstance(sig_b, bytes)
    with pytest.raises(BadSignature):
        a.handle_message(sig_b)
    with pytest.raises(BadSignature):
        b.handle_message(sig_a)


def test_a_reflected_exchange_is_refused() -> None:
    a = CircuitKeyExchange(A, initiator=True)
    own = a.handle_start()
    with pytest.raises(HandshakeOrderError, match="echoed"):
        a.handle_message(own)


@pytest.mark.parametrize("message", [
    {"t": "circuit-sig", "sig": bytes(64)},
    {"t": "circuit-key", "key": A.public_key.to_protobuf(), "eph": bytes(31)},
    {"t": "circuit-key", "key": b"\x08\x01\x12", "eph": bytes(32)},
    {"t": "circuit-key"},
])
def test_bad_first_messages(message: dict[str, object]) -> None:
    b = CircuitKeyExchange(B, initiator=False)
    b.handle_start()
    with pytest.raises(ProtocolError):
        b.handle_message(msgpack.packb(message, use_bin_type=True))


def test_a_signature_over_something_else_is_refused() -> None:
    a, b = pair()
    key_a, key_b = a.handle_start(), b.handle_start()
    a.handle_message(key_b)
    b.handle_message(key_a)
    forged = msgpack.packb({"t": "circuit-sig", "sig": B.sign(CIRCUIT_SECURITY_CONTEXT)},
                           use_bin_type=True)
    with pytest.raises(BadSignature):
        a.handle_message(forged)


# --- sealed frames ---------------------------------------------------------------------


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=20))
def test_frames_open_in_order(frames: list[bytes]) -> None:
    keys_a, keys_b = run(*pair())
    sealer, opener = FrameSealer(keys_a.send_key), FrameOpener(keys_b.receive_key)
    for frame in frames:
        sealed = sealer.seal(frame)
        assert len(sealed) == len(frame) + SEAL_OVERHEAD
        assert opener.open(sealed) == frame


def test_altered_replayed_reordered_or_dropped_frames_do_not_open() -> None:
    keys_a, keys_b = run(*pair())
    sealer = FrameSealer(keys_a.send_key)
    first, second, third = (sealer.seal(f) for f in (b"one", b"two", b"three"))
    opener = FrameOpener(keys_b.receive_key)
    altered = bytes([first[0] ^ 1]) + first[1:]
    with pytest.raises(DecodeError, match="failed authentication"):
        opener.open(altered)
    assert opener.open(first) == b"one"
    with pytest.raises(DecodeError):
        opener.open(first)  # replayed
    with pytest.raises(DecodeError):
        opener.open(third)  # second dropped, or reordered
    with pytest.raises(DecodeError):
        FrameOpener(keys_a.receive_key).open(first)  # the other direction's key
    with pytest.raises(DecodeError, match="too short"):
        opener.open(b"x")
    assert opener.open(second) == b"two"
