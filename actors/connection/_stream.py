"""One protocol stream of a :class:`~actors.Connection`, as its two ends use it.

Theory of operation
-------------------
A :class:`Stream` is a thin handle: the connection's reader task appends the
peer's messages to the stream's inbox without ever waiting, and
:meth:`Stream.send` asks the connection to encode a frame and queue it for
the connection's single writer task. The stream state itself lives in the
connection's :class:`~protocols.StreamMux`.

Backpressure is per stream (flow control, :mod:`protocols.wire._flow`): the
peer may send at most a window of messages (``stream_buffer``) ahead of our
consumer, so the inbox - a deque with a parking lot for the reader - holds
at most that many and delivery never blocks; one stream nobody reads cannot
stall its connection. Each message :meth:`~Stream.receive` takes off the
inbox is reported to the connection (the ``consumed`` callable), which
grants the credit back to the peer in batches. The other way round,
:meth:`~Stream.send` waits (cancellably, nothing is queued until it
returns) while the peer granted us no credit; the connection wakes it
through :meth:`~Stream.credit_granted`. Messages that arrive after this side
closed the stream are dropped and reported consumed at once, so a peer that
keeps sending until its own fin is not held up.

A stream knows its connection only through a narrow interface, so this
module does not import the connection's: the ``send``, ``reset`` and
``consumed`` callables it is built with, and ``connection`` (any
:class:`StreamOwner`, kept for the stream's handlers, which need the real
connection). The connection tells the stream what happened through its
methods (:meth:`~Stream.deliver`, :meth:`~Stream.credit_granted`,
:meth:`~Stream.mark_fin_sent`, :meth:`~Stream.mark_broken`, ...), never by
writing its attributes.

Errors follow trio's split between "you closed it" and "it broke". Every
way the *other end* (or the path to it) can end an exchange is a
:class:`StreamFailure`, so a protocol actor catches that one type (together
with :class:`~protocols.RemoteProtocolError` for a reply it cannot decode:
:data:`~actors.connection.EXCHANGE_FAILURES`):

* :class:`StreamEnded` - :meth:`~Stream.receive` after the peer finished its
  side (sent fin) and every message was received.
* :class:`StreamReset` - the stream broke: the peer sent an error frame, the
  stream outlived its timeout, the peer sent beyond its flow-control window
  (code ``flow-control``), or the connection ended (code
  :data:`CONNECTION_CLOSED`). ``code`` is the wire error code.
* :class:`StreamTimeout` - :meth:`~Stream.request` got no reply in time (also
  a ``trio.TooSlowError``).
* :class:`~actors.connection.ConnectionEnded` - a new stream was asked of a
  connection that already ended.
* ``trio.ClosedResourceError`` - this side already reset or closed the
  stream (or, for :meth:`~Stream.send`, already sent fin): a usage error,
  deliberately not a :class:`StreamFailure`.

A stream the peer resets (or that times out, or that the peer overfilled)
also cancels the handler task serving it, because nothing useful can
follow. A reset *we* send does not.

:meth:`Stream.request` is the one-shot exchange most protocols here use:
send one message as our whole side (``fin``), read one reply, close.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Generic, Protocol, TypeVar

import trio

from protocols import ErrorCode, PeerId, WireMap

CONNECTION_CLOSED: Final = "connection-closed"
"""The :attr:`StreamReset.code` of streams that were open when their connection ended."""


class StreamFailure(Exception):
    """An exchange with the peer cannot go on, for a reason at the other end or on the way.

    The base of :class:`StreamEnded`, :class:`StreamReset`,
    :class:`StreamTimeout` and :class:`~actors.connection.ConnectionEnded`.
    Never raised for this side's misuse (that is ``trio.ClosedResourceError``
    or :class:`~protocols.LocalProtocolError`).
    """


class StreamEnded(StreamFailure):
    """The peer finished its side of the stream: no more messages will come."""


class StreamReset(StreamFailure):
    """The stream broke: reset by the peer, timed out, or its connection ended."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"stream reset ({code})" + (f": {detail}" if detail else ""))
        self.code = code
        self.detail = detail


