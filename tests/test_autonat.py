"""AutoNAT end to end over the in-memory network, in virtual time.

The memory network's ``dial_filter`` plays the firewall: it refuses dials
to a host, exactly like a NAT or a host firewall drops unsolicited inbound
connections. Raw dial requests go over bare authenticated connections so the
server's behaviour can be checked message by message.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import pytest
import trio

from actors import (
    EXCHANGE_FAILURES,
    MemoryNetwork,
    MemoryTransport,
    Node,
    open_connection,
    open_node,
)
from actors.connection._connection import Connection
from actors.node._autonat_probe import AutonatProbe, AutonatState
from actors.node._dialback import DialBackReceiver, PendingProbe
from actors.node._messages import AutonatInput, ConnectionGone, ConnectionOpened, TrackerEvent
from actors.node._sweep import MIN_SWEEP_SIZE
from actors.runtime import Mailbox, Watch
from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    AddressPolicy,
    AutonatClientConfig,
    ConnectionInfo,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    Direction,
    Keypair,
    Lifecycle,
    NodeConfig,
    NodeModel,
    PathStats,
    PeerIdentified,
    ProbeScheduler,
    ResponseStatus,
    WsAddress,
    decode_autonat_message,
    dial_data_chunks,
    plan_dial_back,
)

LOOPBACK = AddressPolicy(allow_loopback=True)


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


@asynccontextmanager
async def _cluster(net: MemoryNetwork, servers: int,
                   **server_overrides: Any) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            open_node(_config(f"127.0.1.{i}", **server_overrides),
                      transport=net.transport(f"127.0.1.{i}")))
            for i in range(1, servers + 1)]


async def _connect_all(client: Node, servers: list[Node]) -> None:
    for server in servers:
        await client.connect(server.listen_addrs[0])


def _firewall(*blocked_hosts: str) -> Any:
    def refuse(source: WsAddress, destination: WsAddress) -> str | None:
        return "dropped by firewall" if destination.host in blocked_hosts else None
    return refuse


async def test_reachable_node_becomes_public_from_real_dial_backs(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _connect_all(client, servers)
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            assert snap.nat_status == "public"
            assert snap.reachable_addrs == (client.listen_addrs[0].with_peer_id(None),)
            stats = client.statistics()
            assert stats.probes.get("reachable", 0) >= 2
            assert stats.dial_back.verified >= 2
            # the dial-backs came as fresh connections from the servers to our listener
            backs = [d for d in net.dials if d.remote.host == "127.0.0.9"]
            assert len(backs) >= 2
            assert all(d.local.port != servers[0].listen_addrs[0].port for d in backs)


async def test_firewalled_node_becomes_private(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(dial_filter=_firewall("127.0.0.9"))
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _connect_all(client, servers)
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            assert snap.nat_status == "private"
            assert snap.unreachable_addrs == (client.listen_addrs[0].with_peer_id(None),)
            assert client.statistics().probes.get("unreachable", 0) >= 2


async def test_first_verdict_needs_no_boot_delay(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            start = trio.current_time()
            await _connect_all(client, servers)
            await client.wait_for(lambda s: s.nat_status != "unknown")
            # zero-latency network: only protocol steps, no timers, on the way
            assert trio.current_time() - start < 0.5


async def test_servers_that_say_ok_without_dialing_back_cannot_make_us_public(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    net = MemoryNetwork(dial_filter=_firewall("127.0.0.9"))
    with trio.fail_after(120):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            for server in servers:
                async def lie(*args: Any, **kwargs: Any) -> DialStatus:
                    return DialStatus.OK
                monkeypatch.setattr(server._server, "_dial_back", lie)
            await _connect_all(client, servers)
            await trio.sleep(60)
            snap = client.snapshot()
            assert snap.nat_status == "unknown"
            assert snap.reachable_addrs == ()
            assert client.statistics().probes.get("lied", 0) >= 3
            assert client.statistics().probes.get("reachable", 0) == 0


@asynccontextmanager
async def _bare(net: MemoryNetwork, host: str, server: Node) -> AsyncIterator[Connection]:
    """An authenticated connection to ``server`` from a bare keypair (no node behind it)."""
    async with net.transport(host).dial(server.listen_addrs[0]) as frames, open_connection(
            frames, Keypair.generate(), initiator=True, expected_peer=server.peer_id) as conn:
        yield conn


async def _request(conn: Connection, addr: str) -> tuple[DialResponse | DialDataRequest, Any]:
    stream = await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID)
    await stream.send(DialRequest(addrs=(WsAddress.parse(addr).to_bytes(),), nonce=7).to_wire())
    reply = decode_autonat_message(await stream.receive())
    assert isinstance(reply, DialResponse | DialDataRequest)
    return reply, stream


async def test_other_ip_is_never_dialed_without_dial_data(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            reply, stream = await _request(conn, "/ip4/127.0.0.99/tcp/4001/ws")
            assert isinstance(reply, DialDataRequest)
            assert 30_000 <= reply.num_bytes <= 100_000
            await stream.reset()  # the client never pays
            await trio.sleep(30)
            assert [d for d in net.dials if d.remote.host == "127.0.0.99"] == []
            assert server.statistics().autonat_server.answered == ()


async def test_other_ip_is_refused_when_configured(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 1, allow_other_ip=False) as (server,), \
                _bare(net, "127.0.0.20", server) as conn:
            reply, _ = await _request(conn, "/ip4/127.0.0.99/tcp/4001/ws")
            assert isinstance(reply, DialResponse)
            assert reply.status == ResponseStatus.E_DIAL_REFUSED
            assert [d for d in net.dials if d.remote.host == "127.0.0.99"] == []


async def test_policy_rejected_address_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            reply, _ = await _request(conn, "/ip4/10.1.2.3/tcp/4001/ws")
            assert isinstance(reply, DialResponse)
            assert reply.status == ResponseStatus.E_DIAL_REFUSED
            assert [d for d in net.dials if d.remote.host == "10.1.2.3"] == []


async def test_rate_limit_rejects_with_request_rejected(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(120):
        async with _cluster(net, 1, rate_per_peer_per_minute=2) as (server,), \
                _bare(net, "127.0.0.20", server) as conn:
            statuses = []
            for _ in range(3):  # same IP as observed: dialed at once (nothing listens there)
                reply, _ = await _request(conn, "/ip4/127.0.0.20/tcp/4001/ws")
                assert isinstance(reply, DialResponse)
                statuses.append((reply.status, reply.dial_status))
            assert statuses == [(ResponseStatus.OK, DialStatus.E_DIAL_ERROR)] * 2 + [
                (ResponseStatus.E_REQUEST_REJECTED, DialStatus.UNUSED)]
            await trio.sleep(61)  # the per-minute window slides on
            reply, _ = await _request(conn, "/ip4/127.0.0.20/tcp/4001/ws")
            assert isinstance(reply, DialResponse) and reply.status == ResponseStatus.OK


async def test_many_identities_on_one_host_cannot_take_the_servers_budget(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(120):
        async with _cluster(net, 1, rate_global_per_minute=1200, rate_per_ip_per_minute=10,
                            rate_per_subnet_per_minute=20) as (server,):
            answers: list[ResponseStatus] = []
            for _ in range(30):  # 30 fresh peer ids, all from 127.0.0.20
                async with _bare(net, "127.0.0.20", server) as conn:
                    reply, _ = await _request(conn, "/ip4/127.0.0.20/tcp/4001/ws")
                    assert isinstance(reply, DialResponse)
                    answers.append(reply.status)
            assert answers.count(ResponseStatus.OK) == 10  # the host's budget, not 30
            async with _bare(net, "127.0.9.20", server) as conn:  # another subnet: served
                reply, _ = await _request(conn, "/ip4/127.0.9.20/tcp/4001/ws")
                assert isinstance(reply, DialResponse) and reply.status == ResponseStatus.OK


async def test_a_connection_that_keeps_sending_rejected_requests_is_closed(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(120):
        async with _cluster(net, 1, rate_per_peer_per_minute=1) as (server,), \
                _bare(net, "127.0.0.20", server) as conn:
            statuses = []
            with pytest.raises(EXCHANGE_FAILURES):
                for _ in range(20):
                    reply, _ = await _request(conn, "/ip4/127.0.0.20/tcp/4001/ws")
                    assert isinstance(reply, DialResponse)
                    statuses.append(reply.status)
            assert statuses == [ResponseStatus.OK] + [ResponseStatus.E_REQUEST_REJECTED] * 8
            assert server.statistics().autonat_server.closed_for_rejections == 1


async def test_bootstrap_welcome_probe_makes_newcomer_fully_connected(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 1, welcome_probes=True) as (boot,), open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as newcomer:
            await newcomer.add_peers([boot.listen_addrs[0]], source="http://boot/status",
                                     from_bootstrap=True)
            await newcomer.wait_for(lambda s: s.lifecycle is Lifecycle.FULLY_CONNECTED)
            assert newcomer.statistics().autonat_server.total_answered >= 1
            boot_snap = boot.snapshot()
            assert boot_snap.peer(newcomer.peer_id) is not None


async def _seconds_to_private(net: MemoryNetwork) -> float:
    """How long a client at the blackholed 127.0.0.9 takes to its verdict (which must be
    private) with three servers whose ``dialback_timeout`` is 4 s."""
    with trio.fail_after(120):
        async with _cluster(net, 3, dialback_timeout=4.0) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            start = trio.current_time()
            await _connect_all(client, servers)
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            waited = trio.current_time() - start
    assert snap.nat_status == "private"
    return waited


async def test_without_a_transport_measurement_the_handshake_round_trip_plans_the_dial_back(
        autojump_clock: trio.testing.MockClock) -> None:
    # the memory transport measures nothing: the plan comes from the handshake's round
    # trip (zero here) with the most cautious loss estimate - 12 attempts 50 ms apart
    plan = plan_dial_back(PathStats.from_handshake(0.0), ceiling=4.0)
    assert len(plan.attempts) == 12 and plan.give_up_after == pytest.approx(0.6)
    waited = await _seconds_to_private(MemoryNetwork(blackholed={"127.0.0.9"}))
    assert plan.give_up_after <= waited < plan.give_up_after + 0.1  # not dialback_timeout


async def test_a_measured_path_lets_servers_give_up_after_a_few_round_trips(
        autojump_clock: trio.testing.MockClock) -> None:
    # 100 ms RTT, 20 ms variation, no loss seen: three attempts 0.1 s apart, give-up
    # after the last one's retransmission timeout (0.2 + 0.18 s), not dialback_timeout
    path = PathStats(srtt=0.1, rttvar=0.02, segments_sent=30)
    plan = plan_dial_back(path, ceiling=4.0)
    waited = await _seconds_to_private(MemoryNetwork(blackholed={"127.0.0.9"}, path=path))
    assert plan.give_up_after == pytest.approx(0.38)
    assert plan.give_up_after <= waited < plan.give_up_after + 0.1


async def test_a_path_that_is_not_the_requesters_gets_the_fixed_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    # the client asks about an address at another IP (after dial data): the request's
    # connection says nothing about that path, so the server waits dialback_timeout
    net = MemoryNetwork(blackholed={"127.0.0.77"},
                        path=PathStats(srtt=0.1, rttvar=0.02, segments_sent=30))
    with trio.fail_after(60):
        async with _cluster(net, 1, dialback_timeout=4.0) as (server,), \
                _bare(net, "127.0.0.20", server) as conn:
            reply, stream = await _request(conn, "/ip4/127.0.0.77/tcp/4001/ws")
            assert isinstance(reply, DialDataRequest)
            for size in dial_data_chunks(reply.num_bytes):
                await stream.send(DialDataResponse(data=bytes(size)).to_wire())
            start = trio.current_time()
            response = decode_autonat_message(await stream.receive())
            waited = trio.current_time() - start
    assert isinstance(response, DialResponse)
    assert response.dial_status is DialStatus.E_DIAL_ERROR
    assert 4.0 <= waited < 4.5


async def _answer_to_a_dial_back_served_by(handler: Any) -> DialResponse:
    """What a server answers when the address it dials back is served by ``handler`` (a
    raw frame-stream handler at 127.0.0.20:4001, not a node)."""
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.transport("127.0.0.20").listen,
                            WsAddress.parse("/ip4/127.0.0.20/tcp/4001/ws"), handler)
        async with _cluster(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            reply, _ = await _request(conn, "/ip4/127.0.0.20/tcp/4001/ws")
        nursery.cancel_scope.cancel()
    assert isinstance(reply, DialResponse)
    return reply


async def test_a_dial_back_that_connects_but_never_finishes_its_handshake_is_no_evidence(
        autojump_clock: trio.testing.MockClock) -> None:
    async def silent(stream: Any) -> None:  # accepts the connection, never says hello
        await trio.sleep_forever()
    with trio.fail_after(120):
        reply = await _answer_to_a_dial_back_served_by(silent)
    assert reply.status == ResponseStatus.OK
    assert reply.dial_status == DialStatus.E_DIAL_BACK_ERROR  # not E_DIAL_ERROR


async def test_a_dial_back_whose_handshake_the_peer_fails_is_unreachable(
        autojump_clock: trio.testing.MockClock) -> None:
    async def hang_up(stream: Any) -> None:  # something else listens there: it hangs up
        await stream.aclose("not an autonat node")
    with trio.fail_after(120):
        reply = await _answer_to_a_dial_back_served_by(hang_up)
    assert reply.status == ResponseStatus.OK
    assert reply.dial_status == DialStatus.E_DIAL_ERROR


async def test_probe_results_are_counted_once_by_the_scheduler(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(dial_filter=_firewall("127.0.0.9"))
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _connect_all(client, servers)
            snap = await client.wait_for(lambda s: s.nat_status == "private")
            assert snap.unreachable_addrs
            stats = client.statistics()
            assert stats.probes["unreachable"] >= 2  # the verdict's evidence
            sched = stats.autonat_client  # every probe started is accounted for exactly once
            assert sched.probes_started == sum(stats.probes.values()) + sched.cancelled \
                + sched.in_flight


async def test_boot_node_without_candidates_still_welcomes_newcomers(
        autojump_clock: trio.testing.MockClock) -> None:
    # A boot node whose policy rejects its own (loopback) address has no candidate to
    # probe; it asks about the address the newcomer reached it at instead.
    net = MemoryNetwork()
    boot_config = NodeConfig(listen=("/ip4/127.0.1.1/tcp/0/ws",),
                             autonat_client=AutonatClientConfig(welcome_probes=True))
    with trio.fail_after(60):
        async with open_node(boot_config, transport=net.transport("127.0.1.1")) as boot, \
                open_node(_config("127.0.0.9"), transport=net.transport("127.0.0.9")) as newcomer:
            await newcomer.add_peers([boot.listen_addrs[0]], source="http://boot/status",
                                     from_bootstrap=True)
            await newcomer.wait_for(lambda s: s.lifecycle is Lifecycle.FULLY_CONNECTED)
            assert newcomer.statistics().autonat_server.total_answered == 1
            assert boot.snapshot().nat_status == "unknown"  # not evidence for the boot node


class _OtherSourceTransport(MemoryTransport):
    """Listens on its host but dials out from another IP (like a multi-homed host)."""

    def dial(self, addr: WsAddress, *, reuse_listen_port: bool = True,
             source_ip: str | None = None) -> Any:
        return super().dial(addr, reuse_listen_port=False, source_ip=source_ip or "127.0.0.8")


async def test_client_pays_dial_data_to_have_another_ip_dialed(
        autojump_clock: trio.testing.MockClock) -> None:
    # Servers see the client at 127.0.0.8 but it listens on 127.0.0.9: they dial
    # .9 only after 30-100 KB of dial data, so .9 reachable proves the client paid.
    net = MemoryNetwork()
    listen = WsAddress.parse("/ip4/127.0.0.9/tcp/0/ws")
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=_OtherSourceTransport(net, "127.0.0.9")) as client:
            await _connect_all(client, servers)
            snap = await client.wait_for(lambda s: any(a.host == listen.host
                                                       for a in s.reachable_addrs))
            assert snap.nat_status == "public"
            backs = [d for d in net.dials if d.remote.host == "127.0.0.9"]
            assert len(backs) >= 2  # the servers did dial the other IP


# --- evidence hygiene: listener under test, single-use nonces from secrets ------------


def _rewire_dial_backs(monkeypatch: pytest.MonkeyPatch, servers: list[Node],
                       make: Any) -> None:
    """Replace each server's ``_dial_back`` with ``make(original)``."""
    for server in servers:
        monkeypatch.setattr(server._server, "_dial_back", make(server._server._dial_back))


