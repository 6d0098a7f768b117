"""Identities: libp2p spec vectors, peer id parsing, key pairs, signatures."""

from __future__ import annotations

import base64
import copy
import pickle

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import InvalidKey, Keypair, PeerId, PublicKey, ValidationError

# --- test vectors -------------------------------------------------------------
# libp2p/specs peer-ids/peer-ids.md, "Test vectors" table: the Ed25519 private
# key protobuf and the public key protobuf that belongs to it.
SPEC_PRIVATE_PROTOBUF = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SPEC_PUBLIC_PROTOBUF = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
# Independent source for the peer id of that key: go-libp2p
# p2p/http/auth/auth_test.go, TestWalkthroughInSpec (genClientID decodes the
# spec private key above and asserts this string).
SPEC_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
# Same go-libp2p test: the key generated from an all-zero seed, its libp2p
# private key protobuf, and its peer id.
ZERO_SEED_PRIVATE_PROTOBUF = bytes.fromhex(
    "08011240" + "00" * 32 + "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
)
ZERO_SEED_PEER_ID = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
# Same go-libp2p test: the spec key's Ed25519 signature (base64url) over the
# client's PeerID-auth data (varint-length-prefixed "challenge-client=" and
# "hostname=" parameters after the scheme name).
WALKTHROUGH_DATA = (
    b"libp2p-PeerID"
    + bytes([61])
    + b"challenge-client="
    + base64.urlsafe_b64encode(bytes(32))
    + bytes([22])
    + b'hostname="example.com"'
)
WALKTHROUGH_SIGNATURE = base64.urlsafe_b64decode(
    "F5OBYbbMXoIVJNWrW0UANi7rrbj4GCB6kcEceQjajLTMvC-_jpBF9MFlxiaNYXOEiPQqeo_S56YUSNinwl0ZCQ=="
)
# libp2p/specs peer-ids/peer-ids.md, "String representation" examples: one
# sha256 peer id in both text forms.
SPEC_SHA256_PEER_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SPEC_SHA256_PEER_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
# A real Pyrsia boot node's peer id (from its /status document).
PYRSIA_PEER_ID = "12D3KooWMD9ynPTdvhWMcdX7mh23Nx7owR3Ja3YvaGGhsrXYU7X9"


def test_spec_private_key_derives_spec_public_key() -> None:
    keypair = Keypair.from_protobuf(SPEC_PRIVATE_PROTOBUF)
    assert keypair.public_key.to_protobuf() == SPEC_PUBLIC_PROTOBUF
    assert keypair.to_protobuf() == SPEC_PRIVATE_PROTOBUF
    assert keypair.to_bytes() == SPEC_PRIVATE_PROTOBUF[4:]


def test_spec_key_peer_id_matches_go_libp2p() -> None:
    key = PublicKey.from_protobuf(SPEC_PUBLIC_PROTOBUF)
    assert str(key.peer_id) == SPEC_PEER_ID
    assert key.peer_id.to_bytes() == b"\x00\x24" + SPEC_PUBLIC_PROTOBUF
    assert str(Keypair.from_protobuf(SPEC_PRIVATE_PROTOBUF).peer_id) == SPEC_PEER_ID


def test_zero_seed_vector_from_go_libp2p() -> None:
    keypair = Keypair.from_seed(bytes(32))
    assert keypair.to_protobuf() == ZERO_SEED_PRIVATE_PROTOBUF
    assert str(keypair.peer_id) == ZERO_SEED_PEER_ID


def test_signature_vector_from_go_libp2p() -> None:
    keypair = Keypair.from_protobuf(SPEC_PRIVATE_PROTOBUF)
    assert keypair.sign(WALKTHROUGH_DATA) == WALKTHROUGH_SIGNATURE  # Ed25519 is deterministic
    assert keypair.public_key.verify(WALKTHROUGH_SIGNATURE, WALKTHROUGH_DATA)
    assert not keypair.public_key.verify(WALKTHROUGH_SIGNATURE, WALKTHROUGH_DATA + b"x")


def test_spec_sha256_peer_id_in_both_text_forms() -> None:
    legacy = PeerId.from_string(SPEC_SHA256_PEER_ID)
    assert PeerId.from_string(SPEC_SHA256_PEER_CID) == legacy
    assert legacy.to_cid_string() == SPEC_SHA256_PEER_CID
    assert str(legacy) == SPEC_SHA256_PEER_ID
    assert legacy.multihash[:2] == b"\x12\x20"
    assert legacy.public_key() is None


