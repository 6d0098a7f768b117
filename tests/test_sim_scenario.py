"""Scenarios as data and grading (protocols.sim), without running anything."""

from __future__ import annotations

import pytest

from protocols.sim import HostOutcome, ScenarioError, SimScenario, build_report, percentile

DOC = """
[scenario]
name = "t"
seed = 9
boot_nodes = 2
[hosts]
public = 3
symmetric = 1
full_cone = 2
"""


def test_a_scenario_is_parsed_in_document_order() -> None:
    scenario = SimScenario.from_toml(DOC)
    assert (scenario.name, scenario.seed, scenario.boot_nodes) == ("t", 9, 2)
    assert scenario.hosts == (("public", 3), ("symmetric", 1), ("full_cone", 2))
    assert scenario.host_kinds() == ["public", "symmetric", "full_cone", "public",
                                     "full_cone", "public"]


@pytest.mark.parametrize(("text", "message"), [
    ("[scenario]\nseeds = 1\n", "unknown keys"),
    ("[hosts]\nbogus_nat = 1\n", "unknown NAT type 'bogus_nat'"),
    ("[hosts]\npublic = 1.5\n", "must be integers"),
    ("[scenario]\nloss = 1.0\n", "loss"),
    ("[scenario\n", "scenario"),
])
def test_bad_scenarios_are_refused(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        SimScenario.from_toml(text)


def test_scaling_keeps_the_mix_by_largest_remainders() -> None:
    scenario = SimScenario.from_toml(DOC)
    assert scenario.scaled(12).hosts == (("public", 6), ("symmetric", 2), ("full_cone", 4))
    assert scenario.scaled(7).host_count == 7
    assert dict(scenario.scaled(7).hosts) == {"public": 4, "symmetric": 1, "full_cone": 2}


def test_percentiles_are_values_that_occurred() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile([], 0.5)) == (
        3.0, 5.0, None)


def test_grading_tells_false_public_false_private_and_unknown() -> None:
    outcomes = [
        HostOutcome("address_restricted", "public", "endpoint-independent", "unknown", 1.0, 3),
        HostOutcome("address_restricted", "private", "endpoint-independent",
                    "address-dependent", 2.0, 3),
        HostOutcome("full_cone", "private", "endpoint-independent", "endpoint-independent",
                    1.0, 4),
        HostOutcome("full_cone", "unknown", "unknown", "unknown", None, 9),
    ]
    report = build_report("t", 1, outcomes, [], 10.0)
    ar, fc = report["by_nat_type"]["address_restricted"], report["by_nat_type"]["full_cone"]
    assert (ar["right"], ar["false_public"], ar["mapping_right"], ar["filtering_right"]) == (
        1, 1, 2, 1)
    assert (fc["right"], fc["false_private"], fc["unknown"]) == (0, 1, 1)
    assert fc["verdict_s"] == {"p50": 1.0, "p95": 1.0, "max": 1.0}
    assert fc["probes_per_node"] == {"mean": 6.5, "max": 9}
    assert report["total"]["right"] == 1
