"""TCP filtering end to end over the in-memory network, in virtual time.

Servers have a second address (``dialback_source``, 127.0.2.x besides their
127.0.1.x). The memory network's ``dial_filter`` plays the client's NAT: it
sees each dial's source and destination (IP and port), so it can let in
everything (endpoint-independent), only dials from IPs the client contacted
(address-dependent), or only from the exact endpoints it contacted
(address-and-port-dependent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from actors import MemoryNetwork, Node, open_connection, open_node
from actors.connection._connection import Connection
from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    AddressPolicy,
    DialBackAttempt,
    DialBackSource,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    Keypair,
    NodeConfig,
    ResponseStatus,
    WsAddress,
    decode_autonat_message,
    dial_data_chunks,
)

LOOPBACK = AddressPolicy(allow_loopback=True)
CLIENT = "127.0.0.9"
OK, ERR = DialStatus.OK, DialStatus.E_DIAL_ERROR


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


@asynccontextmanager
async def _servers(net: MemoryNetwork, count: int, *, second: bool = True
                   ) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_node(
            _config(f"127.0.1.{i}", **({"dialback_source": f"127.0.2.{i}"} if second else {})),
            transport=net.transport(f"127.0.1.{i}")))
            for i in range(1, count + 1)]


def _nat(kind: str, servers: list[Node]) -> Any:
    """A dial filter for dials to the client: what each filtering lets in."""
    contacted = {(a.host, a.port) for s in servers for a in s.listen_addrs}

    def refuse(source: WsAddress, destination: WsAddress) -> str | None:
        if destination.host != CLIENT or kind == "endpoint-independent":
            return None
        if kind == "address-dependent":
            ok = source.host in {host for host, _ in contacted}
        else:
            ok = (source.host, source.port) in contacted
        return None if ok else f"dropped by a {kind} filter"
    return refuse


@pytest.mark.parametrize(("filtering", "nat_status"), [
    ("endpoint-independent", "public"),
    ("address-dependent", "private"),
    ("address-and-port-dependent", "private"),
])
async def test_each_filtering_is_recognised(autojump_clock: trio.testing.MockClock,
                                            filtering: str, nat_status: str) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net, 3) as servers, open_node(
                _config(CLIENT), transport=net.transport(CLIENT)) as client:
            net.dial_filter = _nat(filtering, servers)
            for server in servers:
                await client.connect(server.listen_addrs[0])
            snap = await client.wait_for(lambda s: s.nat_status != "unknown"
                                         and s.nat_filtering != "unknown")
            assert (snap.nat_filtering, snap.nat_status) == (filtering, nat_status)
            # an address-dependent NAT let the same-IP dial-backs in: still not reachable
            stats = client.statistics()
            if filtering == "address-dependent":
                assert stats.dial_back.verified >= 2 and stats.probes.get("reachable", 0) == 0


async def test_a_single_address_server_can_show_only_port_dependence(
        autojump_clock: trio.testing.MockClock) -> None:
    """One dial-back from the contacted IP: arriving tells nothing about filtering."""
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net, 3, second=False) as servers, open_node(
                _config(CLIENT), transport=net.transport(CLIENT)) as client:
            net.dial_filter = _nat("address-dependent", servers)
            for server in servers:
                await client.connect(server.listen_addrs[0])
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            await trio.sleep(5)
            # today's answer: the same-IP dial-back got in, so public; filtering not known
            assert (snap.nat_status, client.snapshot().nat_filtering) == ("public", "unknown")


@pytest.mark.parametrize(("seconds", "nat_status"), [(1, "unknown"), (2, "private")])
async def test_servers_with_a_second_address_among_many_without_decide(
        autojump_clock: trio.testing.MockClock, seconds: int, nat_status: str) -> None:
    """Behind an address-dependent filter, with four servers of one address each and
    ``seconds`` with a second address: those advertise it in Identify and are asked
    first, and their failures void the dial-backs the filter let in from contacted
    IPs. Never ``public``: with one such server the verdict stays ``unknown`` (one
    failure is a claim, below the threshold of 2), with two it is ``private``."""
    net = MemoryNetwork()
    with trio.fail_after(120):
        async with _servers(net, 4, second=False) as plain, AsyncExitStack() as stack:
            far = [await stack.enter_async_context(open_node(
                _config(f"127.0.1.{9 + i}", dialback_source=f"127.0.2.{9 + i}"),
                transport=net.transport(f"127.0.1.{9 + i}"))) for i in range(seconds)]
            client = await stack.enter_async_context(open_node(
                _config(CLIENT), transport=net.transport(CLIENT)))
            net.dial_filter = _nat("address-dependent", [*plain, *far])
            for server in [*plain, *far]:
                await client.connect(server.listen_addrs[0])
            await trio.sleep(60)
            snap = client.snapshot()
            assert snap.nat_status == nat_status, (snap.nat_status, client.statistics().probes)
            assert all(s.statistics().autonat_server.total_answered >= 1 for s in far)


# --- the server, request by request ---------------------------------------------------------


@asynccontextmanager
async def _bare(net: MemoryNetwork, host: str, server: Node) -> AsyncIterator[Connection]:
    async with net.transport(host).dial(server.listen_addrs[0]) as frames, open_connection(
            frames, Keypair.generate(), initiator=True, expected_peer=server.peer_id) as conn:
        yield conn


async def _ask(conn: Connection, addr: str, *, filtering: bool) -> DialResponse:
    stream = await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID)
    async with stream:
        await stream.send(DialRequest(addrs=(WsAddress.parse(addr).to_bytes(),), nonce=7,
                                      filtering=filtering).to_wire())
        while True:
            reply = decode_autonat_message(await stream.receive())
            if isinstance(reply, DialResponse):
                return reply
            assert isinstance(reply, DialDataRequest)
            for size in dial_data_chunks(reply.num_bytes):
                await stream.send(DialDataResponse(data=bytes(size)).to_wire())


def _dial_backs(net: MemoryNetwork, since: int) -> list[tuple[str, int, str]]:
    return [(d.local.host, d.local.port, d.remote.host) for d in net.dials[since:]]


async def test_two_dial_backs_to_the_requesters_ip_when_asked(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            net.dial_filter = lambda src, dst: "dropped" if src.host == "127.0.2.1" else None
            before = len(net.dials)
            reply = await _ask(conn, "/ip4/127.0.0.20/tcp/4001/ws", filtering=True)
            # dial_status is the second address's dial-back (reachability), as before
            assert (reply.status, reply.dial_status) == (ResponseStatus.OK, ERR)
            # nothing listens at .20:4001, so the contacted-IP dial-back is refused: E_DIAL_ERROR
            assert reply.dial_backs == (DialBackAttempt(DialBackSource.CONTACTED_IP, ERR),
                                        DialBackAttempt(DialBackSource.OTHER_IP, ERR))
            backs = _dial_backs(net, before)
            assert sorted(host for host, _, _ in backs) == ["127.0.1.1", "127.0.2.1"]
            assert all(dst == "127.0.0.20" for _, _, dst in backs)  # the requester's IP only
            listen_port = server.listen_addrs[0].port
            assert all(port != listen_port for _, port, _ in backs)  # fresh ports


async def test_one_dial_back_for_a_client_that_does_not_ask(
        autojump_clock: trio.testing.MockClock) -> None:
    """An older client counts any arrival: it gets today's single dial-back."""
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            before = len(net.dials)
            reply = await _ask(conn, "/ip4/127.0.0.20/tcp/4001/ws", filtering=False)
            assert reply.dial_backs == (DialBackAttempt(DialBackSource.OTHER_IP, ERR),)
            assert [host for host, _, _ in _dial_backs(net, before)] == ["127.0.2.1"]


