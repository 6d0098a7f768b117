"""Sans-io connection handshake: mutual Ed25519 authentication.

The exchange: (docs/architecture.md, "Wire protocol").

Theory of operation
-------------------
Both ends send a ``Hello`` at once, carrying their protobuf public key and
a fresh 32-byte nonce. On receiving the peer's ``Hello`` each end answers
with an ``Auth`` frame: an Ed25519 signature over
``HANDSHAKE_CONTEXT + their_nonce + my_key``. Each end then verifies the
peer's signature over *its own* nonce, which proves the peer holds the
secret half of the key it announced, live, on this connection (the nonce
was never seen before, so a recorded ``Auth`` cannot be replayed).

The machine is driven like h11: ``start()`` returns the bytes to send first,
``receive_frame(data, now)`` consumes one inbound frame and returns the
frames to send in reply, and ``check_timeout(now)`` turns a missed deadline
into :class:`HandshakeTimeout`. Time is an argument; nothing here sleeps or
touches a socket.

States and transitions are a table (``_TRANSITIONS``). Any frame that does
not match the table raises :class:`HandshakeOrderError`; the machine is then
``FAILED`` and refuses further input, so the caller must close the
connection. Extra checks that matter for the mission:

* the dialer passes ``expected_peer``; a different authenticated id raises
  :class:`PeerIdMismatch` (we dialed someone else's address);
* a ``Hello`` echoing our own nonce or our own key (a reflected handshake,
  or a node dialing itself) is rejected;
* a signature that does not verify raises :class:`BadSignature`.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from ..core import (
    BadSignature,
    HandshakeError,
    HandshakeOrderError,
    HandshakeTimeout,
    InvalidKey,
    Keypair,
    LocalProtocolError,
    PeerId,
    PeerIdMismatch,
    ProtocolError,
    PublicKey,
)
from ._frames import (
    HANDSHAKE_VERSION,
    NONCE_SIZE,
    Auth,
    Hello,
    decode_handshake_frame,
    handshake_payload,
)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0


class HandshakeState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    AWAIT_AUTH = "await-auth"
    DONE = "done"
    FAILED = "failed"


# (state, frame type) -> next state. Everything else is an order error.
_TRANSITIONS: dict[tuple[HandshakeState, type[Hello | Auth]], HandshakeState] = {
    (HandshakeState.AWAIT_HELLO, Hello): HandshakeState.AWAIT_AUTH,
    (HandshakeState.AWAIT_AUTH, Auth): HandshakeState.DONE,
}


@dataclass(frozen=True)
class HandshakeResult:
    """What a completed handshake proved about the remote end."""

    peer_id: PeerId
    public_key: PublicKey


class Handshake:
    """One side of the handshake on one connection.

    ``keypair`` is ours; ``expected_peer`` is the id we dialed (``None`` on the
    listening side); ``now`` starts the ``timeout`` clock. ``nonce`` may be
    given by tests for reproducible bytes; production uses ``secrets.token_bytes``.
    """

    def __init__(
        self,
        keypair: Keypair,
        *,
        now: float,
        expected_peer: PeerId | None = None,
        timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        nonce: bytes | None = None,
    ) -> None:
        if nonce is not None and len(nonce) != NONCE_SIZE:
            raise LocalProtocolError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
        self._keypair = keypair
        self._my_key = keypair.public_key.to_protobuf()
        self._nonce = nonce if nonce is not None else secrets.token_bytes(NONCE_SIZE)
        self._expected = expected_peer
        self.deadline = now + timeout
        self.state = HandshakeState.AWAIT_HELLO
        self._remote_key: PublicKey | None = None
        self._started = False

    @property
    def done(self) -> bool:
        return self.state is HandshakeState.DONE

    @property
    def result(self) -> HandshakeResult:
        """The authenticated remote identity; only valid once ``done``."""
        if not self.done or self._remote_key is None:
            raise LocalProtocolError(
                f"the handshake result was asked for in state {self.state.value}; "
                "it exists only once done")
        return HandshakeResult(self._remote_key.peer_id, self._remote_key)

    def start(self) -> bytes:
        """Our ``Hello`` frame: send it as soon as the connection is open."""
        if self._started:
            raise LocalProtocolError(f"start() called twice (state {self.state.value})")
        self._started = True
        return Hello(version=HANDSHAKE_VERSION, public_key=self._my_key, nonce=self._nonce).encode()

    def check_timeout(self, now: float) -> None:
        """Raise :class:`HandshakeTimeout` when ``now`` is past the deadline."""
        if not self.done and now >= self.deadline:
            stuck_in = self.state.value
            self.state = HandshakeState.FAILED
            raise HandshakeTimeout(f"handshake did not complete before its deadline "
                                   f"(stuck in {stuck_in})")

    def receive_frame(self, data: bytes, now: float) -> list[bytes]:
        """Consume one inbound frame; return frames to send. Raises HandshakeError.

        Calling it before :meth:`start` is our misuse (:class:`LocalProtocolError`).
        """
        if not self._started:
            raise LocalProtocolError(
                f"receive_frame() before start() in state {self.state.value}: "
                "send our Hello first")
        if self.state is HandshakeState.FAILED:
            raise HandshakeOrderError("handshake already failed; close the connection")
        self.check_timeout(now)
        try:
            frame = decode_handshake_frame(data)
            return self._apply(frame)
        except HandshakeError:
            self.state = HandshakeState.FAILED
            raise
        except ProtocolError as exc:
            self.state = HandshakeState.FAILED
            raise HandshakeOrderError(f"invalid handshake frame: {exc}") from exc

    def _apply(self, frame: Hello | Auth) -> list[bytes]:
        nxt = _TRANSITIONS.get((self.state, type(frame)))
        if nxt is None:
            raise HandshakeOrderError(
                f"unexpected {type(frame).__name__} frame in state {self.state.value}")
        reply = self._on_hello(frame) if isinstance(frame, Hello) else self._on_auth(frame)
        self.state = nxt
        return reply

    def _on_hello(self, hello: Hello) -> list[bytes]:
        if hello.version != HANDSHAKE_VERSION:
            raise HandshakeOrderError(f"unsupported handshake version {hello.version}")
        if hello.nonce == self._nonce or hello.public_key == self._my_key:
            raise HandshakeOrderError("peer echoed our own nonce or key (reflection or self-dial)")
        try:
            key = PublicKey.from_protobuf(hello.public_key)
        except InvalidKey as exc:
            raise HandshakeOrderError(f"peer sent an unusable public key: {exc}") from exc
        if self._expected is not None and key.peer_id != self._expected:
            raise PeerIdMismatch(f"dialed {self._expected} but the peer authenticated as "
                                 f"{key.peer_id}")
        self._remote_key = key
        signature = self._keypair.sign(handshake_payload(hello.nonce, self._my_key))
        return [Auth(signature=signature).encode()]

    def _on_auth(self, auth: Auth) -> list[bytes]:
        assert self._remote_key is not None
        payload = handshake_payload(self._nonce, self._remote_key.to_protobuf())
        if not self._remote_key.verify(auth.signature, payload):
            raise BadSignature(f"signature from {self._remote_key.peer_id} does not verify "
                               "over our nonce")
        return []