class StreamTimeout(StreamFailure, trio.TooSlowError):
    """:meth:`Stream.request` got no reply before its timeout (the stream was reset)."""


class StreamOwner(Protocol):
    """What a stream itself reads from the connection that carries it."""

    @property
    def peer_id(self) -> PeerId: ...


OwnerT = TypeVar("OwnerT", bound=StreamOwner)


class Stream(Generic[OwnerT]):
    """One stream: ``send`` / ``receive`` whole messages (maps), ``aclose`` or ``reset``.

    ``connection`` is the connection carrying the stream (a
    :class:`~actors.Connection`). The connection builds the stream with three
    callables: ``send(stream, message, fin)`` encodes and queues a frame
    (``message=None``: a bare fin), waiting while the stream has no send
    credit or the send queue is full; ``reset(stream, code)`` queues an
    error frame and forgets the stream; ``consumed(stream, count)`` reports
    messages taken off the inbox, so their credit goes back to the peer.
    """

    def __init__(self, connection: OwnerT, stream_id: int, protocol: str, *,
                 inbound: bool,
                 send: Callable[[Stream[OwnerT], WireMap | None, bool], Awaitable[None]],
                 reset: Callable[[Stream[OwnerT], str], None],
                 consumed: Callable[[Stream[OwnerT], int], None]) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.protocol = protocol
        self.inbound = inbound
        self._send_frame = send
        self._reset_stream = reset
        self._consumed = consumed
        self._inbox: deque[WireMap] = deque()
        self._input_ended = False
        self._arrivals = trio.lowlevel.ParkingLot()
        self._credit = trio.lowlevel.ParkingLot()
        self._broken: tuple[str, str] | None = None
        self._reset_by_us = False
        self._closed_by_us = False
        self._reading_stopped = False
        self._sent_fin = False
        self._handler_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        way = "inbound" if self.inbound else "outbound"
        return f"<Stream {self.stream_id} {self.protocol} {way} peer={self.connection.peer_id}>"

    # --- public API ---------------------------------------------------------

    async def send(self, message: WireMap, *, fin: bool = False) -> None:
        """Send one message; ``fin`` makes it our last.

        Waits while the peer granted no credit on this stream (it is not
        reading) or the connection's send queue is full.

        Raises :class:`StreamReset` if the stream broke, ``trio.ClosedResourceError``
        after our fin or reset, and a :class:`~protocols.ProtocolError` subclass if
        the message cannot be encoded (too large, bad value types).
        """
        await self._send_frame(self, message, fin)

    async def receive(self) -> WireMap:
        """The peer's next message; :class:`StreamEnded` after its fin.

        Taking a message returns its credit to the peer (see the module
        docstring). A message that arrived while we waited is returned even if
        the stream broke right after it; the next call raises.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self.check_receivable()
        while not self._inbox:
            if self._input_ended:
                raise StreamEnded(f"the peer finished stream {self.stream_id} ({self.protocol})")
            await self._arrivals.park()
            if not self._inbox:
                self.check_receivable()
        message = self._inbox.popleft()
        self._consumed(self, 1)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return message

    async def reset(self, code: str = ErrorCode.INTERNAL_ERROR) -> None:
        """Abort the stream with an error frame carrying ``code``; no-op once it ended."""
        self._reset_stream(self, code)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Finish our side (a bare fin unless we already sent fin) and drop further input.

        Never raises for a stream that already broke; the peer may keep sending
        until its own fin (those messages are discarded) or the stream timeout.
        """
        self._stop_reading()
        try:
            if self.done_locally or self._closed_by_us:
                await trio.lowlevel.checkpoint()
            else:
                await self._send_frame(self, None, True)
        except StreamReset:
            pass
        finally:
            self._closed_by_us = True

    async def request(self, message: WireMap, *, timeout: float | None = None) -> WireMap:
        """Send ``message`` as our whole side, return the peer's first reply, close.

        On ``timeout`` the stream is reset with ``stream-timeout`` and
        :class:`StreamTimeout` (a ``trio.TooSlowError``) is raised.
        :class:`StreamEnded` means the peer finished without replying.
        """
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self.send(message, fin=True)
                reply = await self.receive()
        except trio.TooSlowError:
            await self.reset(ErrorCode.STREAM_TIMEOUT)
            raise StreamTimeout(f"no reply on stream {self.stream_id} ({self.protocol}) "
                                f"within {timeout:g} s") from None
        await self.aclose()
        return reply

    async def __aenter__(self) -> Stream[OwnerT]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            await self.aclose()
        else:
            await self.reset(ErrorCode.INTERNAL_ERROR)

    # --- used by the connection ---------------------------------------------

    @property
    def sent_fin(self) -> bool:
        """Our side is finished: the connection queued our fin."""
        return self._sent_fin

    @property
    def reset_or_broken(self) -> bool:
        return self._reset_by_us or self._broken is not None

    @property
    def done_locally(self) -> bool:
        """We can send nothing more: fin sent, reset (either way) or closed."""
        return self._sent_fin or self._reset_by_us or self._broken is not None

    def check_sendable(self) -> None:
        if self._reset_by_us:
            raise trio.ClosedResourceError(f"stream {self.stream_id} was reset by this side")
        if self._broken is not None:
            raise StreamReset(*self._broken)
        if self._sent_fin or self._closed_by_us:
            raise trio.ClosedResourceError(f"already sent fin on stream {self.stream_id}")

    def check_receivable(self) -> None:
        if self._reset_by_us or self._reading_stopped:
            raise trio.ClosedResourceError(f"stream {self.stream_id} was closed by this side")
        if self._broken is not None:
            raise StreamReset(*self._broken)

    async def wait_for_credit(self) -> None:
        """Park until the peer grants credit or the stream changes (callers re-check)."""
        await self._credit.park()

    def deliver(self, message: WireMap) -> None:
        """Hand one of the peer's messages to the reader; never blocks.

        The peer's window bounds the inbox. After this side stopped reading the
        message is dropped and its credit returned at once.
        """
        if self._reading_stopped or self._reset_by_us:
            self._consumed(self, 1)
            return
        self._inbox.append(message)
        self._arrivals.unpark_all()

    def end_of_input(self) -> None:
        """The peer sent fin: :meth:`receive` raises :class:`StreamEnded` once the inbox is
        empty."""
        self._input_ended = True
        self._arrivals.unpark_all()

    def credit_granted(self) -> None:
        """The peer granted send credit: wake the senders waiting for it."""
        self._credit.unpark_all()

    def mark_fin_sent(self) -> None:
        """The connection queued our fin: nothing more may be sent."""
        self._sent_fin = True
        self._credit.unpark_all()

    def cancel_when_broken(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` (the handler serving this stream) if the stream breaks."""
        self._handler_scope = scope

    def mark_reset_by_us(self) -> None:
        self._reset_by_us = True
        self._inbox.clear()  # the stream is gone from the mux: no credit to return
        self._wake_all()

    def mark_broken(self, code: str, detail: str) -> None:
        """The peer reset it, it timed out, or the connection ended: wake and cancel users."""
        if self._broken is not None or self._reset_by_us:
            return
        self._broken = (code, detail)
        self._wake_all()
        if self._handler_scope is not None:
            self._handler_scope.cancel()

    # --- helpers ------------------------------------------------------------

    def _stop_reading(self) -> None:
        """Drop the unread messages (returning their credit) and refuse further reads."""
        self._reading_stopped = True
        dropped = len(self._inbox)
        self._inbox.clear()
        if dropped:
            self._consumed(self, dropped)
        self._arrivals.unpark_all()

    def _wake_all(self) -> None:
        self._arrivals.unpark_all()
        self._credit.unpark_all()
