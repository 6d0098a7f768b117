"""One authenticated connection carrying many protocol streams.

Frames, handshake and streams: (docs/architecture.md, "Wire protocol"). The
limits and timeouts are one :class:`~protocols.ConnectionConfig` (a node's
``config.connection``), declared once in :mod:`protocols.wire`; its
``idle_timeout`` is ``None`` by default (a connection never idles out).

Theory of operation
-------------------
``async with open_connection(frame_stream, keypair, ...) as conn:`` first runs
the sans-io :class:`~protocols.Handshake` (both sides send ``hello`` at once;
the whole exchange must finish within ``handshake_timeout``). Any failure
there - bad signature, wrong peer id, silence, the peer hanging up - closes
the frame stream with the reason and raises :class:`ConnectionFailed` out of
the ``async with``: there is no connection to use.

Then a reader and a writer run next to one task per inbound stream handler,
and a timer. Their tasks share ``open_connection``'s nursery with the
caller's body, each in a cancel scope the connection owns, so ending the
connection cancels exactly them (a nursery of its own would cost one more
task per connection). A simulation holds tens of thousands of connections,
so neither needs a task of its own where the frame stream can do without:

* the **reader** feeds each frame to the :class:`~protocols.StreamMux`,
  starts the handler registered for a new stream's protocol (the mux itself
  refuses unknown protocols with ``unsupported-protocol`` and streams beyond
  ``max_streams`` with ``too-many-streams``; such refusals, and the requests
  handlers refuse through :meth:`Connection.count_refusal`, close the
  connection once ``max_refusals`` fell within ``refusal_window``, see
  :mod:`protocols.wire._refusals`), and delivers messages to the
  streams' inboxes. It never waits for a stream: backpressure towards the
  peer is per stream (flow control, :mod:`protocols.wire._flow`). The peer
  may send ``stream_buffer`` messages on a stream ahead of its consumer, so
  an inbox cannot overflow; each message a consumer takes returns its credit
  (the mux batches the window updates, queued like any frame), and a peer
  that sends beyond its credit has that stream reset with ``flow-control``.
  A stream nobody reads therefore stalls only itself, never the connection.
  It is a task that waits on ``receive()``, unless the frame stream hands its
  frames over (:class:`~actors.transport.DeliversFrames`, the in-memory
  transport): then the same synchronous step runs for each frame as it
  arrives, in the run's timer task, and the stream's end arrives the same way;
* the **writer** sends the queued frames. Frames are
  encoded and queued in one synchronous step (the outbox), so their order
  always matches the mux state and a cancelled sender can never leave half a
  stream behind. When nothing is queued and the frame stream can take a frame
  without waiting (:class:`~actors.transport.SendsNowait`, the in-memory
  transport while the peer's buffer has room), the frame goes out in that
  same step; otherwise a writer task is started, sends until the outbox is
  empty and ends. A stream sender first waits for send credit on its stream
  (woken when the peer's window update arrives), then while ``send_buffer``
  frames are queued; a bare fin needs no credit. Control frames (error
  replies, window updates) are always queued, and a peer that makes them
  pile up past a hard limit without reading gets disconnected;
* the **timer** fires at the mux's next stream deadline (expired streams
  are reset on both sides with ``stream-timeout``) or once the connection
  has been idle - no live stream, no frame either way - for ``idle_timeout``.
  It is not a task of its own: :func:`~actors.runtime.call_at` registers it
  with the run's one timer task, so an idle connection costs no sleeping
  task. It is re-armed only when a deadline moves earlier (a new stream);
  the idle deadline, which moves with every frame, is checked when the
  timer fires and armed again for the real time.

After the handshake a misbehaving peer never raises into the caller: a
protocol violation, a lost transport, the idle timeout or :meth:`aclose`
end the connection the same way - ``close_reason`` is set, every open stream
breaks with :class:`StreamReset` (code ``connection-closed``), the handlers
are cancelled, the frame stream is closed with the reason, and the
``closed`` event is set. The body of the ``async with`` keeps running (wait
on ``conn.closed`` to follow the connection); leaving it closes everything,
first giving already queued frames a moment to go out, and no task is left.
A deliberate end - :meth:`aclose`, the idle timeout, or the peer closing
normally (``close_reason`` "closed by the peer[: its reason]") - is logged at
debug; a failure (protocol violation, lost transport) at info.

Handler policy: a handler that returns has its stream closed gracefully
(bare fin if it did not send fin). One whose stream broke
(:class:`StreamReset`) just stops. One that raises any other
:data:`EXCHANGE_FAILURES` - another :class:`StreamFailure` or a
:class:`~protocols.RemoteProtocolError` (the peer sent something unusable,
finished early, or never answered) - resets the stream with
``bad-message``; any other exception, :class:`~protocols.LocalProtocolError`
included, is a bug here: it is logged with its traceback, counted, and
resets the stream with ``internal-error`` - one buggy stream never takes the
connection down.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Final

import trio

from protocols import (
    ConnectionConfig,
    Direction,
    ErrorCode,
    Handshake,
    HandshakeDone,
    HandshakeError,
    HandshakeFailed,
    HandshakeResult,
    HandshakeTimeout,
    InboundStreamOpened,
    InboundStreamRejected,
    Keypair,
    MuxEvent,
    MuxStatistics,
    PathStats,
    PeerId,
    PublicKey,
    RefusalWindow,
    RemoteProtocolError,
    SelfConnection,
    SendCreditGranted,
    SendFrame,
    StreamErrored,
    StreamMessage,
    StreamMux,
    StreamState,
    WireMap,
    WsAddress,
)

from ..runtime import call_at, get_logger, node_field
from ..transport import FrameStream, TransportBroken, TransportError
from ._outbox import Outbox
from ._stream import CONNECTION_CLOSED, Stream, StreamFailure, StreamReset

ProtocolHandler = Callable[["Stream[Connection]"], Awaitable[None]]
"""Serves one inbound stream; runs in the connection's nursery."""

