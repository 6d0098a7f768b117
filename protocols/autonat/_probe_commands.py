"""What the :class:`~protocols.autonat.ProbeScheduler` says: its commands, its error and
its statistics.

Theory of operation
-------------------
The scheduler (:mod:`protocols.autonat._probe_scheduler`) is fed events and
answers with :data:`ProbeCommand` values that its driver executes in order:
:class:`StartProbe` (ask one server about one address),
:class:`PublishReachability` (tell the StatusTracker), and the two
small-network notes (:class:`SmallNetworkWaitStarted`,
:class:`SmallNetworkWaitEnded`) that the driver logs. An input the
scheduler's state cannot accept raises :class:`ProbeSchedulerError` (a
driver bug); :class:`ProbeSchedulerStatistics` is its frozen introspection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ..core import LocalProtocolError, PeerId, WsAddress
from ._autonat_events import NatMapping, ProbeResult, ReachabilityUpdate
from ._reachability_events import ReachabilityEvent

__all__ = [
    "ProbeCommand",
    "ProbeSchedulerError",
    "ProbeSchedulerStatistics",
    "PublishReachability",
    "SmallNetworkWait",
    "SmallNetworkWaitEnded",
    "SmallNetworkWaitStarted",
    "StartProbe",
]


class ProbeSchedulerError(LocalProtocolError):
    """An input the scheduler's state cannot accept (a driver bug); the message names both."""


@dataclass(frozen=True)
class StartProbe:
    """Ask ``server`` (connected, AutoNAT) to dial ``addr``; report as ``probe_id``."""

    probe_id: int
    addr: WsAddress
    server: PeerId
    welcome: bool = False
    """A welcome probe (boot nodes probe every newcomer once)."""


@dataclass(frozen=True)
class PublishReachability:
    """Send ``update`` to the StatusTracker; ``events`` say what changed (for the log)."""

    update: ReachabilityUpdate
    events: tuple[ReachabilityEvent, ...]


@dataclass(frozen=True)
class SmallNetworkWait:
    """Fewer AutoNAT servers than the threshold: wait before they may decide alone."""

    servers: int
    threshold: int
    """The configured threshold (the number of servers a verdict normally needs)."""
    wait_s: float
    """The wait's full length (``ReachabilityConfig.small_network_settle``)."""
    until: float
    """When it ends (node time), unless more servers come first."""


@dataclass(frozen=True)
class SmallNetworkWaitStarted:
    """A small-network wait began (or its end moved): log it."""

    wait: SmallNetworkWait


@dataclass(frozen=True)
class SmallNetworkWaitEnded:
    """The small-network wait is over: ``threshold_in_force`` now applies."""

    servers: int
    threshold_in_force: int


ProbeCommand: TypeAlias = (
    StartProbe | PublishReachability | SmallNetworkWaitStarted | SmallNetworkWaitEnded
)


@dataclass(frozen=True)
class ProbeSchedulerStatistics:
    """Counters since creation and the current state; tuples are sorted."""

    outcomes: tuple[tuple[str, int], ...]
    """Finished probes by outcome (``reachable``, ``unreachable``, ``lied``, ...)."""
    probes_started: int
    welcome_probes: int
    in_flight: int
    cancelled: int
    servers_available: int
    """Connected peers that serve AutoNAT dial requests, at the latest step."""
    servers_contacted: tuple[PeerId, ...]
    """Servers we sent a dial request to (answered or not)."""
    servers_answered: tuple[PeerId, ...]
    """Servers that sent us a DialResponse (whatever it said)."""
    candidates: int
    candidate_recomputations: int
    """How many inputs changed the candidates or the NAT mapping (each applied
    incrementally by the observation index, never recomputed over all)."""
    observers: int
    """Observations of our address held (one per observer, at most ``max_observers``)."""
    nat_mapping: NatMapping
    small_network_wait: SmallNetworkWait | None
    recent: tuple[ProbeResult, ...] = ()
    """The last results, oldest first (at most :data:`~protocols.RECENT_PROBES`): the
    node's probe history, as the dashboard shows it."""
