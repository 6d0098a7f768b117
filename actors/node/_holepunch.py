"""The node's hole punching: from a relayed connection to a direct one (DCUtR semantics).

Theory of operation
-------------------
A relayed connection (:mod:`actors.node._relay_client`) proves both peers
are alive and gives them a channel with a measurable round trip, which is
all a TCP simultaneous open needs (see :mod:`protocols.holepunch`).
:class:`HolePunchService` drives the sans-io
:class:`~protocols.holepunch.HolePunch` machine over one ``/libp2p/dcutr``
stream of that connection:

* **B, the node that accepted the relayed connection** (it holds the
  reservation), opens the stream at once and runs the INITIATOR
  (:meth:`HolePunchService.initiate`, called by the relay client);
* **A, the node that dialed through the relay**, serves the stream and runs
  the RESPONDER (:meth:`HolePunchService.serve`, the protocol handler).

Our ``Connect`` carries the node's confirmed reachable and observed
addresses from the latest snapshot (:func:`~protocols.holepunch.own_punch_addrs`)
and its ``nat_mapping``. A :class:`~actors.runtime.TimeoutDriver` runs the
machine's timer; the stream's messages, the dials' results and the Dialer's
connection notices are its inputs. Each ``PunchDirect`` becomes one
:class:`~actors.node._messages.Punch` command per address to the Dialer,
which dials with ``Transport.punch`` and registers what connects like any
connection - so on success the direct connection *is* the peer's
registered connection and new streams go there, while the relayed one
stays until it ends. Success is a direct connection to the peer by any
route (the Dialer's ``ConnectionOpened`` for that peer: our punch, or the
peer's SYN at our listener); failure is every punch dial of the attempt
failing, or the machine's timeout.

Bounded: one exchange per relayed connection (a second ``/libp2p/dcutr``
stream on it is reset), at most :data:`MAX_EXCHANGES` at once, the stream
lives at most as long as the machine's timeouts allow, every send and every
dial has a timeout. Each finished exchange leaves a :class:`HolePunchReport`
(the latest per peer, at most :data:`MAX_REPORTS` peers) and is counted in
:meth:`HolePunchService.statistics`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Final

import trio

from protocols import (
    ConnectionInfo,
    ErrorCode,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    RemoteProtocolError,
    StreamLimitReached,
)
from protocols.holepunch import (
    HOLEPUNCH_PROTOCOL_ID,
    HolePunch,
    HolePunchConfig,
    HolePunchConnect,
    HolePunchFinished,
    HolePunchRole,
    HolePunchState,
    PunchDirect,
    PunchOutcome,
    SendPunchMessage,
    decode_holepunch_message,
    own_punch_addrs,
)

from ..connection import EXCHANGE_FAILURES, Connection, Stream, StreamEnded
from ..runtime import ActorGone, MailboxClosed, MessageSink, TimeoutDriver, Watch, call, get_logger
from ._messages import ConnectionNotice, ConnectionOpened, DialerCommand, DialFailed, Punch

MAX_EXCHANGES: Final = 8
"""Hole-punch exchanges running at once (both roles together)."""
MAX_REPORTS: Final = 256
"""Peers whose latest :class:`HolePunchReport` is kept."""
MAX_DIRECT_TIMES: Final = 64
"""Recent times to a direct connection kept for :attr:`HolePunchStatistics.time_to_direct`."""
_OPEN_FAILURES: Final[tuple[type[Exception], ...]] = (*EXCHANGE_FAILURES, StreamLimitReached)
_SEND_FAILURES: Final[tuple[type[Exception], ...]] = (
    *EXCHANGE_FAILURES, trio.TooSlowError, trio.ClosedResourceError)
_CALL_SLACK: Final = 2.0
"""Seconds a punch request may wait for the Dialer beyond the punch's own timeout."""

_Command = SendPunchMessage | PunchDirect | HolePunchFinished


