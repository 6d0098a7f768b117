"""Robustness in the simulator: lying or vanishing servers, a killed boot node, churn.

Each property is asserted on the report of a real run (small versions of
``config/scenarios/liars.toml``, ``boot_killed.toml`` and ``churn.toml``: real
nodes, simulated time, a few seconds of wall time each), and the grading is
shown able to fail on reports that break the properties.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from actors.surfaces._cli_sim import load_scenario
from actors.surfaces._simulator import simulate
from protocols.sim import (
    BootLoad,
    HostOutcome,
    SimScenario,
    build_report,
    churn_sample,
    churn_summary,
    format_report,
    kill_summary,
    violations,
)

_HOSTS = """
[hosts]
public = 2
full_cone = 2
port_forward = 2
address_restricted = 2
port_restricted = 2
symmetric = 2
firewall_drop = 2
"""


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def _run(head: str) -> dict[str, Any]:
    return simulate(SimScenario.from_toml(head + _HOSTS, source="test"))


@pytest.fixture(scope="module")
def liars() -> dict[str, Any]:
    return _run("""
[scenario]
boot_nodes = 7
deadline = 400.0
run_for = 150.0
host_servers = false
start_spacing = 0.1
[liars]
claim_reachable = 1
claim_unreachable = 2
silent = 1
vanish = 1
at = 5.0
""")


def test_with_5_of_7_servers_lying_or_vanishing_no_host_flips_twice(
        liars: dict[str, Any]) -> None:
    assert liars["liars"]["modes"] == {"claim_reachable": 1, "claim_unreachable": 2,
                                       "silent": 1, "vanish": 1}
    assert liars["liars"]["lies"] > 0
    flips = liars["stability"]
    assert flips["hosts"] == 14
    assert flips["hosts_flipped_more_than_once"] == 0 and flips["max_flips"] <= 1, flips
    assert violations(liars) == []


def test_with_5_of_7_servers_lying_or_vanishing_every_verdict_is_right(
        liars: dict[str, Any]) -> None:
    """Two honest servers' dial-backs, seen, outweigh the liars' claims."""
    total = liars["total"]
    assert (total["right"], total["hosts"]) == (14, 14), total["seen"]


def test_after_a_boot_node_is_killed_every_host_converges() -> None:
    report = _run("""
[scenario]
boot_nodes = 4
deadline = 300.0
run_for = 70.0
start_spacing = 0.5
[kill]
boot_nodes = [0]
at = 3.0
""")
    kill = report["boot_kill"]
    assert kill["killed"] == [0] and kill["hosts"] == 14
    assert kill["started_after_kill"] > 0
    assert kill["converged"] == 14 and kill["converged_of_started_after"] == \
        kill["started_after_kill"]
    assert report["boot_nodes"][0]["connections"] == 0  # it is gone
    assert violations(report) == []


def test_under_churn_the_verdicts_stay_right() -> None:
    report = _run("""
[scenario]
boot_nodes = 3
deadline = 400.0
[churn]
per_minute = 0.2
duration = 180.0
converge_s = 30.0
""")
    churn = report["churn"]
    assert churn["samples"] == 3 and churn["joined"] == churn["left"] == 3 * 3  # 20 % of 14
    assert churn["judged"] > 0
    assert churn["right"] == churn["judged"], churn["per_minute"]
    assert report["stability"]["hosts"] == 14 + churn["joined"]
    assert report["stability"]["hosts_flipped_more_than_once"] == 0
    assert violations(report) == []


def test_a_run_with_every_fault_repeats_for_its_seed() -> None:
    """Kill, a lying and a vanishing server and churn together: the same JSON twice."""
    text = """
[scenario]
boot_nodes = 4
deadline = 300.0
start_spacing = 0.5
[kill]
boot_nodes = [0]
at = 3.0
[liars]
claim_unreachable = 1
vanish = 1
at = 4.0
[churn]
per_minute = 0.2
duration = 120.0
[hosts]
public = 3
address_restricted = 3
symmetric = 3
"""

    def run() -> str:
        report = simulate(SimScenario.from_toml(text, source="t"))
        report.pop("resources")
        return json.dumps(report, sort_keys=True)

    first = run()
    assert run() == first
    report = json.loads(first)
    assert report["liars"]["lies"] > 0 and report["churn"]["joined"] > 0
    assert report["boot_kill"]["started_after_kill"] > 0


def test_the_shipped_robustness_scenarios_load() -> None:
    assert load_scenario("liars").liars.total == 5
    assert load_scenario("liars").boot_nodes == 7
    assert load_scenario("boot_killed").kill.boot_nodes == (0,)
    churn = load_scenario("churn").churn
    assert (churn.per_minute, churn.duration) == (0.2, 3600.0)


# --- the grading can fail ------------------------------------------------------------


def _outcome(history: tuple[str, ...], status: str = "public") -> HostOutcome:
    return HostOutcome("public", status, "none", "endpoint-independent", 1.0, 3,
                       history=history)


def test_a_host_flipping_twice_is_flagged() -> None:
    report = build_report("t", 1, [_outcome(("public", "private", "public")),
                                   _outcome(("private", "public"))], [BootLoad(1, 1)], 10.0)
    assert report["stability"] == {
        "hosts": 2, "max_flips": 2, "hosts_flipped": 2, "hosts_flipped_more_than_once": 1,
        "verdicts_lost": 0, "flipped": ["public: private>public",
                                        "public: public>private>public"]}
    assert violations(report) == ["1 host(s) flipped nat_status more than 1 time(s) (worst: 2)"]
    assert "VIOLATION: 1 host(s) flipped" in format_report(report)


def test_a_fall_back_to_unknown_is_no_flip() -> None:
    report = build_report("t", 1, [_outcome(("public", "unknown", "public"))],
                          [BootLoad(1, 1)], 10.0)
    assert report["stability"]["max_flips"] == 0
    assert report["stability"]["verdicts_lost"] == 1
    assert violations(report) == []


def test_a_host_wrong_after_the_kill_is_flagged() -> None:
    kill = kill_summary([0], 5.0, [("public", "public", 1.0), ("symmetric", "public", 9.0)])
    assert (kill["converged"], kill["started_after_kill"],
            kill["converged_of_started_after"]) == (1, 1, 0)
    assert violations({"boot_kill": kill}) == [
        "after the boot kill only 1 of 2 hosts converged to the right verdict"]


def test_a_wrong_verdict_under_churn_is_flagged() -> None:
    samples = [churn_sample(60.0, 3, [("public", "public"), ("symmetric", "public")]),
               churn_sample(120.0, 3, [("public", "unknown")])]
    churn = churn_summary(samples, joined=2, left=2)
    assert (churn["judged"], churn["right"], churn["false_public"], churn["unknown"]) == \
        (3, 1, 1, 1)
    assert churn["worst_minute_right"] == 0.0
    assert violations({"churn": churn}) == [
        "under churn 2 of 3 sampled verdicts were not right (1 false public, "
        "0 false private, 1 unknown)"]
