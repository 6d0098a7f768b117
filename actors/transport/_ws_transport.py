"""WebSocket transport: FrameStreams over real TCP (``/ws``) and TLS (``/wss``) connections.

Theory of operation
-------------------
:class:`WebSocketTransport` implements the :class:`~actors.transport._framestream.Transport`
seam with trio-websocket. It opens its own TCP sockets (:mod:`actors.transport._sockets`)
so that it controls the options that let outbound connections leave from the
listen port, and hands finished streams to trio-websocket's low-level
``wrap_server_stream`` / ``wrap_client_stream``. Each connection becomes a
:class:`~actors.transport._ws_stream.WebSocketFrameStream`, whose module explains
messages, errors and the guarded reader task.

``listen`` binds one socket for one address and runs ``handler`` in a task per
accepted connection once the TLS and WebSocket handshakes are done; the
stream is closed when the handler returns. ``dial`` connects (from the listen
port when it can, see :mod:`actors.transport._sockets`), handshakes, and yields the
stream; leaving the context closes it and stops its reader.

Timeouts - every network wait is bounded, by a timeout or by the caller:

* dial: resolve + TCP connect (including the port-reuse fallback) -
  ``connect_timeout``; TLS + WebSocket upgrade - ``handshake_timeout``.
* listen: ``accept`` waits until the listener is cancelled (the accept loop
  of :mod:`actors.transport._accept` keeps file descriptors in reserve and
  rides out resource errors); per connection, TLS + upgrade -
  ``handshake_timeout``, and only while the connection has a place among
  those awaiting the upgrade (``upgrade_limits``: per IP, per subnet and in
  total, see :mod:`actors.transport._upgrade_gate`); then the handler owns
  the stream.
* an open connection: see :mod:`actors.transport._ws_stream` (``send_timeout``,
  ``close_timeout``, the caller's scope for ``receive``).

Hole punching (``punch``): both peers dial each other from their listen ports
at the moment the hole-punch exchange set (:mod:`protocols.holepunch`), so
that the two SYNs open both NATs and meet in one TCP simultaneous open. Such
a connection has no listener, so the exchange assigns the WebSocket roles:
the client sends its upgrade request at once; the server waits up to
:data:`PUNCH_ROLE_WAIT` for it and answers. When one SYN reached the other
side's *listener* instead (that side had not dialed yet), the listener waits
for a request, so the designated server that hears nothing sends one itself.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, cast
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, wrap_client_stream, wrap_server_stream

from protocols import ConnectPlan, UpgradeLimits, WsAddress

from ..runtime import get_logger
from ._accept import SocketBudget, accept_loop
from ._first_bytes import FirstBytesStream
from ._framestream import (
    LOCAL_DIAL_ERRNOS,
    DialError,
    HandshakeTimedOut,
    LocalDialError,
    SimultaneousOpen,
    StreamHandler,
)
from ._sockets import (
    connect_planned,
    connect_tcp,
    enable_keepalive,
    family_for,
    open_listen_socket,
    resolve,
    reuse_source,
    socket_address,
)
from ._upgrade_gate import UpgradeGate
from ._ws_stream import ReaderHost, WebSocketFrameStream, WsSettings, reader_scope

RECEIVE_BUFFER_BYTES = 16 * 1024
MAX_DIAL_IPS = 4  # resolved addresses tried per dial, in resolver order

_log = get_logger("actors.ws_transport")

PUNCH_ROLE_WAIT: Final = 1.0
"""How long the server side of a punched connection waits for the client's upgrade
request before concluding it reached a listener and sending one itself: the
client sends it one RTT after the SYN-ACK at most."""


class WebSocketTransport:
    """Dials and listens on ``/ws`` and ``/wss`` multiaddrs (see the module docstring).

    ``server_ssl`` is required to listen on ``/wss``; ``client_ssl`` defaults to
    ``ssl.create_default_context()`` for ``/wss`` dials. ``upgrade_limits`` cap the
    inbound connections awaiting the TLS + WebSocket upgrade.
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
        budget: SocketBudget | None = None,
        upgrade_limits: UpgradeLimits | None = None,
    ) -> None:
        self._settings = WsSettings(
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
        self.sockets = budget if budget is not None else SocketBudget()
        """Sockets held, inbound and outbound, against the file-descriptor limit."""
        self.upgrades = UpgradeGate(upgrade_limits)
        """Inbound connections awaiting the upgrade, shared by every listener."""

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
            await accept_loop(trio.SocketListener(sock), serve, self.sockets,
                              where=str(bound))
        finally:
            self._listening.remove(endpoint)
            sock.close()

    @asynccontextmanager
    async def dial(
        self, addr: WsAddress, *, reuse_listen_port: bool = True, source_ip: str | None = None,
        connect_plan: ConnectPlan | None = None,
    ) -> AsyncIterator[WebSocketFrameStream]:
        """``async with transport.dial(addr) as stream:``; DialError when no connection results.

        A dial from the listen port that turns out to be a TCP simultaneous open
        (:class:`SimultaneousOpen`, see :mod:`actors.transport._first_bytes`) is
        redialed once from an ephemeral port."""
        yielded = False
        try:
            async with self._dial_once(addr, reuse_listen_port, source_ip,
                                       connect_plan) as stream:
                yielded = True
                yield stream
                return
        except SimultaneousOpen as exc:
            if yielded or not reuse_listen_port:
                raise
            _log.info("simultaneous open: redialing from an ephemeral port", addr=str(addr),
                      error=str(exc))
        async with self._dial_once(addr, False, source_ip, connect_plan) as stream:
            yield stream

    @asynccontextmanager
    async def punch(self, addr: WsAddress, *,
                    as_client: bool) -> AsyncIterator[WebSocketFrameStream]:
        """A hole-punch dial from the listen port, in the given WebSocket role (see
        :meth:`~actors.transport.Transport.punch` and "Hole punching" in the module
        docstring)."""
        if reuse_source(self._listening, addr.host) is None:
            raise DialError(f"cannot punch to {addr}: no listen port to dial from")
        socket_stream = await self._connect(addr, True)
        self.sockets.take()
        try:
            async with reader_scope() as host:
                stream: WebSocketFrameStream | None
                if as_client or not await self._peer_speaks_first(socket_stream):
                    stream = await self._client_handshake(host, socket_stream, addr)
                else:
                    stream = await self._server_handshake(host, socket_stream, addr.secure)
                if stream is None:
                    raise DialError(f"WebSocket handshake with {addr} failed "
                                    f"(as the server of a punched connection)")
                try:
                    yield stream
                finally:
                    await stream.aclose("dialer closed the connection")
        finally:
            socket_stream.socket.close()
            self.sockets.give_back()

    async def _peer_speaks_first(self, socket_stream: trio.SocketStream) -> bool:
        """Whether the peer's upgrade request arrives within :data:`PUNCH_ROLE_WAIT`.

        In a simultaneous open the peer, the designated client, sends it at once.
        If our SYN reached the peer's *listener* instead (its own SYN had not
        left), the peer waits for a request like any server: then we send it."""
        with trio.move_on_after(PUNCH_ROLE_WAIT):
            await trio.lowlevel.wait_readable(socket_stream.socket)
            return True
        return False

    @asynccontextmanager
    async def _dial_once(self, addr: WsAddress, reuse_listen_port: bool,
                         source_ip: str | None,
                         connect_plan: ConnectPlan | None) -> AsyncIterator[WebSocketFrameStream]:
        socket_stream = await self._connect(addr, reuse_listen_port, source_ip, connect_plan)
        self.sockets.take()
        try:
            async with reader_scope() as host:
                stream = await self._client_handshake(host, socket_stream, addr)
                try:
                    yield stream
                finally:
                    await stream.aclose("dialer closed the connection")
        finally:
            socket_stream.socket.close()  # already closed unless cancelled mid-handshake
            self.sockets.give_back()

    # --- listening ----------------------------------------------------------

    async def _listen_ip(self, addr: WsAddress) -> str:
        if addr.ip is not None:
            return addr.host
        try:
            with trio.fail_after(self._settings.connect_timeout):
                return (await resolve(addr.host, addr.port, family_for(addr.kind)))[0]
        except (DialError, trio.TooSlowError) as exc:
            why = str(exc) or "name lookup timed out"
            raise OSError(f"cannot listen on {addr}: {why}") from exc

    async def _serve_connection(
        self, socket_stream: trio.SocketStream, *, handler: StreamHandler, secure: bool
    ) -> None:
        enable_keepalive(socket_stream.socket)
        async with reader_scope() as host:
            stream = await self.upgrades.upgrade(
                socket_stream, partial(self._server_handshake, host, socket_stream, secure))
            if stream is None:
                return
            try:
                await handler(stream)
            finally:
                await stream.aclose("handler finished")

    async def _server_handshake(
        self, host: ReaderHost, socket_stream: trio.SocketStream, secure: bool
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

    async def _connect(self, addr: WsAddress, reuse_listen_port: bool,
                       source_ip: str | None = None,
                       plan: ConnectPlan | None = None) -> trio.SocketStream:
        timeout = self._settings.connect_timeout
        try:
            with trio.fail_after(timeout):
                ips = [addr.host] if addr.ip is not None else await self._resolve(addr)
                errors: list[str] = []
                for ip in ips[:MAX_DIAL_IPS]:
                    source = reuse_source(self._listening, ip) if reuse_listen_port else None
                    try:
                        if plan is not None:
                            return await connect_planned(ip, addr.port, plan,
                                                         source_ip=source_ip)
                        return await connect_tcp(ip, addr.port, bind_to=source,
                                                 source_ip=source_ip)
                    except OSError as exc:
                        if exc.errno in LOCAL_DIAL_ERRNOS:  # not the peer's doing
                            raise LocalDialError(f"cannot connect to {addr}: "
                                                 f"{_error_text(exc)} (on this host)") from exc
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
        self, host: ReaderHost, socket_stream: trio.SocketStream, addr: WsAddress
    ) -> WebSocketFrameStream:
        stream: trio.abc.Stream = socket_stream
        if addr.secure:
            stream = trio.SSLStream(
                socket_stream,
                self._client_context(),
                server_hostname=addr.host,
                https_compatible=True,
            )
        sniffed = FirstBytesStream(stream)
        timeout = self._settings.handshake_timeout
        try:
            addresses = _addresses(socket_stream, addr.secure)
            with host.handshake(timeout):
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                netloc = urlsplit(addr.url()).netloc
                ws = await wrap_client_stream(
                    cast(trio.Nursery, host),
                    cast(Any, sniffed),  # forwards to a SocketStream or SSLStream
                    netloc,
                    "/",
                    message_queue_size=self._settings.message_queue_size,
                    max_message_size=self._settings.max_frame_bytes,
                    receive_buffer_size=RECEIVE_BUFFER_BYTES,
                )
                return WebSocketFrameStream(ws, stream, addresses, host, self._settings)
            failure = host.handshake_failure(timeout)
            timed_out = host.error is None and not host.stopped
        except (OSError, trio.BrokenResourceError, ConnectionClosed) as exc:
            failure, timed_out = _error_text(exc), False
        await trio.aclose_forcefully(stream)
        error: type[DialError] = HandshakeTimedOut if timed_out else DialError
        if sniffed.peer_sent_request:
            error, failure = SimultaneousOpen, "the peer sent a request too (simultaneous open)"
        raise error(f"WebSocket handshake with {addr} failed: {failure}")

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
