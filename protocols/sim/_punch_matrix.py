"""Hole punching between NAT types: what the definitions predict, and the measured matrix.

Theory of operation
-------------------
A TCP hole punch is two SYNs, one from each peer's listen port towards the
public address the other announced (the one observers saw), sent at about the
same moment. The first SYN to reach the far box usually finds no binding
there that admits it and is dropped; the other side's SYN, sent meanwhile,
created that binding; the retransmitted SYN is judged again. So the punch
succeeds when **at least one direction passes** once both SYNs have left.

``X``'s SYN passes ``Y``'s box (:func:`syn_passes`) when:

* ``Y`` has no box (a public address) or filters endpoint-independently;
* ``Y`` filters address-dependently and its SYN towards ``X`` left from the
  binding ``X`` aims at - ``Y``'s mapping is endpoint-independent (an
  endpoint-dependent mapping gives that SYN a fresh binding, and the
  announced one never contacted ``X``);
* ``Y`` filters address-and-port-dependently, its SYN left from the announced
  binding (endpoint-independent mapping) *and* ``X``'s SYN comes from the
  endpoint ``Y`` aimed at (``X``'s mapping endpoint-independent too);
* never when ``Y``'s filter is closed (a host firewall refusing every inbound
  connection).

On top of the network, the node's hole-punch exchange does not try when
either side knows its mapping is endpoint-dependent (the port its SYN would
leave from was announced to nobody): such a pair stays relayed, ``skipped``
(:func:`expected_punch`). That is the lab's result too: two masquerading
NATs are punched, a ``--random-fully`` NAT stays relayed with the reason, an
address-restricted NAT is punched.

:func:`punch_matrix` arranges measured :class:`PunchOutcome` rows by
(dialing type, target type) for the report; :func:`format_punch_matrix`
prints it. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._nat_behaviour import Filtering, Mapping, NatBehaviour
from ._nat_catalog import nat_type
from ._sim_report import percentile

__all__ = ["PunchOutcome", "expected_punch", "format_punch_matrix", "punch_matrix",
           "syn_passes"]

ENDPOINT_DEPENDENT = "endpoint-dependent"


def _eim(behaviour: NatBehaviour | None) -> bool:
    return behaviour is None or behaviour.mapping is Mapping.ENDPOINT_INDEPENDENT


def syn_passes(source: NatBehaviour | None, target: NatBehaviour | None) -> bool:
    """Whether a punch SYN from the host behind ``source`` passes ``target``'s box once
    the target's own SYN towards it has left (``None``: no box). See the module
    docstring."""
    if target is None:
        return True
    filtering = target.filtering
    if filtering is Filtering.ENDPOINT_INDEPENDENT:
        return True
    if filtering is Filtering.ADDRESS_DEPENDENT:
        return _eim(target)
    if filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT:
        return _eim(target) and _eim(source)
    if filtering is Filtering.CLOSED:
        return False
    raise ValueError(f"unknown filtering {filtering!r}")


def expected_punch(dialer: str, target: str) -> str:
    """``"direct"`` or ``"relayed"`` for a punch between NAT types ``dialer`` and
    ``target`` (catalog names), by the definitions (module docstring)."""
    a, b = nat_type(dialer), nat_type(target)
    if ENDPOINT_DEPENDENT in (a.truth.nat_mapping, b.truth.nat_mapping):
        return "relayed"
    passes = syn_passes(a.behaviour, b.behaviour) or syn_passes(b.behaviour, a.behaviour)
    return "direct" if passes else "relayed"


@dataclass(frozen=True)
class PunchOutcome:
    """One measured connect from a host of type ``dialer`` to one of type ``target``
    through the target's relayed address."""

    dialer: str
    target: str
    path: str
    """``hole-punched``, ``relayed`` or ``none`` (no connection at all)."""
    reason: str | None
    time_to_direct: float | None
    """Simulated seconds from the relayed connection to the direct one."""


def punch_matrix(outcomes: Sequence[PunchOutcome]) -> dict[str, Any]:
    """The report section: per dialing type, per target type, the path (``direct`` for
    hole-punched), with the expected one and the reason; and the time to a direct
    connection (p50, max) over the punched pairs."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for o in outcomes:
        path = "direct" if o.path == "hole-punched" else o.path
        rows.setdefault(o.dialer, {})[o.target] = {
            "path": path, "expected": expected_punch(o.dialer, o.target),
            "reason": o.reason,
            "time_to_direct_s": None if o.time_to_direct is None else round(o.time_to_direct, 3)}
    times = [o.time_to_direct for o in outcomes if o.time_to_direct is not None]
    cells = [cell for row in rows.values() for cell in row.values()]
    return {"rows": rows,
            "as_expected": sum(c["path"] == c["expected"] for c in cells),
            "pairs": len(cells),
            "time_to_direct_s": {
                "p50": None if not times else round(percentile(times, 0.5) or 0.0, 3),
                "max": None if not times else round(max(times), 3)}}


_ABBREV = {"direct": "D", "relayed": "R", "none": "-"}


def format_punch_matrix(section: dict[str, Any]) -> str:
    """The matrix for people: D (hole-punched), R (stayed relayed), - (no connection);
    a ``!`` marks a cell that differs from the expected one."""
    rows: dict[str, dict[str, dict[str, Any]]] = section["rows"]
    targets = list(dict.fromkeys(t for row in rows.values() for t in row))
    width = max([len("dialer \\ target"), *(len(d) for d in rows)])
    lines = [f"hole punch via relayed address (D direct, R relayed, ! unexpected): "
             f"{section['as_expected']}/{section['pairs']} as expected; time to direct "
             f"p50 {section['time_to_direct_s']['p50']} s, "
             f"max {section['time_to_direct_s']['max']} s (simulated)",
             "  ".join(["dialer \\ target".ljust(width), *targets])]
    for dialer, row in rows.items():
        cells = []
        for target in targets:
            cell = row.get(target)
            mark = "" if cell is None else _ABBREV.get(cell["path"], "?") + (
                "" if cell["path"] == cell["expected"] else "!")
            cells.append(mark.ljust(len(target)))
        lines.append("  ".join([dialer.ljust(width), *cells]).rstrip())
    return "\n".join(lines)
