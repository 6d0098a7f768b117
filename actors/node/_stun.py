"""The node's STUN server and its UDP profile client: two small supervised actors.

See (docs/architecture.md, "STUN (UDP)").

Theory of operation
-------------------
:class:`StunServerActor` (child ``stun-server``, only when ``stun_listen`` is
set) binds the addresses :meth:`~protocols.NodeConfig.stun_addresses` names
with :func:`~actors.transport.open_stun_server` (one socket, or four with an
RFC 5780 alternate), tells the StatusTracker where it serves
(:class:`~protocols.stun.StunServerBound`) and signals readiness only once
the snapshot shows it, so every Identify the node answers afterwards
advertises the server. A port that cannot be bound raises an ``OSError``
whose text says what to do (the CLI checks the ports before starting, so
there this is one line, not a restart loop). Counters survive restarts:
each incarnation's are added to the totals when it ends.

:class:`UdpProfiler` (child ``udp-profile``, when ``udp_discovery`` is on)
drives a :class:`~protocols.stun.UdpDiscoveryPlan` (sans-io, created by the
node, so it outlives incarnations) with a :class:`TimeoutDriver`. Its inbox
carries ``PeerIdentified`` from the IdentifyActor (each peer's STUN
servers, already restricted to the peer's own IP); the snapshots tell it
which peers left and when our local IPs changed (a new network: measure
again). A ``RunDiscovery`` command runs
:func:`~actors.transport.discover_udp_profile` in a task of the actor's
nursery, bounded by ``udp_discovery_timeout``; ``PublishUdpProfile`` goes to
the tracker as :class:`~protocols.stun.UdpProfileMeasured`, so ``udp`` in
the snapshot, ``/status``, ``/metrics`` and ``autonat probe`` all read the
one published value. Why an actor of its own rather than a task of the
AutoNAT probe: its input is Identify only, its work is UDP, and a crash in
it must not cost the probe its scheduler.
"""

from __future__ import annotations

import bisect
import errno
from collections import Counter
from dataclasses import dataclass

import trio

from protocols import NodeConfig, NodeSnapshot, PeerId, PeerIdentified
from protocols.stun import (
    UNKNOWN_UDP_PROFILE,
    Endpoint,
    PublishUdpProfile,
    RunDiscovery,
    StunServerBound,
    UdpDiscoveryPlan,
    UdpDiscoveryStatistics,
    UdpProfileMeasured,
)

from ..runtime import MailboxReceiver, MailboxSender, Pulse, TimeoutDriver, Watch, get_logger
from ..transport import StunServer, discover_udp_profile, open_stun_server
from ._messages import TrackerEvent

__all__ = ["StunServerActor", "StunStatistics", "UdpProfiler", "stun_bind_hint"]

SNAPSHOT_WAIT = 10.0
"""Seconds the server waits for the tracker to publish its addresses before going on."""


@dataclass(frozen=True)
class StunStatistics:
    """What our STUN server did, over all incarnations (monotonic counters)."""

    addresses: tuple[str, ...]
    """Where it serves now (empty while it is not bound)."""
    received: int
    answered: int
    """Binding success responses sent."""
    changed: int
    """Of those, sent from another address under CHANGE-REQUEST."""
    errors: int
    """420 error responses."""
    dropped: tuple[tuple[str, int], ...]
    """Datagrams not answered, by reason (rate limits, malformed, ...)."""
    send_errors: int
    receive_errors: int