async def test_dial_back_on_another_of_our_listeners_is_not_evidence(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client listens on two ports; every server dials back the *other* port, with
    # the right nonce. That proves nothing about the address we asked about.
    net = MemoryNetwork()
    two = NodeConfig(listen=("/ip4/127.0.0.9/tcp/0/ws",) * 2, policy=LOOPBACK)
    with trio.fail_after(120):
        async with _cluster(net, 3) as servers, open_node(
                two, transport=net.transport("127.0.0.9")) as client:
            first, second = (a.with_peer_id(None) for a in client.listen_addrs)
            assert first.port != second.port
            swap = {first: second, second: first}

            def make(original: Any) -> Any:
                async def elsewhere(addr: WsAddress, peer: Any, nonce: int,
                                    plan: Any, **kw: Any) -> DialStatus:
                    wrong: DialStatus = await original(swap[addr.with_peer_id(None)], peer,
                                                       nonce, plan, **kw)
                    return wrong
                return elsewhere

            _rewire_dial_backs(monkeypatch, servers, make)
            await _connect_all(client, servers)
            await trio.sleep(30)
            stats = client.statistics()
            assert client.snapshot().reachable_addrs == ()
            assert stats.dial_back.verified == 0
            assert stats.dial_back.unexpected >= 2  # they did arrive, on the other listener
            assert stats.probes.get("reachable", 0) == 0
            assert stats.probes.get("lied", 0) >= 2
            assert {d.remote.port for d in net.dials if d.remote.host == "127.0.0.9"} == {
                first.port, second.port}


async def test_a_replayed_nonce_is_counted_once(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every server sends its DialBack twice, each on a fresh connection, before it answers.
    net = MemoryNetwork()
    with trio.fail_after(120):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:

            def make(original: Any) -> Any:
                async def twice(addr: WsAddress, peer: Any, nonce: int, plan: Any,
                                **kw: Any) -> DialStatus:
                    await original(addr, peer, nonce, plan, **kw)
                    replay: DialStatus = await original(addr, peer, nonce, plan, **kw)
                    return replay
                return twice

            _rewire_dial_backs(monkeypatch, servers, make)
            await _connect_all(client, servers)
            await client.wait_for(lambda s: s.nat_status == "public")
            await trio.sleep(1)  # let the probes still in flight finish
            stats = client.statistics()
            reachable = stats.probes["reachable"]
            assert reachable >= 2
            assert stats.dial_back.verified == reachable  # one per probe, not two
            assert stats.dial_back.unexpected == reachable  # every replay refused


async def _nonces_of_a_client_seeded_with(seed: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The nonces two servers received from a client whose rng is ``random.Random(seed)``."""
    net = MemoryNetwork()
    nonces: list[int] = []

    def make(original: Any) -> Any:
        async def record(addr: WsAddress, peer: Any, nonce: int, plan: Any,
                         **kw: Any) -> DialStatus:
            nonces.append(nonce)
            status: DialStatus = await original(addr, peer, nonce, plan, **kw)
            return status
        return record

    async with _cluster(net, 2) as servers, open_node(
            _config("127.0.0.9"), transport=net.transport("127.0.0.9"),
            rng=random.Random(seed)) as client:
        _rewire_dial_backs(monkeypatch, servers, make)
        await _connect_all(client, servers)
        await client.wait_for(lambda s: s.nat_status != "unknown")
    return nonces


async def test_nonces_do_not_come_from_the_nodes_rng(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two nodes with identically seeded rngs (predictable, shared with backoff jitter)
    # must still send unrelated nonces.
    with trio.fail_after(120):
        first = await _nonces_of_a_client_seeded_with(0, monkeypatch)
        second = await _nonces_of_a_client_seeded_with(0, monkeypatch)
    assert len(first) >= 2 and len(second) >= 2
    assert not set(first) & set(second)
    assert len(set(first + second)) == len(first + second)


def test_receiver_never_issues_a_nonce_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([5, 5, 7, 5, 7, 9])
    monkeypatch.setattr(secrets, "randbits", lambda bits: next(draws))
    receiver = DialBackReceiver()
    probe = PendingProbe(WsAddress.parse("/ip4/127.0.0.9/tcp/4001/ws"),
                         Keypair.generate().peer_id, 0.0, cast(Connection, None), ())
    first = receiver.expect(probe)
    receiver.forget(first)  # the probe ended: its nonce is still never issued again
    assert [first, receiver.expect(probe), receiver.expect(probe)] == [5, 7, 9]
    assert receiver.pending == 2


async def test_probe_actor_recomputes_candidates_only_when_addresses_change(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _connect_all(client, servers)
            await client.wait_for(lambda s: s.nat_status != "unknown")
            await trio.sleep(5)
            snap = client.snapshot()
            stats = cast(Any, client)._autonat._scheduler.statistics()
    # one recomputation per change of listen or observed addresses, not per snapshot
    assert 1 <= stats.candidate_recomputations <= 3 + len(snap.observed_addrs)
    assert stats.candidate_recomputations < snap.revision


@pytest.mark.parametrize("identify_first", [True, False])
async def test_probe_actor_takes_identify_before_or_after_the_connection(
        identify_first: bool, autojump_clock: trio.testing.MockClock) -> None:
    """The IdentifyActor's PeerIdentified and the Dialer's ConnectionOpened race: both orders."""
    net = MemoryNetwork()
    with trio.fail_after(30):
        async with _cluster(net, 1) as (server,), _bare(net, "127.0.0.9", server) as conn:
            me = Keypair.generate().peer_id
            scheduler = ProbeScheduler(policy=LOOPBACK, rng=random.Random(1))
            inbox = Mailbox[AutonatInput](8, name="autonat")
            tracker = Mailbox[TrackerEvent](8, name="tracker")
            probe = AutonatProbe(
                config=_config("127.0.0.9"), receiver=DialBackReceiver(),
                state=AutonatState(scheduler), inbox=inbox.receiver(), tracker=tracker.sender(),
                watch=Watch(NodeModel(me).snapshot(0.0)), node=me)
            identified = PeerIdentified(
                server.peer_id, 1, (), WsAddress.parse("/ip4/127.0.0.9/tcp/5555/ws"),
                conn.local_addr, (DIAL_REQUEST_PROTOCOL_ID,), "test", conn.remote_addr)
            opened = ConnectionOpened(ConnectionInfo(
                1, server.peer_id, Direction.OUTBOUND, conn.local_addr, conn.remote_addr, 0.0),
                conn)
            ourselves = PeerIdentified(me, 2, (), WsAddress.parse("/ip4/127.0.0.9/tcp/1/ws"),
                                       conn.local_addr, (), "test", conn.remote_addr)
            async with trio.open_nursery() as nursery:
                await nursery.start(probe.run)
                messages = [identified, opened] if identify_first else [opened, identified]
                for message in [ourselves, *messages]:
                    await inbox.send(message)
                await trio.sleep(1)
                stats = scheduler.statistics()
                assert (stats.servers_available, stats.observers) == (1, 1)
                assert scheduler.is_autonat_server(server.peer_id)
                nursery.cancel_scope.cancel()


class _ClosedConnection:
    """Just what the probe actor reads of a connection that already ended."""

    def __init__(self, index: int) -> None:
        self.remote_addr = WsAddress.parse(f"/ip4/127.0.1.{index % 250}/tcp/{4000 + index}/ws")
        self.local_addr = WsAddress.parse("/ip4/127.0.0.9/tcp/4001/ws")
        self.direction = Direction.INBOUND
        self.closed = trio.Event()
        self.closed.set()


async def test_probe_actor_survives_connections_that_closed_before_they_were_announced(
        autojump_clock: trio.testing.MockClock) -> None:
    """Churn: a connection's ConnectionOpened arrives after it closed, its ConnectionGone
    later still; sweeping closed connections must not end one before it started."""
    me = Keypair.generate().peer_id
    scheduler = ProbeScheduler(policy=LOOPBACK, rng=random.Random(1))
    inbox = Mailbox[AutonatInput](8, name="autonat")
    tracker = Mailbox[TrackerEvent](1024, name="tracker")
    state = AutonatState(scheduler)
    probe = AutonatProbe(
        config=_config("127.0.0.9"), receiver=DialBackReceiver(), state=state,
        inbox=inbox.receiver(), tracker=tracker.sender(),
        watch=Watch(NodeModel(me).snapshot(0.0)), node=me)
    count = 3 * MIN_SWEEP_SIZE
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(probe.run)
            messages: list[AutonatInput] = []
            for index in range(count):
                peer = Keypair.generate().peer_id
                conn = cast(Connection, _ClosedConnection(index))
                info = ConnectionInfo(index, peer, Direction.INBOUND, conn.local_addr,
                                      conn.remote_addr, 0.0)
                messages.append(ConnectionOpened(info, conn))
                messages.append(ConnectionGone(info, conn, "closed by the peer"))
            for message in messages[::2] + messages[1::2]:  # every Gone after every Opened
                await inbox.send(message)
            await trio.sleep(1)
            assert state.connections == {}
            assert scheduler.statistics().servers_available == 0
            nursery.cancel_scope.cancel()


async def test_identify_feeds_the_probe_one_observation_per_peer(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _cluster(net, 3) as servers, open_node(
                _config("127.0.0.9"), transport=net.transport("127.0.0.9")) as client:
            await _connect_all(client, servers)
            await client.wait_for(lambda s: len(s.observed_addrs) == 3)
            await trio.sleep(1)
            scheduler = cast(Any, client)._autonat._scheduler
            assert scheduler.statistics().observers == 3
            assert scheduler.observation_statistics().rebuilds == 1  # listen addrs, once
