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

Every metric has exactly one source, read at scrape time, and nothing
needs wiring beyond the node itself, so
``serve_http(node, host, port)`` in an application that embeds
:func:`~actors.open_node` serves every family below:

* state gauges (lifecycle, NAT status and mapping, reachable addresses,
  peers, connections): the StatusTracker's :class:`~protocols.NodeSnapshot`;
* ``dials``, ``inbound_refused``: ``statistics().dialer`` (the Dialer), plus
  ``statistics().upgrades`` (the WebSocket transport's queue of connections
  awaiting the upgrade) for ``inbound_refusals{reason="upgrade_..."}`` and
  ``inbound_upgrades_evicted``;
* ``identify``: ``statistics().identify`` (the IdentifyActor; ``success`` is
  an Identify answer or push accepted, ``failure`` a request that failed);
* ``actor_*``, ``supervisor_*``: ``statistics().supervisor``;
* ``probes_sent``: ``statistics().probes``, the AutonatProbe's count of its
  probe outcomes. The snapshot's ``probe_outcomes`` is the tracker's view of
  the same results (what reached it) and is not exported;
* ``probes_served``: ``statistics().autonat_server``, the AutonatServer's
  count of dial requests answered by ``status/dial_status``; ``/status``
  reports its total as ``probes_served`` (the snapshot's ``probes_served``,
  the tracker's view, is not exported);
* ``dial_backs``, ``dial_back_local_failures``: ``statistics().autonat_server``
  (the dial-backs it made for requesters); ``dial_backs_received``:
  ``statistics().dial_back`` (those that reached us for our own probes);
* ``bootstrap_fetches``: ``statistics().bootstrap`` (the BootstrapFetcher's
  fetch plan), by outcome;
* ``udp_mapping``, ``udp_filtering``: the snapshot's ``udp`` (our UDP NAT
  profile); ``stun_*``: ``statistics().stun`` (our STUN server, zero when it
  does not run) and ``statistics().udp_discovery`` (our discovery runs);
* ``relay_*``: ``statistics().relay`` (our relay service's rules; zeros when
  ``relay_service`` is off); ``relay_client_*``: ``statistics().relay_client``
  (our reservations and relayed connections).

Metric names (all prefixed ``autonat_``)::

    node_info{peer_id,version}          gauge    always 1
    start_time_seconds                  gauge    Unix time the node started
    uptime_seconds                      gauge
    lifecycle_state{state}              gauge    1 on the current lifecycle
    nat_status{status}                  gauge    1 on public|private|unknown
    nat_mapping{mapping}                gauge    1 on the current mapping
    nat_filtering{filtering}            gauge    1 on the current TCP filtering
    hairpinning{hairpinning}            gauge    1 on true|false|unknown (unknown: null,
                                                 untested or not applicable)
    reachable_addresses                 gauge
    peers_known / peers_connected       gauge
    connections{direction}             gauge    inbound|outbound
    dials_total                         counter  outbound dials started
    dial_failures_total                 counter  ... of which failed
    inbound_refused_total               counter
    inbound_refusals_total{reason}      counter  admission refusals by limit, and
                                                 upgrade_ip|upgrade_subnet|upgrade_full
    inbound_evicted_total               counter  idle connections evicted for newcomers
    inbound_upgrades_evicted_total      counter  connections awaiting the upgrade evicted
    identify_total{outcome}             counter  success|failure
    actor_restarts_total{actor}         counter  per supervised child
    actor_crashes_total{actor}          counter
    actor_faults_injected_total{actor}  counter  crashes caused by Supervisor.inject_fault
    actor_up{actor}                     gauge    1 while the child runs
    supervisor_running                  gauge
    supervisor_escalations_total        counter
    probes_sent_total{status}           counter  our probes by outcome
    probes_served_total{status}         counter  dial requests answered, status/dial_status
    dial_backs_total                    counter  dial-backs our AutoNAT server made
    dial_back_local_failures_total      counter  ... of which failed on this host
    dial_backs_received_total{result}   counter  for our probes: verified|ignored
    bootstrap_fetches_total{outcome}    counter  /status fetches by outcome
    udp_mapping{mapping}                gauge    1 on the current UDP mapping behaviour
    udp_filtering{filtering}            gauge    1 on the current UDP filtering behaviour
    stun_responses_total{kind}          counter  our STUN server: success|changed|error
    stun_dropped_total{reason}          counter  requests it did not answer, by reason
    udp_discovery_runs_total{result}    counter  our RFC 5780 runs: complete|incomplete
    relay_reservations                  gauge    our relay service: reservations held
    relay_circuits                      gauge    circuits open
    relay_reservation_requests_total{outcome}  counter  granted|renewed|<refusal status>
    relay_circuit_requests_total{outcome}      counter  admitted|<refusal status>
    relay_circuits_ended_total{end}     counter  finished|data-limit|duration-limit|...
    relay_bytes_total                   counter  bytes relayed (each direction counted)
    relay_client_reservations           gauge    relays we hold a reservation on
    relay_client_connections_total{direction}  counter  relayed connections outbound|inbound
    connection_paths{path}              gauge    connected peers by path: direct|hole-punched|
                                                 relayed (:func:`connection_paths`)
    hole_punches_total{outcome}         counter  hole-punch exchanges: direct|failed|skipped
    hole_punch_attempts_total           counter  punch rounds (simultaneous dials) started
    hole_punch_time_to_direct_seconds   summary  exchange start to the direct connection
    trio_tasks                          gauge    live Trio tasks of the process

