"""The simulator at scale: ``scale-1k`` and ``scale-10k`` (config/scenarios/), one
child process each, and what they cost.

Theory of operation
-------------------
Each size runs in a fresh child process (``--child SCENARIO``), so its peak
resident memory (``ru_maxrss``, reported by :func:`simulate`) is its own and
not the parent's or an earlier run's. The child prints the simulator's JSON
report; the parent prints, per size: wall and CPU seconds, peak RSS, hosts
right per NAT type, time to verdict (p50/p95/max, simulated seconds) and the
CPU cost per host. The figure the project follows is the ratio of per-host
CPU at 10k to per-host CPU at 1k (1.0: linear scaling; the target is <= 1.5,
as the set-up benchmark's last-1k/first-1k ratio); the issue's absolute goals
for 10k (under 120 s wall, under 4 GB peak) are printed beside it as met or
not - on a shared machine wall time is the noisier figure, CPU the steadier.

The child leaves with ``os._exit`` once its report is printed: tearing down
the interpreter over millions of objects takes minutes at 10k and measures
nothing. A child that exceeds ``--timeout`` (wall seconds) is killed and reported as
such. ``--json PATH`` writes every figure for later comparison.

Usage: ``python benchmarks/sim_scale.py [--sizes 1k,10k] [--timeout 3600]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"1k": "scale-1k", "10k": "scale-10k"}
GOAL_WALL_S = 120.0
GOAL_PEAK_MIB = 4096.0
RATIO_TARGET = 1.5


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def child(scenario_name: str) -> None:
    """Run one scenario in this process and print its report as JSON."""
    sys.path.insert(0, str(ROOT))
    from actors.runtime import configure_logging
    from actors.surfaces._cli_sim import load_scenario
    from actors.surfaces._simulator import simulate

    configure_logging("console", "error")
    report = simulate(load_scenario(scenario_name),
                      lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report), flush=True)
    # Skip the interpreter's teardown: at 10k hosts its final garbage collection over
    # millions of objects takes minutes, and the report is already out.
    os._exit(0)


def run_size(size: str, timeout: float) -> dict[str, Any] | None:
    """One size in a child process: its report, or None (killed or failed)."""
    cmd = [sys.executable, __file__, "--child", SIZES[size]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    log(f"{size}: {' '.join(cmd[1:])} (timeout {timeout:g} s)")
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log(f"{size}: killed after {timeout:g} s wall without a report")
        return None
    if done.returncode != 0 or not done.stdout.strip():
        log(f"{size}: child failed (exit {done.returncode}): {done.stderr[-2000:]}")
        return None
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"{size}: done in {time.perf_counter() - start:.0f} s")
    return report


def summary(size: str, report: dict[str, Any]) -> dict[str, Any]:
    res, total = report["resources"], report["total"]
    return {
        "size": size, "hosts": report["hosts"], "boot_nodes": len(report["boot_nodes"]),
        "simulated_s": report["simulated_s"], "wall_s": res["wall_s"], "cpu_s": res["cpu_s"],
        "peak_rss_mib": res["peak_rss_mib"],
        "cpu_ms_per_host": round(1000 * res["cpu_s"] / report["hosts"], 1),
        "right": total["right"], "verdict_s": total["verdict_s"],
        "right_by_nat_type": {kind: f"{row['right']}/{row['hosts']}"
                              for kind, row in report["by_nat_type"].items()},
        "boot_refused": sum(b["refused"] for b in report["boot_nodes"]),
        "load_avg_1min": os.getloadavg()[0],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"machine: {os.cpu_count()} CPUs, {sys.version.split()[0]}")
    for row in rows:
        v = row["verdict_s"]
        print(f"{row['size']:>4}: {row['hosts']} hosts, {row['boot_nodes']} boot nodes, "
              f"{row['simulated_s']:g} s simulated | wall {row['wall_s']:g} s, "
              f"CPU {row['cpu_s']:g} s ({row['cpu_ms_per_host']:g} ms/host), "
              f"peak RSS {row['peak_rss_mib']:g} MiB | right {row['right']}/{row['hosts']}, "
              f"verdict p50/p95/max {v['p50']}/{v['p95']}/{v['max']} s, "
              f"boot refusals {row['boot_refused']} | load {row['load_avg_1min']:.2f}")
        print("      right per NAT type: " + ", ".join(
            f"{kind} {n}" for kind, n in row["right_by_nat_type"].items()))
    by_size = {row["size"]: row for row in rows}
    if "1k" in by_size and "10k" in by_size:
        ratio = by_size["10k"]["cpu_ms_per_host"] / by_size["1k"]["cpu_ms_per_host"]
        print(f"per-host CPU 10k / 1k: {ratio:.2f} (target <= {RATIO_TARGET:g}: "
              f"{'met' if ratio <= RATIO_TARGET else 'missed'})")
    if "10k" in by_size:
        big = by_size["10k"]
        for name, value, goal, unit in (("wall", big["wall_s"], GOAL_WALL_S, "s"),
                                        ("peak RSS", big["peak_rss_mib"], GOAL_PEAK_MIB, "MiB")):
            print(f"10k {name}: {value:g} {unit} (goal < {goal:g} {unit}: "
                  f"{'met' if value < goal else 'missed'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1k,10k", help="comma-separated among 1k, 10k")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="wall seconds one size may take before it is killed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    sizes = [s.strip() for s in args.sizes.split(",")]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; choose among {', '.join(SIZES)}")
    rows = []
    for size in sizes:
        report = run_size(size, args.timeout)
        if report is not None:
            rows.append(summary(size, report))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if len(rows) == len(sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
