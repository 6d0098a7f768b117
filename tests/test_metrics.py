"""Prometheus metrics read from node statistics at scrape time (in-memory nodes, virtual time)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import FrozenInstanceError, dataclass, replace

import pytest
import trio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from actors import (
    METRIC_NAMES,
    AutonatServerStatistics,
    MemoryNetwork,
    Node,
    NodeStatistics,
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

    def probes_served(self) -> int:
        return self.statistics().autonat_server.total_answered


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


def _scrape(source: StatusSource,
            clock: Callable[[], float] | None = None) -> dict[str, list[Sample]]:
    registry = node_registry(source, version="9.9.9", clock=clock or time.time)
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
    assert _value(families["autonat_dials"]) >= 1
    assert _value(families["autonat_dial_failures"]) == stats.dialer.dials_failed
    assert _value(families["autonat_identify"], outcome="success") >= 1
    assert _value(families["autonat_peers_known"]) >= 1
    assert _value(families["autonat_peers_connected"]) == 1
    lifecycle = families["autonat_lifecycle_state"]
    assert [s.labels["state"] for s in lifecycle if s.value == 1] == [snap.lifecycle.value]
    assert sum(s.value for s in families["autonat_nat_status"]) == 1
    assert _value(families["autonat_nat_status"], status=snap.nat_status) == 1
    filtering = families["autonat_nat_filtering"]
    assert {s.labels["filtering"] for s in filtering} == {
        "endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown"}
    assert [s.labels["filtering"] for s in filtering if s.value == 1] == [snap.nat_filtering]
    hairpinning = {s.labels["hairpinning"]: s.value for s in families["autonat_hairpinning"]}
    assert hairpinning == {"true": 0, "false": 0, "unknown": 1}  # no NAT: not applicable
    actors = {s.labels["actor"] for s in families["autonat_actor_restarts"]}
    assert actors == {child.name for child in stats.supervisor.children}
    assert {"status-tracker", "identify", "dialer"} <= actors
    assert all(s.value == 1 for s in families["autonat_actor_up"])
    assert _value(families["autonat_supervisor_running"]) == 1
    assert _value(families["autonat_supervisor_escalations"]) == 0
    assert 0 <= _value(families["autonat_uptime_seconds"]) < 3600
    # probe and bootstrap families come from the node itself, no wiring needed
    fetches = {s.labels["outcome"]: s.value for s in families["autonat_bootstrap_fetches"]}
    assert fetches == stats.bootstrap.by_outcome()  # no boot URL: every outcome at 0
    sent = {s.labels["status"]: s.value for s in families["autonat_probes_sent"]}
    assert sent == stats.probes
    served = {s.labels["status"]: s.value for s in families["autonat_probes_served"]}
    assert served == stats.autonat_server.by_status()


async def test_counters_are_exported_with_total_suffix(
        autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    text = render_metrics(node_registry(source)).decode()
    assert "# TYPE autonat_dials_total counter" in text
    assert "autonat_dials_total " in text and "# TYPE autonat_dial_failures_total counter" in text
    assert 'autonat_actor_restarts_total{actor="dialer"}' in text


async def test_probe_and_bootstrap_counts_come_from_node_statistics(
        autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    source.stats = replace(
        source.stats,
        autonat_client=replace(source.stats.autonat_client,
                               outcomes=(("reachable", 3), ("timeout", 1))),
        autonat_server=AutonatServerStatistics(
            answered=(("E_DIAL_REFUSED/UNUSED", 1), ("OK/OK", 2)), dial_backs=2),
        bootstrap=replace(source.stats.bootstrap, fetches=(("ok", 1), ("error", 4))))
    families = _scrape(source)
    assert _value(families["autonat_probes_sent"], status="reachable") == 3
    assert _value(families["autonat_probes_sent"], status="timeout") == 1
    assert _value(families["autonat_probes_served"], status="OK/OK") == 2
    assert _value(families["autonat_probes_served"], status="E_DIAL_REFUSED/UNUSED") == 1
    assert _value(families["autonat_bootstrap_fetches"], outcome="error") == 4
    assert all(s.name.endswith("_total") for s in families["autonat_bootstrap_fetches"])


async def test_dial_back_counts_come_from_node_statistics(
        autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    source.stats = replace(
        source.stats,
        autonat_server=AutonatServerStatistics(answered=(("OK/OK", 5),), dial_backs=7,
                                               local_failures=2),
        dial_back=replace(source.stats.dial_back, verified=4, unexpected=3))
    families = _scrape(source)
    assert _value(families["autonat_dial_backs"]) == 7
    assert _value(families["autonat_dial_back_local_failures"]) == 2
    assert _value(families["autonat_dial_backs_received"], result="verified") == 4
    assert _value(families["autonat_dial_backs_received"], result="ignored") == 3


async def test_statistics_are_frozen(autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    stats = source.stats
    for value, field in ((stats, "autonat_client"), (stats.autonat_client, "outcomes"),
                         (stats.identify, "identified"),
                         (stats.identify_responder, "requests_answered"),
                         (stats.autonat_server, "answered"), (stats.dial_back, "verified")):
        with pytest.raises(FrozenInstanceError):
            setattr(value, field, 0)
    with pytest.raises(TypeError):  # a read-only view of the one count
        stats.probes["reachable"] = 99  # type: ignore[index]
    # both Identify halves counted the pair's exchange
    assert stats.identify.identified >= 1
    assert stats.identify_responder.requests_answered >= 1


async def test_supervisor_and_child_counters(autojump_clock: trio.testing.MockClock) -> None:
    source = await _fake()
    sup = source.stats.supervisor
    dialer = replace(sup.child("dialer"), restarts=4, crashes=5, faults_injected=3)
    source.stats = replace(source.stats, supervisor=replace(
        sup, running=False, escalations=2,
        children=tuple(dialer if c.name == "dialer" else c for c in sup.children)))
    families = _scrape(source, clock=lambda: source.snap.started_at + 42.0)
    assert _value(families["autonat_actor_restarts"], actor="dialer") == 4
    assert _value(families["autonat_actor_crashes"], actor="dialer") == 5
    assert _value(families["autonat_actor_faults_injected"], actor="dialer") == 3
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


async def test_trio_tasks_counts_the_tasks_of_the_run() -> None:
    from actors.surfaces._metrics import trio_task_count

    before = trio_task_count()
    assert before is not None and before >= 1
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        assert trio_task_count() == before + 5
        nursery.cancel_scope.cancel()


def test_trio_tasks_is_left_out_outside_trio() -> None:
    from actors.surfaces._metrics import trio_task_count

    assert trio_task_count() is None