def test_pyrsia_peer_id_carries_its_key() -> None:
    peer = PeerId.from_string(PYRSIA_PEER_ID)
    key = peer.public_key()
    assert key is not None
    assert key.peer_id == peer
    assert str(peer) == PYRSIA_PEER_ID
    assert repr(peer) == f"PeerId('{PYRSIA_PEER_ID}')"


# --- PublicKey ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        SPEC_PUBLIC_PROTOBUF[:-1],
        SPEC_PUBLIC_PROTOBUF + b"\x00",
        b"\x08\x00" + SPEC_PUBLIC_PROTOBUF[2:],  # RSA type
        b"\x08\x02" + SPEC_PUBLIC_PROTOBUF[2:],  # secp256k1 type
        b"\x12\x20" + SPEC_PUBLIC_PROTOBUF[4:] + b"\x08\x01",  # fields out of order
        b"\x08\x81\x00\x12\x20" + SPEC_PUBLIC_PROTOBUF[4:],  # non-minimal varint
    ],
)
def test_public_key_protobuf_is_strict(data: bytes) -> None:
    with pytest.raises(InvalidKey):
        PublicKey.from_protobuf(data)


def test_public_key_needs_32_bytes() -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        PublicKey(b"\x01" * 31)


@given(st.binary(max_size=80))
def test_public_key_protobuf_fuzz(data: bytes) -> None:
    try:
        key = PublicKey.from_protobuf(data)
    except InvalidKey:
        return
    assert key.to_protobuf() == data


@given(signature=st.binary(max_size=100), data=st.binary(max_size=100))
def test_verify_never_raises(signature: bytes, data: bytes) -> None:
    key = PublicKey.from_protobuf(SPEC_PUBLIC_PROTOBUF)
    assert key.verify(signature, data) is False


def test_verify_rejects_non_bytes() -> None:
    key = PublicKey.from_protobuf(SPEC_PUBLIC_PROTOBUF)
    assert key.verify("sig", b"data") is False  # type: ignore[arg-type]
    assert key.verify(WALKTHROUGH_SIGNATURE, None) is False  # type: ignore[arg-type]


def test_public_key_copies_and_pickles() -> None:
    key = PublicKey.from_protobuf(SPEC_PUBLIC_PROTOBUF)
    assert pickle.loads(pickle.dumps(key)) == key
    assert copy.deepcopy(key) == key
    assert copy.deepcopy(key).verify(WALKTHROUGH_SIGNATURE, WALKTHROUGH_DATA)


# --- PeerId -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "12D3KooW",  # too short a multihash
        "12D3KooW0OIl",  # not base58
        "11" + SPEC_PEER_ID,  # leading zero bytes: not a multihash
        SPEC_PEER_ID[:-1],  # truncated
        "Qm" + "1" * 44,
        "1" * 500,
        "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx",  # truncated CID
        "BAFZBEIE5745RPV2M6TJYUUGYWY4D5EWRQGQQHFNF445HE3OMZPJBX5XQXE",  # upper case
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID
        " " + SPEC_PEER_ID,
    ],
)
def test_bad_peer_id_strings(text: str) -> None:
    with pytest.raises(ValidationError):
        PeerId.from_string(text)


def test_peer_id_error_is_clear() -> None:
    with pytest.raises(ValidationError, match=r"bad peer id 'hello'.*12D3KooW"):
        PeerId.from_string("hello")
    with pytest.raises(ValidationError, match="must be a string"):
        PeerId.from_string(b"12D3" )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00\x05abc",  # length mismatch
        b"\x00\x2b" + bytes(43),  # identity over 42 bytes
        b"\x12\x10" + bytes(16),  # short sha256
        b"\x13\x20" + bytes(32),  # sha512 code
    ],
)
def test_bad_peer_id_bytes(data: bytes) -> None:
    with pytest.raises(ValidationError):
        PeerId.from_bytes(data)


@given(st.binary(min_size=32, max_size=32))
def test_peer_id_round_trips(raw: bytes) -> None:
    peer = PublicKey(raw).peer_id
    assert str(peer).startswith("12D3KooW")
    assert PeerId.from_string(str(peer)) == peer
    assert PeerId.from_string(peer.to_cid_string()) == peer
    assert PeerId.from_bytes(peer.to_bytes()) == peer
    assert peer.public_key() == PublicKey(raw)


