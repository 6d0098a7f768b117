"""Peer exchange end to end over the in-memory network, in virtual time.

A boot URL serves a Pyrsia-shaped document (``{peers_count, peer_id,
peer_addrs}`` listing only the boot node itself): without peer exchange a
newcomer has one AutoNAT server and decides only after the 5 s small-network
wait, resting on that one server. With it, the newcomer asks the boot node
for peers, dials the three public nodes connected to it and reaches a verdict
resting on several servers well before the wait would end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

import actors.node._autonat_probe as autonat_probe
from actors import MemoryNetwork, Node, open_connection, open_node
from actors.connection._stream import StreamReset
from protocols import AddressPolicy, Keypair, NodeConfig, PeerId, WsAddress
from protocols.bootstrap import PEER_EXCHANGE_PROTOCOL_ID, PeersRequest, PeersResponse

LOOPBACK = AddressPolicy(allow_loopback=True)
BOOT_URL = "http://boot.test/status"
SMALL_NETWORK_SETTLE = 5.0  # ReachabilityConfig's default


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


def _pyrsia_document(boot: Node) -> bytes:
    """What a Pyrsia boot node serves: three fields, only its own address."""
    return json.dumps({"peers_count": 3, "peer_id": str(boot.peer_id),
                       "peer_addrs": [str(boot.listen_addrs[0])]}).encode()


@asynccontextmanager
async def _network(net: MemoryNetwork) -> AsyncIterator[tuple[Node, list[Node]]]:
    """A boot node and three public nodes connected to it, each identified by the boot node
    and dialed back by it (the proof it needs to hand their addresses out)."""
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            open_node(_config("127.0.1.1"), transport=net.transport("127.0.1.1")))
        others = [await stack.enter_async_context(
            open_node(_config(f"127.0.2.{i}"), transport=net.transport(f"127.0.2.{i}")))
            for i in range(1, 4)]
        for other in others:
            await other.connect(boot.listen_addrs[0])
        ids = {o.peer_id for o in others}
        # identified, and dialed back by the boot node's AutoNAT server: what it hands out
        await boot.wait_for(lambda s: ids <= {p.peer_id for p in s.peers
                                              if (p.agent_version or p.protocols)
                                              and p.verified_addrs})
        yield boot, others


async def _newcomer_verdict(net: MemoryNetwork, boot: Node) -> tuple[float, Any, Any]:
    """Start a newcomer whose only boot URL serves the Pyrsia document; time to a verdict."""
    document = _pyrsia_document(boot)

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=document,
                              headers={"content-type": "application/json"})

    factory = partial(httpx.AsyncClient, transport=httpx.MockTransport(serve))
    async with open_node(_config("127.0.3.1", boot_urls=(BOOT_URL,)),
                         transport=net.transport("127.0.3.1"),
                         http_client_factory=factory) as newcomer:
        start = trio.current_time()
        snap = await newcomer.wait_for(lambda s: s.nat_status != "unknown")
        elapsed = trio.current_time() - start
        print(f"virtual time to verdict: {elapsed:.3f} s")  # shown with pytest -s
        return elapsed, snap, newcomer.statistics()


async def test_pyrsia_document_leads_to_three_more_servers_and_a_fast_verdict(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _network(net) as (boot, others):
            elapsed, snap, stats = await _newcomer_verdict(net, boot)
    assert snap.nat_status == "public"
    # no small-network wait: the verdict rests on several servers, within round trips
    assert elapsed < 1.0, elapsed
    assert stats.probes.get("reachable", 0) >= 2
    assert len(set(stats.servers_answered)) >= 2
    assert set(stats.servers_answered) & {o.peer_id for o in others}  # learned by exchange
    assert stats.servers_available >= 3
    exchange = stats.peer_exchange_client
    assert exchange is not None and exchange.asked >= 1 and exchange.peers_learned >= 3
    # the newcomer dialed the three peers the boot node handed out
    learned = {d.remote.host for d in net.dials if d.local.host == "127.0.3.1"}
    assert {"127.0.2.1", "127.0.2.2", "127.0.2.3"} <= learned
    served = boot.statistics().peer_exchange
    assert served is not None and served.answered >= 1 and served.peers_sent >= 3


async def test_without_peer_exchange_the_same_newcomer_waits_for_the_small_network(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: peer exchange failing, the verdict waits ~5 s and rests on one server."""
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise trio.ClosedResourceError("peer exchange disabled by the test")

    monkeypatch.setattr(autonat_probe, "ask_for_peers", refuse)
    net = MemoryNetwork()
    with trio.fail_after(60):
        async with _network(net) as (boot, _others):
            elapsed, snap, stats = await _newcomer_verdict(net, boot)
    assert snap.nat_status == "public"
    assert elapsed >= SMALL_NETWORK_SETTLE
    assert set(stats.servers_answered) == {boot.peer_id}
    exchange = stats.peer_exchange_client
    assert exchange is not None and exchange.failed >= 1 and exchange.peers_learned == 0


async def test_the_server_answers_a_bounded_sample_and_refuses_a_scanner(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    keys = Keypair.generate()
    with trio.fail_after(60):
        async with _network(net) as (boot, others), \
                net.transport("127.0.4.1").dial(boot.listen_addrs[0]) as frames, \
                open_connection(frames, keys, initiator=True,
                                expected_peer=boot.peer_id) as conn:
            replies = []
            for _ in range(2):
                stream = await conn.open_stream(PEER_EXCHANGE_PROTOCOL_ID)
                replies.append(PeersResponse.from_wire(
                    await stream.request(PeersRequest(2).to_wire(), timeout=5)))
            for reply in replies:
                assert len(reply.peers) == 2
                ids = {PeerId.from_bytes(e.peer_id) for e in reply.peers}
                assert ids <= {o.peer_id for o in others}
                for entry in reply.peers:  # the verified address: the peer's own host
                    (raw,) = entry.addrs
                    assert WsAddress.parse(raw).host.startswith("127.0.2.")
            # a third request within the minute is refused before it is read
            stream = await conn.open_stream(PEER_EXCHANGE_PROTOCOL_ID)
            with pytest.raises(StreamReset) as refused:
                await stream.request(PeersRequest(16).to_wire(), timeout=5)
            assert refused.value.code == "rate-limited"
            served = boot.statistics().peer_exchange
            assert served is not None and served.rejected == 1
