"""In-memory transport: many nodes in one process, no sockets.

Theory of operation
-------------------
A :class:`MemoryNetwork` is a switchboard keyed by ``(host, port)``. A
:class:`MemoryTransport` is one host's view of it: ``listen`` registers a
handler under the host's address, ``dial`` looks the target up and, when a
listener is there, creates a connected pair of :class:`MemoryFrameStream`
(two bounded pipes, :class:`_Pipe`: a memory channel's behaviour at a fraction of
its size) and starts the listener's handler in the
listener's own nursery. Outbound connections get an ephemeral port, or the
dialer's listen port when ``reuse_listen_port`` is set, so observed addresses
behave like real TCP. Ephemeral ports come from one network-wide counter
that cycles through :data:`EPHEMERAL_PORTS`, skipping a port a listener holds
on the IP asking: a counter that only grew would run past 65535 after some
25,000 connections in all, which a simulation of thousands of hosts makes. A
number comes back to the same IP only after 21,000 connections network-wide,
long after the short-lived connections that use ephemeral ports (dial-backs,
self-dials) have closed.

``MemoryNetwork.dial_filter`` lets tests and the simulator model firewalls
and NATs: it is called with ``(source, destination)`` and returns a reason
string to refuse the dial, or ``None`` to allow it. Dials to a host in
``MemoryNetwork.blackholed`` never complete (until the dialer's timeout),
like a firewall that silently drops packets.

``MemoryNetwork.nats`` models one-to-one NATs (:class:`StaticNat`): a host
``inside`` appears to everyone else as ``outside``, same ports (the source of
its dials is rewritten; port-preserving, endpoint-independent), every port of
``outside`` is forwarded to ``inside`` (a "DMZ host"), and ``inside`` itself
cannot be dialed from other hosts. A dial from ``inside`` to its own
``outside`` address loops back (seen from ``outside``) only when the NAT
hairpins; otherwise it is refused, as a router without hairpin rules answers
a LAN connection to its WAN address (or, with ``drop``, never completes).

Latency: :meth:`MemoryNetwork._path_delay` gives the one-way delay between two
hosts (zero here; the simulator's :class:`~actors.transport.SimNetwork`
overrides it). A stream with a delay stamps each frame it sends with its
arrival time (a FIFO of times beside the FIFO of frames, kept by the receiving
end) and the receiver holds the frame until then, so delays never reorder
frames and pipelined frames are not delayed one after another.

A simulation holds tens of thousands of connections, and a Trio task per
connection end that waits in ``receive`` costs a few KiB each. So a
:class:`MemoryFrameStream` can also push: after :meth:`~MemoryFrameStream.deliver_to`
its incoming pipe tells it (``_Pipe.watcher``, called by the sender) whenever
a frame or the end waits, and one timer of the run's timer service
(:func:`~actors.runtime.call_at`, armed for the next frame's arrival time)
hands the frames over in order, then the end. And
:meth:`~MemoryFrameStream.send_nowait` sends in the caller's step while the
peer's buffer has room. A connection over it (``actors.connection``) then
needs no task of its own while it is idle.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import trio
from outcome import Error, Value

from protocols import ConnectPlan, PathStats, WsAddress

from ..runtime import call_at
from ._framestream import (
    DialError,
    StreamHandler,
    TransportBroken,
    TransportClosed,
    TransportError,
)

FRAME_BUFFER = 64
EPHEMERAL_PORTS = range(40000, 61000)
"""Where outbound connections' (and port-0 listeners') ports come from, per IP."""

DialFilter = Callable[[WsAddress, WsAddress], str | None]


@dataclass(frozen=True)
class DialRecord:
    """One dial attempt seen by the network (virtual time, both ends)."""

    at: float
    local: WsAddress
    remote: WsAddress


def _tcp_addr(host: str, port: int) -> WsAddress:
    kind = "ip6" if ":" in host else "ip4"
    return WsAddress(host=host, kind=kind, port=port, secure=False, peer_id=None)


class _Power:
    """Whether a network still carries anything (:meth:`MemoryNetwork.halt`); shared by
    all its pipes."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


_ALWAYS_ON: Final = _Power()


