"""Soak: one boot node, 50 churning clients, resources sampled every 10 s.

Theory of operation
-------------------
A leak shows as a line that keeps rising: memory held per departed peer,
sockets never closed, tasks never ended. So the node is run long enough for
many generations of peers to come and go, and its RSS, open file
descriptors and Trio task count are sampled at a fixed interval.

* the node is a real ``autonat boot`` child process on 127.0.0.1
  (benchmarks/adversarial/_lab.py), with its HTTP API on loopback;
* ``--clients`` (50) client tasks in this process, client ``i`` on its own
  source IP 127.0.1.(i+1) (one /24, under the per-subnet cap), each with a
  listener that answers AutoNAT dial-backs. A client's life: connect and
  authenticate with a fresh key, answer the node's Identify and ask its own
  Identify, with probability ``--dial-share`` send one dial request for its
  listener (a real dial-back), stay 0.5-5 s, disconnect, pause 0.1-1 s,
  start again. Every loop ends at the deadline and after ``MAX_LIVES``;
* every ``--interval`` (10 s) the sampler reads VmRSS from
  /proc/PID/status, the entries of /proc/PID/fd, and ``autonat_trio_tasks``,
  ``autonat_connections`` and ``autonat_peers_known`` from ``/metrics``.

Every life is a new peer id, so the node's peer store grows until it holds
``max_peers`` records (5000 in the boot profile) and then evicts the oldest:
memory is expected to rise until then (warm-up) and stay flat afterwards.

Output: ``benchmarks/results/soak.csv`` (one row per sample),
``benchmarks/plots/soak.png`` (four panels) and a summary on stdout: first
and last values, and the least-squares slope of each series over the samples
after ``--warmup`` (120 s), per minute and as the change it predicts over that
window relative to its mean - "flat" means that relative change is small -
and the same after the peer store stopped growing, when that is later.

Run: ``python -m benchmarks.soak [--duration 600] [--clients 50]``
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import trio

from actors import ConnectionFailed, FrameStream, open_connection
from benchmarks._common import HERE, raise_nofile, vm_rss_kib
from benchmarks._ours import CONFIG, handlers, transport
from benchmarks.adversarial._lab import BootNode, boot_process, fd_count, open_bare
from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    DialRequest,
    Keypair,
    WsAddress,
)

MAX_LIVES = 100_000
"""Upper bound of connections per client, whatever the duration."""
RESULTS = HERE / "results"
PLOTS = HERE / "plots"


@dataclass
class Sample:
    t: float
    rss_kib: int
    fds: int
    tasks: int
    connections: int
    peers_known: int
    lives: int
    errors: int


@dataclass
class Churn:
    lives: int = 0
    errors: int = 0


async def client(index: int, node: BootNode, deadline: float, churn: Churn,
                 dial_share: float) -> None:
    ip = f"127.0.1.{index + 1}"
    rng = random.Random(index)
    key = [Keypair.generate()]  # this life's key: the dial-back must find the same peer id

    async def accept(frames: FrameStream) -> None:
        keypair = key[0]
        with contextlib.suppress(ConnectionFailed):
            async with open_connection(frames, keypair, initiator=False, config=CONFIG,
                                       handlers=handlers(keypair, dial_back=True)) as conn:
                await conn.closed.wait()

    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(transport().listen,
                                      WsAddress.parse(f"/ip4/{ip}/tcp/0/ws"), accept)
        for _ in range(MAX_LIVES):
            if trio.current_time() >= deadline:
                break
            key[0] = Keypair.generate()
            with trio.move_on_after(30):
                try:
                    await one_life(node, ip, key[0], bound, rng, dial_share)
                    churn.lives += 1
                except Exception:
                    churn.errors += 1
            await trio.sleep(rng.uniform(0.1, 1.0))
        nursery.cancel_scope.cancel()


async def one_life(node: BootNode, ip: str, keypair: Keypair, bound: WsAddress,
                   rng: random.Random, dial_share: float) -> None:
    table = handlers(keypair, dial_back=True)
    async with open_bare(node.addr, ip, keypair=keypair, table=table) as conn:
        async with await conn.open_stream(IDENTIFY_PROTOCOL_ID) as stream:
            await stream.request({}, timeout=10)
        if rng.random() < dial_share:
            request = DialRequest(addrs=(bound.to_bytes(),), nonce=rng.getrandbits(63))
            async with await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID) as stream:
                await stream.send(request.to_wire())
                await stream.receive()
        await trio.sleep(rng.uniform(0.5, 5.0))


async def scrape(node: BootNode) -> tuple[int, int, int]:
    """``autonat_trio_tasks``, the sum of ``autonat_connections`` and
    ``autonat_peers_known`` (-1 when unreadable)."""
    tasks = connections = peers = -1
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
            text = (await http.get(node.metrics_url)).text
    except httpx.HTTPError:
        return tasks, connections, peers
    for line in text.splitlines():
        value = int(float(line.rsplit(" ", 1)[-1])) if line.startswith("autonat_") else 0
        if line.startswith("autonat_trio_tasks "):
            tasks = value
        elif line.startswith("autonat_peers_known "):
            peers = value
        elif line.startswith("autonat_connections{"):
            connections = max(connections, 0) + value
    return tasks, connections, peers


async def sampler(node: BootNode, churn: Churn, samples: list[Sample], interval: float,
                  deadline: float) -> None:
    began = trio.current_time()
    while trio.current_time() <= deadline + 0.5:
        tasks, connections, peers = await scrape(node)
        sample = Sample(round(trio.current_time() - began, 1), vm_rss_kib(node.pid),
                        fd_count(node.pid), tasks, connections, peers, churn.lives, churn.errors)
        samples.append(sample)
        print(f"[soak] {sample}", file=sys.stderr, flush=True)
        await trio.sleep(interval)


async def soak(node: BootNode, args: argparse.Namespace) -> list[Sample]:
    samples: list[Sample] = []
    churn = Churn()
    deadline = trio.current_time() + args.duration
    with trio.fail_after(args.duration + 120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler, node, churn, samples, args.interval, deadline)
            for index in range(args.clients):
                nursery.start_soon(client, index, node, deadline, churn, args.dial_share)
    return samples


def slope_per_minute(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per minute."""
    n = len(times)
    if n < 2:
        return 0.0
    mean_t, mean_v = sum(times) / n, sum(values) / n
    var = sum((t - mean_t) ** 2 for t in times)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
    return 60.0 * cov / var if var else 0.0


