"""The lab every attack runs in: real ``autonat boot`` processes on loopback.

Theory of operation
-------------------
Linux routes all of 127.0.0.0/8 to ``lo``, so one machine can play many
hosts and networks: a socket bound to 127.0.0.2 is "the attacker host",
127.0.3.x are other hosts of one /24, and the node under attack sees those
source addresses exactly as it would see them on the internet (its limits
count per IP and per /24).

:func:`open_lab` starts three boot nodes at once, each a ``python -m
actors.cli boot`` subprocess with ``--allow-loopback``, its own data
directory, a key written beforehand and fixed free ports, so every address is
known before any process runs:

* two helpers (``B`` on 127.0.5.2, ``C`` on 127.0.5.3);
* the **target** (127.0.0.1) with ``--peer B --peer C``, so its connections
  to them are outbound (never evicted) and its ``/status`` lists three
  AutoNAT servers. An honest newcomer bootstrapping from it therefore
  reaches the confidence of two agreeing servers without the small-network
  wait. The lab is ready once the target is connected to both.

:func:`honest_probe` runs ``autonat probe --boot-url <target>/status`` from
127.0.9.x (another /24 than every attacker) and returns its verdict and its
wall time: the figure "an honest client during the attack". :class:`Gauge`
samples the target's RSS and CPU time from ``/proc`` in a background task
(the peak), and :func:`open_bare` is the attackers' client: an
authenticated connection with a fresh key from a chosen source IP, that
answers Identify as any peer must (benchmarks/_ours.py).

Every wait is bounded (``trio.fail_after`` / ``move_on_after``), every child
process is killed on the way out (SIGTERM, then SIGKILL) and every socket
lives in an ``async with``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from actors import Connection, FrameStream, ProtocolHandler, open_connection, save_keypair
from benchmarks._common import ROOT, child_env, free_port, stop, vm_rss_kib
from benchmarks._ours import CONFIG, handlers, transport
from protocols import Keypair, WsAddress

PYTHON = sys.executable
TARGET_IP = "127.0.0.1"
HELPER_IPS = ("127.0.5.2", "127.0.5.3")
HONEST_IP = "127.0.9.1"
START_TIMEOUT = 30.0
PROBE_TIMEOUT = 30.0
SETTLE = 3.0
"""Seconds the target idles after an attack before its RSS "after" is read."""


def autonat_command(*args: str) -> list[str]:
    """``autonat ARGS`` as a child process command (the work tree's CLI)."""
    return [PYTHON, "-m", "actors.cli", *args]


@dataclass
class BootNode:
    """One ``autonat boot`` child process."""

    proc: subprocess.Popen[bytes]
    ip: str
    port: int
    http_port: int
    peer_id: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> WsAddress:
        return WsAddress.parse(f"/ip4/{self.ip}/tcp/{self.port}/ws/p2p/{self.peer_id}")

    @property
    def status_url(self) -> str:
        return f"http://{self.ip}:{self.http_port}/status"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.ip}:{self.http_port}/metrics"


Preexec = Callable[[], object] | None
"""A ``preexec_fn`` for the child (e.g. lower its limits), or None."""


def start_boot(ip: str, data_dir: Path, *extra: str, preexec: Preexec = None) -> BootNode:
    """Start ``autonat boot`` on ``ip`` with fixed free ports and a key written here,
    so its address is known before it runs; :func:`wait_ready` waits for it."""
    keypair = Keypair.generate()
    data_dir.mkdir(parents=True, exist_ok=True)
    save_keypair(data_dir / "key", keypair)
    port, http_port = free_port(ip), free_port(ip)
    args = ["boot", "--listen", f"/ip4/{ip}/tcp/{port}/ws", "--http", f"{ip}:{http_port}",
            "--data-dir", str(data_dir), "--key", str(data_dir / "key"), "--allow-loopback",
            "--log-level", "error", "--log-format", "json", *extra]
    proc = subprocess.Popen(autonat_command(*args), cwd=ROOT, env=child_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=preexec)
    return BootNode(proc, ip, port, http_port, str(keypair.peer_id))


