"""The simulator's hole-punch matrix: real nodes connect through relays and punch.

Theory of operation
-------------------
With ``punch_matrix`` on, the boot nodes run the relay service (as
``config/boot.toml`` ships it) and every private host reserves on them as
a real node does once AutoNAT says ``private``. After the hosts converged,
:func:`run_punch_matrix` takes, for each private NAT type, its first host
as the **dialer** and its second as the **target**, and has every dialer
connect to every target through the target's relayed address
(``.../p2p/BOOT/p2p-circuit/p2p/TARGET``) with the same code as ``autonat
connect`` (:func:`~actors.surfaces._cli_connect.connect_to`): the target
accepts the relayed connection and starts the hole punch (DCUtR), both
punch through their NAT boxes on the simulated internet
(:mod:`actors.transport._sim_punch`), and the result is ``hole-punched``
or ``relayed`` with the reason. Dialers and targets are distinct hosts, so
no pair was connected before its own connect.

All connects start together, :data:`STAGGER` apart in list order (so a run
repeats for a seed), each bounded by :data:`CONNECT_TIMEOUT` simulated
seconds; a target without a relayed address after :data:`RESERVE_WAIT`
gives a cell with path ``none``. The outcomes are arranged by
:func:`protocols.sim.punch_matrix`, which also holds them against the
matrix the definitions predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import trio

from protocols.sim import PunchOutcome, nat_type, punch_matrix

from ..node import Node
from ._cli_connect import connect_to

__all__ = ["CONNECT_TIMEOUT", "RESERVE_WAIT", "run_punch_matrix"]

CONNECT_TIMEOUT: Final = 60.0
RESERVE_WAIT: Final = 30.0
STAGGER: Final = 0.05


def _pairs(hosts: Sequence[tuple[str, Node]]) -> list[tuple[str, Node, str, Node]]:
    by_kind: dict[str, list[Node]] = {}
    for kind, node in hosts:
        if nat_type(kind).truth.nat_status == "private":
            by_kind.setdefault(kind, []).append(node)
    kinds = [kind for kind, nodes in by_kind.items() if len(nodes) >= 2]
    return [(a, by_kind[a][0], b, by_kind[b][1]) for a in kinds for b in kinds]


async def _relay_addr(node: Node) -> str | None:
    with trio.move_on_after(RESERVE_WAIT):
        while not node.relay_addrs():
            await trio.sleep(0.5)
        return str(node.relay_addrs()[0])
    return None


async def _one(dialer_kind: str, dialer: Node, target_kind: str, target: Node,
               out: list[PunchOutcome]) -> None:
    circuit = await _relay_addr(target)
    if circuit is None:
        out.append(PunchOutcome(dialer_kind, target_kind, "none",
                                f"no relayed address within {RESERVE_WAIT:g} s", None))
        return
    result = await connect_to(dialer, circuit, CONNECT_TIMEOUT)
    out.append(PunchOutcome(dialer_kind, target_kind, result["path"] or "none",
                            result["reason"], result["time_to_direct_s"]))


async def run_punch_matrix(hosts: Sequence[tuple[str, Node]]) -> dict[str, Any]:
    """Connect every private type's dialer to every private type's target through a
    relay (module docstring); the report section."""
    outcomes: list[PunchOutcome] = []
    async with trio.open_nursery() as nursery:
        for pair in _pairs(hosts):
            nursery.start_soon(_one, *pair, outcomes)
            await trio.sleep(STAGGER)
    order = {(a, b): i for i, (a, _, b, _) in enumerate(_pairs(hosts))}
    outcomes.sort(key=lambda o: order[(o.dialer, o.target)])
    return punch_matrix(outcomes)
