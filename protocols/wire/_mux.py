"""Sans-io stream multiplexer: many protocol streams over one connection.

The stream frames: (docs/architecture.md, "Wire protocol").

Theory of operation
-------------------
After the handshake every frame on a connection belongs to a *stream*. A
:class:`StreamMux` is one side's bookkeeping for all of them. It follows
the sans-io contract (docs/architecture.md, "The sans-io contract"): the
caller feeds inbound frames to :meth:`StreamMux.handle_frame` and gets back a
list of :data:`MuxEvent` - the events to act on and, as :class:`SendFrame`,
the frames to send in reply, in order; :meth:`~StreamMux.poll_timeout` is
the earliest stream deadline and :meth:`~StreamMux.handle_timeout` resets
the streams that reached theirs. The caller asks
:meth:`~StreamMux.encode_message`, :meth:`~StreamMux.encode_fin` and
:meth:`~StreamMux.encode_error` for the bytes of its own frames, and reports
with :meth:`~StreamMux.handle_consumed` the messages its application has
read, which returns the window update to send when one is due. Time is an
argument (``now``); nothing here sleeps.

Stream ids: the dialer (``initiator=True``) opens odd ids 1, 3, 5 ..., the
listener even ids 2, 4, 6 ...; id 0 is reserved; an id is never reused. A
locally opened stream costs nothing on the wire until its first frame, which
carries the protocol id ``"p"``; later frames never do. Ids are allocated in
order but a stream is *announced* by its first frame, so the peer may see
them out of order: any unused id of the peer's parity with ``"p"`` opens a
stream.

Each stream is two halves. Sending ``fin`` closes our half, receiving it
closes the peer's; the stream is done when both are closed, or at once when
an error frame is sent or received, or when it outlives
``MuxLimits.stream_timeout`` (a lifetime bound measured from its opening, so
a peer cannot keep a stream alive by dribbling). The transitions are the
table ``_TRANSITIONS``; an error takes any live state to ``RESET``.

The wire format has no data-less fin, so a *bare fin* is written as a fin
frame with an empty message map and reported as ``StreamMessage(message=None,
fin=True)``. Consequently an empty map cannot be a stream's final message in
the same frame; :meth:`~StreamMux.encode_message` refuses it (send the empty
message, then :meth:`~StreamMux.encode_fin`).

Flow control (:mod:`protocols.wire._flow`): every stream has a window of
``MuxLimits.stream_window`` messages each way. :meth:`~StreamMux.send_credit`
is what we may still send; a window update from the peer raises it and gives
:class:`SendCreditGranted`, which is when a waiting sender should retry.
Inbound messages use up the peer's credit, and :meth:`~StreamMux.handle_consumed`
grants it back in batches. So the caller can deliver every message at once
into an inbox of ``stream_window`` places: it can never overflow, and one
stream's slow consumer never holds up the others.

What the peer can get wrong, and what happens:

* *stream-level trouble* is answered with an error frame and the connection
  survives: a new stream beyond ``max_streams`` concurrent inbound streams
  (``too-many-streams``) or for a protocol we do not serve
  (``unsupported-protocol``). The caller also sees
  :class:`InboundStreamRejected`.
* a message beyond the stream's window resets *that stream* with
  ``flow-control``: :class:`StreamErrored` (``by_peer=False``) then the error
  frame, and later frames in flight on it are dropped like any after our
  reset. Only the stream is lost because the harm - more input than we have
  room for - is confined to it, and the message is dropped before it costs
  anything; a peer whose window setting differs from ours thus loses the
  streams it overfills, not its other traffic.
* *connection-level violations* raise :class:`~protocols.StreamError` (or
  the decoder's :class:`~protocols.DecodeError` /
  :class:`~protocols.FrameTooLarge` / :class:`~protocols.ValidationError`):
  an undecodable or oversized frame, a new stream with our parity, a new
  stream without ``"p"``, ``"p"`` on a stream that is already open or on an
  id that already ended, a frame after the peer's fin or reset, a window
  update for a stream the peer cannot know or beyond 2**32 - 1 credit. The mux is
  then *failed* and refuses further input; the caller closes the connection
  with the message.

What *we* can get wrong raises :class:`~protocols.LocalProtocolError`, naming
the stream and its state, and leaves the mux unchanged: sending on a stream
that is unknown, ended or whose half we closed, sending a message without
send credit, consuming more messages than arrived, an invalid protocol id or
error code, an empty final message, any call after the mux failed.

Races that legal peers produce are never violations. Frames already in
flight when *we* reset a stream (explicitly, by timeout, or by rejecting it)
are dropped silently, as are error frames for streams that are already gone
(both sides timed out at once), and window updates for streams that already
ended or on which we already sent fin (the peer keeps reading after its own
fin, so its updates can cross ours). To tell those apart from violations the mux
remembers how the last ``MuxLimits.remembered_streams`` streams ended;
frames for older, forgotten ids are dropped.

Concurrency limits count each direction separately: at most ``max_streams``
inbound and ``max_streams`` outbound. In-order delivery guarantees that our
count of the peer's open streams never exceeds the peer's own count, so a
peer honouring the same limit is never refused.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from ..core import LocalProtocolError, ProtocolError, StreamError, StreamLimitReached
from ._codec import DEFAULT_LIMITS, U32_MAX, Limits, WireMap
from ._events import SendFrame
from ._flow import DEFAULT_STREAM_WINDOW, FlowWindow
from ._frames import (
    MAX_ERROR_CODE_LEN,
    MAX_PROTOCOL_ID_LEN,
    ErrorCode,
    ErrorFrame,
    StreamFrame,
    WindowUpdate,
    decode_stream_frame,
)

DEFAULT_MAX_STREAMS: Final = 64
DEFAULT_STREAM_TIMEOUT: Final = 30.0
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class MuxLimits:
    """Per-connection stream limits; validated at construction."""

    max_streams: int = DEFAULT_MAX_STREAMS
    """Concurrent streams per direction (inbound and outbound counted apart)."""
    stream_timeout: float = DEFAULT_STREAM_TIMEOUT
    """Seconds a stream may live, from its opening to both fins."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest frame accepted or produced."""
    remembered_streams: int = 1024
    """How many ended streams are remembered to tell stale frames from violations."""
    stream_window: int = DEFAULT_STREAM_WINDOW
    """Messages either side may send on a stream ahead of the receiver's consumer.

    Part of the wire protocol: both ends of a connection must use the same value."""

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_frame_bytes", "remembered_streams", "stream_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MuxLimits.{name} must be a positive integer, got {value!r}")
        if self.stream_window > U32_MAX:
            raise ValueError(f"MuxLimits.stream_window must be at most {U32_MAX}, "
                             f"got {self.stream_window!r}")
        timeout = self.stream_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"MuxLimits.stream_timeout must be a positive number, got {timeout!r}")
        self.frame_limits()  # Limits validates max_frame_bytes against its absolute cap

    def frame_limits(self) -> Limits:
        """The codec limits for this connection's frames (one shared, immutable object
        per frame size: every connection asks, and building one is not free)."""
        return _frame_limits(self.max_frame_bytes)


