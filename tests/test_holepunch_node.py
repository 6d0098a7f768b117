"""Hole punching inside nodes (memory network, virtual time): a relayed connection
becomes a direct, registered one; an endpoint-dependent mapping is skipped with the
reason and the relayed connection stays; the protocol is served on relayed
connections only, once per connection."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing

from actors import (
    Connection,
    MemoryNetwork,
    Node,
    Stream,
    StreamReset,
    node_registry,
    open_connection,
    render_metrics,
)
from actors.node._relay_circuit import accept_relayed, reserve
from actors.surfaces import HttpApi
from protocols import Keypair, WsAddress
from protocols.holepunch import (
    HOLEPUNCH_PROTOCOL_ID,
    HolePunchConnect,
    HolePunchRole,
    PunchOutcome,
    decode_holepunch_message,
)
from protocols.relay import STOP_PROTOCOL_ID, CircuitAddress
from tests.node_fixtures import memory_node as node


class PortRestrictedNat:
    """What a NAT with port-restricted filtering lets in, for the hosts behind it: a
    dial to ``host:port`` passes only if ``host`` dialed the dialer's exact address
    from ``port`` within ``window`` seconds (so a lone SYN is dropped, and the second
    of two simultaneous punches passes); dials out always pass."""

    def __init__(self, *hosts: str, window: float = 30.0) -> None:
        self.hosts = set(hosts)
        self.window = window
        self.sent: dict[tuple[str, int, str, int], float] = {}
        self.dropped: list[tuple[WsAddress, WsAddress]] = []

    def __call__(self, local: WsAddress, remote: WsAddress) -> str | None:
        now = trio.current_time()
        if local.host in self.hosts:
            self.sent[(local.host, local.port, remote.host, remote.port)] = now
        if remote.host not in self.hosts:
            return None
        at = self.sent.get((remote.host, remote.port, local.host, local.port))
        if at is not None and now - at <= self.window:
            return None
        self.dropped.append((local, remote))
        return "dropped by the NAT (no mapping towards the dialer)"


async def observed(n: Node) -> None:
    await n.wait_for(lambda s: bool(s.observed_addrs))


async def test_a_relayed_connection_is_replaced_by_a_hole_punched_one(
        autojump_clock: trio.testing.MockClock) -> None:
    nat = PortRestrictedNat("127.0.0.2", "127.0.0.3")  # b and a, each behind its NAT
    net = MemoryNetwork(dial_filter=nat)
    with trio.fail_after(120):
        async with node(net, "127.0.0.1", relay_service=True) as relay, \
                node(net, "127.0.0.2") as b, node(net, "127.0.0.3") as a:
            await b.reserve_relay(relay.listen_addrs[0])
            [circuit] = b.relay_addrs()
            await a.connect(relay.listen_addrs[0])
            await observed(a)
            await observed(b)
            with pytest.raises(Exception, match="dropped by the NAT"):
                await a.connect(b.listen_addrs[0], timeout=5)  # no way in unsolicited
            assert a.hole_punch is not None and b.hole_punch is not None
            async with a.dial_relayed(circuit) as relayed:
                report = await a.hole_punch.next_report(b.peer_id, None)
                assert (report.outcome, report.role) == (PunchOutcome.DIRECT,
                                                         HolePunchRole.RESPONDER)
                assert report.attempts == 1
                b_report = await b.hole_punch.next_report(a.peer_id, None)
                assert b_report.outcome is PunchOutcome.DIRECT
                assert b_report.role is HolePunchRole.INITIATOR
                assert b_report.rtt is not None
                # the direct connection is the registered one, both ends
                [info] = a.snapshot().connections_to(b.peer_id)
                assert info.remote_addr.host == "127.0.0.2"
                assert b.snapshot().connections_to(a.peer_id)
                punched = [c for n in (a, b) for c in n.snapshot().connections if c.hole_punched]
                assert len(punched) == 1
                assert (await a.connect(b.listen_addrs[0])).connection_id == info.connection_id
                # the relayed connection stays until it ends
                assert relayed.relayed and not relayed.closed.is_set()
                status = json.loads(HttpApi(a).respond("GET", "/status").body)
                assert status["hole_punched_peers"] == [str(b.peer_id)]
                assert "relayed_peers" not in status  # connected directly too
                text = render_metrics(node_registry(a)).decode()
                assert 'autonat_hole_punches_total{outcome="direct"} 1.0' in text
                assert 'autonat_connection_paths{path="hole-punched"} 1.0' in text
                assert "autonat_hole_punch_time_to_direct_seconds_count 1.0" in text
            stats = a.statistics().hole_punch
            assert stats is not None and stats.outcomes["direct"] == 1
            assert stats.time_to_direct_count == 1
            b_stats = b.statistics()
            assert b_stats.hole_punch is not None and b_stats.hole_punch.attempts == 1
            assert b_stats.dialer.punches_started >= 1  # a may see b's punch before its own


async def _raw_b(stack: AsyncExitStack, net: MemoryNetwork, relay: Node, key: Keypair,
                 peer_connect: HolePunchConnect,
                 got: list[HolePunchConnect]) -> CircuitAddress:
    """A hand-driven private peer: reserves on ``relay``, accepts a relayed connection,
    opens the hole-punch stream as the initiator with ``peer_connect``, records the
    answer and holds the connection open."""

    async def target(stream: Stream[Connection]) -> None:
        async with accept_relayed(stream, key, timeout=5) as conn:
            punch = await conn.open_stream(HOLEPUNCH_PROTOCOL_ID)
            await punch.send(peer_connect.to_wire())
            answer = decode_holepunch_message(await punch.receive())
            assert isinstance(answer, HolePunchConnect)
            got.append(answer)
            await conn.closed.wait()

    stream = await stack.enter_async_context(net.transport("127.0.0.2").dial(
        relay.listen_addrs[0]))
    client = await stack.enter_async_context(open_connection(
        stream, key, initiator=True, expected_peer=relay.peer_id,
        handlers={STOP_PROTOCOL_ID: target}))
    answer = await reserve(client, timeout=5)
    assert answer.reservation is not None
    return CircuitAddress(WsAddress.parse(answer.reservation.addrs[0]), key.peer_id)


async def test_an_endpoint_dependent_mapping_is_skipped_and_the_relayed_connection_stays(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    key_b = Keypair.generate()
    got: list[HolePunchConnect] = []
    symmetric = HolePunchConnect.of((WsAddress.parse("/ip4/127.0.0.2/tcp/5000/ws"),),
                                    "endpoint-dependent")
    with trio.fail_after(60):
        async with node(net, "127.0.0.1", relay_service=True) as relay, \
                node(net, "127.0.0.3") as a, AsyncExitStack() as stack:
            circuit = await _raw_b(stack, net, relay, key_b, symmetric, got)
            await a.connect(relay.listen_addrs[0])
            await observed(a)
            assert a.hole_punch is not None
            async with a.dial_relayed(circuit) as relayed:
                report = await a.hole_punch.next_report(key_b.peer_id, None)
                assert report.outcome is PunchOutcome.SKIPPED
                assert "endpoint-dependent" in report.reason
                assert report.attempts == 1
                await trio.sleep(10)
                [ours] = got  # a answered with its own addresses before deciding
                assert ours.addrs and ours.mapping == a.snapshot().nat_mapping
                assert not relayed.closed.is_set()
                assert not a.snapshot().connections_to(key_b.peer_id)
                status = json.loads(HttpApi(a).respond("GET", "/status").body)
                assert status["relayed_peers"] == [str(key_b.peer_id)]
                text = render_metrics(node_registry(a)).decode()
                assert 'autonat_hole_punches_total{outcome="skipped"} 1.0' in text
                assert 'autonat_connection_paths{path="relayed"} 1.0' in text
            stats = a.statistics()
            assert stats.hole_punch is not None and stats.hole_punch.outcomes["skipped"] == 1
            assert stats.dialer.punches_started == 0


async def test_the_protocol_is_refused_on_a_direct_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    key = Keypair.generate()
    with trio.fail_after(60):
        async with node(net, "127.0.0.1") as a, AsyncExitStack() as stack:
            stream = await stack.enter_async_context(
                net.transport("127.0.0.2").dial(a.listen_addrs[0]))
            conn = await stack.enter_async_context(open_connection(
                stream, key, initiator=True, expected_peer=a.peer_id))
            punch = await conn.open_stream(HOLEPUNCH_PROTOCOL_ID)
            with pytest.raises(StreamReset, match="unsupported-protocol"):
                await punch.request(HolePunchConnect((), "unknown").to_wire(), timeout=5)
            stats = a.statistics().hole_punch
            assert stats is not None and stats.refused == 1