def stun_bind_hint(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (" (is another STUN server, e.g. coturn, or another node using this port? "
                "choose another port with stun_listen / AUTONAT_STUN_LISTEN, or "
                "stun_listen = \"\" to serve no STUN)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return " (is that IP an address of this machine? check stun_listen and stun_alternate)"
    if exc.errno == errno.EACCES:
        return " (ports below 1024 are privileged: choose a port >= 1024)"
    return ""


class StunServerActor:
    """Serves STUN on the configured addresses; see the module docstring."""

    def __init__(self, *, config: NodeConfig, tracker: MailboxSender[TrackerEvent],
                 watch: Watch[NodeSnapshot], node: PeerId) -> None:
        addresses = config.stun_addresses()
        if addresses is None:
            raise ValueError("StunServerActor needs stun_listen")
        self._primary, self._alternate = addresses
        self._responder_config = config.stun.responder_config()
        self._tracker = tracker
        self._watch = watch
        self._server: StunServer | None = None
        self._totals: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._log = get_logger("actors.stun", actor="stun-server", node=str(node))

    def statistics(self) -> StunStatistics:
        totals, dropped = Counter(self._totals), Counter(self._dropped)
        server = self._server
        addresses: tuple[str, ...] = ()
        if server is not None:
            _add(totals, dropped, server)
            addresses = tuple(map(str, server.addresses.locals()))
        return StunStatistics(
            addresses=addresses, received=totals["received"], answered=totals["answered"],
            changed=totals["changed"], errors=totals["errors"],
            dropped=tuple(sorted(dropped.items())), send_errors=totals["send_errors"],
            receive_errors=totals["receive_errors"])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        where = f"{self._primary}/udp" + (f" (alternate {self._alternate})"
                                          if self._alternate else "")
        server: StunServer | None = None
        try:
            async with open_stun_server(self._primary, self._alternate,
                                        self._responder_config) as server:
                self._server = server
                addresses = server.addresses
                await self._tracker.send(StunServerBound(addresses))
                with trio.move_on_after(SNAPSHOT_WAIT):
                    await self._watch.wait_for(lambda snap: snap.stun_server == addresses)
                self._log.info("stun server running",
                               addresses=[str(a) for a in addresses.locals()])
                task_status.started()
                await trio.sleep_forever()
        except OSError as exc:
            if server is not None:
                raise
            raise OSError(exc.errno, f"cannot serve STUN on {where}: "
                                     f"{exc.strerror or exc}{stun_bind_hint(exc)}") from None
        finally:
            self._server = None
            if server is not None:
                _add(self._totals, self._dropped, server)


def _add(totals: Counter[str], dropped: Counter[str], server: StunServer) -> None:
    stats = server.statistics()
    responder = stats.responder
    totals.update(received=responder.received, answered=responder.answered,
                  changed=responder.changed, errors=responder.errors,
                  send_errors=stats.send_errors, receive_errors=stats.receive_errors)
    dropped.update(dict(responder.dropped))


class UdpProfiler:
    """Measures our UDP NAT profile against STUN servers peers advertise."""

    def __init__(self, *, config: NodeConfig, plan: UdpDiscoveryPlan,
                 inbox: MailboxReceiver[PeerIdentified], tracker: MailboxSender[TrackerEvent],
                 watch: Watch[NodeSnapshot], node: PeerId, pulse: Pulse) -> None:
        self._config = config.udp
        self._plan = plan
        self._inbox = inbox
        self._tracker = tracker
        self._watch = watch
        self._node = node
        self._pulse = pulse
        self._driver = TimeoutDriver[RunDiscovery | PublishUdpProfile](plan)
        self._nursery: trio.Nursery | None = None
        self._log = get_logger("actors.stun", actor="udp-profile", node=str(node))

    def statistics(self) -> UdpDiscoveryStatistics:
        return self._plan.statistics()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._plan.handle_driver_restart()  # a run of a crashed incarnation died with it
        self._driver = TimeoutDriver[RunDiscovery | PublishUdpProfile](self._plan)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._driver.run, self._execute)
            nursery.start_soon(self._follow_snapshots)
            task_status.started()
            async for event in self._inbox:
                if event.peer_id == self._node:
                    continue
                servers = tuple(Endpoint(a.ip, a.port) for a in event.stun_addrs)
                self._plan.handle_peer(event.peer_id, servers, event.stun_alternate,
                                       trio.current_time())
                self._wake()
            nursery.cancel_scope.cancel()

    def _wake(self) -> None:
        self._driver.wake()
        self._pulse.beat()  # statistics a reader follows (autonat probe) may have changed

    async def _follow_snapshots(self) -> None:
        """Peers that left (their servers go) and our local IPs (a change: measure again)."""
        local_ips = None
        connected: tuple[PeerId, ...] | None = None
        async for snap in self._watch.subscribe():
            if local_ips is not None and snap.local_ips and snap.local_ips != local_ips:
                self._plan.handle_local_ips(trio.current_time())
                self._wake()
            if snap.local_ips:
                local_ips = snap.local_ips
            if snap.connected_peers is connected:
                continue  # the same tuple object: no peer came or went
            connected = snap.connected_peers  # sorted: O(log N) per known server, not O(N)
            for peer in self._plan.server_peers():
                index = bisect.bisect_left(connected, peer)
                if index == len(connected) or connected[index] != peer:
                    self._plan.handle_peer_gone(peer)

    async def _execute(self, commands: list[RunDiscovery | PublishUdpProfile]) -> None:
        assert self._nursery is not None
        for command in commands:
            if isinstance(command, RunDiscovery):
                self._nursery.start_soon(self._discover, command)
            else:
                self._log.info("udp profile", mapping=command.profile.mapping.value,
                               filtering=command.profile.filtering.value,
                               server=str(command.server))
                await self._tracker.send(UdpProfileMeasured(command.profile, command.server))
        self._pulse.beat()

    async def _discover(self, run: RunDiscovery) -> None:
        config = self._config
        self._log.debug("udp discovery", server=str(run.server), peer=str(run.peer))
        try:
            profile = await discover_udp_profile(
                run.server, retransmission=config.retransmission(),
                timeout=config.udp_discovery_timeout)
        except OSError as exc:  # no route, no local address of that family, ...
            self._log.info("udp discovery failed", server=str(run.server), error=str(exc))
            profile = UNKNOWN_UDP_PROFILE
        self._plan.handle_run_finished(run, profile, trio.current_time())
        self._wake()