@given(st.text(max_size=80))
def test_peer_id_from_arbitrary_text(text: str) -> None:
    try:
        peer = PeerId.from_string(text)
    except ValidationError:
        return
    assert PeerId.from_string(str(peer)) == peer


@given(st.binary(max_size=60))
def test_peer_id_from_arbitrary_bytes(data: bytes) -> None:
    try:
        peer = PeerId.from_bytes(data)
    except ValidationError:
        return
    assert base58.b58decode(str(peer)) == data


def test_non_ed25519_identity_peer_id_has_no_public_key() -> None:
    # secp256k1 public key protobuf from the spec's test vectors: 37 bytes, inlined.
    secp = bytes.fromhex(
        "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"
    )
    peer = PeerId(bytes([0, len(secp)]) + secp)
    assert str(peer).startswith("16Uiu2")
    assert peer.public_key() is None


# --- Keypair --------------------------------------------------------------------------


def test_keypair_bytes_round_trip() -> None:
    keypair = Keypair.generate()
    data = keypair.to_bytes()
    assert len(data) == 64
    assert data[32:] == keypair.public_key.raw
    again = Keypair.from_bytes(data)
    assert again == keypair
    assert hash(again) == hash(keypair)
    assert again.peer_id == keypair.peer_id
    assert Keypair.generate() != keypair


def test_keypair_rejects_wrong_size_and_mismatch() -> None:
    data = Keypair.generate().to_bytes()
    with pytest.raises(InvalidKey, match="64 bytes, got 63"):
        Keypair.from_bytes(data[:-1])
    with pytest.raises(InvalidKey, match="does not match"):
        Keypair.from_bytes(data[:32] + Keypair.generate().public_key.raw)
    with pytest.raises(InvalidKey):
        Keypair.from_seed(b"short")


def test_keypair_protobuf_forms() -> None:
    keypair = Keypair.from_protobuf(SPEC_PRIVATE_PROTOBUF)
    legacy = b"\x08\x01\x12\x60" + keypair.to_bytes() + keypair.public_key.raw
    assert Keypair.from_protobuf(legacy) == keypair
    bad_legacy = b"\x08\x01\x12\x60" + keypair.to_bytes() + bytes(32)
    for data in (bad_legacy, SPEC_PUBLIC_PROTOBUF, b"\x08\x00" + SPEC_PRIVATE_PROTOBUF[2:]):
        with pytest.raises(InvalidKey):
            Keypair.from_protobuf(data)


def test_keypair_hides_secret() -> None:
    keypair = Keypair.from_protobuf(SPEC_PRIVATE_PROTOBUF)
    seed_hex = SPEC_PRIVATE_PROTOBUF[4:36].hex()
    for text in (repr(keypair), str(keypair)):
        assert seed_hex not in text
        assert SPEC_PEER_ID in text
    with pytest.raises(TypeError):
        pickle.dumps(keypair)


def test_keypair_is_immutable() -> None:
    keypair = Keypair.generate()
    with pytest.raises(AttributeError):
        keypair._public = PublicKey(bytes(32))
    with pytest.raises(AttributeError):
        del keypair._private


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200))
def test_sign_verify(seed: bytes, message: bytes) -> None:
    keypair = Keypair.from_seed(seed)
    signature = keypair.sign(message)
    assert len(signature) == 64
    assert keypair.public_key.verify(signature, message)
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not keypair.public_key.verify(tampered, message)


def test_identity_peer_id_must_carry_a_protobuf_public_key() -> None:
    # "12D3KooWnope" decodes to a well-formed 7-byte identity multihash whose
    # digest is not a PublicKey protobuf: not a peer id.
    with pytest.raises(ValidationError, match="protobuf public key"):
        PeerId.from_string("12D3KooWnope")
    with pytest.raises(ValidationError, match="protobuf public key"):
        PeerId.from_bytes(b"\x00\x05" + b"\x08\x01\x12\x20\x00")


def test_a_key_builds_its_peer_id_once_and_equal_ids_print_alike() -> None:
    keypair = Keypair.from_seed(bytes(range(32)))
    assert keypair.peer_id is keypair.peer_id  # cached on the key
    again = PeerId(keypair.peer_id.multihash)  # a new instance, as a handshake makes
    assert again is not keypair.peer_id
    text = base58.b58encode(keypair.peer_id.multihash).decode("ascii")
    assert str(again) == str(keypair.peer_id) == text
    assert PeerId.from_string(text) == again
