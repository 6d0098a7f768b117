"""Grading a simulation run against ground truth, per NAT type. Pure data in, data out.

Theory of operation
-------------------
The runner hands one :class:`HostOutcome` per host (its NAT type and what its
node concluded, and when, in simulated seconds since the host started) and
one :class:`BootLoad` per boot node. :func:`build_report` grades every host
against :func:`~protocols.sim.nat_type`'s truth:

* verdict ``right`` (``nat_status`` equals the truth), ``false_public`` (said
  public, truth private), ``false_private`` (the converse) or ``unknown``;
* ``mapping_right`` / ``filtering_right``: the profile fields equal the truth;
  ``hairpinning_right`` too, out of ``hairpinning_judged`` hosts whose truth
  asserts hairpinning (None when none does);
* time to verdict: p50, p95 and max over the hosts that reached one
  (nearest-rank percentiles, so the figures are values that occurred);
* probes per node: mean and max of the dial requests each host sent;
* ``stability``: ``nat_status`` flips after the first verdict
  (:func:`~protocols.sim.stability`); the runner adds ``boot_kill`` and
  ``churn`` for scenarios with those faults (:mod:`._sim_robustness`).

Per boot node: connections, probes served (and refused) and ``/status``
requests answered. The runner may add ``status_fetches`` (the hosts' side of
those requests) and ``punch_matrix`` (:mod:`._punch_matrix`), which
:func:`format_report` prints after the table.

The report is a plain dict with sorted, rounded values so that two runs with the
same seed serialise to the same JSON; the runner adds wall time and memory
under ``"resources"``, which a determinism check leaves out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._nat_catalog import nat_type
from ._sim_robustness import stability, violations

__all__ = ["BootLoad", "HostOutcome", "build_report", "format_report", "percentile"]


@dataclass(frozen=True)
class HostOutcome:
    """What one simulated host concluded."""

    kind: str
    nat_status: str
    nat_mapping: str
    nat_filtering: str
    verdict_after: float | None
    """Simulated seconds from the host's start to its first verdict; None: none."""
    probes: int
    """Dial requests the host sent."""
    hairpinning: bool | None = None
    """The node's hairpinning (None: not tested or not applicable)."""
    history: tuple[str, ...] = ()
    """Every ``nat_status`` the host took after its first verdict, in order (flips)."""


