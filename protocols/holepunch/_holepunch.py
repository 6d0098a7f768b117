"""Hole punching over a relayed connection: when to try, roles, timing, retries.

Theory of operation
-------------------
Peer A dialed peer B through a relay; both are behind NATs. Each NAT lets a
packet in only after its host sent one to the packet's source, so neither
SYN gets through alone - but if both hosts send a SYN from their listen port
to the other's public address *at the same moment*, each SYN opens its own
NAT for the other, and the kernels join the two into one TCP connection
(simultaneous open). That needs each side's public address and a common
moment, which the relayed connection provides (DCUtR semantics):

1. **B (the initiator: it received the relayed connection)** sends
   ``Connect`` with its observed addresses and NAT mapping, and starts a
   clock.
2. **A (the responder)** answers ``Connect`` with its own.
3. B now knows the round trip over the relay (``rtt``). It sends ``Sync``
   and dials ``rtt / 2`` later - the moment ``Sync`` reaches A, who dials at
   once on receiving it. Both SYNs leave at (nearly) the same time.
4. The resulting connection carries our usual handshake. **A, who dialed
   through the relay, is the WebSocket client; B is the server** (a
   simultaneous open has no listener to tell them apart).

A failed attempt (no direct connection within ``punch_timeout``) starts a
new round from step 1, at most ``max_attempts`` rounds (a responder still
waiting for its dials follows the initiator's new ``Connect``: the
initiator's dials may have been refused at once); then the relayed
connection stays and the outcome says so. A direct connection to the peer
that appears by any route (the peer's SYN reached our listener) ends the
machine with success.

**When not to try.** Both ends learn both NAT mappings from the ``Connect``
exchange and decide the same way: no usable address on either side, or a
mapping that is ``endpoint-dependent`` (the NAT gives the SYN towards the
peer a port nobody announced, so the peer's SYN hits a closed port) ends
with ``skipped`` and the reason, before any dial.

The machine is sans-io on the one driving contract: inputs are
``start(now)`` (initiator), ``handle_message(msg, now)``,
``handle_direct_connection(now)``, ``handle_punch_failed(reason, now)``,
``handle_stream_ended(reason, now)`` (the exchange's stream ended: fatal while
a message is due, ignored while the dials run - the peer may have finished
first, its direct connection on the way) and ``handle_timeout(now)``; each
returns commands (:class:`SendPunchMessage`, :class:`PunchDirect`,
:class:`HolePunchFinished`); ``poll_timeout()`` says when time must pass.
States and transitions are an explicit table; an input the current state
does not accept raises
:class:`~protocols.core.LocalProtocolError` (our bug), except a message
from the peer, which raises :class:`~protocols.core.ValidationError` (the
peer's protocol error: the actor resets the stream).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..core import AddressPolicy, LocalProtocolError, ValidationError, WsAddress
from ._holepunch_msg import HolePunchConnect, HolePunchMessage, HolePunchSync, usable_punch_addrs

__all__ = [
    "HolePunch",
    "HolePunchConfig",
    "HolePunchFinished",
    "HolePunchRole",
    "HolePunchState",
    "PunchDirect",
    "PunchOutcome",
    "SendPunchMessage",
    "skip_reason",
]


class HolePunchRole(enum.Enum):
    INITIATOR = "initiator"
    """B: received the relayed connection; sends Connect and Sync; WebSocket server."""
    RESPONDER = "responder"
    """A: dialed through the relay; answers; WebSocket client on the direct connection."""


class HolePunchState(enum.Enum):
    IDLE = "idle"
    AWAIT_REPLY = "await-reply"
    """Initiator: our Connect is out, the peer's answer is due."""
    AWAIT_CONNECT = "await-connect"
    """Responder: the initiator's (next) Connect is due."""
    AWAIT_SYNC = "await-sync"
    SYNC_WAIT = "sync-wait"
    PUNCHING = "punching"
    DONE = "done"


