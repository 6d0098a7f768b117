"""Whole nodes over the in-memory network, in virtual time (autojump_clock).

These exercise the Dialer, IdentifyActor, StatusTracker and supervisor
together without sockets: reconnect backoff, the connection limit,
simultaneous dials, persistence across restarts and actor crash recovery.
Real-socket versions of the core scenarios live in test_node_ws.py.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from actors import ConnectError, MemoryNetwork, Node, node_registry, open_node, render_metrics
from protocols import (
    AddressPolicy,
    ConnectionInfo,
    Keypair,
    Lifecycle,
    NodeConfig,
    NodeSnapshot,
    WsAddress,
)

LOOPBACK = AddressPolicy(allow_loopback=True)


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


@asynccontextmanager
async def _node(net: MemoryNetwork, host: str, **kw: Any) -> AsyncIterator[Node]:
    keypair = kw.pop("keypair", None)
    async with open_node(_config(host, **kw), transport=net.transport(host),
                         keypair=keypair) as node:
        yield node


def _identified(peer: Node) -> Callable[[NodeSnapshot], bool]:
    def check(snap: NodeSnapshot) -> bool:
        record = snap.peer(peer.peer_id)
        return record is not None and record.agent_version != ""
    return check


async def test_two_nodes_connect_identify_and_observe_each_other(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(30):
        async with _node(net, "127.0.0.1") as a, _node(net, "127.0.0.2") as b:
            assert a.snapshot().lifecycle is Lifecycle.BOOTSTRAPPING
            info = await b.connect(a.listen_addrs[0])
            assert info.peer_id == a.peer_id
            snap_a = await a.wait_for(_identified(b))
            snap_b = await b.wait_for(_identified(a))
            assert snap_a.lifecycle is Lifecycle.CONNECTED
            # a observed b at b's real local end of the connection (its listen port)
            [obs_b] = (await b.wait_for(lambda s: bool(s.observed_addrs))).observed_addrs
            assert obs_b.observed == info.local_addr
            assert obs_b.observed.port == b.listen_addrs[0].port
            assert snap_b.peer(a.peer_id).addrs == a.listen_addrs  # type: ignore[union-attr]


async def test_connect_to_wrong_peer_id_is_rejected(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    impostor_id = Keypair.generate().peer_id
    with trio.fail_after(30):
        async with _node(net, "127.0.0.1") as a, _node(net, "127.0.0.2") as b:
            wrong = a.listen_addrs[0].with_peer_id(impostor_id)
            with pytest.raises(ConnectError, match="authenticated as"):
                await b.connect(wrong)
            assert b.snapshot().connections == ()


async def test_simultaneous_dials_end_with_one_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(30):
        async with _node(net, "127.0.0.1") as a, _node(net, "127.0.0.2") as b:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.connect, b.listen_addrs[0])
                nursery.start_soon(b.connect, a.listen_addrs[0])
            await trio.sleep(5)  # virtual: let duplicate closes settle
            conns_a, conns_b = a.snapshot().connections, b.snapshot().connections
            assert len(conns_a) == 1 and len(conns_b) == 1
            # both ends kept the same connection: a's local end is b's remote end
            assert conns_a[0].local_addr == conns_b[0].remote_addr
            assert conns_a[0].direction != conns_b[0].direction


async def test_connection_limit_holds(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            hub = await stack.enter_async_context(
                _node(net, "127.0.0.1", max_connections=2, target_peers=1))
            others = [await stack.enter_async_context(_node(net, f"127.0.1.{i}"))
                      for i in range(1, 6)]
            results: list[ConnectionInfo | Exception] = []

            async def attempt(node: Node) -> None:
                try:
                    results.append(await node.connect(hub.listen_addrs[0]))
                except ConnectError as exc:
                    results.append(exc)

            async with trio.open_nursery() as nursery:
                for node in others:
                    nursery.start_soon(attempt, node)
            assert sum(isinstance(r, ConnectError) for r in results) == 3
            # the refused nodes keep retrying with backoff; the limit keeps holding
            for _ in range(10):
                await trio.sleep(3)
                assert len(hub.snapshot().connections) == 2
            assert hub.statistics().dialer.inbound_refused > 3


async def test_one_network_holding_every_slot_loses_one_to_a_newcomer_from_another(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            hub = await stack.enter_async_context(_node(
                net, "127.0.0.1", max_connections=4, target_peers=1,
                max_connections_per_subnet=8))
            # no AutoNAT servers around: their dial-backs would take slots of their own
            flood = [await stack.enter_async_context(
                _node(net, f"127.0.1.{i}", target_peers=1, autonat_server=False))
                for i in range(1, 6)]
            for node in flood[:4]:  # one network takes every slot
                await node.connect(hub.listen_addrs[0])
            with pytest.raises(ConnectError):  # more of it: refused, never evicting its own
                await flood[4].connect(hub.listen_addrs[0])
            honest = await stack.enter_async_context(
                _node(net, "127.0.9.1", target_peers=1, autonat_server=False))
            await honest.connect(hub.listen_addrs[0])  # another network: admitted
            snap = await hub.wait_for(lambda s: honest.peer_id in s.connected_peers
                                      and len(s.connections) == 4)
            assert flood[0].peer_id not in snap.connected_peers  # its oldest was evicted
            admission = hub.statistics().dialer.admission
            assert admission is not None and admission.evicted == 1
            metrics = render_metrics(node_registry(hub)).decode()
            assert "autonat_inbound_evicted_total 1.0" in metrics
            assert ('autonat_inbound_refusals_total{reason="too many connections from this '
                    'network"}') not in metrics  # refused for the full node, not the network
            assert 'autonat_inbound_refusals_total{reason="connection limit reached"} 1.0' \
                in metrics


async def test_lost_peer_is_redialed_with_backoff(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    b_key = Keypair.generate()
    with trio.fail_after(300):
        async with _node(net, "127.0.0.1", reconnect_initial=2.0, reconnect_max=16.0) as a:
            async with _node(net, "127.0.0.2", keypair=b_key) as b:
                b_addr = b.listen_addrs[0]
                await a.connect(b_addr)
                await a.wait_for(lambda s: len(s.connections) == 1)
            lost_at = trio.current_time()
            await a.wait_for(lambda s: not s.connections)
            # b comes back on the same address; a redials without being asked
            async with open_node(
                    NodeConfig(listen=(str(b_addr.with_peer_id(None)),), policy=LOOPBACK),
                    transport=net.transport("127.0.0.2"), keypair=b_key):
                await a.wait_for(lambda s: len(s.connections) == 1)
                waited = trio.current_time() - lost_at
            # first retry after reconnect_initial (jittered down by at most 20 %),
            # then failed attempts while b was away back off exponentially
            assert waited >= 2.0 * 0.8
            assert a.statistics().dialer.dials_started >= 2


async def test_failed_dials_back_off_exponentially(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    ghost = WsAddress.parse(f"/ip4/127.0.0.9/tcp/1234/ws/p2p/{Keypair.generate().peer_id}")
    with trio.fail_after(600):
        async with _node(net, "127.0.0.1", peers=(str(ghost),), reconnect_initial=1.0,
                         reconnect_max=8.0) as a:
            await trio.sleep(40)
            times = [d.at for d in net.dials if d.remote.host == "127.0.0.9"]
            assert a.statistics().dialer.dials_failed == len(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 1, 2, 4, 8, 8 ... each jittered down by at most 20 %
    for gap, base in zip(gaps, [1.0, 2.0, 4.0, 8.0, 8.0, 8.0], strict=False):
        assert base * 0.8 - 1e-9 <= gap <= base + 1e-9


async def test_peer_store_survives_restart(tmp_path: Path,
                                           autojump_clock: trio.testing.MockClock) -> None:
    # The tracker reads and writes the store in a worker thread; with a zero
    # threshold the mock clock would jump ahead while the thread runs.
    autojump_clock.autojump_threshold = 0.2
    net = MemoryNetwork()
    a_key = Keypair.generate()
    with trio.fail_after(60):
        async with _node(net, "127.0.0.2") as b:
            async with _node(net, "127.0.0.1", keypair=a_key, data_dir=tmp_path) as a:
                await a.connect(b.listen_addrs[0])
                await a.wait_for(_identified(b))
            assert (tmp_path / "peers.json").exists()
            async with _node(net, "127.0.0.1", keypair=a_key, data_dir=tmp_path) as again:
                record = again.snapshot().peer(b.peer_id)
                assert record is not None
                assert record.addrs == b.listen_addrs
                assert record.agent_version.startswith("trio-autonat")


async def test_crashed_identify_actor_is_restarted_and_node_keeps_working(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _node(net, "127.0.0.1") as a, _node(net, "127.0.0.2") as b, \
                _node(net, "127.0.0.3") as c:
            identify = a._identify
            original = identify._accept
            crashes = []

            async def crash_once(*args: Any, **kwargs: Any) -> None:
                if not crashes:
                    crashes.append(1)
                    raise RuntimeError("injected crash")
                await original(*args, **kwargs)

            monkeypatch.setattr(identify, "_accept", crash_once)
            await a.connect(b.listen_addrs[0])
            while a.supervisor.statistics().restarts < 1:
                await trio.sleep(0.01)  # virtual time; fail_after bounds it
            child = a.supervisor.statistics().child("identify")
            assert child.restarts == 1 and "injected crash" in (child.last_error or "")
            # the node keeps working: a new peer is identified by the new incarnation
            await a.connect(c.listen_addrs[0])
            await a.wait_for(_identified(c))
            assert a.snapshot().lifecycle is Lifecycle.CONNECTED


async def test_clean_shutdown_leaves_no_tasks(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    root = trio.lowlevel.current_task()
    before = _task_count(root)
    with trio.fail_after(30):
        async with _node(net, "127.0.0.1") as a, _node(net, "127.0.0.2") as b:
            await a.connect(b.listen_addrs[0])
            await a.wait_for(_identified(b))
            assert _task_count(root) > before + 10
    assert _task_count(root) == before


def _task_count(task: trio.lowlevel.Task) -> int:
    return 1 + sum(_task_count(child) for nursery in task.child_nurseries
                   for child in nursery.child_tasks)


async def test_identify_push_reaches_connected_peers_when_our_addresses_change(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import actors.node._identify as identify_module

    net = MemoryNetwork()
    extra = WsAddress.parse("/ip4/127.0.0.77/tcp/4077/ws")
    with trio.fail_after(60):
        async with _node(net, "127.0.0.1") as a, _node(net, "127.0.0.2") as b, \
                _node(net, "127.0.0.3") as c:
            await b.connect(a.listen_addrs[0])
            await b.wait_for(_identified(a))
            assert extra.with_peer_id(a.peer_id) not in b.snapshot().peer(a.peer_id).addrs  # type: ignore[union-attr]
            original = identify_module.advertised_addrs
            monkeypatch.setattr(identify_module, "advertised_addrs",
                                lambda **parts: (*original(**parts), extra))
            await a.connect(c.listen_addrs[0])  # any change of a's snapshot triggers the push
            snap = await b.wait_for(lambda s: extra.with_peer_id(a.peer_id) in (
                s.peer(a.peer_id).addrs if s.peer(a.peer_id) else ()))  # type: ignore[union-attr]
            assert len(snap.connections) == 1  # pushed on the existing connection
            assert a.statistics().identify.pushes_sent >= 1
            assert b.statistics().identify_responder.pushes_received >= 1
            assert b.statistics().identify.identified >= 2  # the answer, then the push
