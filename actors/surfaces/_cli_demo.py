"""``autonat demo [SCENARIO] [--hosts N] [--seed S] [--plain] [--loopback]``.

Theory of operation
-------------------
Without arguments the demo runs the shipped scenario :data:`DEMO_SCENARIO`
(``config/scenarios/demo.toml``: 3 boot nodes, 72 hosts, 8 behind each NAT
type of :data:`protocols.sim.NAT_TYPES`) in the simulator - real nodes,
simulated internet and time, no root, no network - and, on a terminal,
draws it converging live (:mod:`._demo`), then prints the accuracy summary.
``SCENARIO``, ``--hosts`` and ``--seed`` mean what they mean to
``autonat sim`` (:func:`._cli_sim.load_scenario`).

``--plain``, or a stdout that is no terminal (a pipe, a log file, CI; as
``rich`` decides, so ``TTY_COMPATIBLE``/``FORCE_COLOR`` and ``TERM=dumb``
count), prints the summary only: redrawn frames would be cursor movements in a
log, and the summary holds every figure the last frame shows. That run has no
progress callback, so its report is exactly ``autonat sim``'s for the same
scenario and seed. The exit status is ``autonat sim``'s: 0 when every
host's verdict is right, 2 when some is not, 1 on an error.

``--loopback`` runs the earlier demo instead
(:func:`._cli_commands.cmd_loopback_demo`): three boot nodes and a newcomer
on real loopback WebSockets, bootstrapping over HTTP ``/status`` - the parts
the simulator replaces.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from protocols.sim import format_report

from ..runtime import configure_logging
from ._cli_commands import CliError, cmd_loopback_demo
from ._cli_sim import load_scenario

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DEMO_SCENARIO", "add_demo_flags", "cmd_demo", "wants_live"]

DEMO_SCENARIO = "demo"


def add_demo_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", default=None, metavar="SCENARIO",
                        help=f"a scenario file or a shipped name (default {DEMO_SCENARIO})")
    parser.add_argument("--hosts", type=int, metavar="N",
                        help="rescale the scenario's mix of NAT types to N hosts")
    parser.add_argument("--seed", type=int, metavar="S", help="replace the scenario's seed")
    parser.add_argument("--plain", action="store_true",
                        help="print the summary only (the default when stdout is no terminal)")
    parser.add_argument("--loopback", action="store_true",
                        help="the loopback demo instead: 3 boot nodes and a newcomer on "
                        "127.0.5.x WebSockets, bootstrapping over HTTP /status")


def wants_live(plain: bool, console: Console) -> bool:
    """Draw live frames: not ``--plain`` and ``console`` is a terminal that can redraw."""
    return not plain and console.is_terminal and not console.is_dumb_terminal


def cmd_demo(args: argparse.Namespace) -> int:
    """Watch real nodes behind every NAT type find out the truth: simulated hosts and
    boot nodes converge live in the terminal, then the accuracy summary per NAT type
    (under a minute, no root, no network). Exit status: 0 when every verdict is right,
    2 when some is not, 1 on an error."""
    if args.loopback:
        if args.scenario is not None or args.hosts is not None or args.seed is not None:
            raise CliError("--loopback takes no scenario, --hosts or --seed "
                           "(drop them, or drop --loopback for the simulated demo)")
        return cmd_loopback_demo(args)
    scenario = load_scenario(args.scenario or DEMO_SCENARIO, hosts=args.hosts, seed=args.seed)
    configure_logging("console", "error")
    from rich.console import Console  # here: only the demo draws with rich

    console = Console()
    if wants_live(args.plain, console):
        from ._demo import run_live

        report = run_live(scenario, console)
    else:
        from ._simulator import simulate  # here: other commands never load the simulator

        report = simulate(scenario)
        print(format_report(report))
    total = report["total"]
    return 0 if total["right"] == total["hosts"] else 2
