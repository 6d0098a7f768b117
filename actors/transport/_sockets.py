"""TCP sockets for the WebSocket transport: listening, resolving, dialing with port reuse.

Theory of operation
-------------------
A node behind a NAT learns its public address from what peers *observe*:
the source address and port of its outbound connections. Those only say
something about the node's listen port when outbound connections leave
*from* the listen port, which is what libp2p's TCP transport does and what
this module implements.

On Linux a second socket may bind an address and port that a listening
socket holds only when both carry ``SO_REUSEPORT`` (same user). So:

* :func:`open_listen_socket` binds the listener with ``SO_REUSEADDR`` only -
  an *exclusive* bind, so starting two nodes on the same port fails with
  "address in use" instead of silently load-sharing the port between them -
  and sets ``SO_REUSEPORT`` right after the bind, before ``listen``, so that
  our own outbound sockets may share the port later. ``SO_REUSEADDR`` lets a
  restarted node bind while old connections sit in TIME_WAIT. IPv6 listeners
  are ``IPV6_V6ONLY``: ``/ip6/::`` and ``/ip4/0.0.0.0`` are separate listeners.
* :func:`connect_tcp` with ``bind_to`` creates the outbound socket with
  ``SO_REUSEADDR`` + ``SO_REUSEPORT``, binds it to the listen address and
  port, then connects. The kernel refuses this when the exact 4-tuple
  already exists (a second connection to the same peer, or one still in
  TIME_WAIT: ``EADDRNOTAVAIL``), when the port is taken (``EADDRINUSE``) or
  when the platform does not allow the sharing (``EINVAL``,
  ``ENOPROTOOPT``); then the dial falls back to an ephemeral port, which is
  always correct, only less informative. Errors about the *peer*
  (refused, unreachable) are not retried.

Nothing here has its own timeout: the caller wraps resolving and connecting
in its connect timeout (a cancel scope), which is the bound on every wait.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys
from typing import Final

import trio

from protocols import ConnectPlan, PathStats, WsAddress

from ..runtime import get_logger
from ._framestream import LOCAL_DIAL_ERRNOS, DialError

LISTEN_BACKLOG = 128

# errno values of a failed bind/connect from the shared listen port that mean
# "this port cannot be used for this connection", not "the peer is unreachable".
REUSE_FALLBACK_ERRNOS = frozenset(
    {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EINVAL, errno.ENOPROTOOPT}
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_log = get_logger("actors.sockets")


def family_for(kind: str) -> socket.AddressFamily:
    """The address family of a multiaddr kind; ``dns`` (either family) is ``AF_UNSPEC``."""
    if kind in ("ip6", "dns6"):
        return socket.AF_INET6
    return socket.AF_UNSPEC if kind == "dns" else socket.AF_INET


def canonical_ip(sockaddr_host: str) -> IPAddress:
    """Parse a socket address host, mapping IPv4-mapped IPv6 (``::ffff:a.b.c.d``) to IPv4."""
    ip = ipaddress.ip_address(sockaddr_host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def socket_address(sockaddr: tuple[object, ...], *, secure: bool) -> WsAddress:
    """A ``getsockname``/``getpeername`` result as a WsAddress (IPv4-mapped -> ip4)."""
    ip = canonical_ip(str(sockaddr[0]))
    kind = "ip4" if ip.version == 4 else "ip6"
    return WsAddress(host=str(ip), kind=kind, port=int(str(sockaddr[1])), secure=secure)


async def resolve(host: str, port: int, family: socket.AddressFamily) -> list[str]:
    """IP addresses for ``host`` in ``family``, in resolver order, without duplicates.

    Unbounded by itself: the caller's cancel scope (the connect timeout) bounds
    it. Raises DialError when the name does not resolve.
    """
    try:
        infos = await trio.socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DialError(f"cannot resolve {host!r}: {exc}") from exc
    ips: list[str] = []
    for info in infos:
        ip = str(canonical_ip(str(info[4][0])))
        if ip not in ips:
            ips.append(ip)
    if not ips:
        raise DialError(f"cannot resolve {host!r}: no address in the requested family")
    return ips


async def open_listen_socket(ip: str, port: int) -> trio.socket.SocketType:
    """A listening TCP socket on ``(ip, port)`` (port 0: the kernel picks one).

    Exclusive bind, then ``SO_REUSEPORT`` so our outbound sockets can share the
    port (see the module docstring). Raises OSError (e.g. address in use).
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":  # on Windows SO_REUSEADDR allows port stealing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind((ip, port))
        _share_port(sock)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {ip}:{port}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


KEEPALIVE_IDLE = 60
"""Seconds of silence before the kernel probes a connection's peer."""
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT = 4


def enable_keepalive(sock: trio.socket.SocketType) -> None:
    """TCP keepalive: a peer that vanished without a FIN or RST (power loss, a NAT
    that dropped its mapping) is detected in about two minutes, so connections of
    a long-running node never hang forever. Options a platform lacks are skipped."""
    options = ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
               (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), KEEPALIVE_IDLE),
               (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL),
               (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_COUNT))
    for level, name, value in options:
        if name is None:
            continue
        try:
            sock.setsockopt(level, name, value)
        except OSError as exc:
            _log.debug("keepalive option unavailable", option=name, error=str(exc))


_TCP_INFO_RTT: Final = struct.Struct("=II")
_TCP_INFO_RTT_OFFSET: Final = 68  # tcpi_rtt, tcpi_rttvar (microseconds)
_TCP_INFO_COUNT: Final = struct.Struct("=I")
_TCP_INFO_RETRANS_OFFSET: Final = 100  # tcpi_total_retrans
_TCP_INFO_SEGS_OUT_OFFSET: Final = 136  # tcpi_segs_out (Linux 4.2 and later)
_TCP_INFO_BYTES: Final = 160


