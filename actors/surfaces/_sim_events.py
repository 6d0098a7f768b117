"""The simulator's faults in time: boot nodes that die, liars that vanish, hosts that churn.

Theory of operation
-------------------
The runner (:mod:`._simulator`) builds the world; this module makes things
happen to it, all in simulated time (``trio.current_time()`` on the run's
``MockClock``), with every random choice from a generator the runner seeds:

* :func:`run_boot` runs one boot node in its own cancel scope, so that it can
  be killed alone (:meth:`BootRun.kill`: the node shuts down - its listener
  and every connection close, as when a process dies). A lying boot node
  gets its :class:`~._sim_adversary.Adversary`'s handlers.
* :func:`run_faults` kills the scenario's ``[kill]`` boot nodes at
  ``kill.at`` and the ``vanish`` liars at ``liars.at``;
  :func:`settle_not_before` says when the last of those is due (or the
  scenario's ``run_for`` ends), so the runner does not call a run settled
  before its faults have happened.
* :func:`follow_verdicts` records every ``nat_status`` a host takes after its
  first verdict (the report counts flips from it).
* :func:`run_churn` - once per simulated minute while ``churn.duration``
  lasts: grade the live hosts old enough (``churn.converge_s``), then pick
  ``per_minute`` of the live hosts at random, make them leave, and start as
  many new hosts of the same NAT types (the mix stays). The runner passes
  ``spawn``, which starts a host and returns its record.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio

from protocols import Keypair, NodeConfig
from protocols.sim import Churn, SimScenario, churn_sample, churn_summary, kill_summary, stability

from ..node import Node, open_node
from ..transport import Transport
from ._sim_adversary import Adversary

__all__ = [
    "BootRun",
    "ChurnHost",
    "follow_verdicts",
    "liars_section",
    "robustness_sections",
    "run_boot",
    "run_churn",
    "run_faults",
    "settle_not_before",
]

MINUTE = 60.0


@dataclass
class BootRun:
    """One boot node's life: the node, the scope that ends it, its misbehaviour."""

    index: int
    node: Node
    scope: trio.CancelScope
    adversary: Adversary | None = None
    killed_at: float | None = field(default=None)

    def kill(self) -> None:
        self.killed_at = trio.current_time()
        self.scope.cancel()


async def run_boot(index: int, config: NodeConfig, transport: Transport, keypair: Keypair,
                   rng: random.Random, adversary: Adversary | None,
                   task_status: trio.TaskStatus[BootRun]) -> None:
    """Run boot node ``index`` until the run ends or it is killed."""
    overrides = adversary.overrides if adversary is not None else None
    with trio.CancelScope() as scope:
        async with open_node(config, transport=transport, keypair=keypair, rng=rng,
                             handler_overrides=overrides) as node:
            task_status.started(BootRun(index, node, scope, adversary))
            await trio.sleep_forever()


def adversary_for(scenario: SimScenario, index: int) -> Adversary | None:
    """Boot node ``index``'s adversary (None: honest)."""
    mode = scenario.liars.mode_of(index, scenario.boot_nodes)
    return None if mode is None else Adversary(mode, at=scenario.liars.at, index=index)


def settle_not_before(scenario: SimScenario) -> float:
    """When the run may start to settle: after its last timed fault and ``run_for``
    (seconds from the run's start)."""
    times = [scenario.run_for]
    if scenario.kill.boot_nodes:
        times.append(scenario.kill.at)
    if scenario.liars.silent or scenario.liars.vanish:
        times.append(scenario.liars.at)
    return max(times)


async def run_faults(scenario: SimScenario, boots: list[BootRun], t0: float) -> None:
    """Kill the ``[kill]`` boot nodes and the vanishing liars when they are due."""
    doomed = [(scenario.kill.at, boots[i]) for i in scenario.kill.boot_nodes]
    doomed += [(scenario.liars.at, b) for b in boots
               if b.adversary is not None and b.adversary.mode == "vanish"]
    for at, boot in sorted(doomed, key=lambda item: (item[0], item[1].index)):
        await trio.sleep_until(t0 + at)
        if boot.killed_at is None:
            boot.kill()


def liars_section(scenario: SimScenario, boots: list[BootRun]) -> dict[str, Any] | None:
    """The report's ``liars`` part: modes, how many lies were told, which boot nodes."""
    if not scenario.liars.total:
        return None
    liars = [b for b in boots if b.adversary is not None]
    modes: dict[str, int] = {}
    for boot in liars:
        assert boot.adversary is not None
        modes[boot.adversary.mode] = modes.get(boot.adversary.mode, 0) + 1
    return {"boot_nodes": [b.index for b in liars], "modes": modes, "at": scenario.liars.at,
            "lies": sum(b.adversary.lies for b in liars if b.adversary is not None)}


async def follow_verdicts(node: Node, history: list[str]) -> None:
    """Append every ``nat_status`` ``node`` takes (consecutive repeats once), forever."""
    async for snapshot in node.subscribe():
        if not history or history[-1] != snapshot.nat_status:
            history.append(snapshot.nat_status)
    await trio.sleep_forever()  # the watch closed: the node is shutting down


class ChurnHost(Protocol):
    """What this module needs of a host's record."""

    @property
    def kind(self) -> str: ...

    @property
    def started(self) -> float: ...

    @property
    def history(self) -> list[str]: ...

    def nat_status(self) -> str: ...

    def leave(self) -> None: ...


H = TypeVar("H", bound=ChurnHost)


async def run_churn(churn: Churn, live: list[H], spawn: Callable[[str], Awaitable[H]],
                    rng: random.Random, t0: float) -> dict[str, Any]:
    """Churn ``live`` (changed in place) for ``churn.duration``; the report's ``churn``."""
    samples: list[dict[str, Any]] = []
    joined = left = 0
    minute = 1
    while minute * MINUTE <= churn.duration:
        await trio.sleep_until(t0 + minute * MINUTE)
        now = trio.current_time()
        old = [h for h in live if now - h.started >= churn.converge_s]
        samples.append(churn_sample(now - t0, len(live),
                                    [(h.kind, h.nat_status()) for h in old]))
        leaving = rng.sample(live, round(churn.per_minute * len(live)))
        for host in leaving:
            host.leave()
            live.remove(host)
        for host in leaving:
            live.append(await spawn(host.kind))
        joined, left = joined + len(leaving), left + len(leaving)
        minute += 1
    return churn_summary(samples, joined=joined, left=left)


def robustness_sections(scenario: SimScenario, boots: list[BootRun], everyone: list[H],
                        live: list[H], churn: dict[str, Any] | None, t0: float
                        ) -> dict[str, Any]:
    """The report's ``liars``, ``boot_kill`` and ``churn`` parts, as the scenario has them;
    with churn, ``stability`` over every host that ever ran (the departed too)."""
    sections: dict[str, Any] = {}
    liars = liars_section(scenario, boots)
    if liars is not None:
        sections["liars"] = liars
    if scenario.kill.boot_nodes:
        sections["boot_kill"] = kill_summary(
            scenario.kill.boot_nodes, scenario.kill.at,
            [(h.kind, h.nat_status(), h.started - t0) for h in live])
    if churn is not None:
        sections["churn"] = churn
        sections["stability"] = stability((h.kind, h.history) for h in everyone)
    return sections