Besides these, every node's registry holds the standard ``process_*`` and
``python_*`` families (:func:`register_runtime_collectors`). Names follow
Prometheus' conventions: base units in the name (``_seconds``, ``_bytes``),
``_total`` on counters, and labels that partition a family (``sum()`` over a
label never counts an event twice).

``trio_tasks`` is the one family not read from the node: it counts the tasks
under ``trio.lowlevel.current_root_task()`` at scrape time (a leak of tasks
shows as a count that keeps growing; ``benchmarks/soak.py`` plots it). It is
left out when the collector runs outside Trio.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Protocol, get_args

import trio
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from protocols import (
    Direction,
    Lifecycle,
    NatFiltering,
    NatMapping,
    NatStatus,
    NodeConfig,
    NodeSnapshot,
    PeerId,
)
from protocols.stun import NatBehaviour

from ..node import HolePunchStatistics, NodeStatistics
from ..runtime import ChildState

__all__ = [
    "METRIC_NAMES",
    "PATHS",
    "NodeCollector",
    "StatusSource",
    "connection_paths",
    "node_registry",
    "register_runtime_collectors",
    "render_metrics",
]

PREFIX: Final = "autonat_"
METRIC_NAMES: Final = tuple(
    PREFIX + name
    for name in (
        "node_info", "start_time_seconds", "uptime_seconds", "lifecycle_state", "nat_status",
        "nat_mapping", "nat_filtering", "hairpinning",
        "reachable_addresses", "peers_known", "peers_connected", "connections", "dials",
        "dial_failures",
        "inbound_refused", "inbound_refusals", "inbound_evicted", "inbound_upgrades_evicted",
        "identify",
        "actor_restarts", "actor_crashes", "actor_faults_injected", "actor_up",
        "supervisor_running", "supervisor_escalations", "probes_sent", "probes_served",
        "dial_backs", "dial_back_local_failures", "dial_backs_received",
        "bootstrap_fetches", "trio_tasks", "udp_mapping", "udp_filtering", "stun_responses",
        "stun_dropped", "udp_discovery_runs", "relay_reservations", "relay_circuits",
        "relay_reservation_requests", "relay_circuit_requests", "relay_circuits_ended",
        "relay_bytes", "relay_client_reservations", "relay_client_connections",
        "connection_paths", "hole_punches", "hole_punch_attempts",
        "hole_punch_time_to_direct_seconds",
    )
)
"""Family names as ``text_string_to_metric_families`` reports them (counters without ``_total``)."""

_NAT_STATUSES: Final[tuple[NatStatus, ...]] = ("public", "private", "unknown")
_NAT_MAPPINGS: Final[tuple[NatMapping, ...]] = (
    "none", "endpoint-independent", "endpoint-dependent", "unknown")
_NAT_FILTERINGS: Final[tuple[NatFiltering, ...]] = get_args(NatFiltering)
_HAIRPINNING: Final = {True: "true", False: "false", None: "unknown"}

class StatusSource(Protocol):
    """What the HTTP API and the metrics read from a node (``actors.Node`` is one)."""

    @property
    def peer_id(self) -> PeerId: ...

    @property
    def config(self) -> NodeConfig: ...

    def snapshot(self) -> NodeSnapshot: ...

    def statistics(self) -> NodeStatistics: ...

    def probes_served(self) -> int:
        """AutoNAT dial requests answered so far (cheaper than a whole ``statistics()``)."""
        ...


