"""The hairpin tester: dials our own confirmed external address (a small supervised actor).

Theory of operation
-------------------
What to test, when, and what a result means is decided by the sans-io
:class:`~protocols.HairpinPlan` (owned by the node, so it outlives
incarnations; :mod:`protocols.autonat._hairpinning` explains hairpinning and
the rules). This actor (child ``hairpin``) only drives it:

* **inputs** - the node's snapshots: when ``reachable_addrs``,
  ``listen_addrs`` or ``local_ips`` change (tuple identity first, so an
  unchanged snapshot costs three comparisons), the plan gets them; a
  :class:`~actors.runtime.TimeoutDriver` runs its timer;
* **the test** - a :class:`~protocols.RunHairpinTest` runs in a task of the
  actor's nursery: :meth:`Transport.dial` to the address with our own
  ``/p2p/`` id, from a fresh ephemeral port (``reuse_listen_port=False``),
  then the connection handshake expecting our own peer id, all within the
  test's timeout. It never goes through the Dialer (which refuses our own
  id, and must never register a connection to ourselves). The handshake
  ends in :class:`~protocols.SelfConnection` on both ends when our own
  listener answered (the listener side's Dialer closes and counts it); any
  other peer id is :class:`~protocols.PeerIdMismatch`; a refusal, a reset
  or the timeout is a plain failure; a :class:`~actors.transport.LocalDialError`
  is not evidence. The outcome goes back to the plan;
* **reporting** - a :class:`~protocols.PublishHairpinning` goes to the
  StatusTracker as :class:`~protocols.HairpinningMeasured`, so the snapshot,
  ``/status``, ``/metrics`` and ``autonat probe`` read one value; someone
  else answering at our confirmed address is logged as a warning.

Why an actor of its own: its input is the snapshot only, it owns a dial the
Dialer must not see, and a crash in it must cost neither the probe's
scheduler nor the Dialer's connections.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from protocols import (
    HairpinningMeasured,
    HairpinOutcome,
    HairpinPlan,
    HairpinStatistics,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    PeerIdMismatch,
    PublishHairpinning,
    RunHairpinTest,
    WsAddress,
)

from ..connection import ConnectionFailed, open_connection
from ..runtime import MailboxSender, Pulse, TimeoutDriver, Watch, get_logger
from ..transport import LocalDialError, Transport, TransportError
from ._messages import TrackerEvent

__all__ = ["HairpinTester", "dial_self"]

HairpinCommand = RunHairpinTest | PublishHairpinning


@dataclass(frozen=True)
class _Addresses:
    reachable: tuple[WsAddress, ...]
    listen: tuple[WsAddress, ...]
    local_ips: tuple[WsAddress, ...]

    @classmethod
    def of(cls, snap: NodeSnapshot) -> _Addresses:
        return cls(snap.reachable_addrs, snap.listen_addrs, snap.local_ips)

    def same(self, snap: NodeSnapshot) -> bool:
        return ((self.reachable, self.listen, self.local_ips)
                == (snap.reachable_addrs, snap.listen_addrs, snap.local_ips))


async def dial_self(transport: Transport, keypair: Keypair, config: NodeConfig,
                    addr: WsAddress) -> tuple[HairpinOutcome, str]:
    """Dial ``addr`` expecting to reach ourselves; the outcome and a detail (no timeout
    of its own: the caller bounds it)."""
    own = keypair.peer_id
    try:
        async with transport.dial(addr.with_peer_id(own), reuse_listen_port=False) as stream, \
                open_connection(stream, keypair, initiator=True, expected_peer=own,
                                config=config.connection) as connection:
            # unreachable: the handshake raises SelfConnection for our own id
            await connection.aclose("a connection to ourselves is never kept")
            return HairpinOutcome.FAILED, "the handshake completed without proof"
    except LocalDialError as exc:
        return HairpinOutcome.LOCAL_ERROR, str(exc)
    except ConnectionFailed as exc:
        if exc.self_connection:
            return HairpinOutcome.SELF, "reached our own listener"
        if isinstance(exc.__cause__, PeerIdMismatch):
            return HairpinOutcome.OTHER_PEER, exc.reason
        return HairpinOutcome.FAILED, exc.reason
    except TransportError as exc:
        return HairpinOutcome.FAILED, str(exc)


class HairpinTester:
    """Tests hairpinning at our confirmed external address; see the module docstring."""

    def __init__(self, *, config: NodeConfig, keypair: Keypair, transport: Transport,
                 plan: HairpinPlan, tracker: MailboxSender[TrackerEvent],
                 watch: Watch[NodeSnapshot], pulse: Pulse) -> None:
        self._config = config
        self._keypair = keypair
        self._transport = transport
        self._plan = plan
        self._tracker = tracker
        self._watch = watch
        self._pulse = pulse
        self._driver = TimeoutDriver[HairpinCommand](plan)
        self._nursery: trio.Nursery | None = None
        self._log = get_logger("actors.hairpin", actor="hairpin", node=str(keypair.peer_id))

    def statistics(self) -> HairpinStatistics:
        return self._plan.statistics()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._plan.handle_driver_restart()  # a test of a crashed incarnation died with it
        self._driver = TimeoutDriver[HairpinCommand](self._plan)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._driver.run, self._execute)
            task_status.started()
            await self._follow_snapshots()

    async def _follow_snapshots(self) -> None:
        seen: _Addresses | None = None
        async for snap in self._watch.subscribe():
            if seen is not None and seen.same(snap):
                continue
            seen = _Addresses.of(snap)
            self._plan.handle_addresses(seen.reachable, seen.listen, seen.local_ips,
                                        trio.current_time())
            self._wake()

    def _wake(self) -> None:
        self._driver.wake()
        self._pulse.beat()  # statistics a reader follows (autonat probe) may have changed

    async def _execute(self, commands: list[HairpinCommand]) -> None:
        assert self._nursery is not None
        for command in commands:
            if isinstance(command, RunHairpinTest):
                self._nursery.start_soon(self._test, command)
            else:
                await self._publish(command)
        self._pulse.beat()

    async def _publish(self, command: PublishHairpinning) -> None:
        addr = None if command.addr is None else str(command.addr)
        if command.outcome is HairpinOutcome.OTHER_PEER:
            self._log.warning("hairpin test: another peer answered at our confirmed address",
                              addr=addr, detail=command.detail)
        self._log.info("hairpinning", hairpinning=command.hairpinning, addr=addr,
                       detail=command.detail or None)
        await self._tracker.send(HairpinningMeasured(command.hairpinning, command.addr))

    async def _test(self, test: RunHairpinTest) -> None:
        self._log.debug("hairpin test", addr=str(test.addr))
        outcome, detail = HairpinOutcome.FAILED, f"no answer within {test.timeout:g} s"
        with trio.move_on_after(test.timeout):
            outcome, detail = await dial_self(self._transport, self._keypair, self._config,
                                              test.addr)
        if outcome is HairpinOutcome.LOCAL_ERROR:
            self._log.info("hairpin test failed here (not evidence)", addr=str(test.addr),
                           error=detail)
        self._plan.handle_test_finished(test, outcome, trio.current_time(), detail[:200])
        self._wake()
