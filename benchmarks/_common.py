"""Shared pieces of the benchmarks: node settings, child servers, RSS, statistics, rows.

Every ``NodeConfig`` of the benchmarks is built by :func:`node_config` and by
nothing else, from the ``boot`` profile (config/boot.toml) plus flat setting
keys (the TOML keys: ``max_connections``, ``rate_global_per_minute``, ...), so
a change in how ``NodeConfig`` is laid out touches this one function.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protocols import NodeConfig, build_node_config, load_config_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BOOT_PROFILE = ROOT / "config" / "boot.toml"
PYTHON = sys.executable


def node_config(host: str = "127.0.0.1", **settings: object) -> NodeConfig:
    """The boot profile, on loopback, with ``settings`` (flat TOML keys) on top."""
    profile = load_config_text(BOOT_PROFILE.read_text(), source=str(BOOT_PROFILE))
    bench: dict[str, object] = {
        "listen": [f"/ip4/{host}/tcp/0/ws"],
        "allow_loopback": True,
        "http_listen": "",
        "log_format": "console",
        "log_level": "error",
    }
    return build_node_config(profile, bench, settings)


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def vm_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just handed out on ``host`` (closed again; fine on loopback)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A server process started by the harness; ``info`` is its first stdout line (JSON)."""

    proc: subprocess.Popen[str]
    info: dict[str, object]

    @property
    def pid(self) -> int:
        return self.proc.pid


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def child_server(kind: str, *args: str, timeout: float = 30.0) -> Iterator[Child]:
    """Run ``benchmarks/servers.py KIND ARGS`` until the block ends (killed on any exit)."""
    cmd = [PYTHON, str(HERE / "servers.py"), kind, *args]
    # A session of its own: Ctrl-C reaches only the harness, which then stops the
    # child here (a child dying first would look like a failed measurement).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=child_env(), start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"server {kind} did not start: {' '.join(cmd)}")
        yield Child(proc, json.loads(line))
    finally:
        stop(proc)


def child_env() -> dict[str, str]:
    """Our environment with the work tree first on PYTHONPATH (servers import benchmarks)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def settle_rss(pid: int, *, seconds: float = 1.0, steps: int = 5) -> int:
    """VmRSS after ``seconds`` of idling, the last of ``steps`` readings."""
    value = vm_rss_kib(pid)
    for _ in range(steps):
        time.sleep(seconds / steps)
        value = vm_rss_kib(pid)
    return value


# --- results -----------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: per-run values of ours and the baseline, and their ratios.

    ``ratio`` is ``ours / baseline`` for ``higher="lower"`` figures (times, bytes)
    and ``ours / baseline`` for rates as well: the target says which way is good.
    A run that failed leaves ``None`` in its place and a word in ``note``.
    """

    figure: str
    unit: str
    target: str
    command: str
    ours: list[float | None] = field(default_factory=list)
    baseline: list[float | None] = field(default_factory=list)
    baseline_name: str = ""
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def add(self, ours: float | None, baseline: float | None) -> None:
        self.ours.append(ours)
        self.baseline.append(baseline)

    def ratios(self) -> list[float]:
        return [o / b for o, b in zip(self.ours, self.baseline, strict=True)
                if o is not None and b is not None and b > 0]

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"ratios": self.ratios()}


def median_or_none(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def ratio_text(row: Row) -> str:
    ratios = row.ratios()
    if not ratios:
        return "failed" if not row.note else row.note
    text = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    if len(ratios) < len(row.ours):
        text += f" [{len(ratios)}/{len(row.ours)} runs]"
    return text


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
