"""Run the benchmarks and print one table: figure | ours | baseline | ratio | target | command.

Every figure is a ratio against a baseline measured in the same run, repeated
``--runs`` times (median and min-max of the per-run ratios). Servers are
child processes on loopback, started and killed here (also on Ctrl-C); the
temporary directory (py-libp2p's virtualenv, nginx's files) is removed at the
end. Results go to ``--out`` as ``results.json``; ``benchmarks/plot.py``
draws the set-up time and RSS plots from it.

Rows (``--only``, comma-separated): setup, memory, probes, status, codec,
process, verdict; and, only when named (it takes the better part of an hour
on 2 cores), sim: the simulator's per-host CPU at 10k hosts against 1k
(``benchmarks/sim_scale.py``, once per run - ``--runs`` does not repeat it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import codec
import probes
import setup_conn
import sim_scale
import status_http
import whole_process
from _common import HERE, Row, fmt, median_or_none, raise_nofile, ratio_text

ROWS = ("setup", "memory", "probes", "status", "codec", "process", "verdict")
OPTIONAL_ROWS = ("sim",)
FULL_SIZES = (1000, 2000, 5000, 10000)
MEMORY_SIZES = (1000, 5000, 10000)
RUNNER = "python benchmarks/run.py"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- rows 1 and 2 --------------------------------------------------------------


def setup_rows(args: argparse.Namespace, raw: dict[str, object]) -> list[Row]:
    runs: list[setup_conn.SetupResult] = []
    for run in range(args.runs):
        for size in args.sizes:
            for kind in setup_conn.KINDS:
                log(f"set-up: run {run + 1}/{args.runs}, {kind}, N={size}")
                result = setup_conn.measure(kind, size, args.budget, args.concurrency)
                runs.append(result)
                log(f"  up {result.up}/{size} total {fmt(result.total)} s "
                    f"rss/conn {fmt(result.rss_per_conn_kib)} KiB {result.status()}")
    raw["setup"] = [r.to_json() for r in runs]
    rows: list[Row] = []

    def pick(kind: str, size: int) -> list[setup_conn.SetupResult]:
        return [r for r in runs if r.kind == kind and r.size == size]

    def notes(results: list[setup_conn.SetupResult]) -> str:
        return "; ".join(sorted({r.status() for r in results if r.status()}))

    for size in args.sizes:
        ours, ws, tcp = pick("ours", size), pick("ws", size), pick("tcp", size)
        cmd = f"{RUNNER} --only setup --sizes {size} --budget {args.budget:g}"
        if "setup" in args.only:
            for name, base in (("bare trio-websocket", ws), ("bare Trio TCP", tcp)):
                row = Row(f"set-up {size:,} conns, s (vs {name})", "s", "-", cmd,
                          baseline_name=name)
                for o, b in zip(ours, base, strict=True):
                    row.add(o.total, b.total)
                row.note = notes(ours + base)
                rows.append(row)
            if size > setup_conn.CHUNK:
                row = Row(f"set-up {size:,}: last 1k / first 1k (ours; vs ws)", "x",
                          "ours <= 1.5", cmd, baseline_name="bare trio-websocket")
                for o, b in zip(ours, ws, strict=True):
                    row.add(_chunk_ratio(o), _chunk_ratio(b))
                row.note = notes(ours + ws)
                rows.append(row)
        if "memory" in args.only and (size in MEMORY_SIZES or not set(args.sizes)
                                      & set(MEMORY_SIZES)):
            for name, base, target in (("bare trio-websocket", ws, "<= 1.5"),
                                       ("bare Trio TCP", tcp, "-")):
                row = Row(f"server RSS per idle conn at {size:,}, KiB (vs {name})", "KiB",
                          target, cmd.replace("--only setup", "--only memory"),
                          baseline_name=name)
                for o, b in zip(ours, base, strict=True):
                    row.add(o.rss_per_conn_kib if o.up else None,
                            b.rss_per_conn_kib if b.up else None)
                partial = [f"{r.kind} at {r.up}" for r in ours + base if r.up and not r.complete]
                row.note = "; ".join(sorted(set(partial))) or notes(ours + base)
                rows.append(row)
    return rows


def _chunk_ratio(result: setup_conn.SetupResult) -> float | None:
    first, last = result.first_chunk, result.last_chunk
    return last / first if first and last else None


# --- rows 3 to 7 -----------------------------------------------------------------


def probe_rows(args: argparse.Namespace, raw: dict[str, object]) -> list[Row]:
    rows = []
    raw_probes = []
    for c in args.probe_concurrency:
        row = Row(f"AutoNAT probes/s served, concurrency {c}", "/s", ">= 0.5",
                  f"{RUNNER} --only probes --probe-concurrency {c}",
                  baseline_name="bare Trio TCP accept + connect-back")
        p50: list[tuple[float | None, float | None]] = []
        p99: list[tuple[float | None, float | None]] = []
        errors = set()
        for run in range(args.runs):
            log(f"probes: run {run + 1}/{args.runs}, concurrency {c}")
            ours = probes.measure("ours", c, args.seconds)
            base = probes.measure("tcp", c, args.seconds)
            raw_probes += [ours.to_json(), base.to_json()]
            row.add(ours.rate, base.rate)
            p50.append((ours.p(0.5), base.p(0.5)))
            p99.append((ours.p(0.99), base.p(0.99)))
            errors |= {f"{r.kind}: {r.error}" for r in (ours, base) if r.error}
            errors |= {f"{r.kind}: {r.failures} failed" for r in (ours, base) if r.failures}
            log(f"  ours {fmt(ours.rate)}/s tcp {fmt(base.rate)}/s")
        row.extra = {"ours_detail": _latency([o for o, _ in p50], [o for o, _ in p99]),
                     "baseline_detail": _latency([b for _, b in p50], [b for _, b in p99])}
        row.note = "; ".join(sorted(errors))
        rows.append(row)
    raw["probes"] = raw_probes
    return rows


def _latency(p50: list[float | None], p99: list[float | None]) -> str:
    a, b = median_or_none(p50), median_or_none(p99)
    if a is None or b is None:
        return ""
    return f"p50 {a * 1000:.3g} ms, p99 {b * 1000:.3g} ms"


def status_rows(args: argparse.Namespace, raw: dict[str, object]) -> list[Row]:
    rows = {c: Row(f"GET /status req/s, wrk {c} conn", "/s", ">= 0.25",
                   f"{RUNNER} --only status", baseline_name="nginx, same body")
            for c in (1, 50)}
    raw_status = []
    for run in range(args.runs):
        log(f"status: run {run + 1}/{args.runs}")
        try:
            result = status_http.measure((1, 50), args.seconds)
        except Exception as exc:
            for row in rows.values():
                row.add(None, None)
                row.note = f"error: {exc}"[:200]
            continue
        for c, (ours, nginx) in result.items():
            rows[c].add(ours, nginx)
            raw_status.append({"connections": c, "ours_per_s": ours, "nginx_per_s": nginx})
    raw["status"] = raw_status
    return list(rows.values())


def codec_rows(args: argparse.Namespace, raw: dict[str, object]) -> list[Row]:
    decode = Row("Identify frame decode, ops/s", "/s", ">= 0.3", f"{RUNNER} --only codec",
                 baseline_name="msgpack.unpackb")
    encode = Row("Identify frame encode, ops/s", "/s", ">= 0.5", f"{RUNNER} --only codec",
                 baseline_name="msgpack.packb")
    raw_codec = []
    for run in range(args.runs):
        log(f"codec: run {run + 1}/{args.runs}")
        result = codec.measure(args.codec_seconds)
        decode.add(result["decode_ours"], result["decode_msgpack"])
        encode.add(result["encode_ours"], result["encode_msgpack"])
        raw_codec.append(result)
    raw["codec"] = raw_codec
    return [decode, encode]


def process_rows(args: argparse.Namespace, raw: dict[str, object], tmp: Path) -> list[Row]:
    row = Row("`autonat probe` whole process, s", "s", "<= 0.6",
              f"{RUNNER} --only process",
              baseline_name="py-libp2p 2 hosts connect + identify")
    try:
        with contextlib.ExitStack() as stack:
            if args.libp2p_python:
                python = args.libp2p_python
            else:
                log("process: installing libp2p into a virtualenv under the temp dir")
                python = stack.enter_context(whole_process.libp2p_venv(tmp))
            log(f"process: {args.runs} runs")
            results = whole_process.measure(python, args.runs)
    except Exception as exc:
        row.note = f"error: {exc}"[:200]
        return [row]
    for ours, base, error in results:
        row.add(ours, base)
        if error:
            row.note = error
    raw["process"] = [{"ours_s": o, "libp2p_s": b, "error": e} for o, b, e in results]
    return [row]


def verdict_rows(args: argparse.Namespace, raw: dict[str, object]) -> list[Row]:
    import first_verdict
    import trio

    from actors import configure_logging

    configure_logging("console", level="error")
    row = Row("first NAT verdict (3 servers), ms", "ms", "-",
              f".venv/bin/python benchmarks/first_verdict.py {args.verdict_rounds}",
              baseline_name="connect 3 + identify")
    raw_verdict = []
    for run in range(args.runs):
        log(f"verdict: run {run + 1}/{args.runs}, {args.verdict_rounds} rounds")

        async def rounds() -> list[tuple[float, float]]:
            with trio.fail_after(60 + 10 * args.verdict_rounds):
                return [await first_verdict.one_round(i) for i in range(args.verdict_rounds)]

        try:
            results = trio.run(rounds)
        except Exception as exc:
            row.add(None, None)
            row.note = f"error: {exc}"[:200]
            continue
        row.add(statistics.median(v for _, v in results) * 1000,
                statistics.median(b for b, _ in results) * 1000)
        raw_verdict.append(results)
    raw["verdict"] = raw_verdict
    return [row]


# --- table ---------------------------------------------------------------------


def sim_rows(args: argparse.Namespace, raw: dict[str, object]) -> list[Row]:
    row = Row("simulator CPU per host at 10k hosts, ms (vs 1k)", "ms",
              f"<= {sim_scale.RATIO_TARGET:g}", "python benchmarks/sim_scale.py",
              baseline_name="the same at 1k")
    figures = {}
    for size in ("1k", "10k"):
        report = sim_scale.run_size(size, timeout=3600.0)
        figures[size] = sim_scale.summary(size, report) if report is not None else None
    raw["sim"] = figures
    small, big = figures["1k"], figures["10k"]
    row.add(big["cpu_ms_per_host"] if big else None, small["cpu_ms_per_host"] if small else None)
    if big:
        row.note = (f"10k: wall {big['wall_s']:g} s, peak RSS {big['peak_rss_mib']:g} MiB, "
                    f"right {big['right']}/{big['hosts']}")
    return [row]


def table(rows: list[Row]) -> str:
    head = ("figure", "ours", "baseline", "ratio median (min-max)", "target", "command")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ours = fmt(median_or_none(row.ours))
        base = fmt(median_or_none(row.baseline))
        if row.extra.get("ours_detail"):
            ours += f" ({row.extra['ours_detail']})"
        if row.extra.get("baseline_detail"):
            base += f" ({row.extra['baseline_detail']})"
        ratio = ratio_text(row)
        if row.note and row.ratios():
            ratio += f"; {row.note}"
        cells = (row.figure, ours, f"{base} [{row.baseline_name}]", ratio, row.target,
                 f"`{row.command}`")
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small and short: N=1000, 60 s budget, 1 s loads (a smoke run)")
    parser.add_argument("--sizes", default=None,
                        help="connection counts for set-up and memory (default 1000,2000,5000,"
                             "10000; --quick: 1000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every row")
    parser.add_argument("--only", default=",".join(ROWS),
                        help=f"comma-separated rows among {', '.join(ROWS + OPTIONAL_ROWS)} "
                             "(sim only when named)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="directory for results.json and the plots")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per set-up size and kind (default 120; --quick: 60)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="set-ups in flight at once")
    parser.add_argument("--probe-concurrency", default="1,10,100")
    parser.add_argument("--seconds", type=float, default=None,
                        help="duration of each probe and wrk load (default 5; --quick: 1)")
    parser.add_argument("--codec-seconds", type=float, default=None)
    parser.add_argument("--verdict-rounds", type=int, default=None)
    parser.add_argument("--libp2p-python", type=Path, default=None,
                        help="use this interpreter (with libp2p) instead of a fresh virtualenv")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                  else [1000] if quick else list(FULL_SIZES))
    args.budget = args.budget if args.budget is not None else (60.0 if quick else 120.0)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if quick else 5.0)
    args.codec_seconds = args.codec_seconds or (0.2 if quick else 1.0)
    args.verdict_rounds = args.verdict_rounds or (3 if quick else 10)
    args.probe_concurrency = [int(c) for c in args.probe_concurrency.split(",")]
    args.only = [r.strip() for r in args.only.split(",")]
    unknown = set(args.only) - set(ROWS) - set(OPTIONAL_ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose among "
                     f"{', '.join(ROWS + OPTIONAL_ROWS)}")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_nofile()
    # Ctrl-C even when started with SIGINT ignored (a background job), and SIGTERM,
    # end the run the same way: child servers stopped, temp dir removed, table printed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="autonat-bench-"))
    raw: dict[str, object] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv[1:],
        "python": platform.python_version()}
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("codec", lambda: codec_rows(args, raw)),
        ("verdict", lambda: verdict_rows(args, raw)),
        ("process", lambda: process_rows(args, raw, tmp)),
        ("status", lambda: status_rows(args, raw)),
        ("probes", lambda: probe_rows(args, raw)),
        ("setup", lambda: setup_rows(args, raw)),
        ("sim", lambda: sim_rows(args, raw)),
    ]
    try:
        for name, step in steps:
            wanted = name in args.only or (name == "setup" and "memory" in args.only)
            if wanted:
                started = time.monotonic()
                rows += step()
                log(f"{name} done in {time.monotonic() - started:.0f} s")
    except* KeyboardInterrupt:  # Trio may hand it over inside an exception group
        log("interrupted: printing what was measured")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    raw["rows"] = [r.to_json() for r in rows]
    (args.out / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(table(rows))
    if "setup" in raw and not args.no_plot:
        try:
            import plot
            for path in plot.plot(args.out / "results.json", args.out):
                log(f"plot: {path}")
        except ImportError as exc:
            log(f"no plots ({exc}); install the bench extra: pip install -e '.[bench]'")


if __name__ == "__main__":
    main()
