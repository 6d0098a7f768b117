"""``python -m benchmarks.adversarial``: run the attacks, print one Markdown table.

Each attack gets a fresh lab (three ``autonat boot`` processes on loopback,
see :mod:`benchmarks.adversarial._lab`), so no attack sees another's
leftovers; the lab is killed when the attack ends, also on Ctrl-C or an
error. ``--only 1a,3`` picks attacks by their number; ``--quick`` runs every
attack at the small sizes of the test suite. The raw figures go to
``benchmarks/results/adversarial.json``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial

import trio

from benchmarks._common import HERE, raise_nofile

from . import _churn, _connections, _protocols
from ._lab import Lab, Result, open_lab

Attack = Callable[[Lab], Awaitable[Result]]

HEADER = ("attack", "tried", "held", "time to close", "honest client's verdict (time)",
          "node RSS before/peak/after", "node CPU s")

# number -> (full run, quick run); quick sizes are those of tests/adversarial
ATTACKS: dict[str, tuple[Attack, Attack]] = {
    "1a": (partial(_connections.idle_one_host, count=200),
           partial(_connections.idle_one_host, count=30)),
    "1b": (partial(_connections.idle_many_networks, subnets=10, hosts=64),
           partial(_connections.idle_many_networks, subnets=2, hosts=10)),
    "2": (partial(_connections.half_open, count=200),
          partial(_connections.half_open, count=30)),
    "3": (partial(_protocols.dial_flood, requests=5000, seconds=20.0),
          partial(_protocols.dial_flood, requests=300, seconds=5.0)),
    "4": (partial(_protocols.status_poison, one_host=8, hosts=50),
          partial(_protocols.status_poison, one_host=8, hosts=4)),
    "5": (partial(_protocols.fd_pressure, hosts=400),
          partial(_protocols.fd_pressure, hosts=250, dial_backs=3)),
    "6": (partial(_churn.planner_churn, cycles=10_000),
          partial(_churn.planner_churn, cycles=200)),
    "8": (partial(_connections.no_upgrade, count=500),
          partial(_connections.no_upgrade, count=40, linger=0.0)),
    "9": (_protocols.stalled_stream, partial(_protocols.stalled_stream, limit=8.0)),
}
NO_LAB = {"7": _churn.config_bombs}
LAB_FLAGS = {"5": _protocols.low_nofile}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_one(number: str, quick: bool) -> Result:
    if number in NO_LAB:
        return trio.run(NO_LAB[number])
    attack = ATTACKS[number][1 if quick else 0]
    with open_lab(preexec=LAB_FLAGS.get(number)) as lab:
        return trio.run(attack, lab)


def table(results: list[Result]) -> str:
    rows = [HEADER, tuple("---" for _ in HEADER), *(r.cells() for r in results)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    order = sorted([*ATTACKS, *NO_LAB], key=lambda n: (int(n[0]), n))
    parser.add_argument("--only", default=",".join(order),
                        help=f"attacks to run, comma-separated (default: {','.join(order)})")
    parser.add_argument("--quick", action="store_true", help="the test suite's small sizes")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in order]
    if unknown:
        parser.error(f"unknown attack(s): {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # finally: kill the nodes
    raise_nofile()
    results = []
    for number in chosen:
        log(f"attack {number}")
        began = time.monotonic()
        result = run_one(number, args.quick)
        log(f"  {' | '.join(result.cells())} [{time.monotonic() - began:.0f} s]")
        results.append(result)
    out = HERE / "results" / "adversarial.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{"cells": r.cells(), "facts": r.facts,
                                "honest": asdict(r.honest) if r.honest else None}
                               for r in results], indent=1))
    print(table(results))
    for result in results:
        for note in result.notes:
            print(f"\n{result.attack.split()[0]}: {note}")


if __name__ == "__main__":
    main()