def wait_ready(node: BootNode) -> None:
    """Until the node serves /status (its listeners are up by then)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"autonat boot on {node.ip} exited with {node.proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(node.status_url, timeout=1.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"autonat boot on {node.ip} did not serve /status in {START_TIMEOUT} s")


@contextlib.contextmanager
def boot_process(ip: str, data_dir: Path, *extra: str,
                 preexec: Preexec = None) -> Iterator[BootNode]:
    """One ``autonat boot`` for the duration of the block (killed on any exit)."""
    node = start_boot(ip, data_dir, *extra, preexec=preexec)
    try:
        wait_ready(node)
        yield node
    finally:
        stop(node.proc)


@dataclass
class Lab:
    target: BootNode
    helpers: tuple[BootNode, ...]
    data_dir: Path


@contextlib.contextmanager
def open_lab(*target_flags: str, preexec: Preexec = None) -> Iterator[Lab]:
    """Helpers B and C and the target dialing both, started at once; see the module
    docstring. ``target_flags`` are extra ``autonat boot`` flags of the target."""
    with tempfile.TemporaryDirectory(prefix="autonat-adv-") as tmp:
        base = Path(tmp)
        nodes: list[BootNode] = []
        try:
            nodes += [start_boot(ip, base / ip) for ip in HELPER_IPS]
            peers = [arg for h in nodes for arg in ("--peer", str(h.addr))]
            nodes.append(start_boot(TARGET_IP, base / TARGET_IP, *peers, *target_flags,
                                    preexec=preexec))
            for node in nodes:
                wait_ready(node)
            target = nodes[-1]
            if not _wait_until(lambda: _connections(target) >= len(HELPER_IPS), 20.0):
                raise RuntimeError("the target did not connect to its helpers")
            yield Lab(target, tuple(nodes[:-1]), base)
        finally:
            for node in nodes:
                stop(node.proc)


def _connections(node: BootNode) -> int:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        return int(httpx.get(node.status_url, timeout=2.0, trust_env=False).json()["connections"])
    return 0


def _wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# --- the honest client ----------


@dataclass
class Verdict:
    verdict: str
    seconds: float
    reason: str = ""

    def text(self) -> str:
        return f"{self.verdict} ({self.seconds:.1f} s)"


async def honest_probe(lab: Lab, ip: str = HONEST_IP, timeout: float = PROBE_TIMEOUT) -> Verdict:
    """``autonat probe`` from ``ip`` bootstrapping from the target; its verdict and time."""
    args = autonat_command("probe", "--boot-url", lab.target.status_url, "--allow-loopback",
                           "--listen", f"/ip4/{ip}/tcp/0/ws", "--json", "--timeout",
                           str(timeout), "--log-level", "error")
    began = time.monotonic()
    with trio.move_on_after(timeout + 15):
        done = await trio.run_process(args, capture_stdout=True, capture_stderr=True,
                                      check=False, cwd=ROOT, env=child_env())
        seconds = time.monotonic() - began
        with contextlib.suppress(ValueError, IndexError):
            document = json.loads(done.stdout.decode().strip().splitlines()[-1])
            return Verdict(str(document.get("nat_status")), seconds,
                           str(document.get("reason") or ""))
        return Verdict(f"error {done.returncode}", seconds, done.stderr.decode()[-300:])
    return Verdict("killed", time.monotonic() - began)


# --- the target's resources ----------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (from /proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Gauge:
    """RSS (KiB) and CPU time of a process: before, peak during, after an attack."""

    pid: int
    before: int = 0
    peak: int = 0
    after: int = 0
    cpu_before: float = 0.0
    cpu_after: float = 0.0
    samples: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.before = self.peak = vm_rss_kib(self.pid)
        self.cpu_before = cpu_seconds(self.pid)

    async def sample_forever(self, interval: float = 0.2) -> None:
        while True:
            self.peak = max(self.peak, vm_rss_kib(self.pid))
            await trio.sleep(interval)

    async def finish(self) -> None:
        self.cpu_after = cpu_seconds(self.pid)
        await trio.sleep(SETTLE)
        self.after = vm_rss_kib(self.pid)
        self.peak = max(self.peak, self.after)

    @property
    def cpu(self) -> float:
        return self.cpu_after - self.cpu_before

    def rss_text(self) -> str:
        return f"{self.before / 1024:.0f}/{self.peak / 1024:.0f}/{self.after / 1024:.0f} MiB"


@asynccontextmanager
async def measured(pid: int) -> AsyncIterator[Gauge]:
    """A :class:`Gauge` sampling ``pid`` for the duration of the block."""
    gauge = Gauge(pid)
    gauge.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gauge.sample_forever)
        yield gauge
        await gauge.finish()
        nursery.cancel_scope.cancel()


# --- the attackers' client ----------


@asynccontextmanager
async def open_bare(target: WsAddress, source_ip: str, *,
                    table: Mapping[str, ProtocolHandler] | None = None,
                    keypair: Keypair | None = None) -> AsyncIterator[Connection]:
    """An authenticated connection with a fresh key from ``source_ip`` (raises on refusal)."""
    keypair = keypair or Keypair.generate()
    table = table if table is not None else handlers(keypair)
    async with transport().dial(target, reuse_listen_port=False, source_ip=source_ip) as frames, \
            open_connection(frames, keypair, initiator=True, expected_peer=target.peer_id,
                            handlers=table, config=CONFIG) as conn:
        yield conn


@asynccontextmanager
async def open_prober(target: WsAddress, ip: str) -> AsyncIterator[tuple[Connection, WsAddress]]:
    """A connection from ``ip`` whose key also answers dial-backs at a listener on ``ip``;
    yields the connection and the listener's address (to put in dial requests)."""
    keypair = Keypair.generate()
    table = handlers(keypair, dial_back=True)

    async def accept(frames: FrameStream) -> None:
        with contextlib.suppress(Exception):
            async with open_connection(frames, keypair, initiator=False, handlers=table,
                                       config=CONFIG) as conn:
                await conn.closed.wait()

    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(transport().listen, WsAddress.parse(f"/ip4/{ip}/tcp/0/ws"),
                                      accept)
        async with open_bare(target, ip, keypair=keypair, table=table) as conn:
            yield conn, bound
        nursery.cancel_scope.cancel()


