"""A simulation scenario as data: boot nodes, hosts by NAT type, links, deadline.

Theory of operation
-------------------
Scenarios are TOML documents (``config/scenarios/*.toml``)::

    [scenario]
    name = "small"
    seed = 1            # every random choice of a run derives from it
    boot_nodes = 3
    deadline = 120.0    # simulated seconds; hosts without a verdict by then: unknown
    latency_ms = 20.0   # one-way delay of every access link
    loss = 0.0          # probability that one connection attempt (SYN) is lost
    dialback_source = true  # boot nodes dial back from a second address too
    status_bootstrap = true # hosts fetch the boot nodes' /status (false: given as peers)
    punch_matrix = false    # boot nodes relay; after convergence, punch between NAT types

    host_servers = true # hosts serve AutoNAT too (false: only boot nodes do)
    start_spacing = 0.01  # simulated seconds between two hosts' starts
    run_for = 0.0       # the run lasts at least this long (re-probes happen), then settles

    [hosts]             # NAT type (protocols.sim.NAT_TYPES) -> how many hosts
    public = 8
    symmetric = 7

    [liars] / [kill] / [churn]  # optional faults: protocols.sim._sim_faults

This module parses the text (the caller reads the file) into a frozen
:class:`SimScenario`, refusing unknown keys and NAT types, and scales a
scenario to another host count keeping the mix (largest remainders). It
reads no files and knows nothing of the network that runs it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._nat_catalog import nat_type
from ._sim_faults import BootKill, Churn, FaultError, Liars

__all__ = ["ScenarioError", "SimScenario"]

_SCENARIO_KEYS = {"name", "seed", "boot_nodes", "deadline", "latency_ms", "loss",
                  "dialback_source", "status_bootstrap", "punch_matrix", "host_servers",
                  "start_spacing", "run_for"}
_FAULTS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "liars": Liars.from_mapping, "kill": BootKill.from_mapping, "churn": Churn.from_mapping}


class ScenarioError(ValueError):
    """A scenario document that cannot be run."""


@dataclass(frozen=True)
class SimScenario:
    """One scenario (see the module docstring)."""

    name: str
    hosts: tuple[tuple[str, int], ...]
    """(NAT type, count) in document order."""
    seed: int = 1
    boot_nodes: int = 3
    deadline: float = 120.0
    latency_ms: float = 20.0
    loss: float = 0.0
    dialback_source: bool = True
    """Boot nodes dial back from a second address too (what lets filtering be measured;
    off: the ProbeLab-audited go/rust behaviour, to compare)."""
    status_bootstrap: bool = True
    """Hosts learn the boot nodes from their ``/status`` documents, fetched over the
    simulated internet (off: the boot nodes' addresses are given as ``peers``)."""
    punch_matrix: bool = False
    """Boot nodes run the relay service; once the hosts have converged, one host of each
    private NAT type connects to one of every private type through its relayed address
    and the report says which pairs were hole-punched."""
    host_servers: bool = True
    """Hosts serve AutoNAT too (off: the boot nodes are the only servers)."""
    start_spacing: float = 0.01
    """Simulated seconds between two hosts' starts."""
    run_for: float = 0.0
    """The run lasts at least this long (simulated seconds) before it may settle."""
    liars: Liars = field(default_factory=Liars)
    kill: BootKill = field(default_factory=BootKill)
    churn: Churn = field(default_factory=Churn)

    def __post_init__(self) -> None:
        if self.boot_nodes < 1:
            raise ScenarioError("boot_nodes must be >= 1")
        if self.deadline <= 0:
            raise ScenarioError("deadline must be > 0")
        if self.latency_ms < 0:
            raise ScenarioError("latency_ms must be >= 0")
        if not 0.0 <= self.loss < 1.0:
            raise ScenarioError("loss must be in [0, 1)")
        if self.start_spacing < 0:
            raise ScenarioError("start_spacing must be >= 0")
        for name, count in self.hosts:
            try:
                nat_type(name)
            except ValueError as exc:
                raise ScenarioError(str(exc)) from None
            if count < 0:
                raise ScenarioError(f"hosts.{name} must be >= 0")
        if not 0 <= self.start_spacing <= 60:
            raise ScenarioError("start_spacing must be in [0, 60] simulated seconds")
        if not 0 <= self.run_for < self.deadline:
            raise ScenarioError(f"run_for ({self.run_for:g}) must be in [0, deadline)")
        self._check_faults()

    def _check_faults(self) -> None:
        if self.liars.total > self.boot_nodes:
            raise ScenarioError(f"[liars] names {self.liars.total} lying boot nodes but the "
                                f"scenario has {self.boot_nodes}; raise boot_nodes")
        bad = [i for i in self.kill.boot_nodes if i >= self.boot_nodes]
        if bad:
            raise ScenarioError(f"kill.boot_nodes {bad}: boot nodes are numbered "
                                f"0..{self.boot_nodes - 1}")
        if self.kill.boot_nodes and len(self.kill.boot_nodes) >= self.boot_nodes:
            raise ScenarioError("kill.boot_nodes would kill every boot node; keep one alive")
        if self.kill.boot_nodes and self.kill.at >= self.deadline:
            raise ScenarioError(f"kill.at ({self.kill.at:g}) must come before the deadline "
                                f"({self.deadline:g})")
        if self.churn.active and self.churn.duration >= self.deadline:
            raise ScenarioError(f"churn.duration ({self.churn.duration:g}) must be shorter "
                                f"than the deadline ({self.deadline:g}): the run settles after")

    @classmethod
    def from_toml(cls, text: str, *, source: str = "scenario") -> SimScenario:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{source}: {exc}") from None
        return cls.from_mapping(doc, source=source)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], *, source: str = "scenario") -> SimScenario:
        unknown = set(doc) - {"scenario", "hosts", *_FAULTS}
        head = doc.get("scenario", {})
        unknown |= {f"scenario.{key}" for key in set(head) - _SCENARIO_KEYS}
        if unknown:
            raise ScenarioError(f"{source}: unknown keys {sorted(unknown)}")
        hosts = doc.get("hosts", {})
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in hosts.values()):
            raise ScenarioError(f"{source}: [hosts] counts must be integers")
        try:
            faults = {key: parse(doc[key]) for key, parse in _FAULTS.items() if key in doc}
        except FaultError as exc:
            raise ScenarioError(f"{source}: {exc}") from None
        except (AttributeError, TypeError):
            raise ScenarioError(f"{source}: [liars], [kill] and [churn] must be tables") from None
        try:
            return cls(hosts=tuple(hosts.items()), **{"name": source, **head, **faults})
        except TypeError as exc:
            raise ScenarioError(f"{source}: {exc}") from None

    @property
    def host_count(self) -> int:
        return sum(count for _, count in self.hosts)

    def scaled(self, total: int) -> SimScenario:
        """The same mix with ``total`` hosts (largest remainders; ties in document order)."""
        if total < 0:
            raise ScenarioError("the host count must be >= 0")
        have = self.host_count
        if have == 0:
            raise ScenarioError("cannot scale a scenario without hosts")
        shares = [(name, count * total / have) for name, count in self.hosts]
        counts = {name: int(share) for name, share in shares}
        left = total - sum(counts.values())
        by_remainder = sorted(shares, key=lambda item: -(item[1] - int(item[1])))
        for name, _ in by_remainder[:left]:
            counts[name] += 1
        return replace(self, hosts=tuple((name, counts[name]) for name, _ in self.hosts))

    def host_kinds(self) -> list[str]:
        """One NAT type per host, interleaved (round robin over the types), so any prefix
        of the hosts holds every type."""
        left = dict(self.hosts)
        kinds: list[str] = []
        while any(left.values()):
            for name, _ in self.hosts:
                if left[name]:
                    kinds.append(name)
                    left[name] -= 1
        return kinds
