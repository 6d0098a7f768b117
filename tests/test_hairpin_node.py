"""Hairpinning end to end over the in-memory network, in virtual time.

The client sits behind a one-to-one NAT (:class:`~actors.StaticNat`: inside
127.0.3.1, outside 127.0.4.1, every port forwarded), so AutoNAT servers
confirm its outside address; the NAT hairpins or not. A client without a NAT
and a firewalled one have nothing to test (``hairpinning`` stays null).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from actors import HttpApi, MemoryNetwork, Node, StaticNat, open_node
from actors.node._hairpin import dial_self
from actors.surfaces._cli_probe import ProgressPrinter, hairpin_grace_useful, wait_for_hairpin
from protocols import (
    AddressPolicy,
    HairpinOutcome,
    HairpinStatistics,
    Keypair,
    Lifecycle,
    NodeConfig,
    NodeSnapshot,
    WsAddress,
)

LOOPBACK = AddressPolicy(allow_loopback=True)
INSIDE, OUTSIDE = "127.0.3.1", "127.0.4.1"


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


@asynccontextmanager
async def _servers(net: MemoryNetwork, count: int = 3) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_node(
            _config(f"127.0.1.{i}"), transport=net.transport(f"127.0.1.{i}")))
            for i in range(1, count + 1)]


async def _verdict(client: Node, servers: list[Node], verdict: str = "public") -> None:
    """Connect to every server and wait for ``verdict`` (behind the NAT the inside address
    may be found unreachable before the outside one reachable: private comes first)."""
    for server in servers:
        await client.connect(server.listen_addrs[0])
    await client.wait_for(lambda s: s.nat_status == verdict)


@pytest.mark.parametrize("hairpin", [True, False])
async def test_behind_a_nat_the_node_tests_its_confirmed_external_address(
        autojump_clock: trio.testing.MockClock, hairpin: bool) -> None:
    net = MemoryNetwork(nats=[StaticNat(INSIDE, OUTSIDE, hairpin=hairpin)])
    with trio.fail_after(60):
        async with _servers(net) as servers, open_node(
                _config(INSIDE), transport=net.transport(INSIDE)) as client:
            await _verdict(client, servers)
            started = trio.current_time()
            await wait_for_hairpin(client, ProgressPrinter(None), 2.0)  # as autonat probe does
            assert trio.current_time() - started < 0.5
            snap = client.snapshot()
            assert snap.hairpinning is not None
            port = client.listen_addrs[0].port
            external = WsAddress.parse(f"/ip4/{OUTSIDE}/tcp/{port}/ws")
            assert snap.nat_status == "public"
            assert snap.reachable_addrs == (external,)
            assert snap.hairpinning is hairpin
            stats = client.statistics()
            assert stats.hairpin is not None
            assert stats.hairpin.target == external and stats.hairpin.tests == 1
            assert not stats.hairpin.pending
            # recognised and closed on the listening side, never a peer connection
            assert stats.dialer.self_connections == (1 if hairpin else 0)
            assert client.peer_id not in snap.connected_peers
            assert client.snapshot().peer(client.peer_id) is None
            # the test dialed from a fresh port, not the listen port
            [test_dial] = [d for d in net.dials if d.local.host == INSIDE
                           and d.remote.host == OUTSIDE]
            assert test_dial.local.port != port
            # every surface reads the one value
            api = HttpApi(client)
            status = json.loads(api.respond("GET", "/status").body)
            assert status["hairpinning"] is hairpin
            metrics = api.respond("GET", "/metrics").body.decode()
            assert f'autonat_hairpinning{{hairpinning="{str(hairpin).lower()}"}} 1.0' in metrics
            assert 'autonat_hairpinning{hairpinning="unknown"} 0.0' in metrics
            # one test per address: nothing more while it stays
            await trio.sleep(30)
            assert client.statistics().hairpin.tests == 1  # type: ignore[union-attr]


async def test_without_a_nat_there_is_nothing_to_test(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _verdict(client, servers)
            await trio.sleep(30)
            snap = client.snapshot()
            assert snap.nat_status == "public" and snap.hairpinning is None
            stats = client.statistics().hairpin
            assert stats is not None and stats.target is None and stats.tests == 0
            assert not [d for d in net.dials if d.local.host == "127.0.0.9"
                        and d.remote.host == "127.0.0.9"]


async def test_a_private_node_has_nothing_to_test(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(dial_filter=lambda source, destination: (
        "dropped by firewall" if destination.host == "127.0.0.9" else None))
    with trio.fail_after(60):
        async with _servers(net) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _verdict(client, servers, "private")
            await trio.sleep(30)
            snap = client.snapshot()
            assert snap.nat_status == "private" and snap.hairpinning is None
            assert client.statistics().hairpin.tests == 0  # type: ignore[union-attr]


async def test_dial_self_tells_ourselves_from_someone_else_and_from_nothing(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    config = _config("127.0.0.9")
    with trio.fail_after(30):
        async with _servers(net, 1) as [other], open_node(
                config, transport=net.transport("127.0.0.9")) as node:
            transport, keys = net.transport("127.0.0.9"), node.keypair
            ours = node.listen_addrs[0].with_peer_id(None)
            outcome, _ = await dial_self(transport, keys, config, ours)
            assert outcome is HairpinOutcome.SELF
            outcome, detail = await dial_self(transport, keys, config,
                                              other.listen_addrs[0].with_peer_id(None))
            assert outcome is HairpinOutcome.OTHER_PEER and str(other.peer_id) in detail
            nothing = WsAddress.parse("/ip4/127.0.0.77/tcp/1/ws")
            outcome, _ = await dial_self(transport, keys, config, nothing)
            assert outcome is HairpinOutcome.FAILED
            # neither end kept a connection to us, nor counted the impostor as a peer
            await trio.sleep(1)
            assert node.peer_id not in node.snapshot().connected_peers
            assert node.statistics().dialer.self_connections == 1
            assert Keypair  # imported for the type of node.keypair


async def test_a_nat_model_rewrites_sources_and_hides_the_inside_host(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(nats=[StaticNat(INSIDE, OUTSIDE, hairpin=False)])
    with trio.fail_after(30):
        async with _servers(net, 1) as [server], open_node(
                _config(INSIDE), transport=net.transport(INSIDE)) as client:
            info = await client.connect(server.listen_addrs[0])
            assert info.local_addr.host == INSIDE
            seen = await server.wait_for(lambda s: bool(s.connections))
            assert seen.connections[0].remote_addr.host == OUTSIDE
            direct = client.listen_addrs[0].with_peer_id(None)
            outcome, detail = await dial_self(net.transport("127.0.1.1"), server.keypair,
                                              server.config, direct)
            assert outcome is HairpinOutcome.FAILED and "behind a NAT" in detail


async def test_a_nat_that_drops_the_test_bounds_the_probe_wait_then_says_false(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(nats=[StaticNat(INSIDE, OUTSIDE, hairpin=False, drop=True)])
    with trio.fail_after(60):
        async with _servers(net) as servers, open_node(
                _config(INSIDE), transport=net.transport(INSIDE)) as client:
            await _verdict(client, servers)
            started = trio.current_time()
            await wait_for_hairpin(client, ProgressPrinter(None), 2.0)
            assert 2.0 <= trio.current_time() - started < 2.1  # the grace, not the timeout
            assert client.snapshot().hairpinning is None
            snap = await client.wait_for(lambda s: s.hairpinning is not None)
            assert snap.hairpinning is False
            assert 4.9 <= trio.current_time() - started <= 5.5  # the test's own timeout


EXT = WsAddress.parse(f"/ip4/{OUTSIDE}/tcp/44000/ws")
SNAP = NodeSnapshot(peer_id=Keypair.generate().peer_id, lifecycle=Lifecycle.CONNECTED,
                    lifecycle_since=0.0, listen_addrs=(), peers=(), connections=(),
                    observed_addrs=(), started_at=0.0, updated_at=0.0, revision=1)
IDLE = HairpinStatistics(target=None, hairpinning=None, running=False, tests=0)


@pytest.mark.parametrize(("stats", "in_snapshot", "useful"), [
    (None, None, False),
    (IDLE, None, False),  # no confirmed external address: nothing to wait for
    (HairpinStatistics(EXT, None, running=True, tests=0), None, True),
    (HairpinStatistics(EXT, None, running=False, tests=0, next_test_at=5.0), None, True),
    (HairpinStatistics(EXT, True, running=False, tests=1), None, True),  # on its way
    (HairpinStatistics(EXT, True, running=False, tests=1), True, False),
    (HairpinStatistics(EXT, None, running=False, tests=3), None, False),  # gave up
])
def test_hairpin_grace_is_spent_only_while_a_result_can_come(
        stats: HairpinStatistics | None, in_snapshot: bool | None, useful: bool) -> None:
    snap = NodeSnapshot(**{**SNAP.__dict__, "hairpinning": in_snapshot})
    assert hairpin_grace_useful(snap, stats) is useful


def test_hairpin_grace_waits_for_a_tester_that_has_not_seen_the_verdict_yet() -> None:
    inside = WsAddress.parse(f"/ip4/{INSIDE}/tcp/0/ws")
    snap = NodeSnapshot(**{**SNAP.__dict__, "reachable_addrs": (EXT,), "local_ips": (inside,)})
    assert hairpin_grace_useful(snap, IDLE)  # the verdict is out, the test not yet
    no_nat = NodeSnapshot(**{**snap.__dict__, "local_ips": (
        WsAddress.parse(f"/ip4/{OUTSIDE}/tcp/0/ws"),)})
    assert not hairpin_grace_useful(no_nat, IDLE)  # our own address: nothing to test