@functools.lru_cache(maxsize=16, typed=True)
def _frame_limits(max_frame_bytes: int) -> Limits:
    return replace(DEFAULT_LIMITS, max_frame_size=max_frame_bytes)


class StreamState(enum.Enum):
    OPEN = "open"
    LOCAL_CLOSED = "local-closed"
    """We sent fin; the peer may still send."""
    REMOTE_CLOSED = "remote-closed"
    """The peer sent fin; we may still send."""
    CLOSED = "closed"
    """Both sides sent fin."""
    RESET = "reset"
    """An error frame (either way) or the stream timeout ended it."""


class _Fin(enum.Enum):
    SENT = "sent"
    RECEIVED = "received"


# (state, fin direction) -> next state. An error frame takes any live state to RESET.
_TRANSITIONS: Final[dict[tuple[StreamState, _Fin], StreamState]] = {
    (StreamState.OPEN, _Fin.SENT): StreamState.LOCAL_CLOSED,
    (StreamState.OPEN, _Fin.RECEIVED): StreamState.REMOTE_CLOSED,
    (StreamState.LOCAL_CLOSED, _Fin.RECEIVED): StreamState.CLOSED,
    (StreamState.REMOTE_CLOSED, _Fin.SENT): StreamState.CLOSED,
}
_CAN_SEND: Final = frozenset({StreamState.OPEN, StreamState.REMOTE_CLOSED})
_CAN_RECEIVE: Final = frozenset({StreamState.OPEN, StreamState.LOCAL_CLOSED})


