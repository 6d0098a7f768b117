"""Prometheus metrics of one node, read from its statistics at scrape time.

Theory of operation
-------------------
Nothing here counts anything. The actors already keep counters
(``node.statistics()``) and the node keeps its state in immutable snapshots
(``node.snapshot()``); :class:`NodeCollector` is a custom Prometheus
collector that reads both when ``/metrics`` is scraped and turns them into
metric families. Counters that only grow (dials, restarts, Identify
outcomes) become Prometheus counters; current values (connections, peers,
lifecycle, NAT status) become gauges, with a ``1`` on the current label
value and ``0`` on the others for the enumerations, so ``max by (state)``
style queries work and a state that was never entered is still visible.

Several nodes run in one process (tests, the simulator), so every node gets
its own :class:`~prometheus_client.CollectorRegistry`
(:func:`node_registry`); the global ``REGISTRY`` is never touched.

AutoNAT probes and bootstrap fetches are counted by actors written
separately; their counts come from optional :class:`StatisticsProviders`,
each a callable returning ``{label value: cumulative count}``. Their metric
names are fixed here. Provider output is treated as untrusted: at most
:data:`MAX_LABEL_VALUES` entries, keys must be short strings, values finite
numbers >= 0; anything else is skipped, and a provider that raises is logged
and its family exported without samples - a broken provider never breaks a
scrape.

Metric names (all prefixed ``autonat_``)::

    node_info{peer_id,version}          gauge    always 1
    uptime_seconds                      gauge
    lifecycle_state{state}              gauge    1 on the current lifecycle
    nat_status{status}                  gauge    1 on public|private|unknown
    nat_mapping{mapping}                gauge    1 on the current mapping
    reachable_addresses                 gauge
    peers_known / peers_connected       gauge
    connections{direction}             gauge    inbound|outbound
    dials_total{outcome}                counter  started|failed
    inbound_refused_total               counter
    identify_total{outcome}             counter  success|failure
    actor_restarts_total{actor}         counter  per supervised child
    actor_crashes_total{actor}          counter
    actor_up{actor}                     gauge    1 while the child runs
    supervisor_running                  gauge
    supervisor_escalations_total        counter
    probes_sent_total{status}           counter  (provider)
    probes_served_total{status}         counter  (provider)
    bootstrap_fetches_total{outcome}    counter  (provider)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from protocols import Direction, Lifecycle, NatMapping, NatStatus, NodeConfig, NodeSnapshot, PeerId

from ..node import NodeStatistics
from ..runtime import ChildState, get_logger

__all__ = [
    "METRIC_NAMES",
    "NodeCollector",
    "StatisticsProvider",
    "StatisticsProviders",
    "StatusSource",
    "node_registry",
    "render_metrics",
]

PREFIX: Final = "autonat_"
MAX_LABEL_VALUES: Final = 32
MAX_LABEL_LENGTH: Final = 64
METRIC_NAMES: Final = tuple(
    PREFIX + name
    for name in (
        "node_info", "uptime_seconds", "lifecycle_state", "nat_status", "nat_mapping",
        "reachable_addresses", "peers_known", "peers_connected", "connections", "dials",
        "inbound_refused", "identify", "actor_restarts", "actor_crashes", "actor_up",
        "supervisor_running", "supervisor_escalations", "probes_sent", "probes_served",
        "bootstrap_fetches",
    )
)
"""Family names as ``text_string_to_metric_families`` reports them (counters without ``_total``)."""

_NAT_STATUSES: Final[tuple[NatStatus, ...]] = ("public", "private", "unknown")
_NAT_MAPPINGS: Final[tuple[NatMapping, ...]] = (
    "none", "endpoint-independent", "endpoint-dependent", "unknown")

StatisticsProvider = Callable[[], Mapping[str, float]]
"""Returns cumulative counts by label value, e.g. ``{"reachable": 3, "timeout": 1}``."""


class StatusSource(Protocol):
    """What the HTTP API and the metrics read from a node (``actors.Node`` is one)."""

    @property
    def peer_id(self) -> PeerId: ...

    @property
    def config(self) -> NodeConfig: ...

    def snapshot(self) -> NodeSnapshot: ...

    def statistics(self) -> NodeStatistics: ...


@dataclass(frozen=True)
class StatisticsProviders:
    """Optional counters from actors outside the node core (each may be ``None``)."""

    probes_sent: StatisticsProvider | None = None
    """AutoNAT probes we sent, by outcome/status."""
    probes_served: StatisticsProvider | None = None
    """AutoNAT dial requests we served, by answer status."""
    bootstrap_fetches: StatisticsProvider | None = None
    """Bootstrap ``/status`` fetches, by outcome."""

    def __post_init__(self) -> None:
        for name in ("probes_sent", "probes_served", "bootstrap_fetches"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"StatisticsProviders.{name} must be callable or None")


def read_provider(provider: StatisticsProvider | None, name: str) -> dict[str, float]:
    """The provider's valid entries, sorted and capped; ``{}`` if absent or broken."""
    if provider is None:
        return {}
    try:
        items = list(itertools.islice(provider().items(), MAX_LABEL_VALUES * 4))
    except Exception:
        get_logger("actors.metrics").exception("statistics provider failed", provider=name)
        return {}
    valid = {key: float(value) for key, value in items if _valid_entry(key, value)}
    return dict(sorted(valid.items())[:MAX_LABEL_VALUES])


