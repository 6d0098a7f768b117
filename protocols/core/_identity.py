"""Node identities exactly as libp2p defines them (Ed25519 only).

Theory of operation
-------------------
A node is identified by an Ed25519 key pair. The *public key* travels on the
wire as the libp2p ``PublicKey`` protobuf ``{Type = 1 (Ed25519), Data = <32
bytes>}``, which in its one canonical encoding is the 36 bytes
``08 01 12 20 <key>``. We accept only that exact encoding: a canonical
encoding is what makes the peer id a function of the key, and a strict
decoder needs no protobuf library.

The *peer id* is a multihash of that protobuf. Keys whose protobuf is at most
42 bytes (every Ed25519 key) use the ``identity`` multihash ``00 24 <36
bytes>``, so the public key can be read back out of the peer id; longer keys
(RSA, from other libp2p nodes) use ``sha2-256`` (``12 20 <digest>``). The text
form is base58btc: ``12D3KooW...`` for Ed25519, ``Qm...`` for sha256. The
spec's CIDv1 text form (``bafz...``: multibase ``b`` + version 1 +
``libp2p-key`` codec 0x72 + multihash) is accepted when parsing.

The *key pair* serialises as 64 raw bytes, the 32-byte secret seed then the
32-byte public key. That is both the ``Data`` of libp2p's ``PrivateKey``
protobuf and the format of Pyrsia's ``p2p_keypair.ser``, so a Pyrsia key file
gives the same peer id here. Loading checks that the public half matches the
seed. :class:`Keypair` never shows its secret in ``repr``.

Everything decoded from outside raises :class:`InvalidKey` (keys) or
:class:`ValidationError` (peer ids); :meth:`PublicKey.verify` only answers
``True``/``False``.
"""

from __future__ import annotations

import base64
import functools
import hmac
from dataclasses import dataclass, field
from typing import Final, NoReturn

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ._errors import InvalidKey, ValidationError

__all__ = ["Keypair", "PeerId", "PublicKey"]

KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
_PUBLIC_PREFIX: Final = b"\x08\x01\x12\x20"  # Type=Ed25519, Data=<32 bytes>
_PRIVATE_PREFIX: Final = b"\x08\x01\x12\x40"  # Type=Ed25519, Data=<64 bytes>
_LEGACY_PRIVATE_PREFIX: Final = b"\x08\x01\x12\x60"  # Data=<seed, pub, pub>
_IDENTITY: Final = 0x00
_SHA2_256: Final = 0x12
_MAX_INLINE_KEY: Final = 42
_CID_V1: Final = 0x01
_LIBP2P_KEY_CODEC: Final = 0x72
_MAX_PEER_ID_TEXT: Final = 128  # bounds base58 decoding work on hostile input


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key (32 raw bytes)."""

    raw: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_SIZE:
            size = len(self.raw) if isinstance(self.raw, bytes) else type(self.raw).__name__
            raise InvalidKey(f"an Ed25519 public key is {KEY_SIZE} bytes, got {size}")
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.raw))

    @classmethod
    def from_protobuf(cls, data: bytes) -> PublicKey:
        """Decode the canonical libp2p ``PublicKey`` protobuf of an Ed25519 key."""
        if not isinstance(data, bytes):
            raise InvalidKey(f"public key protobuf must be bytes, got {type(data).__name__}")
        if len(data) != len(_PUBLIC_PREFIX) + KEY_SIZE or not data.startswith(_PUBLIC_PREFIX):
            raise InvalidKey(
                "not a canonical Ed25519 libp2p public key (expected 36 bytes "
                f"08 01 12 20 <key>, got {len(data)} bytes starting {data[:4].hex()})"
            )
        return cls(data[len(_PUBLIC_PREFIX) :])

    def to_protobuf(self) -> bytes:
        return _PUBLIC_PREFIX + self.raw

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is a valid Ed25519 signature of ``data``."""
        if not isinstance(signature, bytes) or not isinstance(data, bytes):
            return False
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    @functools.cached_property
    def peer_id(self) -> PeerId:
        """Our peer id, built once per key (so its text form is computed once too)."""
        return PeerId.from_public_key(self)

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()})"

    def __reduce__(self) -> tuple[type[PublicKey], tuple[bytes]]:
        # The cached cryptography object is neither picklable nor copyable.
        return (PublicKey, (self.raw,))