@dataclass(frozen=True)
class BootLoad:
    """One boot node's work during the run."""

    connections: int
    """Inbound connections it accepted."""
    probes_served: int
    """Dial requests it answered (refusals included, as ``/status`` counts them)."""
    refused: int = 0
    """Of those, refused (``E_REQUEST_REJECTED``: a rate limit; ``E_DIAL_REFUSED``)."""
    status_requests: int = 0
    """``GET /status`` requests its HTTP API answered."""


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` in (0, 1]); None for no values."""
    if not values:
        return None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _grade(outcome: HostOutcome) -> str:
    truth = nat_type(outcome.kind).truth.nat_status
    if outcome.nat_status == truth:
        return "right"
    if outcome.nat_status == "public":
        return "false_public"
    if outcome.nat_status == "private":
        return "false_private"
    if outcome.nat_status == "unknown":
        return "unknown"
    raise ValueError(f"unknown nat_status {outcome.nat_status!r}")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _summary(outcomes: Sequence[HostOutcome]) -> dict[str, Any]:
    grades = [_grade(o) for o in outcomes]
    times = [o.verdict_after for o in outcomes if o.verdict_after is not None]
    probes = [o.probes for o in outcomes]
    summary: dict[str, Any] = {"hosts": len(outcomes)}
    for grade in ("right", "false_public", "false_private", "unknown"):
        summary[grade] = grades.count(grade)
    if outcomes:
        truth = nat_type(outcomes[0].kind).truth if len({o.kind for o in outcomes}) == 1 else None
        if truth is not None:
            summary["truth"] = [truth.nat_status, truth.nat_mapping, truth.nat_filtering]
        summary["mapping_right"] = sum(
            o.nat_mapping == nat_type(o.kind).truth.nat_mapping for o in outcomes)
        summary["filtering_right"] = sum(
            o.nat_filtering == nat_type(o.kind).truth.nat_filtering for o in outcomes)
        judged = [o for o in outcomes if nat_type(o.kind).truth.hairpinning is not None]
        summary["hairpinning_right"] = sum(
            json.dumps(o.hairpinning) == nat_type(o.kind).truth.hairpinning
            for o in judged) if judged else None
        summary["hairpinning_judged"] = len(judged)
        summary["seen"] = sorted({f"{o.nat_status}/{o.nat_mapping}/{o.nat_filtering}"
                                  f"/hairpin={json.dumps(o.hairpinning)}" for o in outcomes})
    summary["verdict_s"] = {"p50": _seconds(percentile(times, 0.5)),
                            "p95": _seconds(percentile(times, 0.95)),
                            "max": _seconds(max(times) if times else None)}
    summary["probes_per_node"] = {
        "mean": round(sum(probes) / len(probes), 2) if probes else None,
        "max": max(probes) if probes else None}
    return summary


def build_report(scenario: str, seed: int, outcomes: Sequence[HostOutcome],
                 boots: Sequence[BootLoad], simulated_s: float) -> dict[str, Any]:
    """The run's report (see the module docstring)."""
    kinds = list(dict.fromkeys(o.kind for o in outcomes))
    return {
        "scenario": scenario,
        "seed": seed,
        "hosts": len(outcomes),
        "simulated_s": round(simulated_s, 3),
        "by_nat_type": {kind: _summary([o for o in outcomes if o.kind == kind])
                        for kind in kinds},
        "total": _summary(outcomes),
        "boot_nodes": [{"connections": b.connections, "probes_served": b.probes_served,
                        "refused": b.refused, "status_requests": b.status_requests}
                       for b in boots],
        "stability": stability((o.kind, o.history) for o in outcomes),
    }


def _triple(times: dict[str, float | None]) -> str:
    return "/".join("-" if times[k] is None else f"{times[k]:g}" for k in ("p50", "p95", "max"))


_COLUMNS = ("NAT type", "hosts", "right", "f-pub", "f-priv", "unkn", "mapping", "filter",
            "hairpin", "verdict s p50/p95/max", "probes mean/max")


def _row(kind: str, row: dict[str, Any]) -> list[str]:
    n, probes = row["hosts"], row["probes_per_node"]
    hairpin, judged = row.get("hairpinning_right"), row.get("hairpinning_judged", n)
    return [kind, str(n), str(row["right"]), str(row["false_public"]),
            str(row["false_private"]), str(row["unknown"]),
            f"{row.get('mapping_right', 0)}/{n}", f"{row.get('filtering_right', 0)}/{n}",
            "-" if hairpin is None else f"{hairpin}/{judged}", _triple(row["verdict_s"]),
            f"{probes['mean'] or 0:g}/{probes['max'] or 0}"]


def format_report(report: dict[str, Any]) -> str:
    """The report as a table for people (``autonat sim`` without ``--json``)."""
    resources = report.get("resources", {})
    head = (f"scenario {report['scenario']}, seed {report['seed']}: {report['hosts']} hosts, "
            f"{len(report['boot_nodes'])} boot nodes, {report['simulated_s']:g} s simulated")
    if resources:
        head += (f" in {resources['wall_s']:g} s wall ({resources['cpu_s']:g} s CPU), "
                 f"peak RSS {resources['peak_rss_mib']:g} MiB")
    table = [list(_COLUMNS)] + [_row(kind, row) for kind, row in
                                [*report["by_nat_type"].items(), ("total", report["total"])]]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = [head] + ["  ".join(cell.ljust(w) if i in (0, 9) else cell.rjust(w)
                                for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                      .rstrip() for line in table]
    boots = report["boot_nodes"]
    lines.append("boot nodes: connections " + "/".join(str(b["connections"]) for b in boots)
                 + ", probes served " + "/".join(str(b["probes_served"]) for b in boots)
                 + " (refused " + "/".join(str(b.get("refused", 0)) for b in boots) + ")"
                 + ", /status requests "
                 + "/".join(str(b.get("status_requests", 0)) for b in boots))
    if "punch_matrix" in report:
        from ._punch_matrix import format_punch_matrix
        lines.append(format_punch_matrix(report["punch_matrix"]))
    lines += _robustness_lines(report)
    return "\n".join(lines)


def _robustness_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    flips = report.get("stability")
    if flips:
        lines.append(f"stability: max flips {flips['max_flips']}, hosts flipped "
                     f"{flips['hosts_flipped']} (more than once: "
                     f"{flips['hosts_flipped_more_than_once']}) of {flips['hosts']}, "
                     f"verdicts lost {flips['verdicts_lost']}")
        lines += [f"  flipped: {row}" for row in flips.get("flipped", [])]
    liars = report.get("liars")
    if liars:
        lines.append("liars: " + ", ".join(f"{mode} x{n}" for mode, n in liars["modes"].items())
                     + f"; lies told {liars['lies']}")
    kill = report.get("boot_kill")
    if kill:
        lines.append(f"boot kill: boot node(s) {kill['killed']} killed at {kill['at']:g} s; "
                     f"{kill['converged']}/{kill['hosts']} hosts right at the end "
                     f"({kill['converged_of_started_after']}/{kill['started_after_kill']} of "
                     "those started after the kill)")
    churn = report.get("churn")
    if churn:
        lines.append(f"churn: {churn['joined']} joined, {churn['left']} left; "
                     f"{churn['samples']} minute samples, {churn['judged']} verdicts judged: "
                     f"right {churn['right']}, false public {churn['false_public']}, "
                     f"false private {churn['false_private']}, unknown {churn['unknown']}; "
                     f"worst minute {churn['worst_minute_right']}")
    lines += [f"VIOLATION: {v}" for v in violations(report)]
    return lines
