"""A small network-namespace lab: namespaces, veth pairs, bridges, firewall rules, processes.

Theory of operation
-------------------
A :class:`Lab` is a context manager that owns everything it creates. Each
namespace is named ``<prefix><pid>-<random>-<short name>`` (``ta-4242-9f3c1a-host``):
the prefix marks the project, the pid says which process owns it and the random
part keeps parallel runs apart. Links are created *directly inside* the
namespaces (``ip -n A link add X type veth peer name Y netns B``), so nothing is
ever added to, or changed in, the root namespace: no address, route, link or
firewall rule. Routers are namespaces with ``net.ipv4.ip_forward=1`` whose
iptables/nftables rules are applied inside them (``ip netns exec``).

Processes run with ``ip netns exec <ns> <argv>`` in their own session (so they
form a process group and a terminal's Ctrl-C reaches only the test runner), with
stdout/stderr captured in files under the lab's directory. Every wait is bounded
by a timeout.

Teardown (``close``, run by ``__exit__`` on success, failure and Ctrl-C) stops the
processes the lab started (SIGTERM to their process group, SIGKILL after a grace
period), kills whatever still runs inside the lab's namespaces (by pid, from
``ip netns pids``) and deletes the namespaces, which destroys their veths and
bridges with them. A second Ctrl-C during teardown is deferred until teardown is
done. SIGTERM is turned into ``KeyboardInterrupt`` while a lab is open so that it
tears down too. Whatever survives a SIGKILL of the runner itself is removed by
:func:`cleanup_stale`, which deletes project namespaces whose owning pid is dead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

PROJECT_PREFIX = "ta-"
REQUIRED_TOOLS = ("ip", "iptables", "nft", "ethtool")
_SHORT_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_IFNAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")


class LabError(RuntimeError):
    """A lab command failed or a bounded wait ran out."""


class LabCancelled(LabError):
    """The lab's cancel event was set (Ctrl-C in the main thread of a parallel run)."""


def unavailable_reason(tools: Sequence[str] = REQUIRED_TOOLS) -> str | None:
    """Why the lab cannot run here (``None`` when it can): not Linux, not root, tools missing."""
    if not sys.platform.startswith("linux"):
        return "the NAT lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the NAT lab needs root (ip netns, iptables, nftables, ethtool)"
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return (f"the NAT lab needs {', '.join(missing)} on PATH "
                "(Debian packages: iproute2 iptables nftables ethtool)")
    return None


def run(argv: Sequence[str], *, timeout: float = 20.0, check: bool = True,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion (bounded by ``timeout``); raise on failure if ``check``."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              input=input_text, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)} timed out after {timeout:g} s") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed with {proc.returncode}: "
                       f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1,
               what: str = "condition", cancel: threading.Event | None = None) -> None:
    """Poll ``predicate()`` until true; bounded in time (and so in count). Raise ``LabError``."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        if cancel is not None and cancel.is_set():
            raise LabCancelled(f"cancelled while waiting for {what}")
        if predicate():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:g} s waiting for {what}")


def autonat_argv() -> list[str]:
    """How to start the project's CLI: the ``autonat`` script next to this interpreter."""
    script = Path(sys.executable).with_name("autonat")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "actors.cli"]


# --- processes ---------------------------------------------------------------------------


@dataclass
class LabProcess:
    """A process started inside a namespace, leader of its own process group."""

    label: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    cancel: threading.Event | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Exit status; ``LabError`` if still running after ``timeout`` (or cancelled)."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 2):
            if self.cancel is not None and self.cancel.is_set():
                raise LabCancelled(f"cancelled while waiting for {self.label}")
            try:
                return self.popen.wait(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    break
        raise LabError(f"{self.label} still running after {timeout:g} s")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole process group (only while the leader is unreaped,
        so the group id cannot have been reused)."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace`` seconds; return the exit status."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
        try:
            return self.popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return None

    def stdout(self) -> str:
        return _read(self.stdout_path)

    def stderr(self) -> str:
        return _read(self.stderr_path)

    def tail(self, lines: int = 30) -> str:
        """The last lines of stderr and stdout, for failure messages."""
        out = self.stdout().splitlines()[-lines:]
        err = self.stderr().splitlines()[-lines:]
        return (f"--- {self.label} stdout (last {len(out)} lines) ---\n" + "\n".join(out)
                + f"\n--- {self.label} stderr (last {len(err)} lines) ---\n" + "\n".join(err))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# --- namespaces --------------------------------------------------------------------------


class Namespace:
    """One network namespace of a lab; every helper acts inside it."""

    def __init__(self, lab: Lab, short: str, full: str) -> None:
        self.lab = lab
        self.short = short
        self.name = full

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 20.0, check: bool = True,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*argv), timeout=timeout, check=check, input_text=input_text)

    def ip(self, *args: str, check: bool = True) -> None:
        run(["ip", "-n", self.name, *args], check=check)

    def sysctl(self, key: str, value: str, *, check: bool = True) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}", check=check)

    def up(self, ifname: str) -> None:
        self.ip("link", "set", ifname, "up")

    def add_addr(self, ifname: str, cidr: str) -> None:
        self.ip("addr", "add", cidr, "dev", ifname)

    def add_route(self, *spec: str) -> None:
        self.ip("route", "add", *spec)

    def iptables(self, *args: str) -> None:
        self.run("iptables", "-w", "5", *args)

    def nft(self, script: str) -> None:
        path = self.lab.write_file(f"{self.short}.nft", script)
        self.run("nft", "-f", str(path))

    def ruleset(self) -> str:
        """The namespace's firewall, for failure messages."""
        return self.run("nft", "list", "ruleset", check=False).stdout

    def pids(self) -> list[int]:
        proc = run(["ip", "netns", "pids", self.name], check=False)
        return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]

    def spawn(self, label: str, argv: Sequence[str],
              env: Mapping[str, str] | None = None) -> LabProcess:
        """Start ``argv`` inside the namespace, output to ``<label>.out`` / ``<label>.err``."""
        return self.lab.spawn(self, label, argv, env)


