"""STUN over Trio UDP sockets: a server for :class:`StunResponder` and a discovery client.

Theory of operation
-------------------
**Server.** :func:`open_stun_server` binds one UDP socket per local address
of the responder: the primary only, or, with an alternate, all four
combinations of the two IPs and the two ports (RFC 5780 needs them all: an
answer under ``CHANGE-REQUEST`` leaves from another IP, another port, or
both). Port 0 is allowed for either address: the OS picks the primary port,
and the alternate port is chosen so that it is free on both IPs (a few
bounded attempts). One task per socket receives a datagram, hands it to the
responder with ``trio.current_time()``, and sends what the responder returns
from the socket bound to its source address. Nothing queues: a datagram is
answered (or dropped) before the next is read, the receive buffer is one
byte larger than the largest request the responder accepts (a larger
datagram arrives truncated and is dropped as too large), and the
responder's rate limits bound what goes out. Send and receive errors
(``ICMP`` unreachable reported on a later call, full buffers) are counted
and the loop goes on.

**Client.** :func:`discover_udp_profile` binds one UDP socket (to
``local_ip``, or to the source address the kernel would route to the server
from) and runs :class:`BehaviourDiscovery` on it with a
:class:`~actors.runtime.TimeoutDriver`; the whole run is bounded by
``timeout``, after which the profile is ``unknown``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import socket as stdsocket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio

from protocols import ValidationError
from protocols.stun import (
    MAX_MESSAGE_SIZE,
    BehaviourDiscovery,
    Datagram,
    DiscoveryFinished,
    Endpoint,
    NatBehaviour,
    Retransmission,
    StunAddresses,
    StunResponder,
    StunResponderConfig,
    StunResponderStatistics,
    UdpProfile,
)

from ..runtime import TimeoutDriver, get_logger

__all__ = ["BIND_ATTEMPTS", "StunServer", "StunServerStatistics", "discover_udp_profile",
           "open_stun_server"]

BIND_ATTEMPTS: Final = 8
"""Tries to find an alternate port free on both IPs when it is 0."""

_log = get_logger("actors.transport")


@dataclass(frozen=True)
class StunServerStatistics:
    responder: StunResponderStatistics
    send_errors: int
    receive_errors: int


class StunServer:
    """A running STUN server: its bound addresses and counters."""

    def __init__(self, responder: StunResponder,
                 sockets: dict[Endpoint, trio.socket.SocketType]) -> None:
        self._responder = responder
        self._sockets = sockets
        self._send_errors = 0
        self._receive_errors = 0

    @property
    def addresses(self) -> StunAddresses:
        return self._responder.addresses

    def statistics(self) -> StunServerStatistics:
        return StunServerStatistics(self._responder.statistics(), self._send_errors,
                                    self._receive_errors)

    async def _serve(self, local: Endpoint, buffer_size: int) -> None:
        sock = self._sockets[local]
        while True:
            try:
                data, address = await sock.recvfrom(buffer_size)
            except OSError:
                self._receive_errors += 1
                await trio.lowlevel.checkpoint()
                continue
            try:
                source = Endpoint.of(address[0], address[1])
            except ValidationError:  # e.g. an IPv6 address with a zone id
                self._receive_errors += 1
                continue
            for datagram in self._responder.handle_datagram(data, source, local,
                                                            trio.current_time()):
                await self._send(datagram)

    async def _send(self, datagram: Datagram) -> None:
        try:
            await self._sockets[datagram.source].sendto(datagram.payload,
                                                        datagram.destination.as_tuple())
        except OSError:
            self._send_errors += 1


def _family(endpoint: Endpoint) -> int:
    return stdsocket.AF_INET if endpoint.ip.version == 4 else stdsocket.AF_INET6


async def _bind(endpoint: Endpoint) -> trio.socket.SocketType:
    sock = trio.socket.socket(_family(endpoint), stdsocket.SOCK_DGRAM)
    try:
        if endpoint.ip.version == 6:
            sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
        await sock.bind(endpoint.as_tuple())
    except BaseException:
        sock.close()
        raise
    return sock


def _bound(sock: trio.socket.SocketType) -> Endpoint:
    host, port = sock.getsockname()[:2]
    return Endpoint.of(host, port)


async def _bind_all(primary: Endpoint, alternate: Endpoint | None
                    ) -> tuple[StunAddresses, dict[Endpoint, trio.socket.SocketType]]:
    """Sockets on every local address, the ports chosen when given as 0."""
    for _ in range(BIND_ATTEMPTS):
        sockets: dict[Endpoint, trio.socket.SocketType] = {}
        try:
            first = await _bind(primary)
            bound_primary = _bound(first)
            sockets[bound_primary] = first
            if alternate is not None:
                alt_ip_primary_port = await _bind(Endpoint(alternate.ip, bound_primary.port))
                sockets[_bound(alt_ip_primary_port)] = alt_ip_primary_port
                alt = await _bind(alternate)
                bound_alt = _bound(alt)
                sockets[bound_alt] = alt
                other = await _bind(Endpoint(primary.ip, bound_alt.port))
                sockets[_bound(other)] = other
                return StunAddresses(bound_primary, bound_alt), sockets
            return StunAddresses(bound_primary), sockets
        except OSError as exc:
            for sock in sockets.values():
                sock.close()
            retry = exc.errno == errno.EADDRINUSE and (
                primary.port == 0 or (alternate is not None and alternate.port == 0))
            if not retry:
                raise
    raise OSError(errno.EADDRINUSE, f"no port pair free on {primary.ip} and "
                  f"{alternate.ip if alternate else ''} after {BIND_ATTEMPTS} attempts")


@asynccontextmanager
async def open_stun_server(primary: Endpoint, alternate: Endpoint | None = None,
                           config: StunResponderConfig | None = None
                           ) -> AsyncIterator[StunServer]:
    """Serve STUN on ``primary`` (and the RFC 5780 combinations with ``alternate``) until
    the block exits. Ports may be 0; :attr:`StunServer.addresses` has the bound ones."""
    config = config or StunResponderConfig()
    if alternate is not None:  # what StunAddresses will insist on, before binding anything
        if alternate.ip == primary.ip or alternate.ip.version != primary.ip.version:
            raise ValueError("the alternate needs another IP of the primary's family")
        if alternate.port != 0 and alternate.port == primary.port:
            raise ValueError("the alternate needs another port than the primary")
    addresses, sockets = await _bind_all(primary, alternate)
    try:
        server = StunServer(StunResponder(addresses, config), sockets)
        async with trio.open_nursery() as nursery:
            for local in addresses.locals():
                nursery.start_soon(server._serve, local, config.max_request_size + 1)
            _log.info("stun_serving", addresses=[str(a) for a in addresses.locals()])
            yield server
            nursery.cancel_scope.cancel()
    finally:
        for sock in sockets.values():
            sock.close()


class _DiscoveryCommands:
    """:class:`BehaviourDiscovery` as a :class:`TimeoutDriver` machine whose commands are
    its events followed by the datagrams it wants sent."""

    def __init__(self, machine: BehaviourDiscovery) -> None:
        self.machine = machine

    def poll_timeout(self) -> float | None:
        return self.machine.poll_timeout()

    def handle_timeout(self, now: float) -> Sequence[Datagram | DiscoveryFinished]:
        return self.drain(self.machine.handle_timeout(now))

    def drain(self, events: list[DiscoveryFinished]) -> list[Datagram | DiscoveryFinished]:
        commands: list[Datagram | DiscoveryFinished] = []
        while (datagram := self.machine.poll_transmit()) is not None:
            commands.append(datagram)
        commands.extend(events)
        return commands


def _route_source(server: Endpoint) -> str:
    """The local IP the kernel would send to ``server`` from (a UDP connect sends nothing)."""
    probe = stdsocket.socket(_family(server), stdsocket.SOCK_DGRAM)
    try:
        probe.connect(server.as_tuple())
        return str(probe.getsockname()[0])
    finally:
        probe.close()


async def discover_udp_profile(server: Endpoint, *, local_ip: str | None = None,
                               retransmission: Retransmission | None = None,
                               timeout: float = 180.0) -> UdpProfile:
    """Run RFC 5780 behaviour discovery against ``server`` from a fresh UDP socket.

    Returns ``unknown`` for whatever was not learned within ``timeout`` seconds.
    """
    local_host = local_ip if local_ip is not None else _route_source(server)
    sock = await _bind(Endpoint.of(local_host, 0))
    with sock:
        local = _bound(sock)
        machine = BehaviourDiscovery(server, local, retransmission=retransmission)
        commands = _DiscoveryCommands(machine)
        driver = TimeoutDriver(commands)
        machine.handle_start(trio.current_time())

        async with trio.open_nursery() as nursery:

            async def execute(batch: list[Datagram | DiscoveryFinished]) -> None:
                for command in batch:
                    if isinstance(command, DiscoveryFinished):
                        nursery.cancel_scope.cancel()
                        return
                    # a datagram lost here is covered by retransmission or the timeout
                    with contextlib.suppress(OSError):
                        await sock.sendto(command.payload, command.destination.as_tuple())

            async def receive() -> None:
                while True:
                    try:
                        data, address = await sock.recvfrom(MAX_MESSAGE_SIZE + 1)
                        source = Endpoint.of(address[0], address[1])
                    except (OSError, ValidationError):
                        await trio.lowlevel.checkpoint()
                        continue
                    await execute(commands.drain(
                        machine.handle_datagram(data, source, trio.current_time())))
                    driver.wake()

            nursery.cancel_scope.deadline = trio.current_time() + timeout \
                if math.isfinite(timeout) else math.inf
            nursery.start_soon(driver.run, execute)
            nursery.start_soon(receive)
    return machine.profile or UdpProfile(NatBehaviour.UNKNOWN, NatBehaviour.UNKNOWN)