class _Ending(enum.Enum):
    """How a stream that left the table ended (decides what late frames mean)."""

    CLOSED = "was closed by both sides"
    RESET_BY_PEER = "was reset by the peer"
    RESET_BY_US = "was reset by us"


@dataclass(frozen=True)
class InboundStreamOpened:
    """The peer opened a stream for ``protocol``; its first message follows."""

    stream_id: int
    protocol: str


@dataclass(frozen=True)
class InboundStreamRejected:
    """The peer's new stream was refused; the :class:`SendFrame` that follows is the error frame."""

    stream_id: int
    protocol: str
    code: str


@dataclass(frozen=True)
class StreamMessage:
    """A message on a stream; ``message`` is ``None`` for a bare fin."""

    stream_id: int
    message: WireMap | None
    fin: bool


@dataclass(frozen=True)
class SendCreditGranted:
    """The peer granted credit on one of our streams: ``credit`` messages may be sent now."""

    stream_id: int
    credit: int


@dataclass(frozen=True)
class StreamErrored:
    """The stream is reset: by the peer's error frame, by our timeout, or by us because
    the peer sent beyond its window (``flow-control``)."""

    stream_id: int
    code: str
    by_peer: bool


MuxEvent: TypeAlias = (InboundStreamOpened | InboundStreamRejected | StreamMessage
                       | StreamErrored | SendCreditGranted | SendFrame)


@dataclass(frozen=True)
class MuxStatistics:
    open_inbound: int
    open_outbound: int
    opened_inbound: int
    opened_outbound: int
    rejected_too_many: int
    rejected_unsupported: int
    timed_out: int
    reset_by_peer: int
    reset_by_us: int
    frames_received: int
    frames_sent: int
    frames_dropped: int
    window_updates_sent: int
    window_updates_received: int
    flow_control_resets: int


@dataclass
class _Stream:
    stream_id: int
    protocol: str
    local: bool
    deadline: float
    flow: FlowWindow
    state: StreamState = StreamState.OPEN
    announced: bool = False