@dataclass(frozen=True, order=True)
class PeerId:
    """A libp2p peer id: an identity or sha2-256 multihash of a public key protobuf."""

    multihash: bytes

    def __post_init__(self) -> None:
        _check_multihash(self.multihash)

    @classmethod
    def from_public_key(cls, key: PublicKey) -> PeerId:
        encoded = key.to_protobuf()
        return cls(bytes([_IDENTITY, len(encoded)]) + encoded)

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerId:
        return cls(data)

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        """Parse ``12D3KooW...``/``Qm...`` (base58btc) or ``bafz...`` (CIDv1)."""
        if not isinstance(text, str):
            raise ValidationError(f"a peer id must be a string, got {type(text).__name__}")
        if not text:
            raise ValidationError("empty peer id")
        if len(text) > _MAX_PEER_ID_TEXT:
            raise ValidationError(f"peer id is {len(text)} characters, too long to be one")
        if text.startswith(("1", "Qm")):
            return cls(_b58decode_canonical(text))
        if text.startswith("b"):
            return cls(_cid_multihash(_b32decode(text[1:]), text))
        if text.startswith("z"):
            return cls(_cid_multihash(_b58decode_canonical(text[1:]), text))
        _reject(
            text, "expected base58btc ('12D3KooW...' or 'Qm...') or a CIDv1 ('bafz...')"
        )

    def to_bytes(self) -> bytes:
        return self.multihash

    def to_cid_string(self) -> str:
        """The CIDv1 text form (base32, ``libp2p-key``), e.g. ``bafz...``."""
        cid = bytes([_CID_V1, _LIBP2P_KEY_CODEC]) + self.multihash
        return "b" + base64.b32encode(cid).decode("ascii").rstrip("=").lower()

    def public_key(self) -> PublicKey | None:
        """The Ed25519 key inlined in an identity multihash, else ``None``."""
        digest = self.multihash[2:]
        if self.multihash[0] != _IDENTITY or not digest.startswith(_PUBLIC_PREFIX):
            return None
        try:
            return PublicKey.from_protobuf(digest)
        except InvalidKey:
            return None

    def __str__(self) -> str:
        return self._text

    @functools.cached_property
    def _text(self) -> str:
        """The base58btc form, computed once per instance (logs and documents print it often)."""
        return _base58_text(self.multihash)

    def __repr__(self) -> str:
        return f"PeerId('{self}')"


@functools.lru_cache(maxsize=8192)
def _base58_text(multihash: bytes) -> str:
    """Base58btc of a multihash; remembered, because every connection builds a new
    :class:`PeerId` for a peer it has met before (from the handshake's key)."""
    return base58.b58encode(multihash).decode("ascii")


def _check_multihash(data: object) -> None:
    if not isinstance(data, bytes):
        raise ValidationError(f"a peer id is bytes, got {type(data).__name__}")
    if len(data) < 3:
        raise ValidationError(f"peer id multihash too short ({len(data)} bytes)")
    code, size, digest = data[0], data[1], data[2:]
    if size != len(digest):
        raise ValidationError(
            f"peer id multihash says {size} digest bytes but carries {len(digest)}"
        )
    if code == _IDENTITY:
        if size > _MAX_INLINE_KEY:
            raise ValidationError(
                f"identity peer id carries {size} bytes; keys over {_MAX_INLINE_KEY} "
                "bytes must be sha2-256 hashed"
            )
        # An inline key is a PublicKey protobuf: Type (field 1, a KeyType 0..3), then
        # Data (field 2) whose length byte covers the rest exactly.
        if not (len(digest) >= 4 and digest[0] == 0x08 and digest[1] <= 3
                and digest[2] == 0x12 and digest[3] == len(digest) - 4):
            raise ValidationError("identity peer id does not carry a protobuf public key")
    elif code == _SHA2_256:
        if size != 32:
            raise ValidationError(f"sha2-256 peer id must have a 32-byte digest, got {size}")
    else:
        raise ValidationError(
            f"peer id multihash type 0x{code:02x} is not identity (0x00) or sha2-256 (0x12)"
        )


