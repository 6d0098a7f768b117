"""WebSocket transport: FrameStreams over real TCP (``/ws``) and TLS (``/wss``) connections.

Theory of operation
-------------------
:class:`WebSocketTransport` implements the :class:`~actors._framestream.Transport`
seam with trio-websocket. It opens its own TCP sockets (:mod:`actors._sockets`)
so that it controls the options that let outbound connections leave from the
listen port, and hands finished streams to trio-websocket's low-level
``wrap_server_stream`` / ``wrap_client_stream``.

A connection is a trio-websocket ``WebSocketConnection`` plus its background
reader task. The reader runs in a per-connection nursery owned by the ``dial``
context manager or by the listener's per-connection task. It is guarded
(:class:`_ReaderHost`): whatever stops it - a rejected handshake, a protocol
error, the peer vanishing - is recorded and surfaces as :class:`DialError` or
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

Timeouts - every network wait is bounded, by a timeout or by the caller:

* dial: resolve + TCP connect (including the port-reuse fallback) -
  ``connect_timeout``; TLS + WebSocket upgrade - ``handshake_timeout``.
* listen: ``accept`` waits until the listener is cancelled; per connection,
  TLS + upgrade - ``handshake_timeout``; then the handler owns the stream.
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
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

import structlog
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from protocols import WsAddress

from ._framestream import DialError, StreamHandler, TransportBroken, TransportClosed
from ._sockets import (
    connect_tcp,
    family_for,
    open_listen_socket,
    resolve,
    reuse_source,
    socket_address,
)

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_ABNORMAL = 1006
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
MAX_CLOSE_REASON_BYTES = 123  # a close frame's payload is <= 125 bytes, 2 are the code
RECEIVE_BUFFER_BYTES = 16 * 1024
MAX_DIAL_IPS = 4  # resolved addresses tried per dial, in resolver order

_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1003, 1007, 1008, 1009, 1011})

_log = structlog.get_logger("actors.ws_transport")


class WebSocketBroken(TransportBroken):
    """The connection ended without our ``aclose``.

    ``code`` is the WebSocket close code (the peer's, or ours when we closed
    because of a violation; 1006 when TCP ended without a close frame; ``None``
    when it failed before any close, e.g. a send timeout) and ``reason`` the
    close reason text.
    """

    def __init__(self, message: str, *, code: int | None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    def copy(self) -> WebSocketBroken:
        """A fresh instance to raise again (tracebacks must not pile up on one object)."""
        return WebSocketBroken(str(self), code=self.code, reason=self.reason)


@dataclass(frozen=True)
class _Settings:
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


class _ReaderHost:
    """Stands in for the nursery trio-websocket's ``wrap_*_stream`` start their reader in.

    trio-websocket only calls ``start_soon`` on it (the same duck typing trio's
    ``serve_listeners`` allows for its handler nursery). The reader is guarded:
    an exception it raises (a rejected handshake, a protocol error while
    answering) is kept in ``error`` instead of crashing the nursery, and when
    the reader stops for any reason during a handshake, the handshake wait is
    cancelled instead of running into its timeout.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.error: Exception | None = None
        self.stopped = False
        self._handshake: trio.CancelScope | None = None

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self._nursery.start_soon(self._guarded, partial(fn, *args))

    async def _guarded(self, fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
        except Exception as exc:  # recorded and reported by the connection's owner
            self.error = exc
            _log.debug("websocket reader failed", error=repr(exc))
        finally:
            self.stopped = True
            if self._handshake is not None:
                self._handshake.cancel()

    @contextmanager
    def handshake(self, timeout: float) -> Iterator[trio.CancelScope]:
        """A scope bounding a handshake: ends at ``timeout`` or when the reader stops."""
        with trio.move_on_after(timeout) as scope:
            self._handshake = scope
            try:
                yield scope
            finally:
                self._handshake = None

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
async def _reader_scope() -> AsyncIterator[_ReaderHost]:
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
                yield _ReaderHost(nursery)
            except BaseException as exc:  # raised again below, outside the nursery
                body_error = exc
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if body_error is None:
            body_error = _sole_cancelled(group)
    if body_error is not None:
        raise body_error


def _sole_cancelled(group: BaseExceptionGroup[BaseException]) -> BaseException:
    matched, rest = group.split(trio.Cancelled)
    if matched is None or rest is not None:
        raise group
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _clip_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes of UTF-8 a close frame can carry, on a character edge."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


class WebSocketFrameStream:
    """One WebSocket connection as a :class:`~actors._framestream.FrameStream`.

    Created by :class:`WebSocketTransport` only. See the module docstring for
    errors and timeouts.
    """

    def __init__(
        self,
        ws: WebSocketConnection,
        stream: trio.abc.Stream,
        addresses: tuple[WsAddress, WsAddress],
        host: _ReaderHost,
        settings: _Settings,
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
    def local_addr(self) -> WsAddress:
        return self._local

    @property
    def remote_addr(self) -> WsAddress:
        return self._remote

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
        with trio.move_on_after(self._settings.close_timeout):
            try:
                await self._ws.aclose(code, _clip_reason(reason) or None)
            except Exception as exc:  # aclose never raises; the socket is closed next
                _log.debug("websocket close handshake failed", error=repr(exc))

    async def _close_socket(self) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.aclose_forcefully(self._stream)


class WebSocketTransport:
    """Dials and listens on ``/ws`` and ``/wss`` multiaddrs (see the module docstring).

    ``server_ssl`` is required to listen on ``/wss``; ``client_ssl`` defaults to
    ``ssl.create_default_context()`` for ``/wss`` dials.
    """

    def __init__(
        self,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        max_frame_bytes: int = 64 * 1024,
        connect_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
        send_timeout: float = 30.0,
        close_timeout: float = 2.0,
        message_queue_size: int = 4,
    ) -> None:
        self._settings = _Settings(
            max_frame_bytes=max_frame_bytes,
            message_queue_size=message_queue_size,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
            send_timeout=send_timeout,
            close_timeout=close_timeout,
        )
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._listening: list[tuple[str, int]] = []  # (ip, port) of active listeners

    async def listen(
        self,
        addr: WsAddress,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``addr`` until cancelled; one task per connection runs ``handler``.

        Raises OSError when the address cannot be bound, ValueError for ``/wss``
        without ``server_ssl``. An exception from ``handler`` ends the listener.
        """
        if addr.secure and self._server_ssl is None:
            raise ValueError(
                f"cannot listen on {addr}: /wss needs WebSocketTransport(server_ssl=...)"
            )
        sock = await open_listen_socket(await self._listen_ip(addr), addr.port)
        bound = socket_address(sock.getsockname(), secure=addr.secure)
        endpoint = (bound.host, bound.port)
        self._listening.append(endpoint)
        try:
            serve = partial(self._serve_connection, handler=handler, secure=addr.secure)
            task_status.started([bound])
            await trio.serve_listeners(serve, [trio.SocketListener(sock)])
        finally:
            self._listening.remove(endpoint)
            sock.close()

    @asynccontextmanager
    async def dial(
        self, addr: WsAddress, *, reuse_listen_port: bool = True
    ) -> AsyncIterator[WebSocketFrameStream]:
        """``async with transport.dial(addr) as stream:``; DialError when no connection results."""
        socket_stream = await self._connect(addr, reuse_listen_port)
        async with _reader_scope() as host:
            stream = await self._client_handshake(host, socket_stream, addr)
            try:
                yield stream
            finally:
                await stream.aclose("dialer closed the connection")

    # --- listening ----------------------------------------------------------

    async def _listen_ip(self, addr: WsAddress) -> str:
        if addr.ip is not None:
            return addr.host
        try:
            with trio.fail_after(self._settings.connect_timeout):
                return (await resolve(addr.host, addr.port, family_for(addr.kind)))[0]
        except (DialError, trio.TooSlowError) as exc:
            raise OSError(f"cannot listen on {addr}: {exc or 'name lookup timed out'}") from exc

    async def _serve_connection(
        self, socket_stream: trio.SocketStream, *, handler: StreamHandler, secure: bool
    ) -> None:
        async with _reader_scope() as host:
            stream = await self._server_handshake(host, socket_stream, secure)
            if stream is None:
                return
            try:
                await handler(stream)
            finally:
                await stream.aclose("handler finished")

    async def _server_handshake(
        self, host: _ReaderHost, socket_stream: trio.SocketStream, secure: bool
    ) -> WebSocketFrameStream | None:
        stream: trio.abc.Stream = socket_stream
        if secure:
            assert self._server_ssl is not None  # checked by listen
            stream = trio.SSLStream(
                socket_stream, self._server_ssl, server_side=True, https_compatible=True
            )
        timeout = self._settings.handshake_timeout
        try:
            addresses = _addresses(socket_stream, secure)
            with host.handshake(timeout):
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                request = await wrap_server_stream(
                    cast(trio.Nursery, host),
                    stream,
                    message_queue_size=self._settings.message_queue_size,
                    max_message_size=self._settings.max_frame_bytes,
                    receive_buffer_size=RECEIVE_BUFFER_BYTES,
                )
                ws = await request.accept()
                return WebSocketFrameStream(ws, stream, addresses, host, self._settings)
            failure = host.handshake_failure(timeout)
        except (OSError, trio.BrokenResourceError, ConnectionClosed) as exc:
            failure = _error_text(exc)
        _log.debug("inbound websocket handshake failed", error=failure)
        await trio.aclose_forcefully(stream)
        return None

    # --- dialing ------------------------------------------------------------

    async def _connect(self, addr: WsAddress, reuse_listen_port: bool) -> trio.SocketStream:
        timeout = self._settings.connect_timeout
        try:
            with trio.fail_after(timeout):
                ips = [addr.host] if addr.ip is not None else await self._resolve(addr)
                errors: list[str] = []
                for ip in ips[:MAX_DIAL_IPS]:
                    source = reuse_source(self._listening, ip) if reuse_listen_port else None
                    try:
                        return await connect_tcp(ip, addr.port, bind_to=source)
                    except OSError as exc:
                        errors.append(f"{ip}: {_error_text(exc)}")
        except trio.TooSlowError:
            raise DialError(f"cannot connect to {addr}: timed out after {timeout:g} s") from None
        raise DialError(f"cannot connect to {addr}: {'; '.join(errors)}")

    async def _resolve(self, addr: WsAddress) -> list[str]:
        try:
            return await resolve(addr.host, addr.port, family_for(addr.kind))
        except DialError as exc:
            raise DialError(f"cannot dial {addr}: {exc}") from exc

    async def _client_handshake(
        self, host: _ReaderHost, socket_stream: trio.SocketStream, addr: WsAddress
    ) -> WebSocketFrameStream:
        stream: trio.abc.Stream = socket_stream
        if addr.secure:
            stream = trio.SSLStream(
                socket_stream,
                self._client_context(),
                server_hostname=addr.host,
                https_compatible=True,
            )
        timeout = self._settings.handshake_timeout
        try:
            addresses = _addresses(socket_stream, addr.secure)
            with host.handshake(timeout):
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                netloc = urlsplit(addr.url()).netloc
                ws = await wrap_client_stream(
                    cast(trio.Nursery, host),
                    cast(Any, stream),  # a SocketStream or SSLStream, as it asks
                    netloc,
                    "/",
                    message_queue_size=self._settings.message_queue_size,
                    max_message_size=self._settings.max_frame_bytes,
                    receive_buffer_size=RECEIVE_BUFFER_BYTES,
                )
                return WebSocketFrameStream(ws, stream, addresses, host, self._settings)
            failure = host.handshake_failure(timeout)
        except (OSError, trio.BrokenResourceError, ConnectionClosed) as exc:
            failure = _error_text(exc)
        await trio.aclose_forcefully(stream)
        raise DialError(f"WebSocket handshake with {addr} failed: {failure}")

    def _client_context(self) -> ssl.SSLContext:
        if self._client_ssl is None:
            self._client_ssl = ssl.create_default_context()
        return self._client_ssl


def _addresses(socket_stream: trio.SocketStream, secure: bool) -> tuple[WsAddress, WsAddress]:
    """(local, remote) of a connected socket; OSError when the peer is already gone."""
    sock = socket_stream.socket
    return (
        socket_address(sock.getsockname(), secure=secure),
        socket_address(sock.getpeername(), secure=secure),
    )


def _error_text(exc: BaseException) -> str:
    """A short description; TLS errors hide the ssl error in ``__cause__``."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
    shown = cause if cause is not None else exc
    if isinstance(shown, OSError) and shown.strerror:
        return shown.strerror
    return f"{type(shown).__name__}: {shown}" if str(shown) else type(shown).__name__
