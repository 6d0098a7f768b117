"""The simulator's sans-io half: NAT models, scenarios as data, grading a run.

Theory of operation
-------------------
* :mod:`._nat_behaviour` - what a NAT or firewall does, as data (RFC 4787/5780
  mapping and filtering, port preservation, hairpinning, drop or reject,
  mapping timeout).
* :mod:`._nat_box` - :class:`NatBox`, the state machine of one box: outbound
  flows are translated, inbound ones delivered, dropped or rejected; time is an
  argument, ports come from a seeded ``random.Random``.
* :mod:`._nat_catalog` - the named NAT types a scenario uses, with the ground
  truth a node behind each must report (the NAT lab's expectations).
* :mod:`._scenario` - :class:`SimScenario`, parsed from TOML text.
* :mod:`._sim_report` - grading hosts' outcomes per NAT type.
* :mod:`._sim_faults` - lying or vanishing servers, killed boot nodes, churn.
* :mod:`._sim_robustness` - grading flips, convergence after a kill, churn.
* :mod:`._punch_matrix` - which NAT types a TCP hole punch joins, by the
  definitions, and the measured matrix for the report.

The network that moves connections between hosts and boxes, and the runner
that starts real nodes on it, are actors (:mod:`actors.transport`,
:mod:`actors.surfaces`). This package imports no Trio and does no I/O.

May import: nothing of :mod:`protocols` (it is self-contained).
"""

from __future__ import annotations

from ._nat_behaviour import Endpoint, Filtering, Mapping, NatBehaviour, Unsolicited
from ._nat_box import Deliver, Drop, InboundVerdict, NatBox, Reject
from ._nat_catalog import LISTEN_PORT, NAT_TYPES, GroundTruth, NatType, nat_type
from ._punch_matrix import (
    PunchOutcome,
    expected_punch,
    format_punch_matrix,
    punch_matrix,
    syn_passes,
)
from ._scenario import ScenarioError, SimScenario
from ._sim_faults import LIAR_MODES, BootKill, Churn, Liars
from ._sim_report import BootLoad, HostOutcome, build_report, format_report, percentile
from ._sim_robustness import (
    churn_sample,
    churn_summary,
    count_flips,
    kill_summary,
    stability,
    violations,
)

__all__ = [
    "LIAR_MODES",
    "LISTEN_PORT",
    "NAT_TYPES",
    "BootKill",
    "BootLoad",
    "Churn",
    "Deliver",
    "Drop",
    "Endpoint",
    "Filtering",
    "GroundTruth",
    "HostOutcome",
    "InboundVerdict",
    "Liars",
    "Mapping",
    "NatBehaviour",
    "NatBox",
    "NatType",
    "PunchOutcome",
    "Reject",
    "ScenarioError",
    "SimScenario",
    "Unsolicited",
    "build_report",
    "churn_sample",
    "churn_summary",
    "count_flips",
    "expected_punch",
    "format_punch_matrix",
    "format_report",
    "kill_summary",
    "nat_type",
    "percentile",
    "punch_matrix",
    "stability",
    "syn_passes",
    "violations",
]