class NodeCollector:
    """A Prometheus collector reading ``source`` at every scrape; see the module docstring."""

    def __init__(self, source: StatusSource, *, version: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._version = version
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source.snapshot()
        stats = self._source.statistics()
        yield from self._state_metrics(snapshot)
        yield from self._connection_metrics(snapshot, stats)
        yield from self._actor_metrics(stats)
        yield from self._autonat_metrics(stats)
        yield from self._udp_metrics(snapshot, stats)
        yield from _relay_metrics(stats)
        yield from _hole_punch_metrics(snapshot, stats)
        tasks = trio_task_count()
        if tasks is not None:
            yield GaugeMetricFamily(PREFIX + "trio_tasks", "Live Trio tasks of the process.",
                                    value=tasks)

    def _state_metrics(self, snapshot: NodeSnapshot) -> Iterator[Metric]:
        info = GaugeMetricFamily(PREFIX + "node_info", "Node identity (always 1).",
                                 labels=["peer_id", "version"])
        info.add_metric([str(snapshot.peer_id), self._version], 1)
        yield info
        yield GaugeMetricFamily(PREFIX + "start_time_seconds",
                                "Start time of the node since the Unix epoch, in seconds.",
                                value=snapshot.started_at)
        yield GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since the node started.",
                                value=max(0.0, self._clock() - snapshot.started_at))
        yield _one_hot(PREFIX + "lifecycle_state", "1 on the node's current lifecycle state.",
                       "state", [state.value for state in Lifecycle], snapshot.lifecycle.value)
        yield _one_hot(PREFIX + "nat_status", "1 on the current NAT status verdict.", "status",
                       _NAT_STATUSES, snapshot.nat_status)
        yield _one_hot(PREFIX + "nat_mapping", "1 on the current NAT mapping verdict.",
                       "mapping", _NAT_MAPPINGS, snapshot.nat_mapping)
        yield _one_hot(PREFIX + "nat_filtering", "1 on the current TCP filtering verdict.",
                       "filtering", _NAT_FILTERINGS, snapshot.nat_filtering)
        yield _one_hot(PREFIX + "hairpinning", "1 on whether we reach ourselves at our "
                       "confirmed external address (unknown: untested or no NAT).",
                       "hairpinning", list(_HAIRPINNING.values()),
                       _HAIRPINNING[snapshot.hairpinning])
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
        # two families, not one with outcome="started"|"failed": a failed dial was also
        # started, and sum() over a label must not count it twice (Prometheus naming)
        yield CounterMetricFamily(PREFIX + "dials", "Outbound dials started.",
                                  value=stats.dialer.dials_started)
        yield CounterMetricFamily(PREFIX + "dial_failures",
                                  "Outbound dials that failed (refused, timeout, handshake).",
                                  value=stats.dialer.dials_failed)
        admission, upgrades = stats.dialer.admission, stats.upgrades
        refusals = dict(upgrades.refused) if upgrades else {}
        yield CounterMetricFamily(PREFIX + "inbound_refused",
                                  "Inbound connections refused (every admission limit).",
                                  value=stats.dialer.inbound_refused + sum(refusals.values()))
        refusals |= dict(admission.refused) if admission else {}
        yield _counts(PREFIX + "inbound_refusals", "Inbound connections refused, by limit.",
                      "reason", refusals)
        yield CounterMetricFamily(PREFIX + "inbound_evicted",
                                  "Idle inbound connections evicted to admit a newcomer from "
                                  "a less represented network.",
                                  value=admission.evicted if admission else 0)
        yield CounterMetricFamily(PREFIX + "inbound_upgrades_evicted",
                                  "Inbound connections awaiting the WebSocket upgrade evicted "
                                  "to admit a newcomer from a less represented network.",
                                  value=upgrades.evicted if upgrades else 0)
        identify = CounterMetricFamily(PREFIX + "identify", "Identify exchanges by outcome.",
                                       labels=["outcome"])
        identify.add_metric(["success"], stats.identify.identified)
        identify.add_metric(["failure"], stats.identify.failures)
        yield identify

    def _actor_metrics(self, stats: NodeStatistics) -> Iterator[Metric]:
        restarts = CounterMetricFamily(PREFIX + "actor_restarts", "Restarts per supervised actor.",
                                       labels=["actor"])
        crashes = CounterMetricFamily(PREFIX + "actor_crashes", "Crashes per supervised actor.",
                                      labels=["actor"])
        injected = CounterMetricFamily(PREFIX + "actor_faults_injected",
                                       "Crashes caused on purpose (Supervisor.inject_fault).",
                                       labels=["actor"])
        up = GaugeMetricFamily(PREFIX + "actor_up", "1 while the supervised actor runs.",
                               labels=["actor"])
        for child in stats.supervisor.children:
            restarts.add_metric([child.name], child.restarts)
            crashes.add_metric([child.name], child.crashes)
            injected.add_metric([child.name], child.faults_injected)
            up.add_metric([child.name], 1 if child.state is ChildState.RUNNING else 0)
        yield from (restarts, crashes, injected, up)
        yield GaugeMetricFamily(PREFIX + "supervisor_running", "1 while the supervisor runs.",
                                value=1 if stats.supervisor.running else 0)
        yield CounterMetricFamily(PREFIX + "supervisor_escalations",
                                  "Times the restart intensity was exceeded.",
                                  value=stats.supervisor.escalations)

    def _autonat_metrics(self, stats: NodeStatistics) -> Iterator[Metric]:
        for name, label, counts, doc in (
            ("probes_sent", "status", stats.probes, "AutoNAT probes sent, by outcome."),
            ("probes_served", "status", stats.autonat_server.by_status(),
             "AutoNAT dial requests served, by answer."),
            ("bootstrap_fetches", "outcome", stats.bootstrap.by_outcome(),
             "Bootstrap /status fetches, by outcome."),
        ):
            yield _counts(PREFIX + name, doc, label, counts)
        # two families, as for dials: a local failure is also a dial-back made
        yield CounterMetricFamily(PREFIX + "dial_backs",
                                  "Dial-backs our AutoNAT server made to requesters.",
                                  value=stats.autonat_server.dial_backs)
        yield CounterMetricFamily(PREFIX + "dial_back_local_failures",
                                  "Dial-backs that failed on this host (E_INTERNAL_ERROR).",
                                  value=stats.autonat_server.local_failures)
        yield _counts(PREFIX + "dial_backs_received",
                      "Dial-backs received for our probes: verified (nonce and listener "
                      "matched) or ignored.", "result",
                      {"verified": stats.dial_back.verified,
                       "ignored": stats.dial_back.unexpected})

    def _udp_metrics(self, snapshot: NodeSnapshot, stats: NodeStatistics) -> Iterator[Metric]:
        values = [value.value for value in NatBehaviour]
        yield _one_hot(PREFIX + "udp_mapping", "1 on the current UDP mapping behaviour.",
                       "mapping", values, snapshot.udp.mapping.value)
        yield _one_hot(PREFIX + "udp_filtering", "1 on the current UDP filtering behaviour.",
                       "filtering", values, snapshot.udp.filtering.value)
        stun = stats.stun
        yield _counts(PREFIX + "stun_responses", "STUN responses our server sent, by kind.",
                      "kind", {"success": stun.answered if stun else 0,
                               "changed": stun.changed if stun else 0,
                               "error": stun.errors if stun else 0})
        yield _counts(PREFIX + "stun_dropped", "STUN datagrams our server did not answer.",
                      "reason", dict(stun.dropped) if stun else {})
        runs = stats.udp_discovery
        yield _counts(PREFIX + "udp_discovery_runs", "Our RFC 5780 discovery runs, by result.",
                      "result", {"complete": runs.complete if runs else 0,
                                 "incomplete": runs.runs - runs.complete if runs else 0})