def _valid_entry(key: object, value: object) -> bool:
    return (isinstance(key, str) and 0 < len(key) <= MAX_LABEL_LENGTH
            and isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


class NodeCollector:
    """A Prometheus collector reading ``source`` at every scrape; see the module docstring."""

    def __init__(self, source: StatusSource, providers: StatisticsProviders | None = None, *,
                 version: str = "", clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._providers = providers if providers is not None else StatisticsProviders()
        self._version = version
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source.snapshot()
        stats = self._source.statistics()
        yield from self._state_metrics(snapshot)
        yield from self._connection_metrics(snapshot, stats)
        yield from self._actor_metrics(stats)
        yield from self._provider_metrics()

    def _state_metrics(self, snapshot: NodeSnapshot) -> Iterator[Metric]:
        info = GaugeMetricFamily(PREFIX + "node_info", "Node identity (always 1).",
                                 labels=["peer_id", "version"])
        info.add_metric([str(snapshot.peer_id), self._version], 1)
        yield info
        yield GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since the node started.",
                                value=max(0.0, self._clock() - snapshot.started_at))
        yield _one_hot(PREFIX + "lifecycle_state", "1 on the node's current lifecycle state.",
                       "state", [state.value for state in Lifecycle], snapshot.lifecycle.value)
        yield _one_hot(PREFIX + "nat_status", "1 on the current NAT status verdict.", "status",
                       _NAT_STATUSES, snapshot.nat_status)
        yield _one_hot(PREFIX + "nat_mapping", "1 on the current NAT mapping verdict.",
                       "mapping", _NAT_MAPPINGS, snapshot.nat_mapping)
        yield GaugeMetricFamily(PREFIX + "reachable_addresses",
                                "Own addresses confirmed reachable by AutoNAT.",
                                value=len(snapshot.reachable_addrs))
        yield GaugeMetricFamily(PREFIX + "peers_known", "Peer records held.",
                                value=len(snapshot.peers))
        yield GaugeMetricFamily(PREFIX + "peers_connected", "Peers with a live connection.",
                                value=len(snapshot.connected_peers))

    def _connection_metrics(self, snapshot: NodeSnapshot,
                            stats: NodeStatistics) -> Iterator[Metric]:
        connections = GaugeMetricFamily(PREFIX + "connections", "Live connections by direction.",
                                        labels=["direction"])
        for direction in Direction:
            count = sum(1 for conn in snapshot.connections if conn.direction is direction)
            connections.add_metric([direction.value], count)
        yield connections
        dials = CounterMetricFamily(PREFIX + "dials", "Outbound dials by outcome.",
                                    labels=["outcome"])
        dials.add_metric(["started"], stats.dialer.dials_started)
        dials.add_metric(["failed"], stats.dialer.dials_failed)
        yield dials
        yield CounterMetricFamily(PREFIX + "inbound_refused",
                                  "Inbound connections refused at the connection limit.",
                                  value=stats.dialer.inbound_refused)
        identify = CounterMetricFamily(PREFIX + "identify", "Identify exchanges by outcome.",
                                       labels=["outcome"])
        identify.add_metric(["success"], stats.identified)
        identify.add_metric(["failure"], stats.identify_failures)
        yield identify

    def _actor_metrics(self, stats: NodeStatistics) -> Iterator[Metric]:
        restarts = CounterMetricFamily(PREFIX + "actor_restarts", "Restarts per supervised actor.",
                                       labels=["actor"])
        crashes = CounterMetricFamily(PREFIX + "actor_crashes", "Crashes per supervised actor.",
                                      labels=["actor"])
        up = GaugeMetricFamily(PREFIX + "actor_up", "1 while the supervised actor runs.",
                               labels=["actor"])
        for child in stats.supervisor.children:
            restarts.add_metric([child.name], child.restarts)
            crashes.add_metric([child.name], child.crashes)
            up.add_metric([child.name], 1 if child.state is ChildState.RUNNING else 0)
        yield from (restarts, crashes, up)
        yield GaugeMetricFamily(PREFIX + "supervisor_running", "1 while the supervisor runs.",
                                value=1 if stats.supervisor.running else 0)
        yield CounterMetricFamily(PREFIX + "supervisor_escalations",
                                  "Times the restart intensity was exceeded.",
                                  value=stats.supervisor.escalations)

    def _provider_metrics(self) -> Iterator[Metric]:
        for name, label, provider, doc in (
            ("probes_sent", "status", self._providers.probes_sent,
             "AutoNAT probes sent, by outcome."),
            ("probes_served", "status", self._providers.probes_served,
             "AutoNAT dial requests served, by answer."),
            ("bootstrap_fetches", "outcome", self._providers.bootstrap_fetches,
             "Bootstrap /status fetches, by outcome."),
        ):
            family = CounterMetricFamily(PREFIX + name, doc, labels=[label])
            for key, value in read_provider(provider, name).items():
                family.add_metric([key], value)
            yield family


def _one_hot(name: str, doc: str, label: str, values: tuple[str, ...] | list[str],
             current: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in values:
        family.add_metric([value], 1 if value == current else 0)
    return family


def node_registry(source: StatusSource, providers: StatisticsProviders | None = None, *,
                  version: str = "", clock: Callable[[], float] = time.time) -> CollectorRegistry:
    """A fresh registry holding one :class:`NodeCollector` for ``source``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(source, providers, version=version, clock=clock))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition format 0.0.4 of ``registry``."""
    return generate_latest(registry)
