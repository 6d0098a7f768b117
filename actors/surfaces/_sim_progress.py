"""Watching a simulation while it runs: :class:`SimProgress` readings for a live view.

Theory of operation
-------------------
``simulate(scenario, observe=callback)`` starts :func:`report_progress` in the
run's nursery once the boot nodes are up: every :data:`PROGRESS_INTERVAL`
simulated seconds while hosts are still starting or without a verdict, every
:data:`SETTLED_INTERVAL` once all have one, it takes one reading (the ``sample`` function the
simulator hands it: every started host's ``nat_status``, ``nat_mapping`` and
``nat_filtering`` from its snapshot, the boot nodes' load, counters) and
passes it to the callback; the simulator passes one last reading, marked
``final``, when the run has settled. A reading is a frozen value, so a
reader on another thread (a terminal view refreshing at wall-clock rate)
can keep the latest one without locks.

The callback runs inside the simulation's ``trio.run``, on its thread, in
simulated time: it must return at once and never block (store the reading;
render elsewhere). Without a callback nothing is started, and the run -
its scheduling included - is exactly the one ``autonat sim`` makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from protocols.sim import BootLoad

__all__ = ["PROGRESS_INTERVAL", "SETTLED_INTERVAL", "HostProgress", "SimProgress",
           "report_progress"]

PROGRESS_INTERVAL = 0.1
"""Simulated seconds between two readings while the network converges (verdicts arrive
within a few simulated seconds of a host's start; a coarser step would show them in a
few jumps)."""
SETTLED_INTERVAL = 1.0
"""Simulated seconds between two readings once every host has a verdict (the run waits
for quiet then: little to show, and a reading reads the boot nodes' statistics)."""


@dataclass(frozen=True)
class HostProgress:
    """One started host as its node sees itself now."""

    kind: str
    """Its NAT type (:data:`protocols.sim.NAT_TYPES`)."""
    nat_status: str
    nat_mapping: str
    nat_filtering: str


@dataclass(frozen=True)
class SimProgress:
    """One reading of a running simulation."""

    scenario: str
    seed: int
    simulated_s: float
    """Simulated seconds since the boot nodes were up."""
    hosts_planned: tuple[str, ...]
    """Every host's NAT type, started or not, in start order."""
    hosts: tuple[HostProgress, ...]
    """The hosts started so far, in start order."""
    boots: tuple[BootLoad, ...]
    connections: int
    """Connections open now between any two nodes."""
    probes_served: int
    """Dial requests answered so far, by any node (refusals included)."""
    final: bool = False
    """The run has settled (or met its deadline); no reading follows."""

    @property
    def converging(self) -> bool:
        """Some host has not started yet or has no verdict yet."""
        return len(self.hosts) < len(self.hosts_planned) or any(
            host.nat_status == "unknown" for host in self.hosts)


async def report_progress(sample: Callable[[], SimProgress],
                          observe: Callable[[SimProgress], None]) -> None:
    """Pass ``observe`` a reading every :data:`PROGRESS_INTERVAL` simulated seconds while
    the network converges, every :data:`SETTLED_INTERVAL` after; until cancelled."""
    while True:
        reading = sample()
        observe(reading)
        await trio.sleep(PROGRESS_INTERVAL if reading.converging else SETTLED_INTERVAL)