def path_stats(sock: socket.socket | trio.socket.SocketType) -> PathStats | None:
    """The kernel's view of a connected TCP socket's path (``TCP_INFO``): smoothed RTT
    and its variation, segments sent and retransmitted.

    None where the platform has no ``TCP_INFO``, the socket is not TCP, or
    the connection has no RTT sample yet; the caller then plans without one.
    A kernel too old to count segments reports zero of both.
    """
    option = getattr(socket, "TCP_INFO", None)
    if option is None or sys.platform != "linux":
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_RTT_OFFSET + _TCP_INFO_RTT.size:
        return None
    rtt_us, rttvar_us = _TCP_INFO_RTT.unpack_from(raw, _TCP_INFO_RTT_OFFSET)
    if rtt_us == 0:
        return None
    sent = retransmitted = 0
    if len(raw) >= _TCP_INFO_SEGS_OUT_OFFSET + _TCP_INFO_COUNT.size:
        (retransmitted,) = _TCP_INFO_COUNT.unpack_from(raw, _TCP_INFO_RETRANS_OFFSET)
        (sent,) = _TCP_INFO_COUNT.unpack_from(raw, _TCP_INFO_SEGS_OUT_OFFSET)
    return PathStats(srtt=rtt_us / 1e6, rttvar=rttvar_us / 1e6, segments_sent=sent,
                     retransmitted=retransmitted)


def _share_port(sock: trio.socket.SocketType) -> None:
    reuse_port = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
    except OSError as exc:  # e.g. a kernel without SO_REUSEPORT: dials use ephemeral ports
        _log.debug("SO_REUSEPORT unavailable", error=str(exc))


async def connect_tcp(
    ip: str, port: int, *, bind_to: tuple[str, int] | None = None, source_ip: str | None = None
) -> trio.SocketStream:
    """Connect to ``(ip, port)``, from ``bind_to`` when possible, else from an ephemeral port.

    ``source_ip`` binds the socket to that local IP (any port) with no fallback:
    AutoNAT servers use it to dial back from a separate address, and silently
    dialing from another one would defeat the point. Raises OSError for
    failures that concern the peer (refused, unreachable). Bounded only by the
    caller's cancel scope.
    """
    if source_ip is not None:
        return await _connect(ip, port, None, source_ip=source_ip)
    if bind_to is not None:
        try:
            return await _connect(ip, port, bind_to)
        except OSError as exc:
            if exc.errno not in REUSE_FALLBACK_ERRNOS:
                raise
            _log.debug(
                "listen port reuse failed, dialing from an ephemeral port",
                remote=f"{ip}:{port}",
                local=f"{bind_to[0]}:{bind_to[1]}",
                error=str(exc),
            )
    return await _connect(ip, port, None)


class ConnectGaveUp(OSError):
    """No attempt of a :class:`~protocols.ConnectPlan` connected before it gave up."""


async def connect_planned(ip: str, port: int, plan: ConnectPlan, *,
                          source_ip: str | None = None) -> trio.SocketStream:
    """Connect to ``(ip, port)`` following ``plan``: attempts from fresh ephemeral ports
    started at the plan's times, the first that connects wins and the others are closed.

    A refusal or an ICMP error from the path ends the race at once (the peer
    answered). An attempt that failed on this host (:data:`LOCAL_DIAL_ERRNOS`)
    does not; if no attempt connects, that local error is raised, because a
    plan that could not send its attempts is no evidence about the peer.
    Raises :class:`ConnectGaveUp` at ``plan.give_up_after``.
    """
    won: list[trio.SocketStream] = []
    failures: list[OSError] = []

    async def attempt(delay: float, race: trio.CancelScope) -> None:
        await trio.sleep(delay)
        try:
            stream = await _connect(ip, port, None, source_ip=source_ip)
        except OSError as exc:
            failures.append(exc)
            if exc.errno not in LOCAL_DIAL_ERRNOS:
                race.cancel()
            return
        if won:  # another attempt connected in the same moment
            stream.socket.close()
            return
        won.append(stream)
        race.cancel()

    with trio.move_on_after(plan.give_up_after):
        async with trio.open_nursery() as nursery:
            for delay in plan.attempts:
                nursery.start_soon(attempt, delay, nursery.cancel_scope)
    if won:
        return won[0]
    peer = [exc for exc in failures if exc.errno not in LOCAL_DIAL_ERRNOS]
    if peer or failures:
        raise (peer or failures)[0]
    raise ConnectGaveUp(errno.ETIMEDOUT, f"no answer to {len(plan.attempts)} connection "
                        f"attempt(s) within {plan.give_up_after:.2f} s")


async def _connect(ip: str, port: int, bind_to: tuple[str, int] | None, *,
                   source_ip: str | None = None) -> trio.SocketStream:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        if source_ip is not None:
            await sock.bind((source_ip, 0))
        elif bind_to is not None:
            reuse_port = getattr(socket, "SO_REUSEPORT", None)
            if reuse_port is None:
                raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
            await sock.bind(bind_to)
        await sock.connect((ip, port))
        enable_keepalive(sock)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


def reuse_source(listeners: list[tuple[str, int]], remote_ip: str) -> tuple[str, int] | None:
    """The ``(ip, port)`` to dial ``remote_ip`` from, picked among our listen sockets.

    Same address family only; a listener bound to loopback is not used to reach
    a non-loopback peer (the kernel could not route it). ``None``: no candidate.
    """
    remote = ipaddress.ip_address(remote_ip)
    for ip_text, port in listeners:
        ip = ipaddress.ip_address(ip_text)
        if ip.version != remote.version:
            continue
        if ip.is_unspecified or ip.is_loopback == remote.is_loopback:
            return ip_text, port
    return None