def host_ips(prefix: str, count: int, first: int = 1) -> Sequence[str]:
    """``count`` host addresses ``prefix.first`` ... of one /24 (e.g. ``127.0.3``)."""
    return [f"{prefix}.{first + i}" for i in range(count)]


# --- one row of the table ----------


@dataclass
class Result:
    """What one attack did, as the runner prints it and the tests assert it.

    ``facts`` holds the raw numbers (``held``, ``tried``, ...) the texts are made of.
    """

    attack: str
    tried: str
    held: str
    close: str
    honest: Verdict | None = None
    gauge: Gauge | None = None
    facts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Details printed under the table (e.g. why attempts failed)."""

    def cells(self) -> list[str]:
        honest = self.honest.text() if self.honest else "-"
        rss = self.gauge.rss_text() if self.gauge else "-"
        cpu = f"{self.gauge.cpu:.1f}" if self.gauge else "-"
        return [self.attack, self.tried, self.held, self.close, honest, rss, cpu]


def median_text(values: Sequence[float], unit: str = "s") -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:.2f} {unit}"


async def metric(node: BootNode, name: str) -> float:
    """The sum of the samples of ``name`` (a full sample name) on the node's /metrics."""
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        text = (await http.get(node.metrics_url)).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def status_document(node: BootNode) -> dict[str, object]:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        document: dict[str, object] = (await http.get(node.status_url)).json()
    return document


async def open_raw_tcp(ip: str, port: int, source_ip: str) -> trio.SocketStream:
    """A plain TCP connection from ``source_ip`` (no WebSocket upgrade is ever sent)."""
    sock = trio.socket.socket()
    try:
        await sock.bind((source_ip, 0))
        await sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