async def test_never_an_extra_dial_back_to_another_ip(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            before = len(net.dials)
            reply = await _ask(conn, "/ip4/127.0.0.99/tcp/4001/ws", filtering=True)  # paid for
            assert reply.status == ResponseStatus.OK
            assert reply.dial_backs == (DialBackAttempt(DialBackSource.OTHER_IP, ERR),)
            assert _dial_backs(net, before) == [(h, p, "127.0.0.99")
                                                for h, p, _ in _dial_backs(net, before)]
            assert len(_dial_backs(net, before)) == 1


async def test_a_single_address_server_reports_its_dial_back_as_contacted_ip(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _servers(net, 1, second=False) as (server,), \
                _bare(net, "127.0.0.20", server) as conn:
            reply = await _ask(conn, "/ip4/127.0.0.20/tcp/4001/ws", filtering=True)
            assert reply.dial_backs == (DialBackAttempt(DialBackSource.CONTACTED_IP, ERR),)


async def test_the_two_dial_backs_run_concurrently(
        autojump_clock: trio.testing.MockClock) -> None:
    """Both dropped silently: the answer comes after one give-up, not two."""
    net = MemoryNetwork()
    net.blackholed.add("127.0.0.20")
    with trio.fail_after(60):
        async with _servers(net, 1) as (server,), _bare(net, "127.0.0.20", server) as conn:
            timeout = server.config.autonat_server_config.dialback_timeout
            start = trio.current_time()
            reply = await _ask(conn, "/ip4/127.0.0.20/tcp/4001/ws", filtering=True)
            took = trio.current_time() - start
            assert reply.dial_backs == (DialBackAttempt(DialBackSource.CONTACTED_IP, ERR),
                                        DialBackAttempt(DialBackSource.OTHER_IP, ERR))
            assert 0 < took <= timeout + 0.1 < 2 * timeout