def _check_name(kind: str, pattern: re.Pattern[str], name: str) -> None:
    if not pattern.fullmatch(name):
        raise ValueError(f"bad {kind} name {name!r} (must match {pattern.pattern})")


# --- the lab -----------------------------------------------------------------------------


class Lab:
    """Owns namespaces, links and processes; ``close()`` removes them all."""

    def __init__(self, *, prefix: str = PROJECT_PREFIX, tmp_dir: Path | None = None,
                 cancel: threading.Event | None = None) -> None:
        if not re.fullmatch(r"[a-z]{1,8}-", prefix):
            raise ValueError(f"bad prefix {prefix!r}")
        self.prefix = prefix
        self.cancel = cancel
        self.run_id = f"{prefix}{os.getpid()}-{secrets.token_hex(3)}"
        self._own_tmp = tmp_dir is None
        self.tmp = Path(tempfile.mkdtemp(prefix=self.run_id + "-")) if tmp_dir is None else tmp_dir
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.keep_tmp = False
        self._namespaces: list[Namespace] = []
        self._processes: list[LabProcess] = []
        self._labels: set[str] = set()
        self._closed = False
        self._old_sigterm: object = None

    def __enter__(self) -> Lab:
        self._old_sigterm = _install_sigterm_as_interrupt()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.keep_tmp = True
        self.close()

    # building
    def namespace(self, short: str, *, forwarding: bool = False) -> Namespace:
        """Create a namespace (loopback up, IPv6 off, forwarding as asked)."""
        _check_name("namespace", _SHORT_NAME, short)
        self.check_cancelled()
        if self._closed:
            raise LabError("lab is closed")
        ns = Namespace(self, short, f"{self.run_id}-{short}")
        run(["ip", "netns", "add", ns.name])
        self._namespaces.append(ns)
        ns.up("lo")
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1", check=False)
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1", check=False)
        ns.sysctl("net.ipv4.ip_forward", "1" if forwarding else "0")
        return ns

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair from ``a``/``a_if`` to ``b``/``b_if``, both ends up (never in root ns)."""
        _check_name("interface", _IFNAME, a_if)
        _check_name("interface", _IFNAME, b_if)
        run(["ip", "-n", a.name, "link", "add", a_if, "type", "veth",
             "peer", "name", b_if, "netns", b.name])
        a.up(a_if)
        b.up(b_if)

    def bridge(self, ns: Namespace, name: str) -> None:
        _check_name("interface", _IFNAME, name)
        ns.ip("link", "add", name, "type", "bridge")
        ns.up(name)

    def check_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise LabCancelled("lab cancelled")

    def wait_until(self, predicate: Callable[[], bool], *, timeout: float,
                   interval: float = 0.1, what: str = "condition") -> None:
        wait_until(predicate, timeout=timeout, interval=interval, what=what, cancel=self.cancel)

    def write_file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def spawn(self, ns: Namespace, label: str, argv: Sequence[str],
              env: Mapping[str, str] | None = None) -> LabProcess:
        if label in self._labels:
            raise ValueError(f"process label {label!r} already used in this lab")
        self._labels.add(label)
        out, err = self.tmp / f"{label}.out", self.tmp / f"{label}.err"
        full_env = dict(os.environ)
        full_env.update(env or {})
        with out.open("wb") as out_f, err.open("wb") as err_f:
            popen = subprocess.Popen(ns.argv(*argv), stdin=subprocess.DEVNULL, stdout=out_f,
                                     stderr=err_f, env=full_env, start_new_session=True)
        proc = LabProcess(label, popen, out, err, self.cancel)
        self._processes.append(proc)
        return proc

    # teardown
    def close(self) -> None:
        """Stop every process, delete every namespace; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with _sigint_deferred():
            try:
                for proc in reversed(self._processes):
                    proc.stop(grace=5.0)
                for ns in reversed(self._namespaces):
                    _delete_namespace(ns.name)
            finally:
                _restore_sigterm(self._old_sigterm)
                if self._own_tmp and not self.keep_tmp:
                    shutil.rmtree(self.tmp, ignore_errors=True)

    def namespaces(self) -> list[str]:
        return [ns.name for ns in self._namespaces]


