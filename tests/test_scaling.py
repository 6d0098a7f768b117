"""A boot node's work per connection must not grow with its number of connections.

Nothing here is timed: the test counts the Python function calls made in our
own packages (``actors``, ``protocols``) while N clients connect, authenticate
and are identified one after another, on the in-memory network in virtual
time, and compares the calls per connection at two sizes. Linear work gives
the same count per connection at both sizes (up to scheduling noise); work
that scans every connection per event - the quadratic behaviour this guards
against - makes the larger run cost several times more per connection.

The clients are bare connections (handshake, mux, an Identify answer), not
whole nodes, so that nearly all counted work is the boot node's.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio
import trio.testing

import actors
import protocols
from actors import Connection, MemoryNetwork, Node, Stream, open_connection, open_node
from protocols import (
    IDENTIFY_PROTOCOL_ID,
    AddressPolicy,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    WsAddress,
)
from protocols.identify import build_identify

LOOPBACK = AddressPolicy(allow_loopback=True)
SMALL, LARGE = 30, 120
MAX_GROWTH = 1.35
"""Calls per connection at LARGE over SMALL; quadratic work shows up as 2 and more."""
OURS = tuple(str(Path(package.__file__).parent) for package in (actors, protocols))


def _boot_config(connections: int) -> NodeConfig:
    """The boot profile's choices that matter here, with room for every client."""
    return NodeConfig.from_settings(
        listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK, target_peers=16,
        max_connections=connections + 16, max_peers=5000, mailbox_size=1024,
        welcome_probes=True)


async def _client(net: MemoryNetwork, index: int, boot: WsAddress,
                  stop: trio.Event) -> None:
    keypair = Keypair.generate()
    host = f"127.{1 + index // 250}.{index % 250}.2"  # one /24 each: no admission cap hit

    async def identify(stream: Stream[Connection]) -> None:
        await stream.receive()
        await stream.send(build_identify(
            public_key=keypair.public_key, agent_version="scale-client/1", listen_addrs=(),
            observed_addr=stream.connection.remote_addr, protocols=(IDENTIFY_PROTOCOL_ID,),
            policy=LOOPBACK).to_wire(), fin=True)

    async with net.transport(host).dial(boot) as frames, open_connection(
            frames, keypair, initiator=True, expected_peer=boot.peer_id,
            handlers={IDENTIFY_PROTOCOL_ID: identify}):
        await stop.wait()


def _identified(count: int):  # type: ignore[no-untyped-def]
    def check(snap: NodeSnapshot) -> bool:
        return len(snap.connected_peers) >= count and sum(
            1 for record in snap.peers if record.agent_version == "scale-client/1") >= count
    return check


@asynccontextmanager
async def _boot_node(count: int) -> AsyncIterator[tuple[Callable[[int], None], Node]]:
    """A boot node on the memory network, and ``start(index)`` to connect client ``index``."""
    net = MemoryNetwork()
    stop = trio.Event()
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(open_node(
            _boot_config(count), transport=net.transport("127.0.0.1")))
        nursery = await stack.enter_async_context(trio.open_nursery())

        def start(index: int) -> None:
            nursery.start_soon(_client, net, index, boot.listen_addrs[0], stop)

        yield start, boot
        stop.set()


async def _connect_clients(count: int, profile: cProfile.Profile) -> None:
    async with _boot_node(count) as (start, boot):
        with trio.fail_after(600):
            profile.enable()
            for index in range(count):
                start(index)
                await boot.wait_for(_identified(index + 1))
            profile.disable()


def _calls_per_connection(count: int) -> float:
    profile = cProfile.Profile()
    trio.run(_connect_clients, count, profile, clock=trio.testing.MockClock(autojump_threshold=0))
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    ours = sum(calls for (filename, _line, _name), (calls, *_rest) in stats.items()
               if filename.startswith(OURS))
    return float(ours) / count


def test_work_per_connection_does_not_grow_with_connections() -> None:
    small, large = _calls_per_connection(SMALL), _calls_per_connection(LARGE)
    growth = large / small
    assert growth < MAX_GROWTH, (
        f"{large:.0f} calls per connection at {LARGE} connections vs {small:.0f} at {SMALL}: "
        f"x{growth:.2f}; something scans all connections per event")


def _task_names() -> list[str]:
    names, stack = [], [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        names.append(task.name)
        stack.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return names


async def _actor_tasks_per_idle_connection(count: int) -> float:
    async with _boot_node(count) as (start, boot):
        await trio.sleep(60)
        before = sum(1 for name in _task_names() if name.startswith("actors.node."))
        for index in range(count):
            start(index)
        with trio.fail_after(600):
            await boot.wait_for(_identified(count))
        await trio.sleep(60)  # idle: Identify and the welcome probes are done
        after = sum(1 for name in _task_names() if name.startswith("actors.node."))
    return (after - before) / count


def test_node_actors_keep_no_task_per_idle_connection() -> None:
    """Identify and the AutoNAT client learn of ends from the Dialer, not from a task each."""
    per_connection = trio.run(_actor_tasks_per_idle_connection, SMALL,
                              clock=trio.testing.MockClock(autojump_threshold=0))
    assert per_connection < 0.5, (
        f"{per_connection:.2f} actor tasks per idle connection: an actor waits on each one")
