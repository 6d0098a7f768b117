"""End-to-end security of a relayed connection: an authenticated key exchange, then AEAD.

Theory of operation
-------------------
Our connection handshake (:mod:`protocols.wire._handshake`) authenticates
the two ends, but the frames after it carry no MAC and no encryption:
confidentiality comes from ``/wss``, and only an attacker on the path could
tamper with a direct connection. A relay *is* on the path. So before the
inner connection runs, the two ends of a circuit establish a secure channel
the relay cannot read or alter:

1. each side sends ``{"t": "circuit-key", "key": <protobuf public key>,
   "eph": <32-byte X25519 public key>}`` (a fresh ephemeral key per circuit);
2. on the peer's, each side checks the key (the initiator: that it is the
   target's peer id it dialed) and sends ``{"t": "circuit-sig", "sig":
   Ed25519(CONTEXT + transcript)}``, where the transcript is the
   initiator's key and ephemeral key, then the target's - the same bytes on
   both sides, so each signature binds both identities to both ephemeral keys
   (a relay that ran two exchanges, one with each end, would present
   transcripts that differ, and its substituted keys carry no valid
   signature);
3. each side verifies the peer's signature over the transcript. Both derive
   ``HKDF-SHA256(X25519(mine, theirs), salt=SHA-256(transcript))`` into two
   32-byte keys, one per direction.

From then on every frame of the inner connection is sealed with
ChaCha20-Poly1305 under its direction's key and a 96-bit nonce counting
the frames sent that way (so a frame the relay drops, replays, reorders or
alters fails to open and ends the connection). The relay still sees sizes
and timing, which no circuit can hide. The inner connection then runs our
usual handshake over the channel, and each end checks that it authenticates
the same peer as the key exchange.

:class:`CircuitKeyExchange` is sans-io (messages in, messages and a
:class:`CircuitKeys` out, every bad input a
:class:`~protocols.HandshakeError`); :class:`FrameSealer` and
:class:`FrameOpener` are the two directions of the channel.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..core import (
    BadSignature,
    DecodeError,
    HandshakeOrderError,
    InvalidKey,
    Keypair,
    LocalProtocolError,
    PeerId,
    PeerIdMismatch,
    ProtocolError,
    PublicKey,
)
from ..wire import (
    MAX_PUBLIC_KEY_SIZE,
    WireMap,
    check_bytes,
    check_tag,
    pack,
    require,
    unpack,
)

__all__ = ["CIRCUIT_SECURITY_CONTEXT", "SEAL_OVERHEAD", "CircuitKeyExchange", "CircuitKeys",
           "FrameOpener", "FrameSealer"]

CIRCUIT_SECURITY_CONTEXT: Final = b"trio-autonat/circuit-security/1"
_KEY_INFO: Final = b"trio-autonat/circuit-keys/1"
_EPHEMERAL_SIZE: Final = 32
_SIGNATURE_SIZE: Final = 64
SEAL_OVERHEAD: Final = 16
"""Bytes a sealed frame has beyond its plaintext (the Poly1305 tag)."""
_MAX_FRAMES: Final = 2**64 - 1


class _State(enum.Enum):
    START = "start"
    AWAIT_KEY = "await-key"
    AWAIT_SIG = "await-sig"
    DONE = "done"
    FAILED = "failed"


_TRANSITIONS: Final[dict[tuple[_State, str], _State]] = {
    (_State.START, "start"): _State.AWAIT_KEY,
    (_State.AWAIT_KEY, "circuit-key"): _State.AWAIT_SIG,
    (_State.AWAIT_SIG, "circuit-sig"): _State.DONE,
}


@dataclass(frozen=True)
class CircuitKeys:
    """The outcome of the exchange: who the peer is and the two directions' keys."""

    peer_id: PeerId
    send_key: bytes
    receive_key: bytes