@dataclass(frozen=True)
class HolePunchReport:
    """How one exchange with ``peer`` ended."""

    peer: PeerId
    role: HolePunchRole
    outcome: PunchOutcome
    attempts: int
    reason: str
    rtt: float | None
    """The round trip over the relay the initiator measured (None on the responder)."""
    started_at: float
    finished_at: float

    @property
    def elapsed(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class HolePunchStatistics:
    outcomes: Mapping[str, int]
    """Finished exchanges by outcome (direct, failed, skipped)."""
    attempts: int
    """Punch rounds started, over all exchanges."""
    refused: int
    """``/libp2p/dcutr`` streams refused (not relayed, a second one, too many at once)."""
    active: int
    time_to_direct: tuple[float, ...]
    """Seconds from the start of an exchange to its direct connection, the most recent."""
    time_to_direct_sum: float
    time_to_direct_count: int
    reports: tuple[HolePunchReport, ...]
    """The latest report per peer, oldest first."""


class HolePunchService:
    """See the module docstring."""

    def __init__(self, *, config: NodeConfig, watch: Watch[NodeSnapshot],
                 dialer: MessageSink[DialerCommand],
                 connection_to: Callable[[PeerId], Connection | None], node: PeerId,
                 settings: HolePunchConfig | None = None) -> None:
        self._config = config
        self._watch = watch
        self._dialer = dialer
        self._connection_to = connection_to
        self.settings = settings or HolePunchConfig()
        self._exchanged: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._waiting: dict[PeerId, set[trio.Event]] = {}
        self._reports: dict[PeerId, HolePunchReport] = {}
        self._changed = trio.Event()
        self._active = self._attempts = self._refused = 0
        self._outcomes = dict.fromkeys((o.value for o in PunchOutcome), 0)
        self._direct_times: list[float] = []
        self._direct_sum = 0.0
        self._direct_count = 0
        self._log = get_logger("actors.holepunch", actor="holepunch", node=str(node))

    def statistics(self) -> HolePunchStatistics:
        return HolePunchStatistics(
            outcomes=MappingProxyType(dict(self._outcomes)), attempts=self._attempts,
            refused=self._refused, active=self._active,
            time_to_direct=tuple(self._direct_times), time_to_direct_sum=self._direct_sum,
            time_to_direct_count=self._direct_count, reports=tuple(self._reports.values()))

    def connected_directly(self, peer: PeerId) -> bool:
        """Whether the Dialer holds a (direct) connection to ``peer``."""
        return self._connection_to(peer) is not None

    def report_for(self, peer: PeerId) -> HolePunchReport | None:
        """The latest finished exchange with ``peer``."""
        return self._reports.get(peer)

    async def next_report(self, peer: PeerId,
                          previous: HolePunchReport | None) -> HolePunchReport:
        """Wait for a report on ``peer`` other than ``previous`` (bound it by a timeout)."""
        while (report := self._reports.get(peer)) is None or report is previous:
            await self._changed.wait()
        return report

    # --- the Dialer's connection notices (a listener, never blocks) -----------

    async def send(self, notice: ConnectionNotice) -> None:
        if isinstance(notice, ConnectionOpened):
            for event in self._waiting.get(notice.info.peer_id, ()):
                event.set()
        await trio.lowlevel.checkpoint()

    # --- the two roles ---------------------------------------------------------

    async def serve(self, stream: Stream[Connection]) -> None:
        """``/libp2p/dcutr``: the peer accepted our relayed connection and starts an
        exchange (we are the RESPONDER)."""
        refused = self._admit(stream.connection)
        if refused is not None:
            self._refused += 1
            self._log.debug("hole punch refused", peer=str(stream.connection.peer_id),
                            reason=refused)
            await stream.reset(ErrorCode.UNSUPPORTED_PROTOCOL if refused == _NOT_RELAYED
                               else ErrorCode.RATE_LIMITED)
            return
        await self._exchange(HolePunchRole.RESPONDER, stream)

    async def initiate(self, connection: Connection) -> None:
        """We accepted ``connection`` through a relay: try to replace it with a direct one
        (we are the INITIATOR). Returns when the exchange ended; never raises for the
        peer's or the path's doing."""
        if self.connected_directly(connection.peer_id):
            return  # already connected directly: nothing to punch
        if self._admit(connection) is not None:
            self._refused += 1
            return
        try:
            stream = await connection.open_stream(HOLEPUNCH_PROTOCOL_ID)
        except _OPEN_FAILURES as exc:
            self._active -= 1
            self._log.info("hole punch not started", peer=str(connection.peer_id),
                           error=str(exc))
            return
        await self._exchange(HolePunchRole.INITIATOR, stream)

    def _admit(self, connection: Connection) -> str | None:
        """Why no exchange may run on ``connection`` (None: it may; counted as active)."""
        if not connection.relayed:
            return _NOT_RELAYED
        if connection in self._exchanged:
            return "one exchange per relayed connection"
        if self._active >= MAX_EXCHANGES:
            return f"{MAX_EXCHANGES} exchanges already running"
        self._exchanged.add(connection)
        self._active += 1
        return None

    # --- one exchange ----------------------------------------------------------

    def _own_connect(self) -> HolePunchConnect:
        snapshot = self._watch.get()
        observed = tuple(o.observed for o in sorted(snapshot.observed_addrs,
                                                    key=lambda o: o.at, reverse=True))
        addrs = own_punch_addrs(snapshot.reachable_addrs, observed, self._config.policy)
        return HolePunchConnect.of(addrs, snapshot.nat_mapping)

    def exchange_bound(self) -> float:
        """How long an exchange's stream may live: every round's waits, and one more."""
        s = self.settings
        return (s.max_attempts + 1) * (2 * s.reply_timeout + s.punch_timeout)

    async def _exchange(self, role: HolePunchRole, stream: Stream[Connection]) -> None:
        peer = stream.connection.peer_id
        started = trio.current_time()
        stream.connection.set_stream_deadline(stream, started + self.exchange_bound())
        machine = HolePunch(role, self._own_connect(), self._config.policy, self.settings)
        direct = trio.Event()
        self._waiting.setdefault(peer, set()).add(direct)
        self._log.info("hole punch started", peer=str(peer), role=role.value)
        try:
            run = _Exchange(self, machine, stream, direct)
            finished = await run.run()
        finally:
            self._active -= 1
            waiting = self._waiting.get(peer)
            if waiting is not None:
                waiting.discard(direct)
                if not waiting:
                    del self._waiting[peer]
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await stream.aclose()
        self._record(HolePunchReport(peer, role, finished.outcome, finished.attempts,
                                     finished.reason, finished.rtt, started,
                                     trio.current_time()))

    def _record(self, report: HolePunchReport) -> None:
        self._outcomes[report.outcome.value] += 1
        if report.outcome is PunchOutcome.DIRECT:
            self._direct_sum += report.elapsed
            self._direct_count += 1
            self._direct_times = [*self._direct_times, report.elapsed][-MAX_DIRECT_TIMES:]
        self._reports.pop(report.peer, None)  # re-insert: dict order is recency
        self._reports[report.peer] = report
        while len(self._reports) > MAX_REPORTS:
            del self._reports[next(iter(self._reports))]
        self._changed.set()
        self._changed = trio.Event()
        self._log.info("hole punch finished", peer=str(report.peer), role=report.role.value,
                       outcome=report.outcome.value, attempts=report.attempts,
                       reason=report.reason, elapsed=round(report.elapsed, 3),
                       rtt=None if report.rtt is None else round(report.rtt, 4))

    def count_attempt(self) -> None:
        self._attempts += 1

    async def punch(self, peer: PeerId, command: PunchDirect) -> tuple[bool, str]:
        """Every address of ``command`` at once through the Dialer: (any connected,
        the reasons of those that failed)."""
        timeout = self.settings.punch_timeout
        results: list[ConnectionInfo | DialFailed | str] = []

        async def one(addr_index: int) -> None:
            addr = command.addrs[addr_index].with_peer_id(peer)
            try:
                results.append(await call(
                    self._dialer, partial(Punch, addr, command.as_client, timeout),
                    timeout + _CALL_SLACK))
            except (trio.TooSlowError, MailboxClosed, ActorGone) as exc:
                results.append(f"{addr}: {exc or 'no answer from the Dialer'}")

        async with trio.open_nursery() as nursery:
            for index in range(len(command.addrs)):
                nursery.start_soon(one, index)
        reasons = [r if isinstance(r, str) else f"{r.addr}: {r.reason}"
                   for r in results if not isinstance(r, ConnectionInfo)]
        return any(isinstance(r, ConnectionInfo) for r in results), "; ".join(reasons)


_NOT_RELAYED: Final = "not a relayed connection"


class _Exchange:
    """The tasks of one exchange: the machine's timer, the stream's messages, the
    direct-connection watch and the punches, until the machine finishes."""

    def __init__(self, service: HolePunchService, machine: HolePunch,
                 stream: Stream[Connection], direct: trio.Event) -> None:
        self._service = service
        self._machine = machine
        self._stream = stream
        self._peer = stream.connection.peer_id
        self._direct = direct
        self._driver = TimeoutDriver[_Command](machine)
        self._finished: HolePunchFinished | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self) -> HolePunchFinished:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._machine.role is HolePunchRole.INITIATOR:
                await self._feed(self._machine.start(trio.current_time()))
            nursery.start_soon(self._driver.run, self._execute)
            nursery.start_soon(self._receive)
            nursery.start_soon(self._watch_direct)
        if self._finished is None:  # pragma: no cover - the nursery ends only on a finish
            raise RuntimeError("hole punch exchange ended without an outcome")
        return self._finished

    async def _feed(self, commands: list[_Command]) -> None:
        await self._execute(commands)
        self._driver.wake()

    async def _execute(self, commands: list[_Command]) -> None:
        for command in commands:
            if self._finished is not None:
                return
            if isinstance(command, SendPunchMessage):
                await self._send(command)
            elif isinstance(command, PunchDirect):
                self._service.count_attempt()
                assert self._nursery is not None
                self._nursery.start_soon(self._punch, command)
            else:
                self._finish(command)

    async def _send(self, command: SendPunchMessage) -> None:
        try:
            with trio.fail_after(self._service.settings.reply_timeout):
                await self._stream.send(command.message.to_wire())
        except _SEND_FAILURES as exc:
            await self._ended(f"sending failed: {exc or 'timed out'}")

    def _finish(self, finished: HolePunchFinished) -> None:
        self._finished = finished
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _ended(self, reason: str) -> None:
        await self._feed(self._machine.handle_stream_ended(reason, trio.current_time()))

    async def _receive(self) -> None:
        while self._machine.state is not HolePunchState.DONE:
            try:
                message = decode_holepunch_message(await self._stream.receive())
            except StreamEnded:
                await self._ended("the peer closed the stream")
                return
            except RemoteProtocolError as exc:
                await self._stream.reset(ErrorCode.BAD_MESSAGE)
                await self._ended(f"the peer sent an invalid message: {exc}")
                return
            except EXCHANGE_FAILURES as exc:
                await self._ended(str(exc))
                return
            try:
                commands = self._machine.handle_message(message, trio.current_time())
            except RemoteProtocolError as exc:  # a message out of turn
                await self._stream.reset(ErrorCode.BAD_MESSAGE)
                self._finish(HolePunchFinished(PunchOutcome.FAILED, self._machine.attempts,
                                               f"protocol error: {exc}", self._machine.rtt))
                return
            await self._feed(commands)

    async def _watch_direct(self) -> None:
        if not self._service.connected_directly(self._peer):
            await self._direct.wait()
        await self._feed(self._machine.handle_direct_connection(trio.current_time()))

    async def _punch(self, command: PunchDirect) -> None:
        connected, reasons = await self._service.punch(self._peer, command)
        machine = self._machine
        if machine.state is not HolePunchState.PUNCHING or machine.attempts != command.attempt:
            return  # a later round, or the end: this attempt's news is stale
        now = trio.current_time()
        await self._feed(machine.handle_direct_connection(now) if connected
                         else machine.handle_punch_failed(reasons or "no address", now))
