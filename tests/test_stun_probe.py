"""``autonat probe``'s UDP grace: spent only while a STUN measurement can still come, and a
peer that leaves takes its STUN server with it."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import replace

import pytest
import trio

from actors import open_node
from actors.surfaces._cli_probe import udp_grace_useful
from protocols import AddressPolicy, Keypair, Lifecycle, NodeConfig, NodeSnapshot
from protocols.stun import NatBehaviour, UdpDiscoveryStatistics, UdpProfile

EI = NatBehaviour.ENDPOINT_INDEPENDENT
SNAP = NodeSnapshot(peer_id=Keypair.generate().peer_id, lifecycle=Lifecycle.CONNECTED,
                    lifecycle_since=0.0, listen_addrs=(), peers=(), connections=(),
                    observed_addrs=(), started_at=0.0, updated_at=0.0, revision=1)
IDLE = UdpDiscoveryStatistics(servers=0, running=False, runs=0, complete=0, next_run_at=None)


@pytest.mark.parametrize(("udp", "profile", "useful"), [
    (None, None, False),  # discovery off: never wait
    (IDLE, None, False),  # no STUN server known: the TCP verdict is not slowed
    (replace(IDLE, servers=1), None, True),  # known, not run yet
    (replace(IDLE, servers=1, running=True), None, True),
    (replace(IDLE, servers=1, running=True), UdpProfile(EI, EI), False),  # already measured
    (replace(IDLE, servers=1, runs=1, next_run_at=31.0, alternates=1), None,
     False),  # backing off
    (replace(IDLE, servers=2, runs=1, next_run_at=11.0, alternates=1), None,
     True),  # next server in 1 s
    (replace(IDLE, servers=2, runs=1, next_run_at=11.0), None,
     False),  # behind a NAT, no alternate anywhere: another run learns nothing more
    (replace(IDLE, servers=1, running=True, alternates=1),
     UdpProfile(NatBehaviour.NONE, NatBehaviour.UNKNOWN), True),  # a run may complete it
    (replace(IDLE, servers=3, runs=1, next_run_at=11.0),
     UdpProfile(NatBehaviour.NONE, NatBehaviour.UNKNOWN), False),  # no alternate: no filtering
])
def test_udp_grace_is_spent_only_while_a_measurement_can_come(
        udp: UdpDiscoveryStatistics | None, profile: UdpProfile | None, useful: bool) -> None:
    snap = SNAP if profile is None else replace(SNAP, udp=profile)
    assert udp_grace_useful(snap, udp, now=10.0) is useful


async def test_a_peer_that_leaves_takes_its_stun_server_along() -> None:
    loopback = AddressPolicy(allow_loopback=True)
    boot_config = NodeConfig.from_settings(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=loopback,
                                           http_listen="", stun_listen="127.0.0.1:0")
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            node = await stack.enter_async_context(open_node(NodeConfig.from_settings(
                listen=("/ip4/127.0.0.3/tcp/0/ws",), policy=loopback, http_listen="")))
            async with open_node(boot_config) as boot:
                await node.connect(boot.listen_addrs[0])
                await node.wait_for(lambda s: s.udp.mapping is NatBehaviour.NONE)
                stats = node.statistics().udp_discovery
                assert stats is not None and stats.servers == 1
            await node.wait_for(lambda s: not s.connected_peers)
            while (stats := node.statistics().udp_discovery) is not None and stats.servers:
                await trio.sleep(0.01)
            assert node.snapshot().udp.mapping is NatBehaviour.NONE  # the measurement stays
