"""One WebSocket connection as a FrameStream, and the guarded reader task behind it.

Theory of operation
-------------------
A connection is a trio-websocket ``WebSocketConnection`` plus its background
reader task, wrapped by :class:`WebSocketFrameStream`. The reader runs in a
per-connection nursery (:func:`reader_scope`) owned by the ``dial`` context
manager or by the listener's per-connection task. It is guarded
(:class:`ReaderHost`): whatever stops it - a rejected handshake, a protocol
error, the peer vanishing - is recorded and surfaces as ``DialError`` or
:class:`WebSocketBroken` at the API, never as an exception that crashes a
nursery. Exceptions raised by the caller's code inside ``dial`` or by a listen
handler come out unchanged, not wrapped in an ExceptionGroup.

Messages are binary; a text message is a protocol violation (close 1003). A
message longer than ``max_frame_bytes`` makes trio-websocket close with 1009
while it is still arriving, so a connection buffers at most one frame limit of
partial data plus ``message_queue_size`` complete frames. Our own sends are
not checked against the limit: the receiver enforces its own.

Errors follow the seam: :class:`TransportClosed` after our own ``aclose``;
:class:`WebSocketBroken` (a :class:`TransportBroken`) carrying the close
``code`` and ``reason`` once the peer closed, the socket broke or a limit was
hit. Failures are sticky: later calls raise the same error again.

Waits on an open connection:

* ``receive``: the caller's cancel scope (idle connections are legitimate; the
  layer above owns idle timeouts). Cancelling a receive loses nothing.
* ``send``: ``send_timeout`` (a peer that stops reading). A send that times
  out *or is cancelled* aborts the connection, because a partly written frame
  would corrupt the stream.
* ``aclose``: ``close_timeout`` for the WebSocket close handshake, skipped when
  the caller is already cancelled; the socket is closed in every case.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial

import trio
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, WebSocketConnection

from protocols import PathStats, WsAddress

from ..runtime import get_logger
from ._framestream import TransportBroken, TransportClosed
from ._sockets import path_stats

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_ABNORMAL = 1006
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
MAX_CLOSE_REASON_BYTES = 123  # a close frame's payload is <= 125 bytes, 2 are the code

_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1003, 1007, 1008, 1009, 1011})
_NORMAL_CLOSE_CODES = frozenset({CLOSE_NORMAL, 1001})  # 1001: going away (e.g. shutting down)

_log = get_logger("actors.ws_stream")


class WebSocketBroken(TransportBroken):
    """The connection ended without our ``aclose``.

    ``code`` is the WebSocket close code (the peer's, or ours when we closed
    because of a violation; 1006 when TCP ended without a close frame; ``None``
    when it failed before any close, e.g. a send timeout) and ``reason`` the
    close reason text.
    """

    def __init__(self, message: str, *, code: int | None, reason: str = "") -> None:
        super().__init__(message, peer_closed=code in _NORMAL_CLOSE_CODES, peer_reason=reason)
        self.code = code
        self.reason = reason

    def copy(self) -> WebSocketBroken:
        """A fresh instance to raise again (tracebacks must not pile up on one object)."""
        return WebSocketBroken(str(self), code=self.code, reason=self.reason)


@dataclass(frozen=True)
class WsSettings:
    """Limits and timeouts shared by the transport and its streams (validated here)."""

    max_frame_bytes: int
    message_queue_size: int
    connect_timeout: float
    handshake_timeout: float
    send_timeout: float
    close_timeout: float

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be >= 1, got {self.max_frame_bytes}")
        if self.message_queue_size < 0:
            raise ValueError(f"message_queue_size must be >= 0, got {self.message_queue_size}")
        for name in ("connect_timeout", "handshake_timeout", "send_timeout", "close_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")


class ReaderHost:
    """Stands in for the nursery trio-websocket's ``wrap_*_stream`` start their reader in.

    trio-websocket only calls ``start_soon`` on it (the same duck typing trio's
    ``serve_listeners`` allows for its handler nursery). The reader is guarded:
    an exception it raises (a rejected handshake, a protocol error while
    answering) is kept in ``error`` instead of crashing the nursery, and when
    the reader stops for any reason, every wait that needs it (the opening
    handshake, the close handshake) is cancelled instead of running into its
    timeout - e.g. on shutdown, when the reader is cancelled and could never
    read the peer's close reply.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.error: Exception | None = None
        self.stopped = False
        self._waits: set[trio.CancelScope] = set()
        self._readers: set[trio.CancelScope] = set()
        self._stopping = False

    def stop(self) -> None:
        """Cancel the reader (it is shielded from outer cancellation until then)."""
        self._stopping = True
        for scope in self._readers:
            scope.cancel()

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self._nursery.start_soon(self._guarded, partial(fn, *args))

    async def _guarded(self, fn: Callable[[], Awaitable[object]]) -> None:
        # Shielded: when the node shuts down, the connection's owner still closes the
        # stream politely (a WebSocket close handshake needs the reader to see the
        # peer's reply); reader_scope() cancels the reader explicitly afterwards.
        try:
            with trio.CancelScope(shield=True) as scope:
                self._readers.add(scope)
                if self._stopping:  # stop() ran before this task started
                    scope.cancel()
                await fn()
        except Exception as exc:  # recorded and reported by the connection's owner
            self.error = exc
            _log.debug("websocket reader failed", error=repr(exc))
        finally:
            self.stopped = True
            for scope in self._waits:
                scope.cancel()

    @contextmanager
    def handshake(self, timeout: float) -> Iterator[trio.CancelScope]:
        """A scope bounding a wait on the reader: ends at ``timeout`` or when it stops."""
        with trio.move_on_after(timeout) as scope:
            if self.stopped:
                scope.cancel()
            self._waits.add(scope)
            try:
                yield scope
            finally:
                self._waits.discard(scope)

    def handshake_failure(self, timeout: float) -> str:
        """Why a handshake scope ended without a connection."""
        if isinstance(self.error, ConnectionRejected):
            return f"rejected with HTTP status {self.error.status_code}"
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self.stopped:
            return "the connection closed during the handshake"
        return f"timed out after {timeout:g} s"

    def reader_failure(self) -> str:
        if self.error is None:
            return "the connection's reader stopped"
        return f"{type(self.error).__name__}: {self.error}"


