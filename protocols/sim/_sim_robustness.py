"""Grading robustness: verdict flips, convergence after a boot kill, accuracy under churn.

Theory of operation
-------------------
Pure functions over what the runner recorded; the results go into the run's
report next to the per-NAT-type tables (:mod:`._sim_report`).

* **Flips** (:func:`count_flips`, :func:`stability`): a host's ``nat_status``
  history is the sequence of values it took, in order. A flip is a change
  between two *verdicts* (``public`` <-> ``private``) after the first one;
  a fall back to ``unknown`` in between is no flip (it is counted as
  ``lost``), so ``public, unknown, public`` has no flip and
  ``public, private, public`` has two. The property a run must hold: no
  host flips more than once.
* **Convergence after a kill** (:func:`kill_summary`): every host live at
  the end has the right verdict, including those that started after the
  kill (their boot list still names the dead node).
* **Churn** (:func:`churn_sample`, :func:`churn_summary`): once per
  simulated minute the runner grades the live hosts that have been up for
  at least ``converge_s`` (younger ones have not had time): right, false
  public, false private, unknown.

:func:`violations` reads a report and lists every property it breaks, in
words; an empty list means the run held them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._nat_catalog import nat_type

__all__ = ["GRADES", "churn_sample", "churn_summary", "count_flips", "grade", "kill_summary",
           "stability", "violations"]

GRADES = ("right", "false_public", "false_private", "unknown")
MAX_FLIPS = 1
SHOWN_FLIPPED = 10
"""The report names at most this many hosts that flipped (NAT type and history)."""
"""A host may change its verdict once (a first guess corrected); never back and forth."""


def grade(kind: str, nat_status: str) -> str:
    """``nat_status`` of a host behind NAT type ``kind`` against the truth."""
    if nat_status == nat_type(kind).truth.nat_status:
        return "right"
    if nat_status in ("public", "private"):
        return f"false_{nat_status}"
    if nat_status == "unknown":
        return "unknown"
    raise ValueError(f"unknown nat_status {nat_status!r}")


def count_flips(history: Sequence[str]) -> tuple[int, int]:
    """(flips, losses) in one host's ``nat_status`` history (module docstring)."""
    flips = lost = 0
    last: str | None = None
    previous = "unknown"
    for status in history:
        if status == "unknown":
            lost += previous != "unknown" and last is not None
        elif last is not None and status != last:
            flips += 1
        if status != "unknown":
            last = status
        previous = status
    return flips, lost


def stability(hosts: Iterable[tuple[str, Sequence[str]]]) -> dict[str, Any]:
    """Flips over many hosts, given as (NAT type, history): the worst host, how many
    flipped at all and more than once, and (at most :data:`SHOWN_FLIPPED`) which."""
    rows = [(kind, history, *count_flips(history)) for kind, history in hosts]
    flips = [f for _, _, f, _ in rows]
    shown = sorted(f"{kind}: {'>'.join(history)}" for kind, history, f, _ in rows if f)
    return {"hosts": len(rows), "max_flips": max(flips, default=0),
            "hosts_flipped": sum(f > 0 for f in flips),
            "hosts_flipped_more_than_once": sum(f > MAX_FLIPS for f in flips),
            "verdicts_lost": sum(lost for _, _, _, lost in rows),
            "flipped": shown[:SHOWN_FLIPPED]}


def kill_summary(killed: Sequence[int], at: float,
                 hosts: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """``hosts``: (NAT type, final ``nat_status``, start time relative to the run)."""
    after = [h for h in hosts if h[2] >= at]
    right = [h for h in hosts if grade(h[0], h[1]) == "right"]
    return {"killed": list(killed), "at": at, "hosts": len(hosts),
            "started_after_kill": len(after),
            "converged": len(right),
            "converged_of_started_after": sum(grade(k, s) == "right" for k, s, _ in after)}


def churn_sample(minute: float, live: int, graded: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """One sample: ``graded`` are (NAT type, ``nat_status``) of the hosts old enough."""
    grades = [grade(kind, status) for kind, status in graded]
    return {"t": round(minute, 3), "live": live, "judged": len(grades),
            **{g: grades.count(g) for g in GRADES}}


def churn_summary(samples: Sequence[dict[str, Any]], *, joined: int, left: int
                  ) -> dict[str, Any]:
    """Totals over the samples, the worst minute's share of right verdicts."""
    totals = {g: sum(s[g] for s in samples) for g in GRADES}
    shares = [s["right"] / s["judged"] for s in samples if s["judged"]]
    return {"joined": joined, "left": left, "samples": len(samples),
            "judged": sum(s["judged"] for s in samples), **totals,
            "worst_minute_right": round(min(shares), 4) if shares else None,
            "per_minute": list(samples)}


def violations(report: dict[str, Any]) -> list[str]:
    """Every robustness property ``report`` breaks, in words (empty: none)."""
    found: list[str] = []
    flips = report.get("stability")
    if flips and flips["hosts_flipped_more_than_once"]:
        found.append(f"{flips['hosts_flipped_more_than_once']} host(s) flipped nat_status more "
                     f"than {MAX_FLIPS} time(s) (worst: {flips['max_flips']})")
    kill = report.get("boot_kill")
    if kill and kill["converged"] != kill["hosts"]:
        found.append(f"after the boot kill only {kill['converged']} of {kill['hosts']} hosts "
                     "converged to the right verdict")
    churn = report.get("churn")
    if churn:
        wrong = churn["judged"] - churn["right"]
        if wrong:
            found.append(f"under churn {wrong} of {churn['judged']} sampled verdicts were not "
                         f"right ({churn['false_public']} false public, {churn['false_private']} "
                         f"false private, {churn['unknown']} unknown)")
    return found
