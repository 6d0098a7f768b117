"""The HTTP API over real loopback sockets: /status, /metrics, /healthz, errors, clean stop.

Real sockets need the real clock, so every test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from prometheus_client.parser import text_string_to_metric_families

from actors import (
    METRIC_NAMES,
    AutonatServerStatistics,
    HttpApi,
    MemoryNetwork,
    Node,
    NodeStatistics,
    StatusSource,
    WebSocketTransport,
    open_node,
    serve_http,
)
from actors.transport._framestream import StreamHandler
from protocols import (
    AddressPolicy,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    WsAddress,
    parse_status_document,
)

LOOPBACK = AddressPolicy(allow_loopback=True)


@dataclass
class FakeSource:
    """A frozen picture of a real node; ``fail`` makes the next reads raise."""

    peer_id: PeerId
    config: NodeConfig
    snap: NodeSnapshot
    stats: NodeStatistics
    fail: int = 0

    def snapshot(self) -> NodeSnapshot:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("snapshot exploded")
        return self.snap

    def statistics(self) -> NodeStatistics:
        return self.stats

    def probes_served(self) -> int:
        return self.statistics().autonat_server.total_answered


async def _frozen_source() -> FakeSource:
    config = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK)
    async with open_node(config, transport=MemoryNetwork().transport("127.0.0.1")) as node:
        await node.wait_for(lambda s: bool(s.listen_addrs))
        return FakeSource(node.peer_id, node.config, node.snapshot(), node.statistics())


@asynccontextmanager
async def _network(peers: int) -> AsyncIterator[tuple[Node, list[Node]]]:
    """A boot node on 127.0.0.1 and ``peers`` nodes connected to it, all identified and
    dialed back by the boot node (so that its ``/status`` may list them)."""
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(peers + 1):
            config = NodeConfig(listen=(f"/ip4/127.0.0.{i + 1}/tcp/0/ws",), policy=LOOPBACK)
            nodes.append(await stack.enter_async_context(open_node(config)))
        boot, others = nodes[0], nodes[1:]
        async with trio.open_nursery() as nursery:
            for node in others:
                nursery.start_soon(node.connect, boot.listen_addrs[0])
        ids = {node.peer_id for node in others}
        await boot.wait_for(lambda s: {r.peer_id for r in s.peers
                                       if r.agent_version and r.verified_addrs} >= ids
                            and set(s.connected_peers) >= ids)
        yield boot, others


@asynccontextmanager
async def _served(source: StatusSource, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(partial(serve_http, source, "127.0.0.1", 0, **kw))
        assert host == "127.0.0.1" and port > 0
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            yield client
        nursery.cancel_scope.cancel()


async def test_status_fields_and_round_robin_over_http() -> None:
    with trio.fail_after(40):
        async with _network(3) as (boot, others), _served(boot, window=2) as client:
            peer_addrs = {str(node.listen_addrs[0]) for node in others}
            responses = [await client.get("/status") for _ in range(3)]
            documents = [r.json() for r in responses]
            for response, doc in zip(responses, documents, strict=True):
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/json"
                assert doc["peer_id"] == str(boot.peer_id)
                assert isinstance(doc["peers_count"], int) and doc["peers_count"] >= 3
                assert doc["peer_addrs"][0] == str(boot.listen_addrs[0])
                assert len(doc["peer_addrs"]) == 3  # own + window of 2
                assert set(doc["peer_addrs"][1:]) <= peer_addrs
                assert doc["state"] in ("connected", "fully_connected")
                assert doc["nat_status"] in ("public", "private", "unknown")
                assert isinstance(doc["nat_mapping"], str)
                assert isinstance(doc["connections"], int) and doc["connections"] >= 3
                assert 0 <= doc["probes_served"] <= boot.statistics().autonat_server.total_answered
                assert isinstance(doc["uptime_s"], float) and doc["uptime_s"] >= 0
                assert isinstance(doc["version"], str) and doc["version"]
                assert isinstance(doc["reachable_addrs"], list)
                assert all(isinstance(a, str) for a in doc["observed_addrs"])
                parsed = parse_status_document(response.content)
                assert parsed.rejected == ()
                assert parsed.addresses[0] == boot.listen_addrs[0]
            windows = [tuple(doc["peer_addrs"][1:]) for doc in documents]
            assert windows[0] != windows[1]  # the window rotates per request
            assert set(windows[0]) | set(windows[1]) == peer_addrs  # and covers every peer


async def test_metrics_over_http() -> None:
    with trio.fail_after(40):
        async with _network(2) as (boot, _others), _served(boot) as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f.samples
                        for f in text_string_to_metric_families(response.text)}
            assert set(METRIC_NAMES) <= set(families)
            [connected] = families["autonat_peers_connected"]
            assert connected.value >= 2
            assert sum(s.value for s in families["autonat_connections"]) >= 2
            assert any(s.labels == {"outcome": "success"} and s.value >= 2
                       for s in families["autonat_identify"])
            [info] = families["autonat_node_info"]
            assert info.labels["peer_id"] == str(boot.peer_id)


async def test_healthz_not_found_and_method_not_allowed() -> None:
    with trio.fail_after(20):
        async with _network(1) as (boot, _others), _served(boot) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            address = str(boot.listen_addrs[0].with_peer_id(None))
            assert health.json() == {"ok": True, "state": boot.snapshot().lifecycle.value,
                                     "listener": {"ok": True, "checked": True,
                                                  "address": address}}
            missing = await client.get("/nope?x=1")
            assert missing.status_code == 404
            assert missing.json() == {"error": "not found"}
            assert (await client.get("/status/")).status_code == 404
            for method in ("POST", "PUT", "DELETE", "HEAD"):
                response = await client.request(method, "/status")
                assert response.status_code == 405
                assert response.headers["allow"] == "GET"
            small = await client.post("/status", content=b"x" * 1000)
            assert small.status_code == 405
            assert "connection" not in small.headers  # body drained: connection reusable
            big = await client.post("/status", content=b"x" * (1 << 20))
            assert big.status_code == 405
            assert big.json() == {"error": "method not allowed"}
            assert big.headers["connection"] == "close"  # body left unread
            assert (await client.get("/healthz")).status_code == 200


async def test_healthz_is_503_when_the_supervisor_is_not_running() -> None:
    with trio.fail_after(20):
        source = await _frozen_source()
        source.stats = replace(source.stats,
                               supervisor=replace(source.stats.supervisor, running=False))
        async with _served(source) as client:
            response = await client.get("/healthz")
            assert response.status_code == 503
            assert response.json() == {"ok": False, "state": source.snap.lifecycle.value,
                                       "reason": "the node's supervisor is not running"}


async def test_an_exception_is_a_500_and_the_server_keeps_serving() -> None:
    with trio.fail_after(20):
        source = await _frozen_source()
        source.fail = 1
        async with _served(source) as client:
            broken = await client.get("/status")
            assert broken.status_code == 500
            assert broken.json() == {"error": "internal error"}
            fine = await client.get("/status")
            assert fine.status_code == 200
            assert fine.json()["peer_id"] == str(source.peer_id)


async def test_probes_served_is_the_autonat_servers_count() -> None:
    with trio.fail_after(20):
        source = await _frozen_source()
        source.stats = replace(source.stats, autonat_server=AutonatServerStatistics(
            answered=(("E_DIAL_REFUSED/UNUSED", 2), ("OK/OK", 3)), dial_backs=3))
        async with _served(source, version="7.0") as client:
            doc = (await client.get("/status")).json()
            metrics = {f.name: f.samples for f in text_string_to_metric_families(
                (await client.get("/metrics")).text)}
    assert (doc["probes_served"], doc["version"]) == (5, "7.0")
    assert {s.labels["status"]: s.value for s in metrics["autonat_probes_served"]} == {
        "E_DIAL_REFUSED/UNUSED": 2, "OK/OK": 3}


async def test_garbage_and_websocket_requests_do_not_hurt() -> None:
    with trio.fail_after(20):
        source = await _frozen_source()
        async with _served(source) as client:
            port = client.base_url.port
            assert port is not None
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
                reply = await stream.receive_some(4096)
                assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
            with pytest.raises(trio_websocket.ConnectionRejected):
                async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/status"):
                    pass  # pragma: no cover
            assert (await client.get("/healthz")).status_code == 200


def _task_count() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def test_cancelling_the_nursery_stops_the_server_cleanly() -> None:
    with trio.fail_after(20):
        source = await _frozen_source()
        before = _task_count()
        async with httpx.AsyncClient(timeout=5) as client:
            async with trio.open_nursery() as nursery:
                host, port = await nursery.start(serve_http, source, "127.0.0.1", 0)
                url = f"http://{host}:{port}/healthz"
                assert (await client.get(url)).status_code == 200  # keep-alive connection open
                assert _task_count() > before
                nursery.cancel_scope.cancel()
            stopped_at = trio.current_time()
            assert _task_count() == before
            with pytest.raises(httpx.TransportError):
                await client.get(url)
        assert trio.current_time() - stopped_at < 5


async def test_port_in_use_raises_oserror() -> None:
    with trio.fail_after(20):
        source = await _frozen_source()
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            port = listener.socket.getsockname()[1]
            before = _task_count()
            async with trio.open_nursery() as nursery:
                with pytest.raises(OSError):
                    await nursery.start(serve_http, source, "127.0.0.1", port)
            assert _task_count() == before


@pytest.mark.parametrize(("host", "port"), [("", 0), ("127.0.0.1", -1), ("127.0.0.1", 70000)])
async def test_bad_bind_arguments(host: str, port: int) -> None:
    source = await _frozen_source()
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError):
            await nursery.start(serve_http, source, host, port)


async def test_respond_without_a_server() -> None:
    source = await _frozen_source()
    api = HttpApi(source, window=1, version="x")
    assert api.respond("GET", "/status").status == 200
    assert api.respond("PATCH", "/metrics").status == 405
    assert api.respond("GET", "/index.html").status == 404
    stats = api.statistics()
    assert (stats.requests, stats.errors, stats.status_served) == (3, 0, 1)
    doc = json.loads(api.respond("GET", "/status").body)
    own = WsAddress.parse(doc["peer_addrs"][0])
    assert own.peer_id == source.peer_id


class _AnnouncingTransport(WebSocketTransport):
    """Listens for real, but reports its listen addresses on another host (a victim)."""

    def __init__(self, victim: str) -> None:
        super().__init__()
        self.victim = victim

    async def listen(self, addr: WsAddress, handler: StreamHandler, *,
                     task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
        async with trio.open_nursery() as nursery:
            bound: list[WsAddress] = await nursery.start(super().listen, addr, handler)
            task_status.started([WsAddress(self.victim, b.kind, b.port, b.secure)
                                 for b in bound])


async def test_status_never_lists_an_address_a_peer_announces_for_another_host() -> None:
    with trio.fail_after(40):
        async with _network(2) as (boot, honest), open_node(
                NodeConfig(listen=("/ip4/127.0.0.7/tcp/0/ws",), policy=LOOPBACK),
                transport=_AnnouncingTransport("127.0.0.99")) as planter:
            await planter.connect(boot.listen_addrs[0])
            await boot.wait_for(lambda s: (r := s.peer(planter.peer_id)) is not None
                                and any(a.host == "127.0.0.99" for a in r.addrs))
            async with _served(boot, window=8) as client:
                listed = {entry for _ in range(3)
                          for entry in (await client.get("/status")).json()["peer_addrs"]}
            assert {str(node.listen_addrs[0]) for node in honest} <= listed
            assert not any("/127.0.0.99/" in entry for entry in listed)  # the victim
            assert not any(str(planter.peer_id) in entry for entry in listed)
