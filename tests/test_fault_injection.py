"""Fault injection on a live node: every actor crashed again and again, nothing leaks.

A boot node and two more peers (AutoNAT servers, on the in-memory network, in
virtual time) and the node under test, which dials all three (``peers``), is
identified and probed and reaches its verdict (``public``). Then the drill:
each round crashes each of the node's actors once with
:meth:`Supervisor.inject_fault <actors.Supervisor.inject_fault>`, and between
two injections asks ``/status`` (the HTTP API's own code path,
:meth:`HttpApi.respond`) and reconnects to a peer. Injections are spaced
beyond the supervisor's default restart intensity (5 restarts in 10 s,
supervisor-wide), so the real defaults hold: 2.5 virtual seconds apart.

Afterwards, once the network is quiet again (bounded wait): the verdict is
the one from before, every child's restarts and crashes grew by exactly the
injections, a crash log line was written for each, and the resources are
those counted before the drill - Trio tasks (the whole task tree from the root
task), the node's connections, and the open in-memory streams and memory
channel ends of the process (live objects after a garbage collection).
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
import trio
import trio.testing
from supervisor_support import count_tasks

from actors import ChildState, HttpApi, MemoryFrameStream, MemoryNetwork, Node, open_node
from protocols import AddressPolicy, NodeConfig

ACTORS = ("bootstrap", "dialer", "identify", "autonat", "hairpin", "udp-profile",
          "relay-client", "status-tracker")
"""The node's children: BootstrapFetcher, Dialer, IdentifyActor, AutonatProbe, HairpinTester,
UdpProfiler, the relay client's planner driver, StatusTracker (a node without
``stun_listen`` runs no STUN server)."""
ROUNDS = 100
SAMPLES = 5  # /status requests between two injections
QUIET_WITHIN = 120.0  # virtual seconds for the network to settle after the drill
LOOPBACK = AddressPolicy(allow_loopback=True)


@dataclass(frozen=True)
class Resources:
    """What must be the same before and after the drill."""

    tasks: int
    connections: int
    memory_streams: int
    channel_ends: int


def resources(node: Node) -> Resources:
    gc.collect()
    live = gc.get_objects()
    streams = sum(isinstance(o, MemoryFrameStream) and not o._closed for o in live)
    ends = sum(isinstance(o, trio.MemorySendChannel | trio.MemoryReceiveChannel)
               and not o._closed for o in live)
    return Resources(count_tasks(), len(node.snapshot().connections), streams, ends)


async def settled(node: Node, want: Resources | None = None, *, within: float) -> Resources:
    """The resources once they equal ``want`` (or stop changing for 10 s); bounded."""
    last = resources(node)
    with trio.move_on_after(within):
        while last != want:
            await trio.sleep(10)
            now = resources(node)
            if want is None and now == last:
                break
            last = now
    return last


@contextmanager
def crash_log_lines() -> Iterator[Counter[str]]:
    """Count the supervisor's log lines per (event, actor), keeping no exception alive."""
    counts: Counter[str] = Counter()

    def count(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
        counts[f"{event['event']}: {event.get('actor')}"] += 1
        raise structlog.DropEvent

    with structlog.testing.capture_logs():  # saves and restores the configuration
        structlog.configure(processors=[count])
        yield counts


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


@asynccontextmanager
async def network(net: MemoryNetwork) -> AsyncIterator[tuple[Node, list[Node]]]:
    """Three meshed AutoNAT servers (the first one the boot node) and the node under test."""
    async with AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(open_node(
            _config(f"127.0.1.{i}", welcome_probes=i == 1),
            transport=net.transport(f"127.0.1.{i}"))) for i in (1, 2, 3)]
        for i, peer in enumerate(peers[1:], 1):
            await peer.connect(peers[i - 1].listen_addrs[0])
        addrs = tuple(str(peer.listen_addrs[0]) for peer in peers)
        node = await stack.enter_async_context(open_node(
            _config("127.0.0.9", peers=addrs), transport=net.transport("127.0.0.9")))
        yield node, peers


@dataclass
class Drill:
    """Injects faults into ``node``'s actors and samples ``/status`` in between."""

    node: Node
    peers: list[Node]
    verdict: str
    status_ok: int = 0
    status_total: int = 0

    async def run(self, rounds: int) -> None:
        supervisor = self.node.supervisor
        spacing = supervisor.within / supervisor.max_restarts * 1.25
        api = HttpApi(self.node)
        for round_ in range(rounds):
            for name in ACTORS:
                await self.running(name)
                supervisor.inject_fault(name, f"drill round {round_}")
                for _ in range(SAMPLES):
                    await trio.sleep(spacing / SAMPLES)
                    self.sample(api)
            with trio.fail_after(30):
                await self.node.connect(self.peers[round_ % len(self.peers)].listen_addrs[0])

    async def running(self, name: str) -> None:
        with trio.fail_after(30):
            while self.node.supervisor.statistics().child(name).state is not ChildState.RUNNING:
                await trio.sleep(0.01)

    def sample(self, api: HttpApi) -> None:
        response = api.respond("GET", "/status")
        self.status_total += 1
        ok = response.status == 200 and json.loads(response.body)["nat_status"] == self.verdict
        self.status_ok += ok


async def test_every_actor_crashed_repeatedly_leaks_nothing_and_keeps_the_verdict(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(ROUNDS * 60 + 600), crash_log_lines() as logs:
        async with network(net) as (node, peers):
            snap = await node.wait_for(lambda s: s.nat_status != "unknown"
                                       and len(s.connections) == len(peers))
            assert snap.nat_status == "public"
            before = await settled(node, within=QUIET_WITHIN)
            first_ids = {c.connection_id for c in node.snapshot().connections}
            restarts = {c.name: c.restarts for c in node.supervisor.statistics().children}
            drill = Drill(node, peers, snap.nat_status)
            await drill.run(ROUNDS)
            after = await settled(node, before, within=QUIET_WITHIN)
            stats = node.supervisor.statistics()
            assert after == before
            # the Dialer's crashes closed every connection; these are new ones
            assert not first_ids & {c.connection_id for c in node.snapshot().connections}
            assert node.snapshot().nat_status == snap.nat_status
            samples = ROUNDS * len(ACTORS) * SAMPLES
            assert (drill.status_ok, drill.status_total) == (samples, samples)
            assert HttpApi(node).respond("GET", "/status").status == 200
            assert stats.escalations == 0
            for child in stats.children:
                assert child.faults_injected == ROUNDS
                assert child.restarts - restarts[child.name] == ROUNDS
                assert child.crashes == child.restarts
                assert logs[f"child crashed; restarting: {child.name}"] == child.restarts