def _relay_metrics(stats: NodeStatistics) -> Iterator[Metric]:
    """Our relay service (zeros when ``relay_service`` is off)."""
    rules = stats.relay.rules if stats.relay else None
    yield GaugeMetricFamily(PREFIX + "relay_reservations", "Relay reservations held.",
                            value=rules.reservations if rules else 0)
    yield GaugeMetricFamily(PREFIX + "relay_circuits", "Relayed circuits open.",
                            value=rules.circuits if rules else 0)
    reservations = {"granted": rules.reservations_granted if rules else 0,
                    "renewed": rules.reservations_renewed if rules else 0}
    reservations |= {name.lower(): n for name, n in (rules.reservations_refused if rules else ())}
    yield _counts(PREFIX + "relay_reservation_requests",
                  "Relay reservation requests, granted, renewed or refused by status.",
                  "outcome", reservations)
    circuits = {"admitted": rules.circuits_admitted if rules else 0}
    circuits |= {name.lower(): n for name, n in (rules.circuits_refused if rules else ())}
    yield _counts(PREFIX + "relay_circuit_requests",
                  "Relay circuit requests, admitted or refused by status.", "outcome", circuits)
    yield _counts(PREFIX + "relay_circuits_ended", "Relayed circuits closed, by how they ended.",
                  "end", dict(rules.circuits_ended) if rules else {})
    yield CounterMetricFamily(PREFIX + "relay_bytes", "Bytes relayed through our circuits.",
                              value=rules.bytes_relayed if rules else 0)
    client = stats.relay_client
    yield GaugeMetricFamily(PREFIX + "relay_client_reservations",
                            "Relays we hold a reservation on.",
                            value=len(client.reservations) if client else 0)
    yield _counts(PREFIX + "relay_client_connections",
                  "Relayed connections we dialed or accepted.", "direction",
                  {"outbound": client.dialed if client else 0,
                   "inbound": client.accepted if client else 0})