def store_full_at(samples: list[Sample]) -> float:
    """The time of the first sample at which the peer store held its final size."""
    final = samples[-1].peers_known
    return next(s.t for s in samples if s.peers_known >= final)


def summary(samples: list[Sample], warmup: float) -> list[str]:
    late = [s for s in samples if s.t >= warmup]
    window_min = (late[-1].t - late[0].t) / 60 if len(late) > 1 else 0.0
    lines = [f"samples: {len(samples)}, lives: {samples[-1].lives}, "
             f"errors: {samples[-1].errors}; slope window: t >= {warmup:g} s "
             f"({window_min:.1f} min)"]
    for name, unit, scale in (("rss_kib", "MiB", 1 / 1024), ("fds", "", 1.0),
                              ("tasks", "", 1.0), ("connections", "", 1.0),
                              ("peers_known", "", 1.0)):
        values = [getattr(s, name) * scale for s in late]
        slope = slope_per_minute([s.t for s in late], values)
        mean = sum(values) / len(values) if values else 0.0
        drift = slope * window_min / mean * 100 if mean else 0.0
        first, last = getattr(samples[0], name) * scale, getattr(samples[-1], name) * scale
        lines.append(f"{name}: first {first:.1f} {unit}, last {last:.1f} {unit}, "
                     f"slope {slope:+.3f} {unit}/min "
                     f"({drift:+.1f}% of the mean over the window)")
    return lines


def read_csv(path: Path) -> list[Sample]:
    with path.open(newline="") as source:
        return [Sample(float(row.pop("t")), **{k: int(v) for k, v in row.items()})
                for row in csv.DictReader(source)]


def write_csv(samples: list[Sample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(asdict(samples[0])))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)


def plot(samples: list[Sample], path: Path, warmup: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t / 60 for s in samples]
    full = store_full_at(samples)
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for ax, values, label in (
        (axes[0], [s.rss_kib / 1024 for s in samples], "RSS (MiB)"),
        (axes[1], [s.fds for s in samples], "open fds"),
        (axes[2], [s.tasks for s in samples], "Trio tasks"),
    ):
        ax.plot(minutes, values, marker=".")
        ax.axvline(warmup / 60, color="grey", linestyle=":", linewidth=1)
        ax.axvline(full / 60, color="grey", linestyle="--", linewidth=1)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[3].plot(minutes, [s.peers_known for s in samples], marker=".")
    axes[3].set_ylabel("peers known")
    axes[3].set_ylim(bottom=0)
    axes[3].grid(alpha=0.3)
    axes[0].set_title(f"autonat boot, {samples[-1].lives:,} client connections "
                      f"({len(samples)} samples)")
    axes[3].set_xlabel("minutes (dotted: --warmup; dashed: peer store full)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--interval", type=float, default=10.0, help="sampling period, s")
    parser.add_argument("--warmup", type=float, default=120.0, help="excluded from the slope")
    parser.add_argument("--dial-share", type=float, default=0.1,
                        help="share of lives that send a dial request")
    parser.add_argument("--csv", type=Path, default=RESULTS / "soak.csv")
    parser.add_argument("--png", type=Path, default=PLOTS / "soak.png")
    parser.add_argument("--replot", action="store_true",
                        help="no run: plot and summarise the samples of --csv")
    args = parser.parse_args()
    if args.replot:
        report(read_csv(args.csv), args)
        return
    if not 1 <= args.clients <= 250:
        parser.error("--clients must be 1..250 (one source IP each, 127.0.1.x)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # finally: kill the nodes
    raise_nofile()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autonat-soak-") as tmp, \
            boot_process("127.0.0.1", Path(tmp)) as node:
        samples = trio.run(soak, node, args)
    write_csv(samples, args.csv)
    print(f"soak: {args.duration:g} s, {args.clients} clients, "
          f"wall {time.monotonic() - began:.0f} s; {args.csv}, {args.png}")
    report(samples, args)


def report(samples: list[Sample], args: argparse.Namespace) -> None:
    plot(samples, args.png, args.warmup)
    for line in summary(samples, args.warmup):
        print(line)
    full = store_full_at(samples)
    if args.warmup < full < samples[-1].t - 4 * args.interval:
        print(f"-- after the peer store stopped growing (t >= {full:g} s):")
        for line in summary(samples, full)[1:]:
            print(line)


if __name__ == "__main__":
    main()