class PunchOutcome(enum.Enum):
    DIRECT = "direct"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class HolePunchConfig:
    max_attempts: int = 3
    punch_timeout: float = 5.0
    """How long one attempt waits for its direct connection (covers SYN retransmits)."""
    reply_timeout: float = 10.0
    """How long a message over the relay may take to be answered."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 10:
            raise ValueError(f"max_attempts must be 1..10, got {self.max_attempts}")
        for name in ("punch_timeout", "reply_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 120:
                raise ValueError(f"{name} must be in (0, 120] seconds, got {value}")


@dataclass(frozen=True)
class SendPunchMessage:
    message: HolePunchMessage


@dataclass(frozen=True)
class PunchDirect:
    """Dial every address in ``addrs`` from our listen port now; ``as_client``: run
    the WebSocket client handshake on what connects (else the server's)."""

    addrs: tuple[WsAddress, ...]
    as_client: bool
    attempt: int


@dataclass(frozen=True)
class HolePunchFinished:
    outcome: PunchOutcome
    attempts: int
    reason: str
    rtt: float | None
    """The last round trip over the relay the initiator measured (``None``: not measured)."""


Command = SendPunchMessage | PunchDirect | HolePunchFinished
_Handler = Callable[["HolePunch", object, float], list[Command]]

ENDPOINT_DEPENDENT: Final = "endpoint-dependent"


def skip_reason(ours: HolePunchConnect, theirs: HolePunchConnect,
                their_addrs: tuple[WsAddress, ...]) -> str | None:
    """Why a punch between these two ends cannot work (``None``: try it)."""
    if ours.mapping == ENDPOINT_DEPENDENT:
        return ("our NAT maps each destination to a new port (endpoint-dependent mapping): "
                "the peer cannot know where to send its SYN")
    if theirs.mapping == ENDPOINT_DEPENDENT:
        return ("the peer's NAT maps each destination to a new port (endpoint-dependent "
                "mapping): our SYN cannot reach it")
    if not ours.addrs:
        return "we know no public address of ours (no observation yet)"
    if not their_addrs:
        return "the peer sent no usable public address"
    return None


class HolePunch:
    """One hole-punch exchange on one relayed connection; see the module docstring."""

    def __init__(self, role: HolePunchRole, ours: HolePunchConnect, policy: AddressPolicy,
                 config: HolePunchConfig | None = None) -> None:
        self.role = role
        self.state = HolePunchState.IDLE if role is HolePunchRole.INITIATOR \
            else HolePunchState.AWAIT_CONNECT
        self._ours = ours
        self._policy = policy
        self._config = config or HolePunchConfig()
        self._attempts = 0
        self._deadline: float | None = None
        self._sent_at = 0.0
        self._rtt: float | None = None
        self._their_addrs: tuple[WsAddress, ...] = ()
        self.skipped_addrs: tuple[str, ...] = ()

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def rtt(self) -> float | None:
        return self._rtt

    # --- inputs --------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        return self._dispatch("start", None, now)

    def handle_message(self, message: HolePunchMessage, now: float) -> list[Command]:
        kind = "connect" if isinstance(message, HolePunchConnect) else "sync"
        if (self.state, kind) not in _TABLE:
            raise ValidationError(f"hole punch: unexpected {kind} message in state "
                                  f"{self.state.value} ({self.role.value})")
        return self._dispatch(kind, message, now)

    def handle_direct_connection(self, now: float) -> list[Command]:
        return self._dispatch("direct", None, now)

    def handle_punch_failed(self, reason: str, now: float) -> list[Command]:
        return self._dispatch("failed", reason, now)

    def handle_stream_ended(self, reason: str, now: float) -> list[Command]:
        return self._dispatch("ended", reason, now)

    def poll_timeout(self) -> float | None:
        return self._deadline

    def handle_timeout(self, now: float) -> list[Command]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return self._dispatch("timeout", None, now)

    def _dispatch(self, kind: str, arg: object, now: float) -> list[Command]:
        handler = _TABLE.get((self.state, kind))
        if handler is None:
            raise LocalProtocolError(f"hole punch: {kind} is not accepted in state "
                                     f"{self.state.value} ({self.role.value})")
        return handler(self, arg, now)

    # --- transitions ---------------------------------------------------------

    def _send_connect(self, _arg: object, now: float) -> list[Command]:
        self._attempts += 1
        self._sent_at = now
        self.state = HolePunchState.AWAIT_REPLY
        self._deadline = now + self._config.reply_timeout
        return [SendPunchMessage(self._ours)]

    def _initiator_got_connect(self, arg: object, now: float) -> list[Command]:
        assert isinstance(arg, HolePunchConnect)
        self._rtt = max(0.0, now - self._sent_at)
        why = self._learn(arg)
        if why is not None:
            return self._finish(PunchOutcome.SKIPPED, why)
        self.state = HolePunchState.SYNC_WAIT
        self._deadline = now + self._rtt / 2
        return [SendPunchMessage(HolePunchSync())]

    def _initiator_dials(self, _arg: object, now: float) -> list[Command]:
        self.state = HolePunchState.PUNCHING
        self._deadline = now + self._config.punch_timeout
        return [PunchDirect(self._their_addrs, as_client=False, attempt=self._attempts)]

    def _responder_got_connect(self, arg: object, now: float) -> list[Command]:
        assert isinstance(arg, HolePunchConnect)
        self._attempts += 1
        why = self._learn(arg)
        if why is not None:
            return [SendPunchMessage(self._ours), *self._finish(PunchOutcome.SKIPPED, why)]
        self.state = HolePunchState.AWAIT_SYNC
        self._deadline = now + self._config.reply_timeout
        return [SendPunchMessage(self._ours)]

    def _next_round(self, arg: object, now: float) -> list[Command]:
        """A ``Connect`` while we punch: the initiator's dials of this round already
        failed (a refusal comes back at once, our wait runs to ``punch_timeout``) and it
        starts the next round; the responder follows. Out of turn for the initiator."""
        if self.role is HolePunchRole.INITIATOR:
            raise ValidationError("hole punch: unexpected connect message in state "
                                  "punching (initiator)")
        return self._responder_got_connect(arg, now)

    def _responder_dials(self, _arg: object, now: float) -> list[Command]:
        self.state = HolePunchState.PUNCHING
        self._deadline = now + self._config.punch_timeout
        return [PunchDirect(self._their_addrs, as_client=True, attempt=self._attempts)]

    def _attempt_failed(self, arg: object, now: float) -> list[Command]:
        reason = arg if isinstance(arg, str) else "no direct connection in time"
        if self._attempts >= self._config.max_attempts:
            return self._finish(PunchOutcome.FAILED,
                                f"{self._attempts} attempts failed, last: {reason}")
        if self.role is HolePunchRole.INITIATOR:
            return self._send_connect(None, now)
        self.state = HolePunchState.AWAIT_CONNECT  # the initiator starts the next round
        self._deadline = now + self._config.reply_timeout
        return []

    def _silence(self, _arg: object, now: float) -> list[Command]:
        why = f"the peer stopped answering over the relay ({self.state.value})"
        if self._attempts:
            why = f"{self._attempts} attempt(s) failed, then {why}"
        return self._finish(PunchOutcome.FAILED, why)

    def _stream_ended(self, arg: object, now: float) -> list[Command]:
        why = f"the exchange ended over the relay ({arg})"
        if self._attempts:
            why = f"{self._attempts} attempt(s) made, then {why}"
        return self._finish(PunchOutcome.FAILED, why)

    def _succeeded(self, _arg: object, now: float) -> list[Command]:
        return self._finish(PunchOutcome.DIRECT, "direct connection established")

    def _late(self, _arg: object, now: float) -> list[Command]:
        return []  # a dial result after the machine ended: nothing left to decide

    # --- helpers -------------------------------------------------------------

    def _learn(self, theirs: HolePunchConnect) -> str | None:
        self._their_addrs, self.skipped_addrs = usable_punch_addrs(theirs, self._policy)
        return skip_reason(self._ours, theirs, self._their_addrs)

    def _finish(self, outcome: PunchOutcome, reason: str) -> list[Command]:
        self.state = HolePunchState.DONE
        self._deadline = None
        return [HolePunchFinished(outcome, self._attempts, reason, self._rtt)]


_S = HolePunchState
_TABLE: Final[dict[tuple[HolePunchState, str], _Handler]] = {
    # the initiator (B)
    (_S.IDLE, "start"): HolePunch._send_connect,
    (_S.AWAIT_REPLY, "connect"): HolePunch._initiator_got_connect,
    (_S.AWAIT_REPLY, "timeout"): HolePunch._silence,
    (_S.SYNC_WAIT, "timeout"): HolePunch._initiator_dials,
    # the responder (A)
    (_S.AWAIT_CONNECT, "connect"): HolePunch._responder_got_connect,
    (_S.AWAIT_CONNECT, "timeout"): HolePunch._silence,
    (_S.AWAIT_SYNC, "sync"): HolePunch._responder_dials,
    (_S.AWAIT_SYNC, "timeout"): HolePunch._silence,
    (_S.PUNCHING, "connect"): HolePunch._next_round,
    # both
    (_S.PUNCHING, "failed"): HolePunch._attempt_failed,
    (_S.PUNCHING, "timeout"): HolePunch._attempt_failed,
    **{(state, "direct"): HolePunch._succeeded
       for state in (_S.AWAIT_REPLY, _S.AWAIT_CONNECT, _S.AWAIT_SYNC, _S.SYNC_WAIT,
                     _S.PUNCHING)},
    **{(state, "ended"): HolePunch._stream_ended
       for state in (_S.AWAIT_REPLY, _S.AWAIT_CONNECT, _S.AWAIT_SYNC)},
    **{(state, "ended"): HolePunch._late  # the dials go on: the peer may have finished first
       for state in (_S.SYNC_WAIT, _S.PUNCHING, _S.DONE)},
    (_S.DONE, "direct"): HolePunch._late,
    (_S.DONE, "failed"): HolePunch._late,
}
