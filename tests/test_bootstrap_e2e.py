"""The seed's bootstrap flow end to end, in process, over real loopback sockets.

A small cluster of boot nodes (welcome probes on, HTTP API on the first one)
serves ``/status``; a newcomer configured with only that URL goes through
every stage - fetch, dial, identify, probe, verdict, ``fully_connected`` -
and each stage is checked where a user would look (snapshot, statistics,
the boot node's ``/status``, ``/metrics`` of both - served by a bare
``serve_http(node, host, 0)``, as an application embedding a node would).
Then the failure side: a dead, failing, slow or hostile bootstrap server
never stops a node, which falls back to the peers it persisted in an
earlier run.

Real sockets need the real clock, so every test is bounded by
``trio.fail_after``. ``tests/test_bootstrap.py`` covers the fetcher itself
in depth (virtual time, mock transport); this file only checks that the
pieces fit together.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from actors import Node, open_node, serve_http
from protocols import (
    AddressPolicy,
    Direction,
    Keypair,
    Lifecycle,
    NodeConfig,
    NodeSnapshot,
    PeerId,
)

LOOPBACK = AddressPolicy(allow_loopback=True)
GUARD = 30.0


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **overrides)


def _identified(*peers: PeerId) -> Callable[[NodeSnapshot], bool]:
    def check(snap: NodeSnapshot) -> bool:
        return all((rec := snap.peer(p)) is not None and bool(rec.agent_version)
                   and p in snap.connected_peers for p in peers)
    return check


@dataclass(frozen=True)
class Cluster:
    boots: list[Node]
    url: str

    @property
    def ids(self) -> set[PeerId]:
        return {boot.peer_id for boot in self.boots}


@asynccontextmanager
async def _boot_cluster(net: str, count: int = 3) -> AsyncIterator[Cluster]:
    """``count`` boot nodes on ``127.0.<net>.1..``, meshed; ``/status`` of the first one."""
    async with AsyncExitStack() as stack:
        boots = [await stack.enter_async_context(
                     open_node(_config(f"127.0.{net}.{i + 1}", welcome_probes=True)))
                 for i in range(count)]
        async with trio.open_nursery() as nursery:
            for boot in boots[1:]:
                nursery.start_soon(boots[0].connect, boot.listen_addrs[0])
        await boots[0].wait_for(_identified(*(b.peer_id for b in boots[1:])))
        nursery = await stack.enter_async_context(trio.open_nursery())
        host, port = await nursery.start(serve_http, boots[0], f"127.0.{net}.1", 0)
        yield Cluster(boots, f"http://{host}:{port}/status")
        nursery.cancel_scope.cancel()


async def _get_status(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    document = response.json()
    assert isinstance(document, dict)
    return document


async def _get_metrics(url: str) -> dict[str, list[Sample]]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    return {family.name: family.samples
            for family in text_string_to_metric_families(response.text)}


def _by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {sample.labels[label]: sample.value for sample in samples}


# --- the happy path ----------------------------------------------------------------------


@dataclass
class Stages:
    """Revision of the first snapshot in which each stage was visible."""

    lifecycles: list[Lifecycle]
    first: dict[str, int]

    def see(self, snap: NodeSnapshot, boot_ids: set[PeerId]) -> None:
        if not self.lifecycles or self.lifecycles[-1] is not snap.lifecycle:
            self.lifecycles.append(snap.lifecycle)
        seen = {
            "peers": boot_ids <= {r.peer_id for r in snap.peers if r.from_bootstrap},
            "connection": bool(boot_ids & set(snap.connected_peers)),
            "identified": any(r.agent_version for r in snap.peers if r.peer_id in boot_ids),
            "observed": bool(snap.observed_addrs),
            "verdict": snap.nat_status != "unknown",
            "fully_connected": snap.lifecycle is Lifecycle.FULLY_CONNECTED,
        }
        for stage, now in seen.items():
            if now:
                self.first.setdefault(stage, snap.revision)


async def _record(node: Node, stages: Stages, boot_ids: set[PeerId]) -> None:
    async for snap in node.subscribe():
        stages.see(snap, boot_ids)


async def test_newcomer_bootstraps_from_a_local_boot_node_end_to_end() -> None:
    with trio.fail_after(GUARD):
        async with _boot_cluster("61") as cluster, trio.open_nursery() as watchers:
            before = await _get_status(cluster.url)
            assert before["peer_id"] == str(cluster.boots[0].peer_id)
            assert set(before["peer_addrs"]) == {
                str(b.listen_addrs[0]) for b in cluster.boots}

            stages = Stages([], {})
            config = _config("127.0.61.9", boot_urls=(cluster.url,))
            async with open_node(config) as node:
                watchers.start_soon(_record, node, stages, cluster.ids)
                # an embedding application's HTTP API: no arguments beyond the node
                host, port = await watchers.start(serve_http, node, "127.0.61.9", 0)
                snap = await node.wait_for(
                    lambda s: s.lifecycle is Lifecycle.FULLY_CONNECTED
                    and s.nat_status != "unknown" and _identified(*cluster.ids)(s))
                stats = node.statistics()
                metrics = await _get_metrics(f"http://{host}:{port}/metrics")
                after = await _get_status(cluster.url)
                boot_metrics = await _get_metrics(cluster.url.replace("/status", "/metrics"))
                boot_served = cluster.boots[0].statistics().autonat_server
                watchers.cancel_scope.cancel()

    me = node.listen_addrs[0]
    # fetch: one good fetch, every boot node learned from the URL
    assert stats.bootstrap.by_outcome()["ok"] >= 1
    assert stats.bootstrap.addresses_found >= len(cluster.boots)
    assert sum(n for o, n in stats.bootstrap.fetches if o != "ok") == 0
    for boot in cluster.boots:
        record = snap.peer(boot.peer_id)
        assert record is not None and record.from_bootstrap
        assert cluster.url in record.sources
        # dial: an outbound connection to each; identify: its agent and listen address
        assert any(c.direction is Direction.OUTBOUND for c in snap.connections_to(boot.peer_id))
        assert record.agent_version.startswith("trio-autonat/")
        assert boot.listen_addrs[0] in record.addrs
    # identify told us how the boot nodes see us
    assert {o.observer for o in snap.observed_addrs} <= cluster.ids
    assert {o.observed.host for o in snap.observed_addrs} == {"127.0.61.9"}
    # probe and verdict: nonce-verified dial-backs from boot nodes, evidence-based "public"
    assert snap.nat_status == "public"
    assert snap.reachable_addrs == (me.with_peer_id(None),)
    assert snap.nat_mapping == "none"
    assert stats.dial_back.verified >= config.autonat_client.confidence
    assert set(stats.servers_answered) <= cluster.ids
    assert len(stats.servers_answered) >= config.autonat_client.confidence
    assert stats.probes.get("reachable", 0) >= config.autonat_client.confidence
    # lifecycle: forward only, ending fully connected (probed by a bootstrap peer)
    order = list(Lifecycle)
    assert stages.lifecycles == sorted(stages.lifecycles, key=order.index)
    assert stages.lifecycles[-1] is Lifecycle.FULLY_CONNECTED
    # stages in causal order (a subscriber may see several in one snapshot, hence <=)
    assert stages.first["peers"] <= stages.first["connection"] <= stages.first["identified"]
    assert stages.first["connection"] <= stages.first["verdict"]
    assert stages.first["connection"] <= stages.first["fully_connected"]
    assert stats.supervisor.restarts == 0 and stats.supervisor.escalations == 0
    # and the boot node now hands the newcomer out to others
    assert str(me) in after["peer_addrs"]
    assert isinstance(after["probes_served"], int) and after["probes_served"] >= 1
    # the embedded node's /metrics has the probe and bootstrap families, from statistics()
    sent = _by_label(metrics["autonat_probes_sent"], "status")
    assert sent["reachable"] >= config.autonat_client.confidence
    assert set(sent) <= set(node.statistics().probes)
    fetches = _by_label(metrics["autonat_bootstrap_fetches"], "outcome")
    assert fetches["ok"] >= 1
    assert set(fetches) == set(stats.bootstrap.by_outcome())
    assert "autonat_probes_served" in metrics
    # the boot node's probes_served: one count, behind /status and /metrics alike
    served = _by_label(boot_metrics["autonat_probes_served"], "status")
    assert served["OK/OK"] >= 1
    assert after["probes_served"] <= sum(served.values()) <= boot_served.total_answered


# --- failures fall back to the persisted peers ----------------------------------------


async def _seed_peer_store(data_dir: Path, keypair: Keypair, host: str, peer: Node) -> None:
    """Run a node once, connected to ``peer``, so that ``data_dir/peers.json`` knows it."""
    async with open_node(_config(host, data_dir=data_dir), keypair=keypair) as node:
        await node.connect(peer.listen_addrs[0])
        await node.wait_for(_identified(peer.peer_id))
    stored = json.loads((data_dir / "peers.json").read_text())
    assert str(peer.peer_id) in json.dumps(stored)


def _healthy(node: Node) -> None:
    supervisor = node.statistics().supervisor
    assert supervisor.running
    assert supervisor.restarts == 0 and supervisor.escalations == 0
    assert all(child.crashes == 0 for child in supervisor.children)


async def test_dead_boot_url_falls_back_to_persisted_peers(tmp_path: Path) -> None:
    keypair = Keypair.generate()
    with trio.fail_after(GUARD):
        dead = trio.socket.socket()  # bound, never listening: connection refused
        with dead:
            await dead.bind(("127.0.62.5", 0))
            dead_url = f"http://127.0.62.5:{dead.getsockname()[1]}/status"
            async with open_node(_config("127.0.62.2")) as peer:
                await _seed_peer_store(tmp_path, keypair, "127.0.62.1", peer)
                config = _config("127.0.62.1", data_dir=tmp_path, boot_urls=(dead_url,))
                async with open_node(config, keypair=keypair) as node:
                    snap = await node.wait_for(_identified(peer.peer_id))
                    stats = node.statistics()
                    _healthy(node)
    record = snap.peer(peer.peer_id)
    assert record is not None and not record.from_bootstrap
    # we dialed it (the peer cannot know our new port): the persisted address was used
    assert [c.direction for c in snap.connections_to(peer.peer_id)] == [Direction.OUTBOUND]
    assert snap.lifecycle is Lifecycle.CONNECTED
    assert stats.bootstrap.by_outcome()["network_error"] >= 1
    assert stats.bootstrap.by_outcome()["ok"] == 0
    assert stats.bootstrap.fallbacks == 1


# A tiny HTTP/1.1 server with fixed, broken answers (one per path).
_HEAD = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
_ANSWERS: dict[bytes, bytes] = {
    b"/500": _HEAD % b"500 Internal Server Error" + b"Content-Length: 2\r\n\r\n{}",
    b"/types": _HEAD % b"200 OK" + b"\r\n" + json.dumps(
        {"peers_count": "many", "peer_id": 42, "peer_addrs": {"a": [1]}}).encode(),
    b"/invalid": _HEAD % b"200 OK" + b"\r\n" + json.dumps(
        {"peers_count": 10_000, "peer_id": str(Keypair.generate().peer_id),
         "peer_addrs": [f"/ip4/300.{i}/ws" for i in range(10_000)]}).encode(),
    b"/deep": _HEAD % b"200 OK" + b"\r\n" + b"[" * 50_000,
    b"/garbage": _HEAD % b"200 OK" + b"\r\n" + b"<html>\x00\xff not json",
    b"/huge": _HEAD % b"200 OK" + b"\r\n" + b" " * 2_000_000,
}
_OUTCOMES = {"/500": "http_error", "/types": "bad_document", "/invalid": "empty",
             "/deep": "bad_document", "/garbage": "bad_document", "/huge": "too_large",
             "/slow": "timeout"}


async def _hostile(stream: trio.SocketStream) -> None:
    try:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            head += chunk
        path = head.split(b" ", 2)[1]
        if path == b"/slow":
            await trio.sleep_forever()
        await stream.send_all(_ANSWERS[path])
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the node hung up on us (huge body): exactly what it should do
    finally:
        await stream.aclose()


async def test_failing_and_hostile_boot_servers_do_not_hurt_the_node(tmp_path: Path) -> None:
    keypair = Keypair.generate()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as servers, open_node(_config("127.0.63.2")) as peer:
            [listener] = await servers.start(
                partial(trio.serve_tcp, _hostile, 0, host="127.0.63.5"))
            port = listener.socket.getsockname()[1]
            urls = tuple(f"http://127.0.63.5:{port}{path}" for path in _OUTCOMES)
            await _seed_peer_store(tmp_path, keypair, "127.0.63.1", peer)
            config = _config("127.0.63.1", data_dir=tmp_path, boot_urls=urls,
                             fetch_timeout=1.0)
            async with open_node(config, keypair=keypair) as node, \
                    trio.open_nursery() as nursery:
                snap = await node.wait_for(_identified(peer.peer_id))
                outcomes = node.statistics().bootstrap.by_outcome()
                _healthy(node)
                # the node's own surface still answers
                host, http_port = await nursery.start(serve_http, node, "127.0.63.1", 0)
                async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                    health = await client.get(f"http://{host}:{http_port}/healthz")
                nursery.cancel_scope.cancel()
            servers.cancel_scope.cancel()
    assert health.status_code == 200 and health.json()["ok"] is True
    expected: dict[str, int] = {}
    for outcome in _OUTCOMES.values():
        expected[outcome] = expected.get(outcome, 0) + 1
    for outcome, count in expected.items():
        assert outcomes[outcome] >= count, (outcome, outcomes)
    assert outcomes["ok"] == 0
    record = snap.peer(peer.peer_id)
    assert record is not None and not record.from_bootstrap  # reached via the peer store
    assert [c.direction for c in snap.connections_to(peer.peer_id)] == [Direction.OUTBOUND]
    assert node.statistics().bootstrap.fallbacks == 1
