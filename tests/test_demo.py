"""``autonat demo``: the plain summary is the simulator's report, the live frames follow
the run's readings to the graded result, the command line parses.

The scenario is tiny (3 boot nodes, 13 hosts over every NAT type, about a second of
wall time per run) and boot nodes dial back from one address only, so the
address-restricted hosts err (false public, as the NAT lab's contrast scenario
shows): the figures checked are a real run's, right and wrong, never constants.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from actors.surfaces._cli import build_parser, main
from actors.surfaces._cli_demo import wants_live
from actors.surfaces._cli_sim import load_scenario
from actors.surfaces._demo import DemoView, TypeTally, render_frame, run_live, tally
from actors.surfaces._sim_progress import PROGRESS_INTERVAL, SETTLED_INTERVAL, SimProgress
from actors.surfaces._simulator import simulate
from protocols.sim import NAT_TYPES, format_report

TINY = """
[scenario]
name = "tiny"
seed = 3
boot_nodes = 3
dialback_source = false

[hosts]
public = 2
full_cone = 2
port_forward = 1
port_forward_hairpin = 1
address_restricted = 2
port_restricted = 1
symmetric = 2
firewall_drop = 1
firewall_reject = 1
"""
KINDS = [kind.name for kind in NAT_TYPES]
COLUMNS = ("started", "public", "private", "unknown", "right", "wrong", "mapping",
           "filter")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def observed(tiny: Path) -> tuple[dict[str, Any], list[SimProgress]]:
    readings: list[SimProgress] = []
    report = simulate(load_scenario(str(tiny)), observe=readings.append)
    return report, readings


def _recording_console(width: int = 150) -> Console:
    return Console(record=True, force_terminal=True, width=width, file=io.StringIO())


def _rows(text: str) -> dict[str, dict[str, str]]:
    """The frame's table rows by NAT type: column name -> cell text (the truth column,
    when there is one, lies between the name and the counts)."""
    rows = {}
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in [*KINDS, "total"]:
            rows[words[0]] = dict(zip(COLUMNS, words[-len(COLUMNS):], strict=True))
    return rows


def _expected(row: TypeTally) -> dict[str, str]:
    n = row.planned
    return {"started": f"{row.started}/{n}", "public": str(row.public),
            "private": str(row.private), "unknown": str(row.unknown),
            "right": f"{row.right}/{n}", "wrong": str(row.wrong),
            "mapping": f"{row.mapping_right}/{n}", "filter": f"{row.filtering_right}/{n}"}


def test_plain_demo_prints_the_sims_report(tiny: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--plain", str(tiny)])
    printed = capsys.readouterr().out.splitlines()
    report = simulate(load_scenario(str(tiny)))
    expected = format_report(report).splitlines()
    assert printed[0].split(" in ")[0] == expected[0].split(" in ")[0]  # wall time differs
    assert printed[1:] == expected[1:]
    assert report["by_nat_type"]["address_restricted"]["false_public"] == 2
    assert report["total"]["right"] == report["hosts"] - 2
    assert status == 2  # a wrong verdict, as autonat sim says


def test_readings_end_with_the_graded_outcome(
        observed: tuple[dict[str, Any], list[SimProgress]]) -> None:
    report, readings = observed
    assert [r.final for r in readings].count(True) == 1 and readings[-1].final
    assert len(readings[0].hosts) < len(readings[-1].hosts) == report["hosts"]
    times = [r.simulated_s for r in readings]
    assert times == sorted(times) and times[-1] == pytest.approx(report["simulated_s"])
    steps = {(before.converging, round(after.simulated_s - before.simulated_s, 6))
             for before, after in itertools.pairwise(readings[:-1])}  # the final: any time
    assert steps == {(True, PROGRESS_INTERVAL), (False, SETTLED_INTERVAL)}
    for kind, row in tally(readings[-1]).items():
        graded = report["by_nat_type"][kind]
        assert row.planned == row.started == graded["hosts"]
        assert row.right == graded["right"]
        assert row.wrong == graded["false_public"] + graded["false_private"]
        assert row.unknown == graded["unknown"]
        assert (row.mapping_right, row.filtering_right) == (graded["mapping_right"],
                                                            graded["filtering_right"])
    boots = report["boot_nodes"]
    assert [b.probes_served for b in readings[-1].boots] == [b["probes_served"] for b in boots]


def test_frames_show_every_nat_type_and_the_verdicts_as_they_change(
        observed: tuple[dict[str, Any], list[SimProgress]]) -> None:
    _, readings = observed
    midway = next(r for r in readings if 0 < sum(t.right + t.wrong for t in tally(r).values())
                  < len(r.hosts_planned))
    frames = []
    for reading in (readings[0], midway, readings[-1]):
        console = _recording_console()
        console.print(render_frame(reading, wall_s=1.5))
        text = console.export_text()
        rows = _rows(text)
        assert list(rows) == [*KINDS, "total"]
        for kind, row in tally(reading).items():
            assert rows[kind] == _expected(row), kind
        assert f"{reading.simulated_s:.1f} s simulated in 1.5 s wall" in text
        frames.append(rows)
    verdicts = [int(f["total"]["public"]) + int(f["total"]["private"]) for f in frames]
    assert verdicts[0] < verdicts[1] < verdicts[2] == 13
    assert frames[2]["address_restricted"]["wrong"] == "2"  # the run's real error, shown


def test_the_view_draws_the_latest_reading(
        observed: tuple[dict[str, Any], list[SimProgress]]) -> None:
    _, readings = observed
    ticks = iter([10.0, 12.5, 14.0])
    view = DemoView(clock=lambda: next(ticks))
    console = _recording_console()
    console.print(view)
    assert "starting the boot nodes" in console.export_text()
    view.update(readings[1])
    view.update(readings[-1])
    console.print(view)
    text = console.export_text()
    assert "settled: " in text and "in 4.0 s wall" in text
    right = sum(row.right for row in tally(readings[-1]).values())
    assert _rows(text)["total"]["right"] == f"{right}/13"


@pytest.mark.parametrize(("width", "truth"), [(130, True), (100, True), (80, False)])
def test_the_frame_fits_the_terminal(observed: tuple[dict[str, Any], list[SimProgress]],
                                     width: int, truth: bool) -> None:
    view = DemoView()
    view.update(observed[1][-1])
    console = _recording_console(width)
    console.print(view)
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert ("truth" in text) is truth
    assert ("private EI/AD" in text) is truth
    assert list(_rows(text)) == [*KINDS, "total"]


def test_live_demo_draws_then_prints_the_summary(tiny: Path) -> None:
    console = _recording_console()
    report = run_live(load_scenario(str(tiny)), console)
    text = console.export_text()
    assert "settled: " in text and all(kind in text for kind in KINDS)
    for line in format_report(report).splitlines()[1:]:
        assert line in text


def test_live_only_on_a_terminal_and_without_plain() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    pipe = Console(file=io.StringIO())
    assert wants_live(False, terminal)
    assert not wants_live(True, terminal)
    assert not wants_live(False, pipe)


def test_demo_flags_parse_like_sims() -> None:
    args = build_parser().parse_args(["demo", "small", "--hosts", "20", "--seed", "7",
                                      "--plain"])
    assert (args.scenario, args.hosts, args.seed, args.plain, args.loopback) == (
        "small", 20, 7, True, False)
    args = build_parser().parse_args(["demo"])
    assert (args.scenario, args.hosts, args.seed, args.plain) == (None, None, None, False)


def test_loopback_refuses_scenario_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--loopback", "--seed", "2"]) == 1
    err = capsys.readouterr().err
    assert re.match(r"autonat: error: --loopback takes no scenario", err), err


def test_the_default_scenario_covers_every_nat_type() -> None:
    scenario = load_scenario("demo")
    assert {kind for kind, count in scenario.hosts if count} == set(KINDS)
    assert scenario.boot_nodes >= 3 and 36 <= scenario.host_count <= 100
