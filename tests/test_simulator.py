"""``autonat sim``: real nodes behind modelled NATs, graded against the NAT lab's table.

The small scenario (3 boot nodes, 54 hosts, 6 per NAT type) runs in the normal
suite, in simulated time; its report is computed once per module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from actors.surfaces._cli import main
from actors.surfaces._cli_sim import load_scenario
from actors.surfaces._simulator import plan_world, simulate
from protocols.sim import NAT_TYPES, nat_type
from tests.lab.topologies import SCENARIOS_BY_KEY, Expectation


def _without_resources(report: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in report.items() if k != "resources"}, sort_keys=True)


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return simulate(load_scenario("small"))


def test_the_catalog_truth_is_the_nat_labs_expected_table() -> None:
    for kind in NAT_TYPES:
        expect = SCENARIOS_BY_KEY[kind.lab].expect
        assert (kind.truth.nat_status, kind.truth.nat_mapping, kind.truth.nat_filtering,
                kind.truth.hairpinning) == (expect.nat_status, expect.nat_mapping,
                                            expect.nat_filtering, expect.hairpinning), kind.name


def test_every_host_of_the_small_scenario_is_right(small: dict[str, Any]) -> None:
    assert small["hosts"] == 54
    assert set(small["by_nat_type"]) == {kind.name for kind in NAT_TYPES}
    for kind, row in small["by_nat_type"].items():
        assert row["hosts"] == 6
        assert (row["right"], row["mapping_right"], row["filtering_right"]) == (6, 6, 6), (
            kind, row["seen"])
        assert row["hairpinning_right"] in (6, None), (kind, row["seen"])
        assert row["verdict_s"]["max"] is not None and row["verdict_s"]["max"] < 30.0


def test_the_sims_verdict_per_nat_type_is_the_labs(small: dict[str, Any]) -> None:
    """What the nodes said (not the catalog): one profile per type, the lab's."""
    for kind, row in small["by_nat_type"].items():
        _lab_agrees(row["seen"], SCENARIOS_BY_KEY[nat_type(kind).lab].expect, kind)


def _lab_agrees(seen: list[str], expect: Expectation, kind: str) -> None:
    assert len(seen) == 1, (kind, seen)
    status, mapping, filtering, hairpin = seen[0].split("/")
    assert (status, mapping, filtering) == (
        expect.nat_status, expect.nat_mapping, expect.nat_filtering), kind
    assert expect.hairpinning in (None, hairpin.removeprefix("hairpin=")), kind


def test_without_a_dialback_source_the_sim_errs_as_the_lab_does() -> None:
    """The lab's informational contrast: boot nodes dialing back from their one address
    make an address-restricted NAT look public (ProbeLab: go and rust, 100 %)."""
    scenario = dataclasses.replace(load_scenario("small"), hosts=(("address_restricted", 4),),
                                   dialback_source=False)
    row = simulate(scenario)["by_nat_type"]["address_restricted"]
    assert row["false_public"] == 4
    _lab_agrees(row["seen"], SCENARIOS_BY_KEY["address_restricted_contrast"].expect,
                "address_restricted")


def test_boot_nodes_carry_the_load(small: dict[str, Any]) -> None:
    boots = small["boot_nodes"]
    assert len(boots) == 3
    assert all(b["connections"] >= 54 for b in boots)  # every host + the other boot nodes
    assert sum(b["probes_served"] for b in boots) >= 54 * 3  # each host asked three
    # Refusals here are concurrent-per-peer limits meeting symmetric hosts' bursts (every
    # observer shows them a new port, so a new candidate to probe at once); the rest of
    # the crowd fits the boot profile's limits.
    assert all(0 <= b["refused"] < b["probes_served"] // 4 for b in boots)
    assert small["resources"]["wall_s"] < 60 and small["resources"]["peak_rss_mib"] > 0


def test_the_same_seed_gives_the_same_report() -> None:
    scenario = load_scenario("small", hosts=18, seed=5)
    first, second = simulate(scenario), simulate(scenario)
    assert _without_resources(first) == _without_resources(second)


def _sim_in_a_fresh_process(hash_seed: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "actors.cli", "sim", "--hosts", "18", "--json"],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "PYTHONHASHSEED": hash_seed})
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_the_same_seed_gives_the_same_report_in_another_process() -> None:
    """Across processes, string hashes and object ids differ: the scheduler must not
    depend on them."""
    first, second = _sim_in_a_fresh_process("1"), _sim_in_a_fresh_process("2")
    assert _without_resources(first) == _without_resources(second)


def test_a_lossy_slow_network_still_converges() -> None:
    scenario = dataclasses.replace(load_scenario("small", hosts=18, seed=2),
                                   latency_ms=100.0, loss=0.1)
    report = simulate(scenario)
    assert report["total"]["right"] == 18, report["total"]["seen"]
    assert report["total"]["verdict_s"]["p50"] > 1.0  # 400 ms round trips cost time


def test_the_world_gives_every_host_its_own_public_slash_24() -> None:
    boots, hosts = plan_world(load_scenario("small", hosts=300))
    faces = {host.face.rsplit(".", 1)[0] for host in hosts}
    assert len(faces) == 300
    assert {ip for ip, _ in boots}.isdisjoint(host.face for host in hosts)
    natted = [h for h in hosts if nat_type(h.kind).behaviour is not None
              and nat_type(h.kind).behaviour.translates]  # type: ignore[union-attr]
    assert all(h.ip.startswith("172.") and h.ip != h.face for h in natted)


def test_the_command_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--hosts", "9", "--seed", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["hosts"], report["seed"], report["total"]["right"]) == (9, 4, 9)


def test_the_command_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--hosts", "9"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("scenario small, seed 1: 9 hosts, 3 boot nodes")
    assert any(line.startswith("symmetric ") for line in out.splitlines())


def test_an_unknown_scenario_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "no-such-scenario"]) == 1
    assert capsys.readouterr().err == (
        "autonat: error: no scenario 'no-such-scenario': neither a .toml file nor a shipped "
        "scenario\n")
