"""Hole punching on the simulated internet: TCP simultaneous open through NAT boxes.

Theory of operation
-------------------
A hole punch (``Transport.punch``) is a dial *from the listen port* that both
peers make at about the same moment, each towards the other's public
address. On the simulated internet (:class:`~actors.transport.SimNetwork`)
one punch from endpoint ``L`` (private) to ``R`` (public) goes:

1. **out**: the SYN leaves through the dialer's box, which creates or reuses
   the binding for ``L -> R`` (:meth:`NatBox.outbound`) - an
   endpoint-independent mapping reuses the listen port's binding, so the
   peer's SYN, aimed at the address the peer was told, meets it; an
   endpoint-dependent one gets a fresh port, which nobody was told;
2. **in**, one one-way delay later: the box owning ``R`` judges the SYN
   (:meth:`NatBox.inbound`) against the bindings it has *now*. Delivered to
   private endpoint ``P``:

   * if ``P`` has a punch of its own pending towards exactly the endpoint
     this SYN comes from, the two SYNs crossed: one connection, a
     **simultaneous open** - each punch gets one end, in the WebSocket role
     its caller asked for (``as_client``);
   * else the SYN reaches ``P``'s listener, as a real stack hands a SYN that
     matches no connecting socket to the listening one: an ordinary
     connection, the punching side its client (what the WebSocket transport
     falls back to when its SYN met a listener);
   * nothing listening: refused.

   Dropped: the punch stays pending - the peer's SYN may still cross it - and
   the SYN is retransmitted after TCP's retransmission timeout (1 s,
   doubling), judged again against the bindings of that moment (the peer's
   own SYN may have opened its box meanwhile). Rejected (an RST): the punch
   fails at once.

A punch waits until one of these happens or the caller's timeout cancels it
(the Dialer bounds every punch). SYN loss is not modelled for punches
(the network's ``loss`` applies to ordinary dials). The SYN-ACK costs the
sender one more one-way delay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from protocols import WsAddress
from protocols.sim import Deliver, Endpoint, Reject

from ._framestream import DialError
from ._memory_transport import (
    MemoryFrameStream,
    MemoryTransport,
    _serve,
    _tcp_addr,
    memory_stream_pair,
)

if TYPE_CHECKING:
    from ._sim_network import SimNetwork

__all__ = ["PunchBoard", "SimTransport"]

INITIAL_RTO = 1.0
"""The first SYN retransmission after 1 s, then doubling (as for ordinary dials)."""


@dataclass
class _Pending:
    """One punch whose SYN has not met the other side yet."""

    local: WsAddress
    as_client: bool
    met: trio.Event = field(default_factory=trio.Event)
    stream: MemoryFrameStream | None = None


class PunchBoard:
    """The punches in flight on one network, keyed by (private endpoint, target endpoint)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[Endpoint, Endpoint], _Pending] = {}

    def add(self, local: Endpoint, target: Endpoint, pending: _Pending) -> None:
        if (local, target) in self._pending:
            raise DialError(f"a punch from {local} to {target} is already in flight")
        self._pending[(local, target)] = pending

    def remove(self, local: Endpoint, target: Endpoint, pending: _Pending) -> None:
        if self._pending.get((local, target)) is pending:
            del self._pending[(local, target)]

    def take(self, local: Endpoint, target: Endpoint) -> _Pending | None:
        """The punch from ``local`` towards ``target`` that a crossing SYN completes."""
        return self._pending.pop((local, target), None)


class SimTransport(MemoryTransport):
    """A host on a :class:`~actors.transport.SimNetwork`: dials as in memory, punches
    through the boxes (see the module docstring)."""

    def __init__(self, network: SimNetwork, host: str) -> None:
        super().__init__(network, host)
        self._sim = network

    @asynccontextmanager
    async def punch(self, addr: WsAddress, *, as_client: bool) -> AsyncIterator[MemoryFrameStream]:
        if self._listen_port is None:
            raise DialError(f"cannot punch to {addr}: no listen port to dial from")
        stream = await self._punch(addr, as_client)
        try:
            yield stream
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose("dialer closed the connection")

    async def _punch(self, addr: WsAddress, as_client: bool) -> MemoryFrameStream:
        await trio.lowlevel.checkpoint()
        assert self._listen_port is not None
        local = _tcp_addr(self.host, self._listen_port)
        remote = _tcp_addr(addr.host, addr.port)
        net, board = self._sim, self._sim.punches
        if net.is_private(remote.host):
            raise DialError(f"punch to {remote} refused: no route to a private address")
        pending = _Pending(local, as_client)
        key = ((local.host, local.port), (remote.host, remote.port))
        board.add(*key, pending)
        try:
            rto = INITIAL_RTO
            while True:
                seen = net.punch_out(local, remote, trio.current_time())
                await trio.sleep(net.one_way_delay(local.host, remote.host))
                if pending.stream is not None:  # the peer's SYN crossed ours meanwhile
                    return pending.stream
                verdict = net.punch_in(seen, remote, trio.current_time())
                if isinstance(verdict, Deliver):
                    return await self._arrive(seen, remote, verdict.private, pending, key)
                if isinstance(verdict, Reject):
                    raise DialError(f"punch to {remote} refused: {verdict.reason}")
                with trio.move_on_after(rto):
                    await pending.met.wait()
                if pending.stream is not None:
                    return pending.stream
                rto *= 2.0
        finally:
            board.remove(*key, pending)

    async def _arrive(self, seen: Endpoint, remote: WsAddress, private: Endpoint,
                      ours: _Pending, key: tuple[Endpoint, Endpoint]) -> MemoryFrameStream:
        """Our SYN reached ``private``: a crossing punch there, or its listener."""
        net = self._sim
        self._sim.punches.remove(*key, ours)
        target = _tcp_addr(*private)
        delay = net.one_way_delay(ours.local.host, target.host)
        theirs = net.punches.take(private, seen)
        if theirs is not None:  # simultaneous open
            mine, other = memory_stream_pair(ours.local, remote)
            other._local, other._remote = theirs.local, _tcp_addr(*seen)
            mine.is_client, other.is_client = ours.as_client, theirs.as_client
            mine.delay = other.delay = delay
            theirs.stream = other
            theirs.met.set()
            await trio.sleep(delay)  # the SYN-ACK back
            return mine
        listener = net.listener_at(target.host, target.port)
        if listener is None:
            raise DialError(f"punch to {remote} refused: nothing listens there")
        mine, other = memory_stream_pair(ours.local, remote)
        other._local, other._remote = target, _tcp_addr(*seen)
        mine.is_client, other.is_client = True, False
        mine.delay = other.delay = delay
        listener.nursery.start_soon(_serve, listener.handler, other)
        await trio.sleep(delay)
        return mine