PATHS: Final = ("direct", "hole-punched", "relayed")


def connection_paths(snapshot: NodeSnapshot, hole_punch: HolePunchStatistics | None,
                     relayed: tuple[PeerId, ...]) -> dict[PeerId, str]:
    """The connected peers whose path is not a plain direct connection: ``hole-punched``
    (connected now, through the direct connection our latest exchange with it ended in)
    or ``relayed`` (only a relayed connection). Every other connected peer is
    ``direct``. Costs the reports and relayed peers (bounded), never a scan of all
    connections."""
    connected = snapshot.connected_peers
    paths: dict[PeerId, str] = {}
    for report in hole_punch.reports if hole_punch else ():
        if report.outcome.value == "direct" and _member(connected, report.peer):
            paths[report.peer] = "hole-punched"
    for peer in relayed:
        if not _member(connected, peer):
            paths[peer] = "relayed"
    return paths


def _member(ordered: tuple[PeerId, ...], peer: PeerId) -> bool:
    index = bisect.bisect_left(ordered, peer)
    return index < len(ordered) and ordered[index] == peer


def _hole_punch_metrics(snapshot: NodeSnapshot, stats: NodeStatistics) -> Iterator[Metric]:
    relayed = stats.relay_client.relayed_peers if stats.relay_client else ()
    counts = dict.fromkeys(PATHS, 0)
    for path in connection_paths(snapshot, stats.hole_punch, relayed).values():
        counts[path] += 1
    counts["direct"] = len(snapshot.connected_peers) - counts["hole-punched"]
    family = GaugeMetricFamily(PREFIX + "connection_paths", "Connected peers by path.",
                               labels=["path"])
    for path, count in counts.items():
        family.add_metric([path], count)
    yield family
    punch = stats.hole_punch
    yield _counts(PREFIX + "hole_punches", "Hole-punch exchanges, by outcome.", "outcome",
                  dict(punch.outcomes) if punch else {})
    yield CounterMetricFamily(PREFIX + "hole_punch_attempts",
                              "Hole-punch rounds (simultaneous dials) started.",
                              value=punch.attempts if punch else 0)
    yield SummaryMetricFamily(PREFIX + "hole_punch_time_to_direct_seconds",
                              "From the start of a hole-punch exchange to its direct "
                              "connection.",
                              count_value=punch.time_to_direct_count if punch else 0,
                              sum_value=punch.time_to_direct_sum if punch else 0.0)


def trio_task_count() -> int | None:
    """Tasks in this Trio run (the root task included); None outside Trio."""
    try:
        pending = [trio.lowlevel.current_root_task()]
    except RuntimeError:
        return None
    count = 0
    while pending:
        task = pending.pop()
        if task is None:
            continue
        count += 1
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return count


def _counts(name: str, doc: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([key], value)
    return family


def _one_hot(name: str, doc: str, label: str, values: tuple[str, ...] | list[str],
             current: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in values:
        family.add_metric([value], 1 if value == current else 0)
    return family


def node_registry(source: StatusSource, *, version: str = "",
                  clock: Callable[[], float] = time.time) -> CollectorRegistry:
    """A fresh registry holding one :class:`NodeCollector` for ``source``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(source, version=version, clock=clock))
    register_runtime_collectors(registry)
    return registry


def register_runtime_collectors(registry: CollectorRegistry) -> None:
    """The standard ``process_*`` (CPU, memory, fds, start time; Linux ``/proc``) and
    ``python_*`` (interpreter info, garbage collections) families on ``registry``.

    They describe the process, so every node of a process reports the same values;
    each node's registry holds its own collector instances (never the global
    ``REGISTRY``), read at scrape time like everything else here.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def render_metrics(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition format 0.0.4 of ``registry``."""
    return generate_latest(registry)