class _Pipe:
    """One direction of an in-memory connection: a bounded FIFO of frames.

    It behaves as a ``trio.open_memory_channel(buffer)`` pair with one sender and
    one receiver object - the same checkpoints, the same wake-up order, the same
    errors on close (``ClosedResourceError``, ``EndOfChannel``,
    ``BrokenResourceError``) - at a fraction of its size: a connection end holds
    two pipes for as long as it lives, and a simulation holds tens of thousands of
    connections. Frames and waiting tasks sit in plain lists (FIFO; at most
    ``limit`` frames, and an empty deque would cost some 600 bytes more).
    """

    __slots__ = ("frames", "limit", "power", "receive_open", "receivers", "send_open",
                 "senders", "watcher")

    def __init__(self, limit: int, power: _Power = _ALWAYS_ON) -> None:
        self.frames: list[bytes] = []
        self.limit = limit
        self.power = power
        """Off: frames sent are dropped and a close is not passed on."""
        self.send_open = self.receive_open = True
        self.receivers: list[trio.lowlevel.Task] = []
        self.senders: list[tuple[trio.lowlevel.Task, bytes]] = []
        self.watcher: Callable[[], None] | None = None
        """Called (synchronously, by the sender) when a frame or the end waits in the pipe
        with no receiver waiting: a push-mode consumer (:meth:`MemoryFrameStream.deliver_to`)."""

    async def send(self, frame: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.send_nowait(frame):
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._wait_to_send(frame)

    def send_nowait(self, frame: bytes) -> bool:
        """:meth:`send` without waiting: False (nothing sent) when the pipe is full or
        senders wait before this one."""
        if not self.send_open:
            raise trio.ClosedResourceError
        if not self.receive_open:
            raise trio.BrokenResourceError
        if not self.power.on:
            pass  # dropped
        elif self.receivers:
            trio.lowlevel.reschedule(self.receivers.pop(0), Value(frame))
        elif len(self.frames) < self.limit and not self.senders:
            self.frames.append(frame)
            if self.watcher is not None:
                self.watcher()
        else:
            return False
        return True

    async def _wait_to_send(self, frame: bytes) -> None:
        entry = (trio.lowlevel.current_task(), frame)
        self.senders.append(entry)
        if self.watcher is not None:
            self.watcher()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.senders.remove(entry)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.receive_open:
            raise trio.ClosedResourceError
        if self.senders:  # a blocked sender's frame moves into the buffer
            task, waiting = self.senders.pop(0)
            trio.lowlevel.reschedule(task)
            self.frames.append(waiting)
        if self.frames:
            frame = self.frames.pop(0)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return frame
        if not self.send_open:
            raise trio.EndOfChannel
        task = trio.lowlevel.current_task()
        self.receivers.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            self.receivers.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        received: bytes = await trio.lowlevel.wait_task_rescheduled(abort)
        return received

    def pop(self) -> bytes | None:
        """The next frame without waiting (a blocked sender's frame moves in), or None."""
        if self.senders:
            task, waiting = self.senders.pop(0)
            trio.lowlevel.reschedule(task)
            self.frames.append(waiting)
        return self.frames.pop(0) if self.frames else None

    def close_send(self) -> None:
        """The sending end closes: its blocked senders fail, waiting receivers see the end."""
        self.send_open = False
        senders, self.senders = self.senders, []
        for task, _frame in senders:
            trio.lowlevel.reschedule(task, Error(trio.ClosedResourceError()))
        if not self.power.on:
            return  # the other end never learns
        receivers, self.receivers = self.receivers, []
        for task in receivers:
            trio.lowlevel.reschedule(task, Error(trio.EndOfChannel()))
        if self.watcher is not None:
            self.watcher()

    def close_receive(self) -> None:
        """The receiving end closes: its waiting receivers fail, blocked senders break."""
        self.receive_open = False
        receivers, self.receivers = self.receivers, []
        for task in receivers:
            trio.lowlevel.reschedule(task, Error(trio.ClosedResourceError()))
        senders, self.senders = self.senders, []
        for task, _frame in senders:
            trio.lowlevel.reschedule(task, Error(trio.BrokenResourceError()))
        self.frames.clear()
        self.watcher = None


class MemoryFrameStream:
    """One end of an in-memory connection (slotted: a simulation holds tens of thousands)."""

    __slots__ = ("_arrivals", "_closed", "_held", "_in", "_local", "_other", "_out", "_pump",
                 "_remote", "close_reason", "delay", "is_client", "path")

    def __init__(self, local: WsAddress, remote: WsAddress, outgoing: _Pipe,
                 incoming: _Pipe) -> None:
        self._local, self._remote = local, remote
        self._out, self._in = outgoing, incoming
        self._closed = False
        self.close_reason = ""
        self._other: MemoryFrameStream | None = None  # set by memory_stream_pair
        self.path: PathStats | None = None
        """What :meth:`path_stats` reports (set from :attr:`MemoryNetwork.path`)."""
        self.is_client = True
        """The dialing end (the listener's end is not): the role a punched connection's
        handshake follows."""
        self.delay = 0.0
        """One-way delay of the frames this end sends (see the module docstring)."""
        self._arrivals: list[float] = []  # arrival times of frames sent to this end (FIFO)
        self._held: tuple[bytes, float | None] | None = None  # received, not yet due
        self._pump: _Pump | None = None  # push mode (deliver_to)

    def _peer_closed(self) -> TransportBroken:
        reason = self._other.close_reason if self._other is not None else ""
        return TransportBroken("peer closed the connection", peer_closed=True, peer_reason=reason)

    @property
    def local_addr(self) -> WsAddress:
        return self._local

    @property
    def remote_addr(self) -> WsAddress:
        return self._remote

    def path_stats(self) -> PathStats | None:
        return self.path

    async def send(self, frame: bytes) -> None:
        if self._closed:
            raise TransportClosed("stream already closed by this side")
        other = self._other
        if self.delay and other is not None:
            other._arrivals.append(trio.current_time() + self.delay)
        try:
            await self._out.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._peer_closed() from exc

    def send_nowait(self, frame: bytes) -> bool:
        """Send ``frame`` if that needs no wait (see :class:`~._framestream.SendsNowait`):
        False, and nothing sent, while the peer's pipe is full."""
        if self._closed:
            raise TransportClosed("stream already closed by this side")
        other = self._other if self.delay else None
        if other is not None:  # stamped first: a push-mode receiver looks at it at once
            other._arrivals.append(trio.current_time() + self.delay)
        try:
            sent = self._out.send_nowait(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._peer_closed() from exc
        if not sent and other is not None:
            other._arrivals.pop()
        return sent

    def deliver_to(self, on_frame: Callable[[bytes], object],
                   on_end: Callable[[TransportError], object]) -> None:
        """Push mode, for good (:class:`~._framestream.DeliversFrames`): each frame is
        handed to ``on_frame`` at its arrival time and the end to ``on_end`` - from the
        run's timer task (:func:`~actors.runtime.call_at`), or from :meth:`aclose` - so
        no task waits in :meth:`receive` (which must not be called any more)."""
        assert self._pump is None, "deliver_to called twice"
        self._pump = _Pump(self, on_frame, on_end)
        self._in.watcher = self._pump.soon
        self._pump.soon()

    async def receive(self) -> bytes:
        if self._closed:
            raise TransportClosed("stream already closed by this side")
        assert self._pump is None, "receive() on a frame stream in push mode"
        if self._held is None:
            try:
                frame = await self._in.receive()
            except trio.EndOfChannel as exc:
                raise self._peer_closed() from exc
            except trio.ClosedResourceError as exc:
                raise TransportClosed("stream closed by this side") from exc
            arrivals = self._arrivals
            self._held = (frame, arrivals.pop(0) if arrivals else None)
        frame, due = self._held
        if due is not None:  # a cancelled wait keeps the frame for the next receive
            await trio.sleep_until(due)
        self._held = None
        return frame

    async def aclose(self, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        if self._pump is not None:
            self._pump.end(TransportClosed("stream closed by this side"))
        self._out.close_send()
        await trio.lowlevel.checkpoint()
        self._in.close_receive()
        await trio.lowlevel.checkpoint()


class _Pump:
    """Push mode of one :class:`MemoryFrameStream`: its incoming frames, handed over at
    their arrival times by one timer (armed for the next frame due, or now), then the
    end - the peer's close after its last frame, or this side's close at once."""

    __slots__ = ("_end", "_ended", "_frame", "_stream", "_timer")

    def __init__(self, stream: MemoryFrameStream, on_frame: Callable[[bytes], object],
                 on_end: Callable[[TransportError], object]) -> None:
        self._stream = stream
        self._frame, self._end = on_frame, on_end
        self._ended = False
        self._timer = call_at(math.inf, self._run)

    def soon(self) -> None:
        """Something waits in the pipe: run at the earliest when it is due."""
        if self._ended:
            return
        held, arrivals = self._stream._held, self._stream._arrivals
        due = held[1] if held is not None else arrivals[0] if arrivals else None
        when = trio.current_time() if due is None else due
        if when < self._timer.deadline:
            self._timer.reschedule(when)

    def end(self, error: TransportError) -> None:
        """No more frames: ``on_end(error)``, once."""
        if not self._ended:
            self._ended = True
            self._timer.close()
            self._end(error)

    def _run(self) -> None:
        stream = self._stream
        now = trio.current_time()
        while not self._ended and stream._in.power.on:
            if stream._held is None:
                frame = stream._in.pop()
                if frame is None:
                    if not stream._in.send_open:
                        self.end(stream._peer_closed())
                    return
                arrivals = stream._arrivals
                stream._held = (frame, arrivals.pop(0) if arrivals else None)
            frame, due = stream._held
            if due is not None and due > now:
                self._timer.reschedule(due)
                return
            stream._held = None
            self._frame(frame)


def memory_stream_pair(
    a: WsAddress, b: WsAddress, buffer: int = FRAME_BUFFER, *, power: _Power = _ALWAYS_ON,
) -> tuple[MemoryFrameStream, MemoryFrameStream]:
    """A connected pair: ``a`` sees ``b`` as remote and vice versa."""
    a_to_b, b_to_a = _Pipe(buffer, power), _Pipe(buffer, power)
    a_end = MemoryFrameStream(a, b, a_to_b, b_to_a)
    b_end = MemoryFrameStream(b, a, b_to_a, a_to_b)
    a_end._other, b_end._other = b_end, a_end
    return a_end, b_end


@dataclass(frozen=True)
class StaticNat:
    """A one-to-one NAT in front of host ``inside`` (see the module docstring)."""

    inside: str
    outside: str
    hairpin: bool = True
    drop: bool = False
    """Without hairpin: drop the looped-back dial silently instead of refusing it."""


@dataclass
class _Listener:
    handler: StreamHandler
    nursery: trio.Nursery


@dataclass
class MemoryNetwork:
    """The switchboard shared by every :class:`MemoryTransport` of one test or simulation."""

    dial_filter: DialFilter | None = None
    _listeners: dict[tuple[str, int], _Listener] = field(default_factory=dict)
    _next_port: int = 0
    dials: list[DialRecord] = field(default_factory=list)
    record_dials: bool = True
    """Append every dial to :attr:`dials` (tests read them; a simulation of thousands
    of hosts would keep hundreds of thousands of records nobody reads)."""
    blackholed: set[str] = field(default_factory=set)
    path: PathStats | None = None
    """What every stream reports as its path (None: unmeasured, like a platform
    without ``TCP_INFO``); tests set it to model a path's round trip."""
    nats: list[StaticNat] = field(default_factory=list)
    _power: _Power = field(default_factory=_Power)

    def halt(self) -> None:
        """Switch the network off, for good: every frame sent from now on is dropped, no
        close reaches the other end, and every dial fails. Nodes that stop then do not
        see each other stop (the simulator ends a run so: each node's shutdown stays
        its own, instead of every node reacting to every other's)."""
        self._power.on = False

    async def _translate(self, local: WsAddress,
                         remote: WsAddress) -> tuple[WsAddress, WsAddress]:
        """Where a dial from ``local`` to ``remote`` arrives, and from where it is seen
        there (DialError when a NAT stops it)."""
        seen_from, target = local, remote
        for nat in self.nats:
            if remote.host == nat.inside and local.host != nat.inside:
                raise DialError(f"dial to {remote} refused: no route to a host behind a NAT")
            if remote.host == nat.outside:
                if local.host == nat.inside and not nat.hairpin:
                    if nat.drop:
                        await trio.sleep_forever()
                    raise DialError(f"dial to {remote} refused: the NAT does not hairpin")
                target = _tcp_addr(nat.inside, remote.port)
            leaving = target.host != nat.inside or remote.host == nat.outside  # or hairpin
            if local.host == nat.inside and leaving:
                seen_from = _tcp_addr(nat.outside, local.port)
        return seen_from, target

    def _path_delay(self, a: str, b: str) -> float:
        """One-way delay in seconds between hosts ``a`` and ``b`` (none here)."""
        return 0.0

    def transport(self, host: str) -> MemoryTransport:
        return MemoryTransport(self, host)

    def next_port(self, host: str = "") -> int:
        """The next ephemeral port for IP ``host`` (module docstring)."""
        span = len(EPHEMERAL_PORTS)
        for _ in range(span):
            port = EPHEMERAL_PORTS[self._next_port]
            self._next_port = (self._next_port + 1) % span
            if (host, port) not in self._listeners:
                break
        return port


class MemoryTransport:
    """One host on a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, host: str) -> None:
        self._network = network
        self.host = host
        self._listen_port: int | None = None

    async def listen(
        self,
        addr: WsAddress,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        port = addr.port or self._network.next_port(self.host)
        key = (self.host, port)
        if key in self._network._listeners:
            raise OSError(f"address {self.host}:{port} already in use")
        async with trio.open_nursery() as nursery:
            self._network._listeners[key] = _Listener(handler, nursery)
            self._listen_port = port
            try:
                task_status.started([_tcp_addr(self.host, port)])
                await trio.sleep_forever()
            finally:
                del self._network._listeners[key]
                self._listen_port = None

    @asynccontextmanager
    async def punch(self, addr: WsAddress, *, as_client: bool) -> AsyncIterator[MemoryFrameStream]:
        """A hole-punch dial: memory has no NAT to open, so a dial from the listen
        port (the peer's listener answers; ``as_client`` changes nothing)."""
        async with self.dial(addr) as stream:
            yield stream

    @asynccontextmanager
    async def dial(
        self, addr: WsAddress, *, reuse_listen_port: bool = True, source_ip: str | None = None,
        connect_plan: ConnectPlan | None = None,
    ) -> AsyncIterator[MemoryFrameStream]:
        stream: MemoryFrameStream | None
        if connect_plan is None:
            stream = await self._connect(addr, reuse_listen_port, source_ip)
        else:  # one attempt stands for them all: memory loses nothing
            stream = None
            with trio.move_on_after(connect_plan.give_up_after):
                stream = await self._connect(addr, reuse_listen_port, source_ip)
            if stream is None:
                raise DialError(f"cannot connect to {addr}: no answer within "
                                f"{connect_plan.give_up_after:.2f} s")
        try:
            yield stream
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose("dialer closed the connection")

    async def _connect(self, addr: WsAddress, reuse_listen_port: bool,
                       source_ip: str | None) -> MemoryFrameStream:
        await trio.lowlevel.checkpoint()
        if not self._network._power.on:
            raise DialError(f"dial to {addr} failed: the network is down")
        port = self._listen_port if (reuse_listen_port and self._listen_port) else None
        source = source_ip or self.host
        local = _tcp_addr(source, port or self._network.next_port(source))
        remote = _tcp_addr(addr.host, addr.port)
        if self._network.record_dials:
            self._network.dials.append(DialRecord(trio.current_time(), local, remote))
        if remote.host in self._network.blackholed:
            await trio.sleep_forever()
        if self._network.dial_filter is not None:
            refused = self._network.dial_filter(local, remote)
            if refused is not None:
                raise DialError(f"dial to {remote} refused: {refused}")
        seen_from, target = await self._network._translate(local, remote)
        listener = self._network._listeners.get((target.host, target.port))
        if listener is None:
            raise DialError(f"connection refused: nothing listens on {remote}")
        ours, theirs = memory_stream_pair(local, remote, power=self._network._power)
        theirs._local, theirs._remote = target, seen_from
        theirs.is_client = False
        ours.path = theirs.path = self._network.path
        ours.delay = theirs.delay = self._network._path_delay(local.host, target.host)
        listener.nursery.start_soon(_serve, listener.handler, theirs)
        return ours


async def _serve(handler: StreamHandler, stream: MemoryFrameStream) -> None:
    try:
        await handler(stream)
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose("handler finished")
