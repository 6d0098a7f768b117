"""The narrow transport seam: a connection is a bidirectional stream of frames.

Theory of operation
-------------------
Everything above the transport (handshake, stream multiplexing, Identify,
AutoNAT) needs only four things from a connection: send one frame, receive
one frame, close it, and know the real local and remote addresses. That is
:class:`FrameStream`. A :class:`Transport` produces them by dialing and by
listening. The WebSocket transport implements it over TCP/TLS; the memory
transport (:mod:`actors.transport._memory_transport`) implements it with Trio memory
channels so that tests and the simulator run thousands of nodes in one
process with no sockets.

Errors follow trio's split between "you closed it" and "it broke":
:class:`TransportClosed` means this side closed the stream, while
:class:`TransportBroken` means the peer went away or the connection failed
(the reason says how). ``receive`` on a stream the peer closed cleanly raises
:class:`TransportBroken` as well, with the peer's close reason, because for
our protocols an unexpected end of the connection is always a failure.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

import trio

from protocols import ConnectPlan, PathStats, WsAddress


class TransportError(Exception):
    """Base class for transport failures."""


class TransportClosed(TransportError):
    """This side already closed the stream (a usage error, like trio.ClosedResourceError)."""


class TransportBroken(TransportError):
    """The peer closed the connection or it failed (like trio.BrokenResourceError).

    ``peer_closed`` is True when the peer ended the connection on purpose (a
    normal WebSocket close, the end of a memory stream) rather than it failing;
    ``peer_reason`` is the reason the peer gave ("" when none).
    """

    def __init__(self, message: str, *, peer_closed: bool = False, peer_reason: str = "") -> None:
        super().__init__(message)
        self.peer_closed = peer_closed
        self.peer_reason = peer_reason


class DialError(TransportError):
    """A dial did not produce a connection (refused, unreachable, timed out, bad URL)."""


class HandshakeTimedOut(DialError):
    """A dial connected, but the transport's handshake (TLS, WebSocket upgrade) did not
    finish in time: something answered at the address, over a slow or lossy path."""


class SimultaneousOpen(DialError):
    """A dial from our listen port met the peer's dial from *its* listen port: TCP
    simultaneous open joined the two SYNs into one connection on which both ends
    are clients (each received the other's WebSocket upgrade request). The
    transport redials once from an ephemeral port; this reaches the caller only
    when that was not possible."""


class LocalDialError(DialError):
    """A dial failed for a reason on *our* side: no file descriptors or buffers left, no
    free port, no route or address for our source IP, a local policy. It says nothing
    about the remote end (see :data:`LOCAL_DIAL_ERRNOS`)."""


LOCAL_DIAL_ERRNOS: Final = frozenset({
    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,  # out of resources
    errno.EADDRNOTAVAIL, errno.EADDRINUSE,  # our source address or no free port
    errno.ENETUNREACH, errno.EAFNOSUPPORT,  # our routing table / address family
    errno.EACCES, errno.EPERM,  # a local firewall rule or policy
})
"""OS errors of ``connect`` that come from this host, not from the path to the peer.
``ECONNREFUSED``, ``EHOSTUNREACH`` (an ICMP answer from the path) and timeouts are
not among them: those are what the remote side or the network did."""


class FrameStream(Protocol):
    """One connection: whole frames in, whole frames out."""

    @property
    def local_addr(self) -> WsAddress:
        """Our end of the connection as a multiaddr (no peer id)."""
        ...

    @property
    def remote_addr(self) -> WsAddress:
        """The peer's end as we see it - the address Identify reports as observed."""
        ...

    def path_stats(self) -> PathStats | None:
        """The path's round trip and loss as the OS measures them, None when it does not
        (AutoNAT servers plan their dial-backs from it)."""
        ...

    async def send(self, frame: bytes) -> None:
        """Send one frame. Raises TransportClosed or TransportBroken."""
        ...

    async def receive(self) -> bytes:
        """Receive one frame. Raises TransportClosed or TransportBroken."""
        ...

    async def aclose(self, reason: str = "") -> None:
        """Close with a human-readable reason; idempotent, never raises."""
        ...


class SendsNowait(Protocol):
    """A frame stream that can also send without waiting (the in-memory one).

    A connection over it sends each frame in the task that produced it, and
    needs a writer task only while the peer's buffer is full; over any other
    frame stream a writer task sends, for as long as frames are queued."""

    def send_nowait(self, frame: bytes) -> bool:
        """Send ``frame`` now if that needs no wait; False (nothing sent) otherwise.
        Raises TransportClosed or TransportBroken as :meth:`FrameStream.send` does."""
        ...


class DeliversFrames(Protocol):
    """A frame stream that can hand its frames over instead of being read (the in-memory
    one): a connection over it needs no reader task."""

    def deliver_to(self, on_frame: Callable[[bytes], object],
                   on_end: Callable[[TransportError], object]) -> None:
        """From now on call ``on_frame(frame)`` for each frame as it arrives and
        ``on_end(error)`` once: when the peer closed, after its last frame, or when this
        side closed (the error :meth:`FrameStream.receive` would raise) - synchronously,
        from a task that is not the caller's; :meth:`FrameStream.receive` is not used
        any more."""
        ...


StreamHandler = Callable[[FrameStream], Awaitable[None]]


class Transport(Protocol):
    """Dials and listens; the only component that knows about sockets."""

    async def listen(
        self,
        addr: WsAddress,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``addr`` until cancelled, running ``handler`` per inbound connection.

        Reports the bound addresses (real ports when ``addr`` asked for port 0)
        through ``task_status.started``. The handler's stream is closed when the
        handler returns.
        """
        ...

    def dial(
        self, addr: WsAddress, *, reuse_listen_port: bool = True, source_ip: str | None = None,
        connect_plan: ConnectPlan | None = None,
    ) -> AbstractAsyncContextManager[FrameStream]:
        """``async with transport.dial(addr) as stream:`` - raises DialError on entry.

        The context manager owns the connection: leaving it closes the stream
        (and any task the implementation needs to run it). With
        ``reuse_listen_port`` the outbound connection binds our listen port where
        the OS allows (so NATs map it like the listener); AutoNAT dial-backs pass
        False to always use a fresh ephemeral port, and may pass ``source_ip`` to
        dial from that local IP (an error, not a fallback, when it cannot).
        ``connect_plan`` (AutoNAT dial-backs) replaces the connect timeout for
        the connect phase: hedged attempts from fresh ports and an earlier
        give-up, see :func:`~protocols.plan_dial_back`; the handshakes after
        it keep their own timeouts.
        """
        ...

    def punch(self, addr: WsAddress, *,
              as_client: bool) -> AbstractAsyncContextManager[FrameStream]:
        """``async with transport.punch(addr, as_client=...) as stream:`` - one hole-punch
        dial: from our listen port, timed by the caller to meet the peer's own dial
        in a TCP simultaneous open, which has no listener to decide who is the
        WebSocket client - ``as_client`` does. DialError on entry when no connection
        results. The caller bounds it in time (the hole-punch attempt's timeout).
        """
        ...