def _delete_namespace(name: str) -> None:
    """Kill what still runs inside ``name`` (by pid) and delete it; bounded."""
    for _ in range(3):
        proc = run(["ip", "netns", "pids", name], check=False)
        pids = [int(tok) for tok in proc.stdout.split() if tok.isdigit()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    run(["ip", "netns", "del", name], check=False)


def list_namespaces() -> list[str]:
    proc = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(prefix: str = PROJECT_PREFIX) -> list[str]:
    """Delete namespaces named ``<prefix><pid>-<hex>-...`` whose owning pid is dead.

    Returns the names removed. Namespaces of live runs (this one, parallel ones)
    and names that do not follow the pattern are left alone.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-[0-9a-f]+-[a-z0-9]+$")
    removed = []
    for name in list_namespaces():
        match = pattern.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _delete_namespace(name)
        removed.append(name)
    return removed


# --- signals -----------------------------------------------------------------------------


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _install_sigterm_as_interrupt() -> object:
    """While a lab is open, SIGTERM unwinds like Ctrl-C (so teardown runs)."""
    if not _in_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _restore_sigterm(old: object) -> None:
    if old is not None and _in_main_thread():
        signal.signal(signal.SIGTERM, old)  # type: ignore[arg-type]


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM during teardown; re-raise as KeyboardInterrupt afterwards."""
    if not _in_main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    old_int = signal.signal(signal.SIGINT, hold)
    old_term = signal.signal(signal.SIGTERM, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if received and sys.exc_info()[0] is None:
        raise KeyboardInterrupt(f"signal {received[0]} during lab teardown")


# --- tiny TCP tools, run inside namespaces to check topologies without the node ---------

_TCP_SERVER = r"""
import socket, sys, time
ip, port, lifetime = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port)); srv.listen(16); srv.settimeout(0.5)
print("ready", flush=True)
end = time.monotonic() + lifetime
while time.monotonic() < end:
    try:
        conn, peer = srv.accept()
    except socket.timeout:
        continue
    with conn:
        conn.sendall(f"{peer[0]} {peer[1]}\n".encode())
"""

_TCP_CLIENT = r"""
import errno, json, socket, struct, sys, time
ip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
src = (sys.argv[4], int(sys.argv[5])) if len(sys.argv) > 5 else None
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.settimeout(timeout)
try:
    if src: s.bind(src)
    started = time.monotonic()
    s.connect((ip, port))
    connect_s = time.monotonic() - started
    data = s.recv(200).decode().split()
    print(json.dumps({"ok": True, "seen_as": [data[0], int(data[1])], "connect_s": connect_s}))
except OSError as exc:
    # abort (RST, no FIN_WAIT/TIME_WAIT), so a retry from the same source port can connect
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(exc, socket.timeout):
        error = "timeout"
    elif type(exc) is OSError:
        error = f"OSError {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    else:
        error = type(exc).__name__
    print(json.dumps({"ok": False, "error": error}))
finally:
    s.close()
"""


@dataclass(frozen=True)
class ConnectResult:
    """Outcome of one :func:`tcp_connect`: the address the server saw, or why it failed."""

    ok: bool
    seen_as: tuple[str, int] | None = None
    error: str | None = None
    connect_s: float | None = None
    """How long ``connect()`` took (SYN to SYN-ACK: one round trip), when it succeeded."""


def tcp_listen(ns: Namespace, ip: str, port: int, *, label: str,
               lifetime: float = 120.0) -> LabProcess:
    """A TCP server that tells every client the address it saw; ready when this returns."""
    proc = ns.spawn(label, [sys.executable, "-c", _TCP_SERVER, ip, str(port), str(lifetime)])
    ns.lab.wait_until(lambda: "ready" in proc.stdout() or not proc.running(), timeout=10.0,
                      what=f"{label} to listen")
    if not proc.running():
        raise LabError(f"{label} failed to start\n{proc.tail()}")
    return proc


def tcp_connect(ns: Namespace, ip: str, port: int, *, timeout: float = 2.0,
                source: tuple[str, int] | None = None) -> ConnectResult:
    """Connect from ``ns`` (optionally from ``source``) and report what the server saw."""
    extra = [source[0], str(source[1])] if source else []
    proc = ns.run(sys.executable, "-c", _TCP_CLIENT, ip, str(port), str(timeout), *extra,
                  timeout=timeout + 10.0)
    doc = json.loads(proc.stdout)
    if doc["ok"]:
        return ConnectResult(True, seen_as=(doc["seen_as"][0], int(doc["seen_as"][1])),
                             connect_s=float(doc["connect_s"]))
    return ConnectResult(False, error=str(doc["error"]))
