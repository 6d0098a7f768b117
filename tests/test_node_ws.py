"""Whole nodes over real WebSockets on loopback (127.0.0.0/8, port 0).

Real sockets need the real clock (a mock clock would jump past I/O waits),
so every test is bounded by ``trio.fail_after`` instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors import ConnectError, Node, open_node
from actors.runtime import TIMER_TASK_NAME, current_timer_service
from protocols import AddressPolicy, Keypair, Lifecycle, NodeConfig, NodeSnapshot

LOOPBACK = AddressPolicy(allow_loopback=True)


@asynccontextmanager
async def _nodes(count: int, **overrides: object) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(count):
            config = NodeConfig.from_settings(
                listen=(f"/ip4/127.0.{i // 200}.{i % 200 + 10}/tcp/0/ws",), policy=LOOPBACK,
                **overrides)
            nodes.append(await stack.enter_async_context(open_node(config)))
        yield nodes


def _knows_all(others: list[Node]) -> object:
    def check(snap: NodeSnapshot) -> bool:
        return all((rec := snap.peer(o.peer_id)) is not None and rec.agent_version != ""
                   for o in others)
    return check


async def _mesh(nodes: list[Node]) -> None:
    async with trio.open_nursery() as nursery:
        for i, node in enumerate(nodes):
            for other in nodes[i + 1:]:
                nursery.start_soon(node.connect, other.listen_addrs[0])


@pytest.mark.parametrize("count", [2, 3])
async def test_small_mesh_connects_and_identifies(count: int) -> None:
    with trio.fail_after(30):
        async with _nodes(count) as nodes:
            await _mesh(nodes)
            for node in nodes:
                others = [o for o in nodes if o is not node]
                snap = await node.wait_for(_knows_all(others))  # type: ignore[arg-type]
                assert snap.lifecycle is Lifecycle.CONNECTED
                assert set(snap.connected_peers) == {o.peer_id for o in others}
                for other in others:
                    assert snap.peer(other.peer_id).addrs == other.listen_addrs  # type: ignore[union-attr]


async def test_observed_address_is_the_real_remote_end() -> None:
    with trio.fail_after(30):
        async with _nodes(2) as (a, b):
            info = await b.connect(a.listen_addrs[0])
            # b dialed from its listen port (SO_REUSEPORT), on its own 127.x address
            assert info.local_addr == b.listen_addrs[0].with_peer_id(None)
            snap = await b.wait_for(lambda s: bool(s.observed_addrs))
            [observation] = snap.observed_addrs
            assert observation.observer == a.peer_id
            assert observation.observed == info.local_addr
            assert observation.observer_addr == a.listen_addrs[0].with_peer_id(None)
            snap_a = await a.wait_for(lambda s: bool(s.observed_addrs))
            assert snap_a.observed_addrs[0].observed == a.listen_addrs[0].with_peer_id(None)


async def test_twenty_nodes_connect_and_identify_each_other() -> None:
    with trio.fail_after(120):
        async with _nodes(20, target_peers=19, max_connections=40) as nodes:
            await _mesh(nodes)
            for node in nodes:
                others = [o for o in nodes if o is not node]
                snap = await node.wait_for(_knows_all(others))  # type: ignore[arg-type]
                assert len(snap.connected_peers) == 19
                assert {o.observer for o in snap.observed_addrs} == {o.peer_id for o in others}


async def test_peer_id_mismatch_is_rejected_over_websockets() -> None:
    with trio.fail_after(30):
        async with _nodes(2) as (a, b):
            wrong = a.listen_addrs[0].with_peer_id(Keypair.generate().peer_id)
            with pytest.raises(ConnectError, match="authenticated as"):
                await b.connect(wrong)
            assert b.snapshot().connections == ()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc to count fds")
async def test_clean_shutdown_leaves_no_sockets_files_or_tasks(tmp_path: Path) -> None:
    fds_before, tasks_before = _open_fds(), _task_count(trio.lowlevel.current_root_task())
    with trio.fail_after(30):
        async with _nodes(3, data_dir=tmp_path) as nodes:
            await _mesh(nodes)
            for node in nodes:
                await node.wait_for(_knows_all([o for o in nodes if o is not node]))  # type: ignore[arg-type]
            assert _open_fds() >= fds_before + 3 + 6  # 3 listeners, 3 connections x 2 ends
    assert _open_fds() == fds_before
    assert _task_count(trio.lowlevel.current_root_task()) == tasks_before
    timers = current_timer_service()
    assert timers is not None and len(timers) == 0  # every connection's timer disarmed
    assert (tmp_path / "peers.json").exists()


def _task_count(task: trio.lowlevel.Task) -> int:
    """Tasks under ``task``, but not the run's timer service (one per run, started on first use)."""
    own = 0 if task.name == TIMER_TASK_NAME else 1
    return own + sum(_task_count(child) for nursery in task.child_nurseries
                     for child in nursery.child_tasks)
