"""``autonat sim [SCENARIO] [--hosts N] [--seed S] [--json] [--punch-matrix]``: run a
simulation scenario.

Theory of operation
-------------------
``SCENARIO`` is a TOML file path, or the name of a scenario shipped in
``config/scenarios/`` (inside the installed package, :data:`PROFILE_PACKAGE`);
the default is ``small``. ``--hosts`` rescales the scenario's mix of NAT
types, ``--seed`` replaces its seed, ``--punch-matrix`` turns the scenario's
``punch_matrix`` on. The run itself is
:func:`actors.surfaces._simulator.simulate`; this module only finds the
scenario, prints the report (a table, or one JSON object with ``--json``) and
chooses the exit status: 0 when every host's verdict is right and the run
breaks no robustness property (:func:`protocols.sim.violations`: flips, the
boot kill, churn), 2 when not (so a script can tell), 1 on an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import sys
from pathlib import Path

from protocols.sim import ScenarioError, SimScenario, format_report, violations

from ..runtime import configure_logging
from ._cli_commands import CliError
from ._cli_settings import PROFILE_PACKAGE, SOURCE_CONFIG_DIR

__all__ = ["DEFAULT_SCENARIO", "add_sim_flags", "cmd_sim", "load_scenario"]

DEFAULT_SCENARIO = "small"
MAX_SCENARIO_BYTES = 1 << 20


def _scenario_text(name: str) -> tuple[str, str]:
    path = Path(name).expanduser()
    if path.suffix == ".toml" or path.is_file():
        try:
            return path.read_text(encoding="utf-8")[:MAX_SCENARIO_BYTES], str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{path}: cannot read scenario: {exc}") from None
    try:
        resource = importlib.resources.files(PROFILE_PACKAGE) / "scenarios" / f"{name}.toml"
        if resource.is_file():
            return resource.read_text(encoding="utf-8"), name
    except (ModuleNotFoundError, OSError):
        pass
    fallback = SOURCE_CONFIG_DIR / "scenarios" / f"{name}.toml"
    if fallback.is_file():
        return fallback.read_text(encoding="utf-8"), name
    raise CliError(f"no scenario {name!r}: neither a .toml file nor a shipped scenario")


def load_scenario(name: str, *, hosts: int | None = None, seed: int | None = None
                  ) -> SimScenario:
    """The scenario ``name`` (file or shipped), rescaled and reseeded as asked."""
    text, source = _scenario_text(name)
    try:
        scenario = SimScenario.from_toml(text, source=source)
        if hosts is not None:
            scenario = scenario.scaled(hosts)
        if seed is not None:
            scenario = dataclasses.replace(scenario, seed=seed)
    except ScenarioError as exc:
        raise CliError(str(exc)) from None
    return scenario


def add_sim_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, metavar="SCENARIO",
                        help=f"a scenario file or a shipped name (default {DEFAULT_SCENARIO})")
    parser.add_argument("--hosts", type=int, metavar="N",
                        help="rescale the scenario's mix of NAT types to N hosts")
    parser.add_argument("--seed", type=int, metavar="S", help="replace the scenario's seed")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.add_argument("--punch-matrix", action="store_true",
                        help="boot nodes relay; after convergence, private hosts of each NAT "
                             "type hole-punch to each other's and the report shows the matrix")


def cmd_sim(args: argparse.Namespace) -> int:
    """Run real nodes behind modelled NATs in simulated time and grade their verdicts
    against ground truth, per NAT type."""
    from ._simulator import simulate  # here: other commands never load the simulator

    scenario = load_scenario(args.scenario, hosts=args.hosts, seed=args.seed)
    if getattr(args, "punch_matrix", False):
        scenario = dataclasses.replace(scenario, punch_matrix=True)
    configure_logging("console", "error")
    progress = None if args.json else (lambda line: print(line, file=sys.stderr))
    report = simulate(scenario, progress)
    print(json.dumps(report) if args.json else format_report(report))
    total = report["total"]
    return 0 if total["right"] == total["hosts"] and not violations(report) else 2
