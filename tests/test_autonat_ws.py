"""AutoNAT over real WebSockets on loopback (127.0.0.0/8, port 0, real clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from actors import FrameStream, Node, WebSocketTransport, open_node
from actors.transport._framestream import StreamHandler
from protocols import AddressPolicy, NodeConfig, WsAddress

LOOPBACK = AddressPolicy(allow_loopback=True)


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


@asynccontextmanager
async def _servers(count: int, **overrides: Any) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_node(_config(f"127.0.2.{i}", **overrides)))
               for i in range(1, count + 1)]


class MisreportingTransport(WebSocketTransport):
    """Listens for real but reports another (closed) port, like a broken port forward."""

    def __init__(self, fake_port: int) -> None:
        super().__init__()
        self.fake_port = fake_port

    async def listen(self, addr: WsAddress, handler: StreamHandler, *,
                     task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
        async with trio.open_nursery() as nursery:
            bound: list[WsAddress] = await nursery.start(super().listen, addr, handler)
            task_status.started([WsAddress(host=b.host, kind=b.kind, port=self.fake_port,
                                           secure=b.secure) for b in bound])


class RecordingTransport(WebSocketTransport):
    """Remembers the remote address of every inbound connection."""

    def __init__(self) -> None:
        super().__init__()
        self.inbound_from: list[WsAddress] = []

    async def listen(self, addr: WsAddress, handler: StreamHandler, *,
                     task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
        async def recording(stream: FrameStream) -> None:
            self.inbound_from.append(stream.remote_addr)
            await handler(stream)

        await super().listen(addr, recording, task_status=task_status)


async def test_reachable_loopback_node_becomes_public() -> None:
    with trio.fail_after(30):
        async with _servers(3) as servers, open_node(_config("127.0.2.50")) as client:
            for server in servers:
                await client.connect(server.listen_addrs[0])
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            assert snap.nat_status == "public"
            assert snap.reachable_addrs == (client.listen_addrs[0].with_peer_id(None),)
            assert snap.nat_mapping == "none"  # observed == local: no NAT on loopback
            assert client.statistics().dial_back.verified >= 2


async def test_node_advertising_a_closed_port_becomes_private() -> None:
    closed = trio.socket.socket()
    await closed.bind(("127.0.2.60", 0))
    closed_port = closed.getsockname()[1]  # bound, never listening: connections are refused
    with trio.fail_after(30):
        async with _servers(3) as servers, open_node(
                _config("127.0.2.60"), transport=MisreportingTransport(closed_port)) as client:
            for server in servers:
                await client.connect(server.listen_addrs[0])
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            assert snap.nat_status == "private"
            assert [a.port for a in snap.unreachable_addrs] == [closed_port]
    closed.close()


async def test_server_dials_back_from_its_dialback_source() -> None:
    recorder = RecordingTransport()
    with trio.fail_after(30):
        async with _servers(2, dialback_source="127.0.2.99") as servers, open_node(
                _config("127.0.2.70"), transport=recorder) as client:
            for server in servers:
                await client.connect(server.listen_addrs[0])
            await client.wait_for(lambda s: s.nat_status == "public")
            dial_backs = [a for a in recorder.inbound_from if a.host == "127.0.2.99"]
            assert len(dial_backs) >= 2
            listen_ports = {s.listen_addrs[0].port for s in servers}
            assert not {a.port for a in dial_backs} & listen_ports  # never the listen port


async def test_a_single_address_server_dials_back_from_the_address_the_client_contacted(
        ) -> None:
    # it reports the dial-back as the contacted IP's; left to the kernel, loopback
    # dial-backs would leave from 127.0.0.1 and the client would see a dial-back the
    # server said came from elsewhere (and wait for the one it claimed)
    recorder = RecordingTransport()
    with trio.fail_after(30):
        async with _servers(2) as servers, open_node(
                _config("127.0.2.80"), transport=recorder) as client:
            for server in servers:
                await client.connect(server.listen_addrs[0])
            await client.wait_for(lambda s: s.nat_status == "public")
            server_ips = {s.listen_addrs[0].host for s in servers}
            dial_backs = [a for a in recorder.inbound_from if a.port not in
                          {s.listen_addrs[0].port for s in servers}]
            assert len(dial_backs) >= 2
            assert {a.host for a in dial_backs} <= server_ips


async def test_a_dial_back_impossible_on_the_server_is_not_evidence_against_the_client() -> None:
    # The servers' dialback_source is not an address of this machine: every dial-back
    # fails at bind() with EADDRNOTAVAIL, on the server, before a packet leaves. That
    # must be E_INTERNAL_ERROR (an error), never E_DIAL_ERROR (the client unreachable).
    with trio.fail_after(30):
        async with _servers(2, dialback_source="192.0.2.1") as servers, open_node(
                _config("127.0.2.71")) as client:
            for server in servers:
                await client.connect(server.listen_addrs[0])
            # both servers failed locally, and both answers reached the client
            while (sum(s.statistics().autonat_server.local_failures for s in servers) < 2
                   or client.statistics().probes.get("error", 0) < 2):
                await client.activity.wait_past(client.activity.count)
            stats = client.statistics()
            assert stats.probes.get("error", 0) >= 2
            assert stats.probes.get("unreachable", 0) == 0
            assert client.snapshot().nat_status == "unknown"  # no evidence, no verdict
            answered = servers[0].statistics().autonat_server.by_status()
            assert set(answered) == {"E_INTERNAL_ERROR/UNUSED"}