class StreamMux:
    """One side's stream table for one authenticated connection.

    ``protocols`` is the set of protocol ids we serve; new inbound streams for
    anything else are refused with ``unsupported-protocol``. ``None`` accepts
    every protocol (the caller decides).
    """

    def __init__(
        self,
        *,
        initiator: bool,
        limits: MuxLimits | None = None,
        protocols: Collection[str] | None = None,
    ) -> None:
        self.initiator = initiator
        self.limits = limits if limits is not None else MuxLimits()
        self._frame_limits = self.limits.frame_limits()
        # a set or mapping is kept as given (not copied: every connection of a node
        # shares its handler map; the caller must not change it while the mux lives)
        self._protocols = (protocols if protocols is None or isinstance(protocols, frozenset | dict)
                           else frozenset(protocols))
        self._streams: dict[int, _Stream] = {}
        self._ended: dict[int, _Ending] = {}  # in order of ending (a dict: smaller)
        self._next_local = 1 if initiator else 2
        self._remote_high = 0
        self._failure: str | None = None
        self._counts: Counter[str] = Counter()  # only what happened (statistics adds zeros)

    # --- inspection ---------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why the mux failed (a connection-level violation), or ``None``."""
        return self._failure

    def stream_state(self, stream_id: int) -> StreamState | None:
        """The state of a stream; ``None`` for an id never seen (or long forgotten)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.state
        ending = self._ended.get(stream_id)
        if ending is None:
            return None
        return StreamState.CLOSED if ending is _Ending.CLOSED else StreamState.RESET

    def poll_timeout(self) -> float | None:
        """When the oldest live stream times out; ``None`` when no stream is live."""
        return min((s.deadline for s in self._streams.values()), default=None)

    def statistics(self) -> MuxStatistics:
        inbound = sum(1 for s in self._streams.values() if not s.local)
        return MuxStatistics(
            open_inbound=inbound, open_outbound=len(self._streams) - inbound,
            **{name: self._counts[name] for name in _COUNTERS})

    # --- our side -----------------------------------------------------------

    def open_stream(self, protocol: str, now: float) -> int:
        """Allocate a stream id for ``protocol``; its first frame will carry it.

        Raises :class:`~protocols.StreamLimitReached` at ``max_streams`` open
        outbound streams, :class:`~protocols.LocalProtocolError` for an invalid protocol id.
        """
        self._check_usable()
        if not _is_token(protocol, MAX_PROTOCOL_ID_LEN):
            raise LocalProtocolError(f"invalid protocol id {protocol!r}")
        outbound = sum(1 for s in self._streams.values() if s.local)
        if outbound >= self.limits.max_streams:
            raise StreamLimitReached(
                f"{outbound} outbound streams are already open on this connection "
                f"(limit {self.limits.max_streams}); wait for one to finish")
        if self._next_local > U32_MAX:
            raise StreamLimitReached("this connection has used up its stream ids; open a new one")
        stream_id = self._next_local
        self._next_local += 2
        deadline = now + self.limits.stream_timeout
        self._streams[stream_id] = _Stream(stream_id, protocol, local=True, deadline=deadline,
                                           flow=FlowWindow.open(self.limits.stream_window))
        self._counts["opened_outbound"] += 1
        return stream_id

    def send_credit(self, stream_id: int) -> int:
        """Messages we may still send on a stream before the peer grants more.

        Raises :class:`~protocols.LocalProtocolError` when the stream cannot send.
        """
        return self._sendable(stream_id).flow.send_credit

    def encode_message(self, stream_id: int, message: WireMap, *, fin: bool = False) -> bytes:
        """The frame carrying ``message`` on a live stream; ``fin`` closes our half.

        Spends one credit. Raises :class:`~protocols.LocalProtocolError` when the
        stream cannot send (unknown, ended, our half closed, no send credit) or
        for an empty final message (see the module docstring), and a
        :class:`~protocols.ProtocolError` subclass when the message is not
        encodable under the frame limits. The state is unchanged on error.
        """
        if fin and message == {}:
            raise LocalProtocolError("an empty map cannot be a final message (it reads as a bare "
                                     "fin); send it without fin, then encode_fin()")
        stream = self._sendable(stream_id)
        if stream.flow.send_credit == 0:
            raise LocalProtocolError(f"stream {stream_id} has no send credit; wait until "
                                     "send_credit() is positive (the peer grants it as it reads)")
        data = self._encode(stream, message, fin)
        stream.flow.spend()
        return data

    def set_deadline(self, stream_id: int, deadline: float) -> None:
        """Move a live stream's lifetime deadline (``stream_timeout`` from its opening).

        For streams whose lifetime a protocol bounds by its own rule: a relayed
        circuit lives by its duration limit. Raises
        :class:`~protocols.LocalProtocolError` when the stream is not live.
        """
        self._live(stream_id).deadline = deadline

    def encode_fin(self, stream_id: int) -> bytes:
        """A bare fin: close our half without a message (costs no credit)."""
        return self._encode(self._sendable(stream_id), {}, True)

    def handle_consumed(self, stream_id: int, count: int = 1) -> list[MuxEvent]:
        """Our application consumed ``count`` of a stream's messages.

        Returns the :class:`SendFrame` of a window update once half the window
        was consumed, else ``[]``; also ``[]`` for a stream that ended or whose
        peer sent fin (it can send nothing more). Raises
        :class:`~protocols.LocalProtocolError` for a stream never seen, a
        ``count`` below 1 or more than arrived unconsumed.
        """
        self._check_usable()
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise LocalProtocolError(f"consumed count must be a positive integer, got {count!r}")
        stream = self._streams.get(stream_id)
        if stream is None or not stream.announced:
            if stream is not None or self._never_opened(stream_id):
                raise LocalProtocolError(f"stream {stream_id} never received anything")
            return []
        credit = stream.flow.consume(count)
        if credit == 0 or stream.state not in _CAN_RECEIVE:
            return []
        data = WindowUpdate(stream_id, credit).encode(self._frame_limits)
        self._counts["window_updates_sent"] += 1
        self._counts["frames_sent"] += 1
        return [SendFrame(data)]

    def encode_error(self, stream_id: int, code: str) -> bytes:
        """Reset a live stream: its error frame.

        Raises :class:`~protocols.LocalProtocolError` if it is not live.
        """
        stream = self._live(stream_id)
        if not _is_token(code, MAX_ERROR_CODE_LEN):
            raise LocalProtocolError(f"invalid error code {code!r}")
        data = ErrorFrame(stream_id, code).encode(self._frame_limits)
        self._end(stream, _Ending.RESET_BY_US)
        self._counts["reset_by_us"] += 1
        self._counts["frames_sent"] += 1
        return data

    def handle_timeout(self, now: float) -> list[MuxEvent]:
        """Reset every stream whose deadline has passed (``stream-timeout`` both ways).

        Each such stream gives :class:`StreamErrored` then the :class:`SendFrame`
        of its error frame; ``[]`` before :meth:`poll_timeout`.
        """
        expired = [s for s in self._streams.values() if s.deadline <= now]
        events: list[MuxEvent] = []
        for stream in expired:
            code = ErrorCode.STREAM_TIMEOUT.value
            reply = ErrorFrame(stream.stream_id, code).encode(self._frame_limits)
            self._end(stream, _Ending.RESET_BY_US)
            events += [StreamErrored(stream.stream_id, code, by_peer=False), SendFrame(reply)]
        self._counts["timed_out"] += len(expired)
        self._counts["frames_sent"] += len(expired)
        return events

    # --- the peer's side ----------------------------------------------------

    def handle_frame(self, data: bytes, now: float) -> list[MuxEvent]:
        """Consume one inbound frame. Raises a ProtocolError on a connection-level violation."""
        if self._failure is not None:
            raise StreamError(f"the stream multiplexer already failed ({self._failure}); "
                              "close the connection")
        try:
            frame = decode_stream_frame(data, self._frame_limits)
            self._counts["frames_received"] += 1
            if isinstance(frame, ErrorFrame):
                return self._on_error_frame(frame)
            if isinstance(frame, WindowUpdate):
                return self._on_window_update(frame)
            return self._on_stream_frame(frame, now)
        except ProtocolError as exc:
            self._failure = str(exc)
            raise

    def _on_error_frame(self, frame: ErrorFrame) -> list[MuxEvent]:
        stream = self._streams.get(frame.stream_id)
        if stream is None or (stream.local and not stream.announced):
            return self._drop()  # already gone on our side, or never seen: a crossing reset
        self._end(stream, _Ending.RESET_BY_PEER)
        self._counts["reset_by_peer"] += 1
        return [StreamErrored(frame.stream_id, frame.code, by_peer=True)]

    def _on_window_update(self, frame: WindowUpdate) -> list[MuxEvent]:
        sid = frame.stream_id
        stream = self._streams.get(sid)
        if stream is None or not stream.announced:
            if stream is not None or self._never_opened(sid):
                raise StreamError(f"stream {sid}: window update for a stream the peer "
                                  "cannot know")
            return self._drop()  # the stream ended while the update was in flight
        self._counts["window_updates_received"] += 1
        if stream.state not in _CAN_SEND:
            return []  # we already sent fin: the credit came too late to matter
        return [SendCreditGranted(sid, stream.flow.grant(frame.credit))]

    def _on_stream_frame(self, frame: StreamFrame, now: float) -> list[MuxEvent]:
        sid = frame.stream_id
        stream = self._streams.get(sid)
        if stream is None:
            return self._on_unknown_stream(frame, now)
        if stream.local and not stream.announced:
            raise self._parity_error(sid)  # allocated here, but the peer cannot know it
        if frame.protocol is not None:
            raise StreamError(f"stream {sid}: protocol id {frame.protocol!r} sent on a stream "
                              "that is already open")
        if stream.state not in _CAN_RECEIVE:
            raise StreamError(f"stream {sid}: frame after the peer's fin")
        return self._deliver(stream, frame)

    def _on_unknown_stream(self, frame: StreamFrame, now: float) -> list[MuxEvent]:
        sid = frame.stream_id
        ending = self._ended.get(sid)
        if ending is not None:
            if frame.protocol is not None:
                raise StreamError(f"stream {sid}: id reused for a new stream "
                                  f"(the stream {ending.value})")
            if ending is _Ending.RESET_BY_US:
                return self._drop()  # in flight when we reset it
            raise StreamError(f"stream {sid}: frame after the stream {ending.value}")
        if sid == 0:
            raise StreamError("stream id 0 is reserved")
        if self._is_ours(sid):
            if sid < self._next_local:
                return self._drop()  # ended so long ago that we forgot how
            raise self._parity_error(sid)
        if frame.protocol is None:
            if sid <= self._remote_high:
                return self._drop()  # ended so long ago that we forgot how
            raise StreamError(f"stream {sid}: the first frame of a new stream has no "
                              "protocol id ('p')")
        return self._open_inbound(sid, frame.protocol, frame, now)

    def _open_inbound(self, sid: int, protocol: str, frame: StreamFrame,
                      now: float) -> list[MuxEvent]:
        self._remote_high = max(self._remote_high, sid)
        inbound = sum(1 for s in self._streams.values() if not s.local)
        if inbound >= self.limits.max_streams:
            self._counts["rejected_too_many"] += 1
            return self._reject(sid, protocol, ErrorCode.TOO_MANY_STREAMS)
        if self._protocols is not None and protocol not in self._protocols:
            self._counts["rejected_unsupported"] += 1
            return self._reject(sid, protocol, ErrorCode.UNSUPPORTED_PROTOCOL)
        deadline = now + self.limits.stream_timeout
        stream = _Stream(sid, protocol, local=False, deadline=deadline, announced=True,
                         flow=FlowWindow.open(self.limits.stream_window))
        self._streams[sid] = stream
        self._counts["opened_inbound"] += 1
        return [InboundStreamOpened(sid, protocol), *self._deliver(stream, frame)]

    # --- helpers ------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise LocalProtocolError(f"the stream multiplexer failed ({self._failure})")

    def _is_ours(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == self.initiator

    def _never_opened(self, stream_id: int) -> bool:
        """No stream ever had this id: not even one that ended and was forgotten."""
        if stream_id == 0:
            return True
        if self._is_ours(stream_id):
            return stream_id >= self._next_local
        return stream_id > self._remote_high

    def _parity_error(self, stream_id: int) -> StreamError:
        mine, theirs = ("odd", "even") if self.initiator else ("even", "odd")
        return StreamError(f"stream {stream_id}: the peer used an {mine} id, which only we "
                           f"may open; it must use {theirs} ids")

    def _live(self, stream_id: int) -> _Stream:
        self._check_usable()
        stream = self._streams.get(stream_id)
        if stream is None:
            state = self.stream_state(stream_id)
            raise LocalProtocolError(f"stream {stream_id} is not live "
                                     f"({'unknown' if state is None else state.value})")
        return stream

    def _sendable(self, stream_id: int) -> _Stream:
        stream = self._live(stream_id)
        if stream.state not in _CAN_SEND:
            raise LocalProtocolError(f"stream {stream_id} cannot send: we already sent fin")
        return stream

    def _encode(self, stream: _Stream, message: WireMap, fin: bool) -> bytes:
        protocol = None if stream.announced else stream.protocol
        data = StreamFrame(stream.stream_id, protocol, message, fin).encode(self._frame_limits)
        stream.announced = True
        self._counts["frames_sent"] += 1
        if fin:
            self._move(stream, _Fin.SENT)
        return data

    def _deliver(self, stream: _Stream, frame: StreamFrame) -> list[MuxEvent]:
        bare_fin = frame.fin and frame.message == {}
        if not bare_fin and not stream.flow.accept():
            return self._reset_over_window(stream)
        if frame.fin:
            self._move(stream, _Fin.RECEIVED)
        return [StreamMessage(stream.stream_id, None if bare_fin else frame.message, frame.fin)]

    def _reset_over_window(self, stream: _Stream) -> list[MuxEvent]:
        code = ErrorCode.FLOW_CONTROL.value
        reply = ErrorFrame(stream.stream_id, code).encode(self._frame_limits)
        self._end(stream, _Ending.RESET_BY_US)
        for counter in ("flow_control_resets", "reset_by_us", "frames_sent"):
            self._counts[counter] += 1
        return [StreamErrored(stream.stream_id, code, by_peer=False), SendFrame(reply)]

    def _move(self, stream: _Stream, fin: _Fin) -> None:
        stream.state = _TRANSITIONS[(stream.state, fin)]
        if stream.state is StreamState.CLOSED:
            self._end(stream, _Ending.CLOSED)

    def _end(self, stream: _Stream, ending: _Ending) -> None:
        del self._streams[stream.stream_id]
        stream.state = StreamState.CLOSED if ending is _Ending.CLOSED else StreamState.RESET
        self._remember(stream.stream_id, ending)

    def _remember(self, stream_id: int, ending: _Ending) -> None:
        self._ended[stream_id] = ending
        while len(self._ended) > self.limits.remembered_streams:
            del self._ended[next(iter(self._ended))]

    def _reject(self, stream_id: int, protocol: str, code: ErrorCode) -> list[MuxEvent]:
        self._remember(stream_id, _Ending.RESET_BY_US)
        self._counts["frames_sent"] += 1
        reply = ErrorFrame(stream_id, code.value).encode(self._frame_limits)
        return [InboundStreamRejected(stream_id, protocol, code.value), SendFrame(reply)]

    def _drop(self) -> list[MuxEvent]:
        self._counts["frames_dropped"] += 1
        return []


def _is_token(value: object, max_len: int) -> bool:
    """A non-empty printable string of at most ``max_len`` UTF-8 bytes."""
    if not isinstance(value, str) or not value.isprintable():
        return False
    try:
        return 1 <= len(value.encode("utf-8")) <= max_len
    except UnicodeEncodeError:
        return False


_COUNTERS: Final = (
    "opened_inbound", "opened_outbound", "rejected_too_many", "rejected_unsupported",
    "timed_out", "reset_by_peer", "reset_by_us", "frames_received", "frames_sent",
    "frames_dropped", "window_updates_sent", "window_updates_received", "flow_control_resets",
)
