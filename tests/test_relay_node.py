"""The relay service inside a node (memory network, virtual time): on only with
``relay_service``, advertised in Identify, counted in statistics() and /metrics; a
relayed connection through a running node."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    ConnectError,
    Connection,
    MemoryNetwork,
    Node,
    Stream,
    StreamReset,
    node_registry,
    open_connection,
    open_node,
    render_metrics,
)
from actors.node._relay_circuit import (
    accept_relayed,
    dial_circuit,
    reserve,
)
from actors.surfaces import HttpApi
from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    Identify,
    Keypair,
    NodeConfig,
    NodeSnapshot,
    WsAddress,
)
from protocols.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    CircuitAddress,
    RelayStatus,
    StopConnect,
    StopStatus,
)
from tests.node_fixtures import loopback_config
from tests.node_fixtures import memory_node as node


async def raw_client(stack: AsyncExitStack, net: MemoryNetwork, host: str, to: Node,
                     key: Keypair, handlers: dict[str, Any] | None = None) -> Connection:
    stream = await stack.enter_async_context(net.transport(host).dial(to.listen_addrs[0]))
    return await stack.enter_async_context(open_connection(
        stream, key, initiator=True, expected_peer=to.peer_id, handlers=handlers))


def advertises_hop(relay: Node) -> Callable[[NodeSnapshot], bool]:
    def check(snapshot: NodeSnapshot) -> bool:
        record = snapshot.peer(relay.peer_id)
        return record is not None and HOP_PROTOCOL_ID in record.protocols
    return check


async def test_a_relay_node_reserves_relays_and_counts(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    key_b, key_a = Keypair.generate(), Keypair.generate()
    accepted: list[Connection] = []

    async def target(stream: Stream[Connection]) -> None:
        async with accept_relayed(stream, key_b, timeout=5) as conn:
            accepted.append(conn)
            await conn.closed.wait()

    with trio.fail_after(60):
        async with node(net, "127.0.0.1", relay_service=True) as relay, \
                node(net, "127.0.0.4") as plain, AsyncExitStack() as stack:
            await plain.connect(relay.listen_addrs[0])
            await plain.wait_for(advertises_hop(relay))
            b = await raw_client(stack, net, "127.0.0.2", relay, key_b,
                                 {STOP_PROTOCOL_ID: target})
            answer = await reserve(b, timeout=5)
            assert answer.reservation is not None
            relay_addr = WsAddress.parse(answer.reservation.addrs[0])
            assert relay_addr == relay.listen_addrs[0]
            circuit = CircuitAddress(relay_addr, key_b.peer_id)
            a = await raw_client(stack, net, "127.0.0.3", relay, key_a)
            async with dial_circuit(a, circuit.target, key_a) as conn:
                assert conn.peer_id == key_b.peer_id
                await trio.sleep(1)
                stats = relay.statistics().relay
                assert stats is not None
                assert (stats.rules.reservations, stats.rules.circuits) == (1, 1)
                text = render_metrics(node_registry(relay)).decode()
                assert "autonat_relay_reservations 1.0" in text
                assert "autonat_relay_circuits 1.0" in text
                assert 'autonat_relay_circuit_requests_total{outcome="admitted"} 1.0' in text
            assert [c.peer_id for c in accepted] == [key_a.peer_id]
            assert plain.statistics().relay is None
            text = render_metrics(node_registry(plain)).decode()
            assert "autonat_relay_reservations 0.0" in text


async def test_a_node_without_the_service_refuses_hop_streams(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with node(net, "127.0.0.1") as plain, AsyncExitStack() as stack:
            client = await raw_client(stack, net, "127.0.0.2", plain, Keypair.generate())
            with pytest.raises(StreamReset, match="unsupported-protocol"):
                await reserve(client, timeout=5)


async def test_two_nodes_connected_only_through_a_relay_exchange_identify(
        autojump_clock: trio.testing.MockClock) -> None:
    # b and a are private: firewalls refuse every dial towards them (a may still learn
    # b's address, e.g. by peer exchange once the relay dialed b back, and try it; and
    # they try to hole-punch, which these firewalls defeat)
    net = MemoryNetwork(dial_filter=lambda local, remote: (
        "firewall" if remote.host in ("127.0.0.2", "127.0.0.3") else None))
    with trio.fail_after(60):
        async with node(net, "127.0.0.1", relay_service=True) as relay, \
                node(net, "127.0.0.2", agent_version="private-b/1") as b, \
                node(net, "127.0.0.3") as a:
            reservation = await b.reserve_relay(relay.listen_addrs[0])
            assert reservation.relay == relay.peer_id
            [circuit] = b.relay_addrs()
            assert str(circuit) == f"{relay.listen_addrs[0]}/p2p-circuit/p2p/{b.peer_id}"
            async with a.dial_relayed(str(circuit)) as conn:
                assert conn.peer_id == b.peer_id and conn.relayed
                stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
                reply = Identify.from_wire(await stream.request({}, timeout=5))
                assert reply.agent_version == "private-b/1"
                assert reply.public_key == b.keypair.public_key.to_protobuf()
                assert reply.observed_addr is None  # a circuit has no observed address
                assert DIAL_REQUEST_PROTOCOL_ID in reply.protocols  # b's own list, but ...
                with pytest.raises(StreamReset, match="unsupported-protocol"):
                    # ... never served over a relay: a dial-back would prove nothing
                    probe = await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID)
                    await probe.request({"type": "dial-request", "addrs": [b"x"], "nonce": 1},
                                        timeout=5)
                assert a.hole_punch is not None  # the firewalls defeat every punch
                report = await a.hole_punch.next_report(b.peer_id, None)
                assert (report.outcome.value, report.attempts) == ("failed", 3)
                assert "attempts failed" in report.reason
                assert not conn.closed.is_set()  # the relayed connection stays
                # the snapshots show the path: a circuit address, a relayed-only peer
                snap_a = await a.wait_for(lambda s: b.peer_id in s.relayed_peers)
                assert b.peer_id not in snap_a.connected_peers
                snap_b = await b.wait_for(lambda s: a.peer_id in s.relayed_peers)
                assert snap_b.relay_addrs == (circuit,)
            # once the relayed connection ended, the peers are no longer relayed
            await a.wait_for(lambda s: b.peer_id not in s.relayed_peers)
            await b.wait_for(lambda s: a.peer_id not in s.relayed_peers)
            # a and b never connected directly
            assert b.peer_id not in {c.peer_id for c in a.snapshot().connections}
            assert a.peer_id not in {c.peer_id for c in b.snapshot().connections}
            stats_b, stats_a = b.statistics().relay_client, a.statistics().relay_client
            assert stats_b is not None and stats_b.accepted == 1
            assert stats_a is not None and stats_a.dialed == 1
            text = render_metrics(node_registry(b)).decode()
            assert "autonat_relay_client_reservations 1.0" in text
            assert 'autonat_relay_client_connections_total{direction="inbound"} 1.0' in text


async def test_a_node_accepts_stop_streams_only_from_relays_it_reserved_on(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with node(net, "127.0.0.1") as plain, AsyncExitStack() as stack:
            client = await raw_client(stack, net, "127.0.0.2", plain, Keypair.generate())
            stream = await client.open_stream(STOP_PROTOCOL_ID)
            reply = await stream.request(
                StopConnect(Keypair.generate().peer_id.to_bytes()).to_wire(), timeout=5)
            assert StopStatus.from_wire(reply).status is RelayStatus.PERMISSION_DENIED
            stats = plain.statistics().relay_client
            assert stats is not None and stats.refused_stops == 1


async def test_reserving_on_a_node_without_the_service_is_a_connect_error(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with node(net, "127.0.0.1") as plain, node(net, "127.0.0.2") as b:
            with pytest.raises(ConnectError, match="unsupported-protocol"):
                await b.reserve_relay(plain.listen_addrs[0])
            assert b.relay_addrs() == ()


def _firewall(*blocked_hosts: str) -> Any:
    def refuse(source: WsAddress, destination: WsAddress) -> str | None:
        return "dropped by firewall" if destination.host in blocked_hosts else None
    return refuse


async def _run_node(net: MemoryNetwork, host: str, stop: trio.Event, settings: dict[str, Any],
                    *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
    async with node(net, host, **settings) as running:
        task_status.started(running)
        await stop.wait()


async def test_a_private_node_reserves_on_two_relays_renews_and_replaces_them(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(dial_filter=_firewall("127.0.0.9"))
    stops = [trio.Event() for _ in range(3)]
    settings = {"relay_service": True, "relay_reservation_ttl": 60.0}
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            relays: list[Node] = [
                await nursery.start(_run_node, net, f"127.0.1.{i + 1}", stops[i], settings)
                for i in range(3)]
            async with node(net, "127.0.0.9", agent_version="private/1") as private, \
                    node(net, "127.0.0.5") as other:
                for relay in relays:
                    await private.connect(relay.listen_addrs[0])
                await private.wait_for(lambda s: s.nat_status == "private")
                while len({a.relay_peer for a in private.relay_addrs()}) < 2:
                    await trio.sleep(0.1)
                held = {a.relay_peer for a in private.relay_addrs()}
                status = json.loads(HttpApi(private).respond("GET", "/status").body)
                assert sorted(status["relay_addrs"]) == sorted(map(str, private.relay_addrs()))
                assert not any("p2p-circuit" in a for a in status["peer_addrs"])
                # other nodes can dial the advertised address, and see it in Identify
                circuit = private.relay_addrs()[0]
                async with other.dial_relayed(circuit) as conn:
                    stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
                    reply = Identify.from_wire(await stream.request({}, timeout=5))
                    assert reply.agent_version == "private/1"
                    assert circuit.to_bytes() in reply.listen_addrs
                # renewed halfway through the ttl
                await trio.sleep(40)
                for relay in relays:
                    stats = relay.statistics().relay
                    assert stats is not None
                    assert (stats.rules.reservations_renewed >= 1) == (relay.peer_id in held)
                # a lost relay is replaced by the third one
                lost = next(i for i, r in enumerate(relays) if r.peer_id in held)
                spare = next(r for r in relays if r.peer_id not in held)
                stops[lost].set()
                while spare.peer_id not in {a.relay_peer for a in private.relay_addrs()}:
                    await trio.sleep(0.5)
                assert relays[lost].peer_id not in {a.relay_peer for a in private.relay_addrs()}
                stats_client = private.statistics().relay_client
                assert stats_client is not None and stats_client.planner is not None
                assert stats_client.planner.lost == 1
            for stop in stops:
                stop.set()


async def test_a_relayed_connection_over_real_websockets_on_loopback() -> None:
    # real sockets need the real clock: bounded by fail_after, no sleeps
    def config(host: str, **settings: Any) -> NodeConfig:
        return loopback_config(host, http_listen="", **settings)

    with trio.fail_after(30):
        async with open_node(config("127.0.0.10", relay_service=True)) as relay, \
                open_node(config("127.0.0.11", agent_version="behind-nat/1")) as b, \
                open_node(config("127.0.0.12")) as a:
            await b.reserve_relay(relay.listen_addrs[0])
            [circuit] = b.relay_addrs()
            async with a.dial_relayed(circuit) as conn:
                assert conn.peer_id == b.peer_id
                stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
                reply = Identify.from_wire(await stream.request({}, timeout=5))
                assert reply.agent_version == "behind-nat/1"
            stats = relay.statistics().relay
            assert stats is not None and stats.rules.bytes_relayed > 0


async def test_circuit_addresses_are_dropped_when_the_node_becomes_public(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(dial_filter=_firewall("127.0.0.9"))
    with trio.fail_after(7200):
        async with AsyncExitStack() as stack:
            relays = [await stack.enter_async_context(
                node(net, f"127.0.1.{i}", relay_service=True)) for i in (1, 2, 3)]
            private = await stack.enter_async_context(node(net, "127.0.0.9"))
            for relay in relays:
                await private.connect(relay.listen_addrs[0])
            await private.wait_for(lambda s: s.nat_status == "private")
            while len(private.relay_addrs()) < 2:
                await trio.sleep(0.1)
            net.dial_filter = None  # the port forward is fixed: dial-backs now arrive
            await private.wait_for(lambda s: s.nat_status == "public")
            while private.relay_addrs():  # the relay client follows the snapshot it saw
                await trio.sleep(0.1)
            status = json.loads(HttpApi(private).respond("GET", "/status").body)
            assert "relay_addrs" not in status


async def test_dialing_a_circuit_the_relay_refuses_is_a_connect_error(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with node(net, "127.0.0.1", relay_service=True) as relay, \
                node(net, "127.0.0.3") as a:
            nobody = Keypair.generate().peer_id
            with pytest.raises(ConnectError, match="NO_RESERVATION"):
                async with a.dial_relayed(CircuitAddress(relay.listen_addrs[0], nobody)):
                    pass  # pragma: no cover - refused


async def test_connected_peers_are_pushed_new_circuit_addresses(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with node(net, "127.0.0.1", relay_service=True) as relay, \
                node(net, "127.0.0.2") as b, node(net, "127.0.0.3") as c:
            await b.connect(relay.listen_addrs[0])
            await b.connect(c.listen_addrs[0])
            await trio.sleep(5)  # identified, probed: quiet
            pushes = b.statistics().identify.pushes_sent
            received = c.statistics().identify_responder.pushes_received
            await b.reserve_relay(relay.listen_addrs[0])
            await trio.sleep(1)
            assert b.statistics().identify.pushes_sent == pushes + 2  # the relay and c
            assert c.statistics().identify_responder.pushes_received == received + 1
