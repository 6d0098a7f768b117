"""Plots of ``results.json`` (``benchmarks/run.py``): set-up time and server RSS against N.

Writes ``setup_time.png`` and ``server_rss.png`` (median over runs, one line per
server kind). A size that ran out of its time budget (in some run) is drawn at the time
budget with a hollow marker, labelled with how many connections were up; RSS
is drawn against the connections actually up.

Run: ``python benchmarks/plot.py [RESULTS_JSON] [OUT_DIR]`` (needs matplotlib:
``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABELS = {"ours": "ours (handshake + Identify)", "ws": "bare trio-websocket",
          "tcp": "bare Trio TCP"}


def _series(setup: list[dict[str, object]], kind: str, key: str,
            ) -> tuple[list[float], list[float], list[tuple[int, float, int]]]:
    """Medians per size of the runs that have ``key``; sizes where none has it -> partial.

    The x value is the median number of connections actually up (for RSS a size
    that ran out of budget is drawn where it got to, not at N).
    """
    sizes = sorted({int(r["size"]) for r in setup if r["kind"] == kind})  # type: ignore[call-overload]
    xs, ys, partial = [], [], []
    for size in sizes:
        runs = [r for r in setup if r["kind"] == kind and r["size"] == size]
        good = [r for r in runs if r.get(key) is not None]
        if good:
            xs.append(statistics.median(float(r["up"]) for r in good))  # type: ignore[arg-type]
            ys.append(statistics.median(float(r[key]) for r in good))  # type: ignore[arg-type]
        if key == "total_s" and len(good) < len(runs):
            short = [r for r in runs if r.get(key) is None]
            up = int(statistics.median(int(r["up"]) for r in short))  # type: ignore[call-overload]
            partial.append((size, float(short[0]["budget"]), up))  # type: ignore[arg-type]
    return xs, ys, partial


def plot(results: Path, out: Path) -> list[Path]:
    data = json.loads(results.read_text())
    setup = data.get("setup", [])
    written = []
    for key, name, ylabel, scale in (
            ("total_s", "setup_time.png", "time to open N connections (s)", 1.0),
            ("rss_after_kib", "server_rss.png", "server VmRSS with N idle connections (MiB)",
             1 / 1024)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for kind, label in LABELS.items():
            xs, ys, partial = _series(setup, kind, key)
            line = ax.plot(xs, [y * scale for y in ys], marker="o", label=label)
            for size, budget, up in partial:
                ax.plot([size], [budget], marker="o", fillstyle="none",
                        color=line[0].get_color())
                ax.annotate(f"N={size}: {up} up in {budget:g} s", (size, budget), fontsize=8,
                            textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("connections up")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel.split(' (')[0]} - median of runs, {data.get('started', '')}",
                     fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / \
        "results.json"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else source.parent
    for written_path in plot(source, target):
        print(written_path)