class CircuitKeyExchange:
    """One side of the key exchange (see the module docstring).

    ``initiator``: the side that sent CONNECT; it passes the target it dialed as
    ``expected_peer``. ``ephemeral`` fixes the X25519 secret (tests only).
    """

    def __init__(self, keypair: Keypair, *, initiator: bool,
                 expected_peer: PeerId | None = None,
                 ephemeral: bytes | None = None) -> None:
        self._keypair = keypair
        self._initiator = initiator
        self._expected = expected_peer
        self._secret = (X25519PrivateKey.generate() if ephemeral is None
                        else X25519PrivateKey.from_private_bytes(ephemeral))
        self._eph = self._secret.public_key().public_bytes_raw()
        self._my_key = keypair.public_key.to_protobuf()
        self._state = _State.START
        self._peer_key: PublicKey | None = None
        self._peer_eph = b""
        self._transcript = b""

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def handle_start(self) -> bytes:
        """Our ``circuit-key`` message."""
        self._move("start")
        return pack({"t": "circuit-key", "key": self._my_key, "eph": self._eph})

    def handle_message(self, data: bytes) -> bytes | CircuitKeys:
        """The peer's next message: our ``circuit-sig`` to send, or, after the peer's
        signature, the :class:`CircuitKeys`. Raises a HandshakeError (or DecodeError) for
        anything the peer got wrong; the exchange is then failed."""
        if self._state in (_State.DONE, _State.FAILED, _State.START):
            raise LocalProtocolError(f"circuit key exchange is {self._state.value}")
        try:
            message = unpack(data)
            if self._state is _State.AWAIT_KEY:
                return self._on_key(message)
            return self._on_sig(message)
        except ProtocolError:
            self._state = _State.FAILED
            raise

    def _on_key(self, message: WireMap) -> bytes:
        check_tag(message, "t", "circuit-key", "circuit key")
        raw_key = check_bytes(require(message, "key", "circuit key"), "circuit-key.key", 1,
                              MAX_PUBLIC_KEY_SIZE)
        self._peer_eph = check_bytes(require(message, "eph", "circuit key"), "circuit-key.eph",
                                     _EPHEMERAL_SIZE, _EPHEMERAL_SIZE)
        try:
            self._peer_key = PublicKey.from_protobuf(raw_key)
        except ProtocolError as exc:
            raise InvalidKey(f"circuit-key.key: {exc}") from None
        peer = self._peer_key.peer_id
        if raw_key == self._my_key or self._peer_eph == self._eph:
            raise HandshakeOrderError("the peer echoed our own key (reflection)")
        if self._expected is not None and peer != self._expected:
            raise PeerIdMismatch(f"dialed {self._expected} through the relay but the other "
                                 f"end is {peer}")
        mine = self._my_key + self._eph
        theirs = raw_key + self._peer_eph
        ordered = mine + theirs if self._initiator else theirs + mine
        self._transcript = CIRCUIT_SECURITY_CONTEXT + ordered
        self._move("circuit-key")
        return pack({"t": "circuit-sig", "sig": self._keypair.sign(self._transcript)})

    def _on_sig(self, message: WireMap) -> CircuitKeys:
        check_tag(message, "t", "circuit-sig", "circuit signature")
        signature = check_bytes(require(message, "sig", "circuit signature"), "circuit-sig.sig",
                                _SIGNATURE_SIZE, _SIGNATURE_SIZE)
        assert self._peer_key is not None
        if not self._peer_key.verify(signature, self._transcript):
            raise BadSignature("the circuit key exchange signature does not verify")
        self._move("circuit-sig")
        try:
            shared = self._secret.exchange(X25519PublicKey.from_public_bytes(self._peer_eph))
        except ValueError:  # a low-order point: an all-zero shared secret
            self._state = _State.FAILED
            raise InvalidKey("the peer's ephemeral key is not usable") from None
        okm = HKDF(algorithm=hashes.SHA256(), length=64,
                   salt=hashlib.sha256(self._transcript).digest(), info=_KEY_INFO).derive(shared)
        to_target, to_initiator = okm[:32], okm[32:]
        send, receive = ((to_target, to_initiator) if self._initiator
                         else (to_initiator, to_target))
        return CircuitKeys(self._peer_key.peer_id, send, receive)

    def _move(self, event: str) -> None:
        following = _TRANSITIONS.get((self._state, event))
        if following is None:
            if event == "start":
                raise LocalProtocolError(f"circuit key exchange is {self._state.value}")
            raise HandshakeOrderError(f"unexpected {event} when {self._state.value}")
        self._state = following


class FrameSealer:
    """Seals the frames one side sends (ChaCha20-Poly1305, nonce = frame counter)."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._count = 0

    def seal(self, frame: bytes) -> bytes:
        if self._count >= _MAX_FRAMES:
            raise LocalProtocolError("this circuit sent all the frames its nonces allow")
        nonce = self._count.to_bytes(12, "little")
        self._count += 1
        return self._aead.encrypt(nonce, frame, None)


class FrameOpener:
    """Opens the frames the peer sends, strictly in order; anything else is a DecodeError."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._count = 0

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) < SEAL_OVERHEAD or self._count >= _MAX_FRAMES:
            raise DecodeError("a sealed circuit frame is too short")
        nonce = self._count.to_bytes(12, "little")
        try:
            frame = self._aead.decrypt(nonce, sealed, None)
        except InvalidTag:
            raise DecodeError("a circuit frame failed authentication (altered, replayed, "
                              "reordered or dropped on the way)") from None
        self._count += 1
        return frame