def _reject(text: str, why: str) -> NoReturn:
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ValidationError(f"bad peer id {shown!r}: {why}")


def _b58decode_canonical(text: str) -> bytes:
    try:
        data = base58.b58decode(text)
    except ValueError:
        _reject(text, "not base58btc")
    if base58.b58encode(data).decode("ascii") != text:
        _reject(text, "not canonical base58btc")
    return data


def _b32decode(text: str) -> bytes:
    if not text.isascii() or text != text.lower():
        _reject("b" + text, "CIDv1 must be lower-case base32")
    try:
        return base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except ValueError:
        _reject("b" + text, "not base32")


def _cid_multihash(cid: bytes, text: str) -> bytes:
    if len(cid) < 2 or cid[0] != _CID_V1:
        _reject(text, "not a CIDv1")
    if cid[1] != _LIBP2P_KEY_CODEC:
        _reject(text, f"CID codec 0x{cid[1]:02x} is not libp2p-key (0x72)")
    return cid[2:]


class Keypair:
    """An Ed25519 key pair. Immutable; its ``repr`` shows only the peer id."""

    __slots__ = ("_private", "_public")
    _private: Ed25519PrivateKey
    _public: PublicKey

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_private", private_key)
        object.__setattr__(self, "_public", PublicKey(raw))

    @classmethod
    def generate(cls) -> Keypair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        if not isinstance(seed, bytes) or len(seed) != KEY_SIZE:
            raise InvalidKey(f"an Ed25519 secret seed is {KEY_SIZE} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_bytes(cls, data: bytes) -> Keypair:
        """Decode 64 bytes: secret seed then public key (Pyrsia ``p2p_keypair.ser``)."""
        if not isinstance(data, bytes) or len(data) != 2 * KEY_SIZE:
            size = len(data) if isinstance(data, bytes) else type(data).__name__
            raise InvalidKey(f"an Ed25519 key pair is {2 * KEY_SIZE} bytes, got {size}")
        keypair = cls.from_seed(data[:KEY_SIZE])
        if not hmac.compare_digest(keypair.public_key.raw, data[KEY_SIZE:]):
            raise InvalidKey("the public half of the key pair does not match its secret seed")
        return keypair

    @classmethod
    def from_protobuf(cls, data: bytes) -> Keypair:
        """Decode a libp2p ``PrivateKey`` protobuf (64-byte, or legacy 96-byte, Data)."""
        if not isinstance(data, bytes):
            raise InvalidKey(f"private key protobuf must be bytes, got {type(data).__name__}")
        if len(data) == 4 + 2 * KEY_SIZE and data.startswith(_PRIVATE_PREFIX):
            return cls.from_bytes(data[4:])
        if len(data) == 4 + 3 * KEY_SIZE and data.startswith(_LEGACY_PRIVATE_PREFIX):
            # Older libp2p: seed, public, public. Both public copies must agree.
            if data[4 + KEY_SIZE : 4 + 2 * KEY_SIZE] != data[4 + 2 * KEY_SIZE :]:
                raise InvalidKey("legacy private key protobuf has two different public keys")
            return cls.from_bytes(data[4 : 4 + 2 * KEY_SIZE])
        raise InvalidKey(
            "not an Ed25519 libp2p private key protobuf (expected 08 01 12 40 <64 bytes>)"
        )

    def to_bytes(self) -> bytes:
        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return seed + self._public.raw

    def to_protobuf(self) -> bytes:
        return _PRIVATE_PREFIX + self.to_bytes()

    @property
    def public_key(self) -> PublicKey:
        return self._public

    @property
    def peer_id(self) -> PeerId:
        return self._public.peer_id

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Keypair is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Keypair is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keypair):
            return NotImplemented
        return hmac.compare_digest(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"Keypair(peer_id={self.peer_id})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Keypair is not picklable; save it with save_keypair()")
