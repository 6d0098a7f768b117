"""``autonat demo``'s live view: simulated hosts converging on their verdicts, with rich.

Theory of operation
-------------------
The simulation (:func:`._simulator.simulate`) runs on the main thread, in
``trio.run`` on a ``MockClock``: simulated time must never wait for the
terminal. Its progress callback, :meth:`DemoView.update`, only stores the
latest :class:`~._sim_progress.SimProgress` reading (a frozen value) and the
wall time it arrived. ``rich.live.Live`` redraws from its own thread
:data:`REFRESH_PER_SECOND` times per wall-clock second, building the frame
from whatever reading is latest (:meth:`DemoView.__rich_console__`): drawing costs
the simulation a bounded share of the CPU (:data:`REFRESH_PER_SECOND`),
however many readings simulated time produces.

A frame (:func:`render_frame`) is one table row per NAT type, in the
scenario's order (:func:`tally`): the truth a correct node behind that type
reports, hosts started of those planned, their current ``nat_status``
(public, private, unknown), how many are **right** (status equals the
truth) and **wrong** (a verdict that is not the truth), and how many report
the true ``nat_mapping`` and ``nat_filtering``; then a total row and the
counters: simulated and wall seconds, connections open, probes (dial
requests) served by any node, and each boot node's load. A terminal too narrow for the truth
column gets the frame without it (:func:`fitting_frame`). The colours only stress what the
numbers say (green: all planned hosts right; red: a wrong verdict).

When the run has settled the last frame stays on screen and the accuracy
summary follows: the report ``autonat sim`` prints
(:func:`protocols.sim.format_report`), graded from the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from protocols.sim import SimScenario, format_report, nat_type

from ._sim_progress import SimProgress
from ._simulator import simulate

__all__ = ["REFRESH_PER_SECOND", "DemoView", "TypeTally", "fitting_frame", "render_frame",
           "run_live", "tally"]

REFRESH_PER_SECOND = 4
"""Frames per wall-clock second. Laying out a new frame takes 12-20 ms of CPU (repeating
one, 0.4 ms: :class:`DemoView`), all of it taken from the simulation (one interpreter
lock); at 4 frames a second the demo run spends about 3 % of its CPU drawing, and the
verdicts still visibly arrive."""
_UNBOUNDED = 10_000
_SHORT = {"endpoint-independent": "EI", "address-dependent": "AD",
          "address-and-port-dependent": "APD", "endpoint-dependent": "ED"}


@dataclass
class TypeTally:
    """One NAT type's hosts in one reading (a frame's row)."""

    planned: int = 0
    started: int = 0
    public: int = 0
    private: int = 0
    unknown: int = 0
    right: int = 0
    wrong: int = 0
    mapping_right: int = 0
    filtering_right: int = 0

    def add(self, other: TypeTally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def tally(reading: SimProgress) -> dict[str, TypeTally]:
    """Per NAT type (in the scenario's order): the counts a frame's row shows."""
    rows = {kind: TypeTally() for kind in reading.hosts_planned}
    for kind in reading.hosts_planned:
        rows[kind].planned += 1
    for host in reading.hosts:
        row, truth = rows[host.kind], nat_type(host.kind).truth
        row.started += 1
        if host.nat_status == "unknown":
            row.unknown += 1
        else:
            row.public += host.nat_status == "public"
            row.private += host.nat_status == "private"
            row.right += host.nat_status == truth.nat_status
            row.wrong += host.nat_status != truth.nat_status
        row.mapping_right += host.nat_mapping == truth.nat_mapping
        row.filtering_right += host.nat_filtering == truth.nat_filtering
    return rows


def _truth(kind: str) -> str:
    truth = nat_type(kind).truth
    return (f"{truth.nat_status} {_SHORT.get(truth.nat_mapping, truth.nat_mapping)}/"
            f"{_SHORT.get(truth.nat_filtering, truth.nat_filtering)}")


def _count(value: int, of: int, style: str) -> Text:
    return Text(f"{value}/{of}", style=style if value == of and of else "")


def _cells(row: TypeTally) -> list[Text]:
    n = row.planned
    return [Text(f"{row.started}/{n}"), Text(str(row.public)), Text(str(row.private)),
            Text(str(row.unknown), style="yellow" if row.unknown else ""),
            _count(row.right, n, "bold green"),
            Text(str(row.wrong), style="bold red" if row.wrong else ""),
            _count(row.mapping_right, n, "green"), _count(row.filtering_right, n, "green")]


def _table(reading: SimProgress, truth: bool, gap: int) -> Table:
    boots = len(reading.boots)
    table = Table(title=f"autonat demo - scenario {reading.scenario}, seed {reading.seed}: "
                  f"{boots} boot nodes, {len(reading.hosts_planned)} simulated hosts",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, gap), collapse_padding=True)
    table.add_column("NAT type", no_wrap=True)
    if truth:
        table.add_column("truth", style="dim", no_wrap=True)
    for name in ("started", "public", "private", "unknown", "right", "wrong", "mapping",
                 "filter"):
        table.add_column(name, justify="right", no_wrap=True)
    total = TypeTally()
    for kind, row in tally(reading).items():
        table.add_row(Text(kind), *([Text(_truth(kind))] if truth else []), *_cells(row))
        total.add(row)
    table.add_section()
    table.add_row(Text("total", style="bold"), *([Text("")] if truth else []), *_cells(total))
    return table


def _counters(reading: SimProgress, wall_s: float) -> Text:
    loads = reading.boots
    state = "settled" if reading.final else "converging"
    return Text(
        f"{state}: {reading.simulated_s:.1f} s simulated in {wall_s:.1f} s wall, "
        f"{reading.connections} connections open, {reading.probes_served} probes served\n"
        "boot nodes: connections "
        + "/".join(str(b.connections) for b in loads) + ", probes served "
        + "/".join(str(b.probes_served) for b in loads) + " (refused "
        + "/".join(str(b.refused) for b in loads) + ")")


def render_frame(reading: SimProgress, wall_s: float, *, truth: bool = True,
                 gap: int = 1) -> Group:
    """One frame: the table of hosts by NAT type (``truth``: with the truth column;
    ``gap``: spaces of padding between columns) and the counters (module docstring)."""
    return Group(_table(reading, truth, gap), _counters(reading, wall_s))


def fitting_frame(reading: SimProgress, wall_s: float, console: Console,
                  options: ConsoleOptions) -> Group:
    """The roomiest frame that fits the width: with the truth column and padding (about
    110 columns), with the column tight (about 100), or tight without it (80)."""
    unbounded = options.update_width(_UNBOUNDED)
    for truth, gap in ((True, 1), (True, 0)):
        frame = render_frame(reading, wall_s, truth=truth, gap=gap)
        if Measurement.get(console, unbounded, frame).maximum <= options.max_width:
            return frame
    return render_frame(reading, wall_s, truth=False, gap=0)


class DemoView:
    """The live view's state: the latest reading (set by the simulation's thread) and
    the frame drawn from it (asked for by rich's refresh thread). A frame is drawn once
    per reading and width and then repeated: when the machine is busy, readings come
    slower than frames, and a repeated frame costs no table layout."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._latest: tuple[SimProgress, float] | None = None
        self._drawn: tuple[object, int, list[list[Segment]]] | None = None

    def update(self, reading: SimProgress) -> None:
        """The simulation's callback: keep the reading and when it came; nothing else."""
        self._latest = (reading, self._clock() - self._start)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        latest = self._latest  # one read: the other thread may replace it meanwhile
        if latest is None:
            yield Text("starting the boot nodes ...")
            return
        drawn = self._drawn
        if drawn is None or drawn[0] is not latest or drawn[1] != options.max_width:
            frame = fitting_frame(*latest, console, options)
            drawn = self._drawn = (latest, options.max_width,
                                   console.render_lines(frame, options, pad=False))
        for line in drawn[2]:
            yield from line
            yield Segment.line()


def run_live(scenario: SimScenario, console: Console) -> dict[str, Any]:
    """Run ``scenario`` drawing it live on ``console``, then print the summary; the report."""
    view = DemoView()
    with Live(view, console=console, refresh_per_second=REFRESH_PER_SECOND) as live:
        report = simulate(scenario, observe=view.update)
        live.refresh()
    console.print(Text(format_report(report)), soft_wrap=True)
    return report