DEFAULT_CLOSE_REASON: Final = "closed by this side"
FLUSH_GRACE: Final = 1.0
"""Seconds :meth:`Connection.aclose` waits for queued frames to go out."""
_CONTROL_ALLOWANCE: Final = 256
"""Control frames (error replies, window updates) that may queue beyond ``send_buffer``
before the peer counts as not reading."""


class ConnectionFailed(Exception):
    """The handshake failed; the frame stream is already closed with ``reason``.

    ``timed_out``: the peer did not finish it in time (on a lossy path, not proof
    that the peer is not there), as opposed to a failure the peer caused.
    ``self_connection``: the far end proved to be this node itself
    (:class:`~protocols.SelfConnection`: the dial looped back to our own listener)."""

    def __init__(self, reason: str, *, timed_out: bool = False,
                 self_connection: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.self_connection = self_connection


class ConnectionEnded(StreamFailure):
    """:meth:`Connection.open_stream` on a connection that already ended.

    (Named so that it does not shadow ``trio_websocket.ConnectionClosed``.)
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


EXCHANGE_FAILURES: Final[tuple[type[Exception], ...]] = (StreamFailure, RemoteProtocolError)
"""What a request/response exchange with a peer can end in that is not a bug here.

The stream or connection broke, ended or timed out (:class:`StreamFailure`), or
the peer's reply could not be accepted (:class:`~protocols.RemoteProtocolError`).
One name for protocol actors to catch (``except EXCHANGE_FAILURES``); the
two cannot share a base class because ``protocols`` never imports ``actors``.
:class:`~protocols.LocalProtocolError` is deliberately absent: our own bug
should crash the task so the supervisor logs it.
"""

CONNECT_FAILURES: Final[tuple[type[Exception], ...]] = (TransportError, ConnectionFailed)
"""What dialing and authenticating a peer can end in: no connection was made."""


@dataclass(frozen=True)
class ConnectionStatistics:
    open_streams: int
    frames_received: int
    frames_sent: int
    queued_frames: int
    handler_errors: int
    mux: MuxStatistics


class Connection:
    """An authenticated connection; create it with :func:`open_connection`."""

    # slotted: a simulation holds tens of thousands (a dict each would cost 1.5 KiB)
    __slots__ = (
        "__weakref__", "_ending", "_frame_stream", "_frames_received", "_frames_sent",
        "_handler_errors",
        "_handlers", "_last_activity", "_log", "_mux", "_nursery", "_outbox", "_pins",
        "_refusals", "_scopes", "_send_nowait", "_streams", "_timer", "_writing",
        "close_reason", "closed", "config", "direction", "handshake_rtt", "initiator",
        "local_addr", "opened_at", "peer_id", "relayed", "remote_addr",
        "remote_public_key",
    )

    def __init__(self, frame_stream: FrameStream, peer: HandshakeResult, *, initiator: bool,
                 handlers: Mapping[str, ProtocolHandler], config: ConnectionConfig,
                 local_peer: PeerId | None = None) -> None:
        self.peer_id: PeerId = peer.peer_id
        self.handshake_rtt: float = peer.rtt if peer.rtt is not None else 0.0
        """Seconds from our hello to the peer's auth (one round trip)."""
        self.remote_public_key: PublicKey = peer.public_key
        self.initiator = initiator
        self.direction = Direction.OUTBOUND if initiator else Direction.INBOUND
        self.local_addr: WsAddress = frame_stream.local_addr
        self.remote_addr: WsAddress = frame_stream.remote_addr
        self.opened_at = trio.current_time()
        self.relayed: bool = bool(getattr(frame_stream, "relayed", False))
        """The connection runs through a relay's circuit (its frame stream says so)."""
        self.config = config
        self.closed = trio.Event()
        self.close_reason: str | None = None
        self._frame_stream = frame_stream
        self._handlers = handlers  # the node's map, shared by its connections (not copied)
        self._mux = StreamMux(initiator=initiator, limits=config.mux_limits(),
                              protocols=self._handlers)
        self._streams: dict[int, Stream[Connection]] = {}
        self._outbox = Outbox(config.send_buffer, config.send_buffer + _CONTROL_ALLOWANCE)
        # a SendsNowait frame stream's method (no isinstance: a runtime protocol check
        # costs more than the rest of this constructor)
        self._send_nowait: Callable[[bytes], bool] | None = getattr(
            frame_stream, "send_nowait", None)
        self._writing = False
        self._ending = False  # an end is on its way (_shutdown_soon): ignore further frames
        self._timer = call_at(math.inf, self._on_timer)
        self._nursery: trio.Nursery | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._last_activity = self.opened_at
        self._pins = 0
        self._frames_received = self._frames_sent = self._handler_errors = 0
        self._refusals: RefusalWindow | None = None  # made at the first refusal (memory)
        self._log = get_logger("actors.connection", actor="connection", **node_field(local_peer),
                               peer=str(self.peer_id), direction=self.direction.value)

    def __repr__(self) -> str:
        return f"<Connection {self.direction.value} {self.peer_id} {self.remote_addr}>"

    # --- public API ---------------------------------------------------------

    async def open_stream(self, protocol: str) -> Stream[Connection]:
        """A new outbound stream; nothing is sent until its first message.

        Raises :class:`ConnectionEnded` once the connection ended and
        :class:`~protocols.StreamLimitReached` at ``max_streams`` outbound streams.
        """
        await trio.lowlevel.checkpoint()
        if self.close_reason is not None:
            raise ConnectionEnded(f"connection to {self.peer_id} is closed: {self.close_reason}")
        stream_id = self._mux.open_stream(protocol, trio.current_time())
        return self._add_stream(stream_id, protocol, inbound=False)

    async def aclose(self, reason: str = DEFAULT_CLOSE_REASON) -> None:
        """End the connection (see the module docstring); idempotent."""
        if self.close_reason is None:
            await self._shutdown(reason, flush=True, normal=True)
        else:
            await self.closed.wait()

    def path_stats(self) -> PathStats:
        """The path to the peer (RTT, loss): the transport's measurement, or else the
        handshake's round trip."""
        measured = self._frame_stream.path_stats()
        if measured is not None:
            return measured
        return PathStats.from_handshake(self.handshake_rtt)

    def set_stream_deadline(self, stream: Stream[Connection], deadline: float) -> None:
        """Let ``stream`` live until ``deadline`` instead of ``stream_timeout`` from its
        opening (a relayed circuit lives by its own duration limit); no-op once it ended."""
        if self.close_reason is None and self._mux.stream_state(stream.stream_id) in _LIVE:
            self._mux.set_deadline(stream.stream_id, deadline)
            self._rearm()

    def pin(self) -> None:
        """Keep the connection from idling out (``idle_timeout``) until :meth:`unpin`:
        something lives on it without an open stream, e.g. a relay reservation."""
        self._pins += 1

    @property
    def pinned(self) -> bool:
        """Something lives on the connection without an open stream (see :meth:`pin`)."""
        return self._pins > 0

    def unpin(self) -> None:
        self._pins -= 1
        self._rearm()

    def count_refusal(self, what: str) -> bool:
        """One more request of the peer's was refused; True when that closes the connection
        (in a moment: already queued answers still go out)."""
        if self._refusals is None:
            self._refusals = self.config.new_refusal_window()
        verdict = self._refusals.handle_refused(trio.current_time())
        if verdict is not None and self._nursery is not None:
            self._nursery.start_soon(partial(self._shutdown, f"{verdict.reason}, the last: {what}",
                                             flush=True))
        return verdict is not None

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            open_streams=len(self._streams), frames_received=self._frames_received,
            frames_sent=self._frames_sent, queued_frames=len(self._outbox),
            handler_errors=self._handler_errors, mux=self._mux.statistics())

    # --- given to each Stream ----------------------------------------------

    async def _send_on(self, stream: Stream[Connection], message: WireMap | None,
                       fin: bool) -> None:
        await trio.lowlevel.checkpoint()
        sid = stream.stream_id
        while True:  # nothing changes until both waits are over: cancellation-safe
            stream.check_sendable()
            if message is not None and self._mux.send_credit(sid) == 0:
                await stream.wait_for_credit()
            elif not self._outbox.has_room():
                await self._outbox.wait()
            else:
                break
        if message is None:
            frames = [self._mux.encode_fin(sid)]
        elif fin and message == {}:
            frames = [self._mux.encode_message(sid, {}), self._mux.encode_fin(sid)]
        else:
            frames = [self._mux.encode_message(sid, message, fin=fin)]
        if fin:
            stream.mark_fin_sent()
        for frame in frames:
            self._put(frame)
        self._forget_if_done(stream)

    def _reset(self, stream: Stream[Connection], code: str) -> None:
        if stream.reset_or_broken or self.close_reason is not None:
            return
        if self._mux.stream_state(stream.stream_id) in _LIVE:
            frame = self._mux.encode_error(stream.stream_id, code)
            if not self._put(frame):
                self._shutdown_soon("the peer is not reading (send queue overflow)")
        stream.mark_reset_by_us()
        self._streams.pop(stream.stream_id, None)
        self._outbox.wake()
        self._rearm()

    def _consumed(self, stream: Stream[Connection], count: int) -> None:
        if self.close_reason is not None or self._mux.stream_state(stream.stream_id) not in _LIVE:
            return  # nothing more will come on it: no credit to return
        for event in self._mux.handle_consumed(stream.stream_id, count):
            if isinstance(event, SendFrame) and not self._put(event.data):
                self._shutdown_soon("the peer is not reading (send queue overflow)")

    # --- tasks --------------------------------------------------------------

    def _start(self, nursery: trio.Nursery) -> None:
        """Have frames delivered (a :class:`~actors.transport.DeliversFrames` stream) or
        run the reader in ``nursery`` (see :meth:`_start_scoped`); the writer starts
        when frames wait (:meth:`_put`)."""
        self._nursery = nursery
        deliver_to = getattr(self._frame_stream, "deliver_to", None)
        if deliver_to is not None:
            deliver_to(self._on_delivered, self._on_end)
        else:
            self._start_scoped(self._read_loop)
        self._rearm()

    def _start_scoped(self, async_fn: Callable[..., Awaitable[None]], *args: object,
                      name: str | None = None) -> trio.CancelScope:
        """Start a task of this connection in a cancel scope that :meth:`_shutdown` cancels.

        The tasks share ``open_connection``'s nursery with the caller's body
        instead of a nursery of their own (which would cost a task per
        connection), so ending the connection cancels exactly these scopes.
        The scope exists before the task does: one cancelled before the task
        ran makes it return at its first checkpoint.
        """
        scope = trio.CancelScope()
        self._scopes.add(scope)
        assert self._nursery is not None
        self._nursery.start_soon(self._in_scope, scope, async_fn, *args, name=name or async_fn)
        return scope

    async def _in_scope(self, scope: trio.CancelScope, async_fn: Callable[..., Awaitable[None]],
                        *args: object) -> None:
        try:
            with scope:
                await async_fn(*args)
        finally:
            self._scopes.discard(scope)

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._frame_stream.receive()
            except TransportError as exc:
                await self._transport_ended(exc)
                return
            failure = self._on_frame(data)
            if failure is not None:
                await self._shutdown(failure)
                return
            if self.close_reason is not None:
                return

    def _on_delivered(self, data: bytes) -> None:
        """A frame handed over by the frame stream (push mode, in the timer task)."""
        failure = self._on_frame(data)
        if failure is not None:
            self._shutdown_soon(failure)

    def _on_end(self, exc: TransportError) -> None:
        """The peer closed (push mode, after its last frame)."""
        if self.close_reason is None and not self._ending:
            self._ending = True
            assert self._nursery is not None
            self._nursery.start_soon(self._transport_ended, exc)

    def _on_frame(self, data: bytes) -> str | None:
        """Feed one frame to the mux and act on its events; the reason to end the
        connection when the peer broke the protocol or stopped reading."""
        if self.close_reason is not None or self._ending:
            return None
        now = trio.current_time()
        self._last_activity = now
        self._frames_received += 1
        try:
            events = self._mux.handle_frame(data, now)
        except RemoteProtocolError as exc:
            return f"protocol violation ({type(exc).__name__}): {exc}"
        for event in events:
            if isinstance(event, SendFrame):
                if not self._put(event.data):
                    return "the peer is not reading (send queue overflow)"
            else:
                self._apply(event)
        return None

    def _put(self, frame: bytes) -> bool:
        """Send ``frame`` now when nothing is ahead of it and the frame stream takes it
        without waiting; else queue it for the writer task, started if not running.
        ``False`` when the queue is past its hard limit."""
        if self._send_nowait is not None and self._outbox.idle() and not self._outbox.dead:
            try:
                sent = self._send_nowait(frame)
            except TransportError as exc:
                self._lost(exc)
                return True
            if sent:
                self._frames_sent += 1
                self._last_activity = trio.current_time()
                return True
        room = self._outbox.put(frame)
        if (not self._writing and not self._outbox.dead and self.close_reason is None
                and self._nursery is not None):
            self._writing = True
            self._start_scoped(self._write_loop)
        return room

    async def _write_loop(self) -> None:
        """Send the queued frames, then end (:meth:`_put` starts it again)."""
        try:
            while (frame := self._outbox.take()) is not None:
                try:
                    await self._frame_stream.send(frame)
                except TransportError as exc:
                    self._lost(exc)
                    return
                self._frames_sent += 1
                self._last_activity = trio.current_time()
                self._outbox.sent()
        finally:
            self._writing = False

    def _lost(self, exc: TransportError) -> None:
        """Sending failed: nothing more goes out; the connection ends in a task of its own
        (the sender may be a stream's task, which the shutdown cancels)."""
        self._outbox.dead = True
        self._outbox.wake()
        if self.close_reason is None and not self._ending and self._nursery is not None:
            self._ending = True
            self._nursery.start_soon(self._transport_ended, exc)

    def _on_timer(self) -> None:
        """The run's timer service calls this at our earliest deadline (or later)."""
        if self.close_reason is not None:
            return
        now = trio.current_time()
        for event in self._mux.handle_timeout(now):
            if isinstance(event, StreamErrored):
                self._break(event.stream_id, event.code, "the stream timed out")
            elif isinstance(event, SendFrame) and not self._put(event.data):
                self._shutdown_soon("the peer is not reading (send queue overflow)")
                return
        idle_timeout = self.config.idle_timeout
        if idle_timeout is not None and now >= self._idle_deadline():
            self._shutdown_soon(f"idle for {idle_timeout:g} s with no open stream", normal=True)
            return
        self._rearm()

    async def _run_handler(self, handler: ProtocolHandler, stream: Stream[Connection]) -> None:
        log = self._log.bind(stream=stream.stream_id, protocol=stream.protocol)
        # runs in its own scope (_start_scoped), which the stream cancels if it breaks
        try:
            await handler(stream)
        except StreamReset as exc:
            log.debug("stream reset under its handler", code=exc.code, detail=exc.detail)
            return
        except EXCHANGE_FAILURES as exc:
            log.info("stream handler stopped: unusable input from the peer", error=str(exc))
            await stream.reset(ErrorCode.BAD_MESSAGE)
            return
        except Exception:
            self._handler_errors += 1
            log.exception("stream handler crashed")
            await stream.reset(ErrorCode.INTERNAL_ERROR)
            return
        await stream.aclose()

    # --- helpers ------------------------------------------------------------

    def _apply(self, event: MuxEvent) -> None:
        """Act on one mux event other than :class:`SendFrame` (the loops queue those)."""
        if self.close_reason is not None:
            return
        if isinstance(event, StreamMessage):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                return
            if event.message is not None:
                stream.deliver(event.message)
            if event.fin:
                stream.end_of_input()
                self._forget_if_done(stream)
        elif isinstance(event, SendCreditGranted):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.credit_granted()
        elif isinstance(event, InboundStreamOpened):
            stream = self._add_stream(event.stream_id, event.protocol, inbound=True)
            scope = self._start_scoped(self._run_handler, self._handlers[event.protocol], stream,
                                       name=f"stream {event.stream_id} {event.protocol}")
            stream.cancel_when_broken(scope)
        elif isinstance(event, StreamErrored) and event.by_peer:
            self._break(event.stream_id, event.code, "reset by the peer")
        elif isinstance(event, StreamErrored):
            self._log.info("reset a stream the peer sent beyond its flow-control window",
                           stream=event.stream_id, code=event.code)
            self._break(event.stream_id, event.code, "the peer sent beyond its window")
        elif isinstance(event, InboundStreamRejected):
            self._log.info("refused inbound stream", stream=event.stream_id,
                           protocol=event.protocol, code=event.code)
            self.count_refusal(f"stream refused with {event.code}")

    def _add_stream(self, stream_id: int, protocol: str, *, inbound: bool) -> Stream[Connection]:
        stream = Stream(self, stream_id, protocol, inbound=inbound,
                        send=self._send_on, reset=self._reset, consumed=self._consumed)
        self._streams[stream_id] = stream
        self._rearm()
        return stream

    def _forget_if_done(self, stream: Stream[Connection]) -> None:
        if self._mux.stream_state(stream.stream_id) not in _LIVE:
            self._streams.pop(stream.stream_id, None)
            self._rearm()

    def _break(self, stream_id: int, code: str, detail: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.mark_broken(code, detail)
        self._outbox.wake()
        self._rearm()

    def _shutdown_soon(self, reason: str, *, normal: bool = False) -> None:
        """End the connection in a task of its own; frames still delivered meanwhile
        are ignored."""
        assert self._nursery is not None
        self._ending = True
        self._nursery.start_soon(partial(self._shutdown, reason, normal=normal))

    def _rearm(self) -> None:
        """Make the timer fire no later than our next deadline.

        A later deadline (the idle timeout moves with every frame) is left
        alone: the timer fires early and :meth:`_on_timer` arms it again.
        """
        if self.close_reason is not None:
            return  # the timer was cancelled for good
        wakeup = self._next_wakeup()
        if wakeup < self._timer.deadline:
            self._timer.reschedule(wakeup)

    def _next_wakeup(self) -> float:
        deadline = self._mux.poll_timeout()
        return min(self._idle_deadline(), float("inf") if deadline is None else deadline)

    def _idle_deadline(self) -> float:
        if (self.config.idle_timeout is None or self._pins
                or self._mux.poll_timeout() is not None):
            return float("inf")
        return self._last_activity + self.config.idle_timeout

    async def _transport_ended(self, exc: TransportError) -> None:
        """The peer closed the connection normally, or the transport failed."""
        if isinstance(exc, TransportBroken) and exc.peer_closed:
            said = exc.peer_reason
            reason = ("closed by the peer" if said in ("", DEFAULT_CLOSE_REASON)
                      else f"closed by the peer: {said}")
            await self._shutdown(reason, normal=True)
        else:
            await self._shutdown(f"connection lost: {exc}")

    async def _shutdown(self, reason: str, *, flush: bool = False, normal: bool = False) -> None:
        """End the connection; ``normal``: a deliberate close (ours or the peer's), not news."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self._timer.close()
        (self._log.debug if normal else self._log.info)("connection closed", reason=reason)
        for stream_id in list(self._streams):
            self._break(stream_id, CONNECTION_CLOSED, reason)
        self._outbox.wake()
        try:
            if flush:
                with trio.move_on_after(FLUSH_GRACE):
                    await self._outbox.wait_drained()
        finally:
            for scope in list(self._scopes):
                scope.cancel()
            with trio.CancelScope(shield=True):
                await self._frame_stream.aclose(reason)
            self.closed.set()


_LIVE: Final = frozenset({StreamState.OPEN, StreamState.LOCAL_CLOSED, StreamState.REMOTE_CLOSED})


async def _authenticate(frame_stream: FrameStream, keypair: Keypair, *,
                        expected_peer: PeerId | None, timeout: float) -> HandshakeResult:
    handshake = Handshake(keypair, now=trio.current_time(), expected_peer=expected_peer,
                          timeout=timeout)
    try:
        return await _drive_handshake(frame_stream, handshake)
    except (HandshakeError, TransportError) as exc:
        reason = f"handshake failed: {exc}"
        with trio.CancelScope(shield=True):
            await frame_stream.aclose(reason)
        raise ConnectionFailed(reason, timed_out=isinstance(exc, HandshakeTimeout),
                               self_connection=isinstance(exc, SelfConnection)) from exc


async def _drive_handshake(frame_stream: FrameStream, handshake: Handshake) -> HandshakeResult:
    """Run ``handshake`` to its end; sending and receiving are bounded by its deadline.

    Raises the :class:`HandshakeError` the peer caused, or the
    :class:`~protocols.HandshakeTimeout` that :class:`HandshakeFailed` carries.
    """
    events = handshake.handle_start(trio.current_time())
    while True:
        deadline = handshake.poll_timeout()
        with trio.move_on_at(-math.inf if deadline is None else deadline) as timer:
            for event in events:
                if isinstance(event, HandshakeFailed):
                    raise event.error
                if isinstance(event, HandshakeDone):
                    return event.result
                await frame_stream.send(event.data)
            data = await frame_stream.receive()
        now = trio.current_time()
        events = (handshake.handle_timeout(now) if timer.cancelled_caught
                  else handshake.handle_frame(data, now))


@asynccontextmanager
async def open_connection(
    frame_stream: FrameStream,
    keypair: Keypair,
    *,
    initiator: bool,
    expected_peer: PeerId | None = None,
    handlers: Mapping[str, ProtocolHandler] | None = None,
    config: ConnectionConfig | None = None,
) -> AsyncIterator[Connection]:
    """Authenticate ``frame_stream`` and run it as a :class:`Connection`.

    ``initiator`` is True on the dialing side (odd stream ids), which passes
    the ``/p2p/`` id it dialed as ``expected_peer``. ``handlers`` maps the
    protocol ids we serve to the coroutine serving one inbound stream.
    Raises :class:`ConnectionFailed` when the handshake fails.
    """
    config = config if config is not None else ConnectionConfig()
    peer = await _authenticate(frame_stream, keypair, expected_peer=expected_peer,
                               timeout=config.handshake_timeout)
    connection = Connection(frame_stream, peer, initiator=initiator,
                            handlers=handlers or {}, config=config, local_peer=keypair.peer_id)
    async with trio.open_nursery() as nursery:
        connection._start(nursery)
        try:
            yield connection
        finally:
            await connection.aclose()