@asynccontextmanager
async def reader_scope() -> AsyncIterator[ReaderHost]:
    """A nursery for one connection's reader that re-raises the body's exception as is.

    A strict nursery wraps whatever its body raises in an ExceptionGroup; callers
    of ``dial`` and listen handlers must see their own exceptions instead. The
    body's exception is set aside, the reader is cancelled, and the exception is
    raised again once the nursery has closed. The guarded reader can only add
    ``Cancelled`` (from an outer scope), which is unwrapped the same way.
    """
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                host = ReaderHost(nursery)
                yield host
            except BaseException as exc:  # raised again below, outside the nursery
                body_error = exc
            finally:
                host.stop()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        cancelled = _sole_cancelled(group)  # re-raises a group holding anything else
        body_error = body_error or cancelled
    if body_error is not None:
        raise body_error


def _sole_cancelled(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first ``Cancelled`` of a group of only ``Cancelled``; otherwise the group is raised."""
    matched, rest = group.split(trio.Cancelled)
    if matched is None or rest is not None:
        raise group
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def clip_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes of UTF-8 a close frame can carry, on a character edge."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


class WebSocketFrameStream:
    """One WebSocket connection as a :class:`~actors.transport._framestream.FrameStream`.

    Created by :class:`actors.WebSocketTransport` only. See the module docstring for
    errors and timeouts.
    """

    def __init__(
        self,
        ws: WebSocketConnection,
        stream: trio.abc.Stream,
        addresses: tuple[WsAddress, WsAddress],
        host: ReaderHost,
        settings: WsSettings,
    ) -> None:
        self._ws = ws
        self._stream = stream  # what trio-websocket talks to: the socket or the TLS layer
        self._local, self._remote = addresses
        self._host = host
        self._settings = settings
        self._closed = False
        self._failure: WebSocketBroken | None = None
        self.close_reason = ""

    @property
    def is_client(self) -> bool:
        """Whether this end ran the WebSocket client handshake (a punched connection's
        role; see ``WebSocketTransport.punch``)."""
        return bool(self._ws.is_client)

    @property
    def local_addr(self) -> WsAddress:
        return self._local

    @property
    def remote_addr(self) -> WsAddress:
        return self._remote

    def path_stats(self) -> PathStats | None:
        """The kernel's RTT and loss counts of the TCP connection under the WebSocket."""
        stream = self._stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        if not isinstance(stream, trio.SocketStream):
            return None
        return path_stats(stream.socket)

    async def send(self, frame: bytes) -> None:
        """Send one binary frame; bounded by ``send_timeout``, which aborts the connection."""
        self._check_usable()
        try:
            with trio.fail_after(self._settings.send_timeout):
                await self._ws.send_message(bytes(frame))
        except ConnectionClosed as exc:
            raise self._closed_error(exc.reason) from None
        except trio.TooSlowError:
            timeout = self._settings.send_timeout
            await self._abort(f"send to {self._remote} timed out after {timeout:g} s")
            raise self._closed_error(None) from None
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._abort(f"a send to {self._remote} was cancelled mid-frame")
            raise

    async def receive(self) -> bytes:
        """Receive one binary frame; waits as long as the caller's cancel scope allows."""
        self._check_usable()
        try:
            message = await self._ws.get_message()
        except ConnectionClosed as exc:
            raise self._closed_error(exc.reason) from None
        if isinstance(message, str):
            await self._violation(CLOSE_UNSUPPORTED_DATA, "peer sent a text message")
            raise self._closed_error(None)
        return message

    async def aclose(self, reason: str = "", *, code: int = CLOSE_NORMAL) -> None:
        """Close with ``code`` (1000; 1008 for policy violations) and ``reason``.

        Idempotent; never raises except ``Cancelled`` (after the socket is closed).
        """
        if code not in _SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"{code} is not a WebSocket close code an endpoint may send")
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        try:
            if self._failure is None:
                await self._close_handshake(code, reason)
        finally:
            await self._close_socket()

    # --- internals ------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise TransportClosed("stream already closed by this side")
        if self._failure is not None:
            raise self._failure.copy()

    def _closed_error(self, reason: CloseReason | None) -> TransportClosed | WebSocketBroken:
        """The error for a failed operation; records the failure on first sight."""
        if self._closed:
            return TransportClosed("stream closed by this side")
        if self._failure is None:
            self._failure = self._describe(reason)
        return self._failure.copy()

    def _describe(self, reason: CloseReason | None) -> WebSocketBroken:
        remote = self._remote
        if reason is None:
            return WebSocketBroken(
                f"connection to {remote} failed: {self._host.reader_failure()}", code=None
            )
        text = reason.reason or ""
        if reason.code == CLOSE_ABNORMAL:
            message = f"connection to {remote} lost without a WebSocket close"
        elif reason.code == CLOSE_MESSAGE_TOO_BIG:
            message = f"frame too large: connection to {remote} closed with 1009: {text}"
        else:
            shown = text or "no reason given"
            message = f"connection to {remote} closed with {reason.code} ({reason.name}): {shown}"
        return WebSocketBroken(message, code=reason.code, reason=text)

    async def _violation(self, code: int, text: str) -> None:
        """The peer broke the protocol: record it, close with ``code`` and ``text``."""
        self._failure = WebSocketBroken(
            f"{text}; closed the connection to {self._remote} with {code}", code=code, reason=text
        )
        try:
            await self._close_handshake(code, text)
        finally:
            await self._close_socket()

    async def _abort(self, text: str) -> None:
        """Tear the connection down without a close handshake (it may be mid-frame)."""
        if self._failure is None:
            self._failure = WebSocketBroken(text, code=None, reason=text)
        await self._close_socket()

    async def _close_handshake(self, code: int, reason: str) -> None:
        if trio.current_effective_deadline() == -math.inf:
            return  # the caller is cancelled: no time for courtesy, just close
        with self._host.handshake(self._settings.close_timeout):
            try:
                await self._ws.aclose(code, clip_reason(reason) or None)
            except Exception as exc:  # aclose never raises; the socket is closed next
                _log.debug("websocket close handshake failed", error=repr(exc))

    async def _close_socket(self) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.aclose_forcefully(self._stream)
