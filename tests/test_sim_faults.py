"""Scenario faults as data: ``[liars]``, ``[kill]`` and ``[churn]`` validated at the boundary."""

from __future__ import annotations

import pytest

from protocols.sim import LIAR_MODES, ScenarioError, SimScenario

_HEAD = "[scenario]\nboot_nodes = 7\ndeadline = 600.0\n[hosts]\npublic = 3\n"


def _parse(extra: str) -> SimScenario:
    return SimScenario.from_toml(_HEAD + extra, source="t.toml")


def test_faults_parse_into_their_tables() -> None:
    scenario = _parse("[liars]\nclaim_unreachable = 2\nvanish = 1\nat = 30\n"
                      "[kill]\nboot_nodes = [0, 2]\nat = 10.0\n"
                      "[churn]\nper_minute = 0.2\nduration = 300.0\n")
    assert (scenario.liars.claim_unreachable, scenario.liars.vanish, scenario.liars.at) == \
        (2, 1, 30.0)
    assert scenario.kill.boot_nodes == (0, 2) and scenario.kill.at == 10.0
    assert scenario.churn.active and scenario.churn.converge_s == 60.0


def test_the_last_boot_nodes_lie_in_mode_order() -> None:
    liars = _parse("[liars]\nclaim_reachable = 1\nclaim_unreachable = 2\nsilent = 1\n"
                   "vanish = 1\n").liars
    assert [liars.mode_of(i, 7) for i in range(7)] == [
        None, None, "claim_reachable", "claim_unreachable", "claim_unreachable", "silent",
        "vanish"]
    assert set(LIAR_MODES) == {"claim_reachable", "claim_unreachable", "wrong_observed",
                               "silent", "vanish"}


def test_no_faults_by_default() -> None:
    scenario = _parse("")
    assert scenario.liars.total == 0 and not scenario.kill.boot_nodes
    assert not scenario.churn.active and scenario.host_servers


@pytest.mark.parametrize(("extra", "message"), [
    ("[liars]\nlying = 1\n", r"unknown keys \['liars.lying'\]; \[liars\] takes"),
    ("[liars]\nsilent = -1\n", "liars.silent must be an integer >= 0"),
    ("[liars]\nsilent = 5\nvanish = 3\n", "names 8 lying boot nodes but the scenario has 7"),
    ("[kill]\nboot_nodes = [7]\nat = 5.0\n", r"kill.boot_nodes \[7\]: boot nodes are numbered"),
    ("[kill]\nboot_nodes = [1, 1]\nat = 5.0\n", "lists a boot node twice"),
    ("[kill]\nboot_nodes = 1\nat = 5.0\n", "must be a list of boot node indices"),
    ("[kill]\nboot_nodes = [0, 1, 2, 3, 4, 5, 6]\nat = 5.0\n", "keep one alive"),
    ("[kill]\nboot_nodes = [0]\n", r"kill.at must be a number of seconds > 0"),
    ("[kill]\nboot_nodes = [0]\nat = 900.0\n", "must come before the deadline"),
    ("[churn]\nper_minute = 1.5\nduration = 60.0\n", r"churn.per_minute must be a fraction"),
    ("[churn]\nper_minute = 0.2\nduration = 600.0\n", "must be shorter than the deadline"),
    ("[churn]\nper_minute = 0.2\nconverge_s = 0\n", "churn.converge_s must be"),
    ("[churn]\nrate = 0.2\n", r"unknown keys \['churn.rate'\]"),
])
def test_bad_faults_are_refused_with_the_key_named(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        _parse(extra)


def test_fault_tables_must_be_tables() -> None:
    with pytest.raises(ScenarioError, match="must be tables"):
        SimScenario.from_toml("liars = 3\n[hosts]\npublic = 1\n", source="t.toml")


def test_run_for_and_start_spacing_are_bounded() -> None:
    with pytest.raises(ScenarioError, match="run_for"):
        SimScenario.from_toml("[scenario]\ndeadline = 10.0\nrun_for = 10.0\n", source="t")
    with pytest.raises(ScenarioError, match="start_spacing"):
        SimScenario.from_toml("[scenario]\nstart_spacing = -1\n", source="t")
