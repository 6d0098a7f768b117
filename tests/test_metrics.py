"""Prometheus metrics read from node statistics at scrape time (in-memory nodes, virtual time)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest
import trio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from actors import (
    METRIC_NAMES,
    MemoryNetwork,
    Node,
    NodeStatistics,
    StatisticsProviders,
    StatusSource,
    node_registry,
    open_node,
    render_metrics,
)
from protocols import AddressPolicy, NodeConfig, NodeSnapshot, PeerId

LOOPBACK = AddressPolicy(allow_loopback=True)


@dataclass
class FakeSource:
    """A frozen picture of a real node, with fields the test may replace."""

    peer_id: PeerId
    config: NodeConfig
    snap: NodeSnapshot
    stats: NodeStatistics

    def snapshot(self) -> NodeSnapshot:
        return self.snap

    def statistics(self) -> NodeStatistics:
        return self.stats


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Node, Node]]:
    net = MemoryNetwork()
    async with (
        open_node(NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK),
                  transport=net.transport("127.0.0.1")) as a,
        open_node(NodeConfig(listen=("/ip4/127.0.0.2/tcp/0/ws",), policy=LOOPBACK),
                  transport=net.transport("127.0.0.2")) as b,
    ):
        await b.connect(a.listen_addrs[0])
        for node, other in ((a, b), (b, a)):
            await node.wait_for(_identified(other.peer_id))
        yield a, b


def _identified(peer: PeerId) -> Callable[[NodeSnapshot], bool]:
    def check(snap: NodeSnapshot) -> bool:
        record = snap.peer(peer)
        return record is not None and record.agent_version != ""
    return check


def _scrape(source: StatusSource, providers: StatisticsProviders | None = None,
            clock: Callable[[], float] | None = None) -> dict[str, list[Sample]]:
    registry = node_registry(source, providers, version="9.9.9", clock=clock or time.time)
    text = render_metrics(registry).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples: list[Sample], **labels: str) -> float:
    [match] = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return match


async def _fake() -> FakeSource:
    async with _pair() as (a, _b):
        return FakeSource(a.peer_id, a.config, a.snapshot(), a.statistics())


async def test_real_node_metrics_parse_and_are_plausible(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with _pair() as (_a, b):
            families = _scrape(b)
            snap, stats = b.snapshot(), b.statistics()
    assert set(METRIC_NAMES) <= set(families)
    assert _value(families["autonat_node_info"], peer_id=str(b.peer_id), version="9.9.9") == 1
    connections = families["autonat_connections"]
    assert {s.labels["direction"] for s in connections} == {"inbound", "outbound"}
    assert sum(s.value for s in connections) == len(snap.connections) >= 1
    assert _value(connections, direction="outbound") >= 1  # b dialed a
    assert _value(families["autonat_dials"], outcome="started") >= 1
    assert _value(families["autonat_dials"], outcome="failed") == stats.dialer.dials_failed
    assert _value(families["autonat_identify"], outcome="success") >= 1
    assert _value(families["autonat_peers_known"]) >= 1
    assert _value(families["autonat_peers_connected"]) == 1
    lifecycle = families["autonat_lifecycle_state"]
    assert [s.labels["state"] for s in lifecycle if s.value == 1] == [snap.lifecycle.value]
    assert sum(s.value for s in families["autonat_nat_status"]) == 1
    assert _value(families["autonat_nat_status"], status=snap.nat_status) == 1
    actors = {s.labels["actor"] for s in families["autonat_actor_restarts"]}
    assert actors == {child.name for child in stats.supervisor.children}
    assert {"status-tracker", "identify", "dialer"} <= actors
    assert all(s.value == 1 for s in families["autonat_actor_up"])
    assert _value(families["autonat_supervisor_running"]) == 1
    assert _value(families["autonat_supervisor_escalations"]) == 0
    assert 0 <= _value(families["autonat_uptime_seconds"]) < 3600
    for name in ("probes_sent", "probes_served", "bootstrap_fetches"):
        assert families[f"autonat_{name}"] == []  # no provider: family only


async def test_counters_are_exported_with_total_suffix(
        autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    text = render_metrics(node_registry(source)).decode()
    assert "# TYPE autonat_dials_total counter" in text
    assert 'autonat_dials_total{outcome="started"}' in text
    assert 'autonat_actor_restarts_total{actor="dialer"}' in text


async def test_provider_counts_are_exported(autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    providers = StatisticsProviders(
        probes_sent=lambda: {"reachable": 3, "timeout": 1},
        probes_served=lambda: {"ok": 2},
        bootstrap_fetches=lambda: {"ok": 1, "error": 4},
    )
    families = _scrape(source, providers)
    assert _value(families["autonat_probes_sent"], status="reachable") == 3
    assert _value(families["autonat_probes_sent"], status="timeout") == 1
    assert _value(families["autonat_probes_served"], status="ok") == 2
    assert _value(families["autonat_bootstrap_fetches"], outcome="error") == 4
    assert all(s.name.endswith("_total") for s in families["autonat_bootstrap_fetches"])


async def test_bad_provider_output_is_skipped(autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    hostile: Mapping[object, object] = {
        "": 1, "x" * 65: 1, "negative": -1, "nan": math.nan, "inf": math.inf, "bool": True,
        "text": "3", 5: 1, "good": 2}
    many = {f"s{i:03d}": i for i in range(100)}

    def broken() -> Mapping[str, float]:
        raise RuntimeError("provider bug")

    providers = StatisticsProviders(
        probes_sent=lambda: hostile,  # type: ignore[arg-type,return-value]
        probes_served=lambda: many, bootstrap_fetches=broken)
    families = _scrape(source, providers)
    assert [(s.labels, s.value) for s in families["autonat_probes_sent"]] == [
        ({"status": "good"}, 2.0)]
    assert len(families["autonat_probes_served"]) == 32
    assert families["autonat_bootstrap_fetches"] == []
    assert _value(families["autonat_supervisor_running"]) == 1  # the scrape survived


def test_providers_must_be_callable() -> None:
    with pytest.raises(TypeError):
        StatisticsProviders(probes_sent={"ok": 1})  # type: ignore[arg-type]


async def test_supervisor_and_child_counters(autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    sup = source.stats.supervisor
    dialer = replace(sup.child("dialer"), restarts=4, crashes=5)
    source.stats = replace(source.stats, supervisor=replace(
        sup, running=False, escalations=2,
        children=tuple(dialer if c.name == "dialer" else c for c in sup.children)))
    families = _scrape(source, clock=lambda: source.snap.started_at + 42.0)
    assert _value(families["autonat_actor_restarts"], actor="dialer") == 4
    assert _value(families["autonat_actor_crashes"], actor="dialer") == 5
    assert _value(families["autonat_supervisor_running"]) == 0
    assert _value(families["autonat_supervisor_escalations"]) == 2
    assert _value(families["autonat_uptime_seconds"]) == 42.0


async def test_registries_are_per_node(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with _pair() as (a, b):
            ids = {_scrape(node)["autonat_node_info"][0].labels["peer_id"] for node in (a, b)}
    assert ids == {str(a.peer_id), str(b.peer_id)}
    global_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("autonat_") for name in global_names)
