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

The machine follows the sans-io contract (docs/architecture.md, "The
sans-io contract"): ``handle_start(now)`` returns our ``Hello`` as a
:class:`SendFrame`; ``handle_frame(data, now)`` consumes one inbound frame and
returns a :class:`SendFrame` (our ``Auth``) or :class:`HandshakeDone`
carrying the :class:`HandshakeResult`; ``poll_timeout()`` is the deadline
while the handshake runs (``None`` before ``handle_start`` and once it is
done or failed) and ``handle_timeout(now)`` returns ``[]`` before it and
:class:`HandshakeFailed` (with a :class:`HandshakeTimeout`) at or after it. A
frame handed over at or after the deadline is not read: the same
:class:`HandshakeFailed` comes back. Time is an argument; nothing here sleeps
or touches a socket.

A missed deadline is an *event*, because it is time passing, not an input
anyone sent wrong. What the peer sent wrong *raises* a
:class:`HandshakeError` (a :class:`RemoteProtocolError`), and a call the state
does not accept (``handle_start`` twice, a frame before ``handle_start`` or
after the handshake is done or failed) raises :class:`LocalProtocolError`.

States and transitions are a table (``_TRANSITIONS``). Any frame that does
not match the table raises :class:`HandshakeOrderError`; the machine is then
``FAILED`` and refuses further input, so the caller must close the
connection. Extra checks that matter for the mission:

* the dialer passes ``expected_peer``; a different authenticated id raises
  :class:`PeerIdMismatch` (we dialed someone else's address);
* a ``Hello`` echoing our own nonce (a reflected handshake) is rejected;
* a ``Hello`` carrying our own key with a fresh nonce is the node dialing
  itself - through a NAT that hairpins, or at an address of its own. The
  handshake runs to its end, so the peer must prove it holds our secret key
  over our nonce like anyone else; a valid ``Auth`` then raises
  :class:`SelfConnection` (on both ends) instead of completing: a connection
  to ourselves is never a peer connection, and the error tells the hairpin
  test (``actors.node._hairpin``) and the listener what happened. A ``Hello``
  with our key that cannot sign is an impostor (:class:`BadSignature`);
* a signature that does not verify raises :class:`BadSignature`.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import TypeAlias

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
    SelfConnection,
)
from ._events import SendFrame
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


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake proved about the remote end."""

    peer_id: PeerId
    public_key: PublicKey
    rtt: float | None = None
    """Seconds from our ``Hello`` to the peer's ``Auth``: one round trip (the peer
    answers our ``Hello`` at once), the path's only RTT sample where the transport
    measures none."""


@dataclass(frozen=True)
class HandshakeDone:
    """The peer authenticated; the connection now carries stream frames."""

    result: HandshakeResult


@dataclass(frozen=True)
class HandshakeFailed:
    """The handshake missed its deadline; close the connection with ``reason``."""

    error: HandshakeTimeout

    @property
    def reason(self) -> str:
        return str(self.error)


HandshakeEvent: TypeAlias = SendFrame | HandshakeDone | HandshakeFailed


@dataclass(frozen=True)
class HandshakeStatistics:
    """A snapshot of one handshake."""

    state: HandshakeState
    frames_received: int
    frames_sent: int


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
        self._deadline = now + timeout
        self.state = HandshakeState.AWAIT_HELLO
        self._remote_key: PublicKey | None = None
        self._started = False
        self._started_at = now
        self._frames_received = 0
        self._frames_sent = 0

    def poll_timeout(self) -> float | None:
        """The deadline while the handshake runs; ``None`` before start and once over."""
        if not self._started or self.state in (HandshakeState.DONE, HandshakeState.FAILED):
            return None
        return self._deadline

    def statistics(self) -> HandshakeStatistics:
        return HandshakeStatistics(self.state, self._frames_received, self._frames_sent)

    def handle_start(self, now: float) -> list[HandshakeEvent]:
        """Our ``Hello`` frame: send it as soon as the connection is open.

        Started at or after the deadline, the handshake fails at once
        (:class:`HandshakeFailed`, nothing to send).
        """
        if self._started:
            raise LocalProtocolError(f"handle_start() called twice (state {self.state.value})")
        self._started = True
        self._started_at = now
        timed_out = self.handle_timeout(now)
        if timed_out:
            return timed_out
        self._frames_sent += 1
        hello = Hello(version=HANDSHAKE_VERSION, public_key=self._my_key, nonce=self._nonce)
        return [SendFrame(hello.encode())]

    def handle_timeout(self, now: float) -> list[HandshakeEvent]:
        """:class:`HandshakeFailed` once ``now`` reaches the deadline; ``[]`` before it."""
        if self.poll_timeout() is None or now < self._deadline:
            return []
        stuck_in = self.state.value
        self.state = HandshakeState.FAILED
        return [HandshakeFailed(HandshakeTimeout(
            f"handshake did not complete before its deadline (stuck in {stuck_in})"))]

    def handle_frame(self, data: bytes, now: float) -> list[HandshakeEvent]:
        """Consume one inbound frame. Raises HandshakeError for what the peer got wrong.

        A call the state does not accept (before :meth:`handle_start`, after
        the handshake is done or failed) raises :class:`LocalProtocolError`.
        """
        if not self._started:
            raise LocalProtocolError(f"handle_frame() before handle_start() in state "
                                     f"{self.state.value}: send our Hello first")
        if self.state in (HandshakeState.DONE, HandshakeState.FAILED):
            raise LocalProtocolError(
                f"handle_frame() after the handshake ended in state {self.state.value}: "
                "close the connection (failed) or hand frames to the stream mux (done)")
        timed_out = self.handle_timeout(now)
        if timed_out:
            return timed_out
        self._frames_received += 1
        try:
            frame = decode_handshake_frame(data)
            events = self._apply(frame, now)
        except HandshakeError:
            self.state = HandshakeState.FAILED
            raise
        except ProtocolError as exc:
            self.state = HandshakeState.FAILED
            raise HandshakeOrderError(f"invalid handshake frame: {exc}") from exc
        self._frames_sent += sum(isinstance(event, SendFrame) for event in events)
        return events

    def _apply(self, frame: Hello | Auth, now: float) -> list[HandshakeEvent]:
        nxt = _TRANSITIONS.get((self.state, type(frame)))
        if nxt is None:
            raise HandshakeOrderError(
                f"unexpected {type(frame).__name__} frame in state {self.state.value}")
        reply = self._on_hello(frame) if isinstance(frame, Hello) else self._on_auth(frame, now)
        self.state = nxt
        return reply

    def _on_hello(self, hello: Hello) -> list[HandshakeEvent]:
        if hello.version != HANDSHAKE_VERSION:
            raise HandshakeOrderError(f"unsupported handshake version {hello.version}")
        if hello.nonce == self._nonce:
            raise HandshakeOrderError("peer echoed our own nonce (reflection of our Hello)")
        try:
            key = PublicKey.from_protobuf(hello.public_key)
        except InvalidKey as exc:
            raise HandshakeOrderError(f"peer sent an unusable public key: {exc}") from exc
        if self._expected is not None and key.peer_id != self._expected:
            raise PeerIdMismatch(f"dialed {self._expected} but the peer authenticated as "
                                 f"{key.peer_id}")
        self._remote_key = key
        signature = self._keypair.sign(handshake_payload(hello.nonce, self._my_key))
        return [SendFrame(Auth(signature=signature).encode())]

    def _on_auth(self, auth: Auth, now: float) -> list[HandshakeEvent]:
        assert self._remote_key is not None
        payload = handshake_payload(self._nonce, self._remote_key.to_protobuf())
        if not self._remote_key.verify(auth.signature, payload):
            raise BadSignature(f"signature from {self._remote_key.peer_id} does not verify "
                               "over our nonce")
        if self._remote_key.to_protobuf() == self._my_key:
            raise SelfConnection("the peer authenticated as this node itself: the connection "
                                 "looped back to our own listener")
        rtt = max(0.0, now - self._started_at)
        return [HandshakeDone(HandshakeResult(self._remote_key.peer_id, self._remote_key, rtt))]
