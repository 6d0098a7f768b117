"""The node-running CLI commands as an operator runs them: real subprocesses, real sockets.

``autonat node`` / ``boot`` run as daemons (stdout lines read as they come,
HTTP API queried, stopped with SIGTERM or SIGINT), ``autonat probe`` against
a bootstrap cluster that runs inside the test process, ``autonat status``
against a running daemon, and the config and flag errors an operator can
make. Exit codes, the ``--json`` shapes and the one-line errors are the
contract scripts rely on.

Everything is on loopback (a distinct ``127.0.7x.y`` per test, port 0), on
the real clock; every wait is bounded by ``trio.fail_after`` and a daemon
left running by a failed test is killed.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from actors import METRIC_NAMES, Node, open_node, serve_http
from protocols import (
    AddressPolicy,
    Direction,
    NodeConfig,
    NodeSnapshot,
    WsAddress,
    parse_status_document,
)

_SCRIPT = Path(sys.executable).with_name("autonat")
AUTONAT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "actors.cli"]
LOOPBACK = AddressPolicy(allow_loopback=True)
START_LIMIT = 20.0
STOP_LIMIT = 10.0
PROBE_KEYS = {"peer_id", "nat_status", "nat_mapping", "nat_filtering", "reachable_addrs",
              "unreachable_addrs", "observed_addrs", "servers", "servers_contacted", "udp",
              "hairpinning", "reason", "elapsed_s", "total_s"}
NAT_MAPPINGS = {"none", "endpoint-independent", "endpoint-dependent", "unknown"}
_names = itertools.count()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any ``AUTONAT_*`` and with a private data home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTONAT_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env.update(extra)
    return env


async def _run(tmp_path: Path, *args: str, timeout: float = 30.0,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``autonat *args`` to completion (killed when it takes longer than ``timeout``)."""
    with trio.fail_after(timeout):
        done = await trio.run_process([*AUTONAT, *args], capture_stdout=True,
                                      capture_stderr=True, check=False,
                                      env=_env(tmp_path, **(env or {})))
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def _one_line_error(out: subprocess.CompletedProcess[str], status: int, *needles: str) -> str:
    assert out.returncode == status, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("autonat"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _closed_port(sock: trio.socket.SocketType) -> int:
    """The port of a bound socket that never listens: connections to it are refused."""
    return int(sock.getsockname()[1])


# --- daemons ---------------------------------------------------------------------------------


class _Lines:
    """Line reader over a subprocess's stdout pipe."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                raise EOFError(f"stdout closed; unread: {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


@dataclass
class Daemon:
    """A running ``autonat node``/``boot`` and what it printed at start."""

    process: trio.Process
    stderr_path: Path
    peer_id: str
    listening: list[str]
    http: str

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        with trio.fail_after(STOP_LIMIT):
            return await self.process.wait()


async def _read_header(lines: _Lines) -> tuple[str, list[str], str]:
    first = await lines.next()
    assert first.startswith("peer id 12D3KooW"), first
    listening: list[str] = []
    while (line := await lines.next()).startswith("listening on "):
        listening.append(line.removeprefix("listening on "))
    assert line.startswith("http api "), line
    http = line.removeprefix("http api ")
    return first.removeprefix("peer id "), listening, http.removeprefix("http://")


@asynccontextmanager
async def _daemon(tmp_path: Path, command: str, *args: str, env: dict[str, str] | None = None,
                  ) -> AsyncIterator[Daemon]:
    """Start ``autonat command *args``, read its start lines; kill it if still running after."""
    stderr_path = tmp_path / f"{command}-{next(_names)}.stderr"
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [*AUTONAT, command, *args], stdout=subprocess.PIPE, stderr=stderr,
            env=env if env is not None else _env(tmp_path))
    try:
        assert process.stdout is not None
        try:
            with trio.fail_after(START_LIMIT):
                peer_id, listening, http = await _read_header(_Lines(process.stdout))
        except (EOFError, AssertionError, trio.TooSlowError) as exc:
            raise AssertionError(f"{command} did not start: {exc}\n"
                                 f"{stderr_path.read_text(errors='replace')}") from exc
        yield Daemon(process, stderr_path, peer_id, listening, http)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


def _log_events(daemon: Daemon) -> list[dict[str, object]]:
    """The daemon's stderr: JSON lines (stderr is not a TTY), each naming its actor or logger."""
    events = []
    for line in daemon.stderr().splitlines():
        event = json.loads(line)
        assert {"event", "level", "timestamp"} <= set(event), line
        events.append(event)
    return events


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        return await client.get(url)


async def _status_listing(url: str, addr: str, *, attempts: int = 100) -> httpx.Response:
    """``GET url`` until its ``peer_addrs`` list ``addr`` (the daemon has identified the peer).

    The peer's view of the connection comes before the daemon's Identify of the
    peer; asserting on the daemon's document at once would race with it. Bounded:
    ``attempts`` tries 0.1 s apart, then the last answer is returned as it is.
    """
    response = await _get(url)
    for _ in range(attempts):
        if response.status_code == 200 and addr in response.json().get("peer_addrs", []):
            break
        await trio.sleep(0.1)
        response = await _get(url)
    return response


def _connected(peer_id: str, *, identified: bool = True) -> Callable[[NodeSnapshot], bool]:
    def check(snap: NodeSnapshot) -> bool:
        record = next((r for r in snap.peers if str(r.peer_id) == peer_id), None)
        return (peer_id in {str(p) for p in snap.connected_peers} and record is not None
                and (bool(record.agent_version) or not identified))
    return check


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **overrides)


# --- autonat node ----------------------------------------------------------------------------


def _check_status_document(response: httpx.Response, daemon: Daemon, peer: Node) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    # the Pyrsia document: exactly these types, addresses ending in /p2p/<peer id>
    pyrsia = {"peers_count": 1, "peer_id": "12D3KooW...", "peer_addrs": ["/ip4/.../p2p/..."]}
    for key, example in pyrsia.items():
        assert type(doc[key]) is type(example), key
    assert doc["peer_id"] == daemon.peer_id
    assert doc["peers_count"] >= 1
    assert doc["peer_addrs"][0] == daemon.listening[0]
    assert str(peer.listen_addrs[0]) in doc["peer_addrs"]  # a connected, identified peer
    assert all(a.split("/p2p/")[1] in (daemon.peer_id, str(peer.peer_id))
               for a in doc["peer_addrs"])
    parsed = parse_status_document(response.content)
    assert parsed.rejected == () and str(parsed.addresses[0]) == daemon.listening[0]
    # our fields
    assert doc["state"] in ("connected", "fully_connected")
    assert doc["nat_status"] in ("public", "private", "unknown")
    assert doc["nat_mapping"] in NAT_MAPPINGS
    assert doc["connections"] >= 1
    assert isinstance(doc["probes_served"], int)
    assert isinstance(doc["uptime_s"], float) and doc["uptime_s"] >= 0
    assert isinstance(doc["version"], str) and doc["version"]
    assert isinstance(doc["reachable_addrs"], list) and isinstance(doc["observed_addrs"], list)


def _check_metrics(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert set(METRIC_NAMES) <= set(families)
    [connected] = families["autonat_peers_connected"].samples
    assert connected.value >= 1


async def _status_commands(tmp_path: Path, http: str) -> list[subprocess.CompletedProcess[str]]:
    results: list[subprocess.CompletedProcess[str]] = []

    async def run(*extra: str) -> None:
        results.append(await _run(tmp_path, "status", "--http", http, *extra))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(run, "--json")
    return sorted(results, key=lambda out: out.stdout.startswith("{"))


async def test_node_daemon_serves_its_api_and_stops_cleanly_on_signals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    flags = ("--listen", "/ip4/127.0.71.1/tcp/0/ws", "--http", "127.0.71.1:0",
             "--data-dir", str(data), "--allow-loopback")
    with trio.fail_after(50):
        async with open_node(_config("127.0.71.2")) as peer:
            async with _daemon(tmp_path, "node", *flags,
                               "--peer", str(peer.listen_addrs[0])) as first:
                assert first.listening[0].startswith("/ip4/127.0.71.1/tcp/")
                assert first.listening[0].endswith(f"/ws/p2p/{first.peer_id}")
                assert first.http.startswith("127.0.71.1:") and not first.http.endswith(":0")
                await peer.wait_for(_connected(first.peer_id))
                status = await _status_listing(first.url + "/status", str(peer.listen_addrs[0]))
                _check_status_document(status, first, peer)
                _check_metrics(await _get(first.url + "/metrics"))
                health = await _get(first.url + "/healthz")
                assert health.status_code == 200 and health.json()["ok"] is True
                text, as_json = await _status_commands(tmp_path, first.http)
                assert first.process.returncode is None  # still running
                assert await first.stop(signal.SIGTERM) == 0
            await peer.wait_for(lambda s: not _connected(first.peer_id, identified=False)(s))
            # the key and the peer store were saved: a second run has the same peer id
            # and finds the peer again without being told (the store is its only source)
            assert (data / "p2p_keypair.ser").stat().st_mode & 0o777 == 0o600
            assert str(peer.peer_id) in (data / "peers.json").read_text()
            async with _daemon(tmp_path, "node", *flags) as second:
                assert second.peer_id == first.peer_id
                again = await peer.wait_for(_connected(second.peer_id))
                [conn] = [c for c in again.connections if str(c.peer_id) == second.peer_id]
                assert conn.direction is Direction.INBOUND  # the daemon dialed the stored peer
                assert await second.stop(signal.SIGINT) == 0

    assert text.returncode == 0, text.stderr
    assert first.peer_id in text.stdout and "peer_addr" in text.stdout
    facts, _, meaning = text.stdout.partition("\n\nwhat this means\n")
    summary = dict(line.split(None, 1) for line in facts.splitlines())
    assert meaning.startswith("  ") and meaning.endswith(".\n"), text.stdout  # the explanation
    assert summary["peer_id"] == first.peer_id and summary["state"] in ("connected",
                                                                        "fully_connected")
    assert summary["udp"] == "mapping unknown, filtering unknown"  # no STUN server around
    assert summary["hairpinning"] == "unknown"  # loopback: no NAT, nothing to test
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert isinstance(document, dict) and document["peer_id"] == first.peer_id
    for daemon, name in ((first, "SIGTERM"), (second, "SIGINT")):
        events = _log_events(daemon)
        assert all("actor" in e or "supervisor" in e for e in events)
        assert {"event": "shutting down", "signal": name}.items() <= next(
            e for e in events if e["event"] == "shutting down").items()
        assert "Traceback" not in daemon.stderr()


# --- autonat boot, and the README's two-terminal scenario -------------------------------------


async def test_boot_daemon_serves_status_and_answers_a_probe(tmp_path: Path) -> None:
    flags = ("--listen", "/ip4/127.0.72.1/tcp/0/ws", "--http", "127.0.72.1:0",
             "--data-dir", str(tmp_path / "boot"))
    with trio.fail_after(40):
        async with _daemon(tmp_path, "boot", *flags) as boot:
            url = f"{boot.url}/status"
            before = (await _get(url)).json()
            # a boot node's policy rejects loopback, but it lists the address it was reached at
            assert before["peer_addrs"] == boot.listening
            assert before["peer_id"] == boot.peer_id and before["peers_count"] == 0
            probe = await _run(tmp_path, "probe", "--boot-url", url, "--allow-loopback",
                               "--json", "--timeout", "20",
                               "--listen", "/ip4/127.0.72.9/tcp/0/ws")
            after = (await _get(url)).json()
            assert await boot.stop(signal.SIGTERM) == 0
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    assert result["nat_status"] == "public"
    assert result["servers"] == [boot.peer_id]
    assert [a.rsplit("/tcp/", 1)[0] for a in result["reachable_addrs"]] == ["/ip4/127.0.72.9"]
    assert after["probes_served"] >= 1
    assert (tmp_path / "boot" / "peers.json").exists()
    assert "Traceback" not in boot.stderr()


# --- autonat probe ---------------------------------------------------------------------------


@asynccontextmanager
async def _boot_cluster(net: str, count: int = 3) -> AsyncIterator[tuple[list[Node], str]]:
    """Boot nodes on ``127.0.<net>.1..`` (meshed, welcome probes) and the first one's URL."""
    async with AsyncExitStack() as stack:
        boots = [await stack.enter_async_context(
                     open_node(_config(f"127.0.{net}.{i + 1}", welcome_probes=True)))
                 for i in range(count)]
        for boot in boots[1:]:
            await boots[0].connect(boot.listen_addrs[0])
            await boots[0].wait_for(_connected(str(boot.peer_id)))
        nursery = await stack.enter_async_context(trio.open_nursery())
        host, port = await nursery.start(serve_http, boots[0], f"127.0.{net}.1", 0)
        yield boots, f"http://{host}:{port}/status"
        nursery.cancel_scope.cancel()


def _check_probe_shape(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.stdout.count("\n") == 1 and out.stdout.endswith("}\n"), out.stdout
    result = json.loads(out.stdout)  # exactly one JSON value
    assert isinstance(result, dict) and set(result) == PROBE_KEYS
    assert isinstance(result["peer_id"], str) and result["peer_id"].startswith("12D3KooW")
    assert result["nat_status"] in ("public", "private", "unknown")
    assert result["nat_mapping"] in NAT_MAPPINGS
    assert result["hairpinning"] in (True, False, None)
    for key in ("reachable_addrs", "unreachable_addrs", "observed_addrs", "servers",
                "servers_contacted"):
        assert isinstance(result[key], list), key
        assert all(isinstance(item, str) for item in result[key]), key
    for key in ("reachable_addrs", "unreachable_addrs", "observed_addrs"):
        for addr in result[key]:
            WsAddress.parse(addr)
    assert isinstance(result["elapsed_s"], float) and result["elapsed_s"] >= 0
    assert isinstance(result["total_s"], float) and result["total_s"] >= result["elapsed_s"]
    # a reason exactly when there is no verdict
    assert (result["reason"] is None) == (result["nat_status"] != "unknown"), result
    assert result["reason"] is None or (isinstance(result["reason"], str) and result["reason"])
    return result


async def test_probe_against_a_boot_cluster_prints_one_json_verdict(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with _boot_cluster("73") as (boots, url):
            out = await _run(tmp_path, "probe", "--boot-url", url, "--allow-loopback",
                             "--json", "--timeout", "20")
            answered = sum(b.statistics().autonat_server.total_answered for b in boots)
    assert out.returncode == 0, out.stderr
    result = _check_probe_shape(out)
    assert result["nat_status"] == "public"
    assert result["reachable_addrs"] and result["observed_addrs"]
    assert result["unreachable_addrs"] == []
    servers = result["servers"]
    assert len(servers) >= 2
    assert set(servers) <= {str(b.peer_id) for b in boots}
    assert answered >= len(servers)
    assert result["elapsed_s"] < 20


async def test_probe_with_a_dead_boot_url_exits_2_with_unknown(tmp_path: Path) -> None:
    with trio.fail_after(30), trio.socket.socket() as dead:
        await dead.bind(("127.0.74.2", 0))
        url = f"http://127.0.74.2:{_closed_port(dead)}/status"
        out = await _run(tmp_path, "probe", "--boot-url", url, "--allow-loopback",
                         "--json", "--timeout", "3", "--listen", "/ip4/127.0.74.1/tcp/0/ws")
    assert out.returncode == 2, out.stderr
    result = _check_probe_shape(out)
    assert result["nat_status"] == "unknown" and result["servers"] == []
    # nothing left to try: it gives up at once (tests/test_cli_probe.py has the details)
    assert result["elapsed_s"] < 2.5
    assert result["reason"].startswith(f"every boot URL failed: {url}: ")


@pytest.mark.parametrize(
    ("args", "needles"),
    [(("probe", "--json"), ("--boot-url", "--peer")),
     (("probe", "--boot-url", "http://127.0.0.1:9/status", "--bogus-flag"),
      ("--bogus-flag", "autonat probe --help")),
     (("probe", "--peer", "/ip4/127.0.0.1/tcp/9/ws", "--timeout", "0"), ("--timeout",)),
     (("probe", "--boot-url", "http://127.0.0.1:9/status", "--timeout", "soon"),
      ("--timeout", "soon"))],
    ids=["no-target", "bad-flag", "zero-timeout", "bad-timeout"])
async def test_probe_user_errors_exit_1_with_one_line(tmp_path: Path, args: tuple[str, ...],
                                                      needles: tuple[str, ...]) -> None:
    out = await _run(tmp_path, *args)
    _one_line_error(out, 1, *needles)  # 2 is reserved for "verdict unknown"


# --- autonat status --------------------------------------------------------------------------


async def test_status_of_a_node_that_is_not_running_is_a_one_line_error(tmp_path: Path) -> None:
    with trio.socket.socket() as closed:
        await closed.bind(("127.0.74.3", 0))
        address = f"127.0.74.3:{_closed_port(closed)}"
        out = await _run(tmp_path, "status", "--http", address)
    _one_line_error(out, 1, address)


# --- configuration: precedence and errors ----------------------------------------------------


async def test_config_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nlisten = ["/ip4/127.0.75.1/tcp/0/ws"]\n'
                      '[http]\nhttp_listen = "127.0.75.1:0"\n'
                      '[dialer]\ntarget_peers = 3\n')
    common = ("--config", str(config), "--allow-loopback")
    env_both = _env(tmp_path, AUTONAT_LISTEN="/ip4/127.0.75.2/tcp/0/ws",
                    AUTONAT_HTTP_LISTEN="127.0.75.2:0", AUTONAT_TARGET_PEERS="5")
    env_http = _env(tmp_path, AUTONAT_HTTP_LISTEN="127.0.75.2:0")
    with trio.fail_after(40):
        async with (
            _daemon(tmp_path, "node", *common, "--data-dir", str(tmp_path / "a"),
                    "--http", "127.0.75.3:0", env=env_both) as flag_wins,
            _daemon(tmp_path, "node", *common, "--data-dir", str(tmp_path / "b"),
                    env=env_http) as env_wins,
        ):
            codes = [await flag_wins.stop(), await env_wins.stop()]
    assert codes == [0, 0]
    # env beats file (listen), flag beats env and file (http)
    assert [a.split("/tcp/")[0] for a in flag_wins.listening] == ["/ip4/127.0.75.2"]
    assert flag_wins.http.startswith("127.0.75.3:")
    # the file applies where nothing overrides it (listen); env beats file (http)
    assert [a.split("/tcp/")[0] for a in env_wins.listening] == ["/ip4/127.0.75.1"]
    assert env_wins.http.startswith("127.0.75.2:")


@pytest.mark.parametrize(
    ("toml", "env", "needles"),
    [("[dialer]\ntarget_peer = 3\n", {}, ("'target_peer'", "{file}")),
     ('[dialer]\ntarget_peers = "many"\n', {}, ("target_peers", "{file}", "many")),
     ("[dialer\n", {}, ("{file}", "TOML")),
     (None, {}, ("{file}",)),
     ("", {"AUTONAT_TARGET_PEERS": "abc"}, ("AUTONAT_TARGET_PEERS", "abc")),
     ("target_peers = 0\n", {}, ("target_peers=0 from config file {file}",)),
     ("", {"AUTONAT_TARGET_PEERS": "0"},
      ("target_peers=0 from environment variable AUTONAT_TARGET_PEERS",))],
    # an unknown AUTONAT_* variable is only a warning: tests/test_cli_errors.py
    ids=["unknown-key", "bad-value", "bad-toml", "missing-file", "bad-env", "range-file",
         "range-env"])
async def test_config_errors_exit_1_naming_the_key_and_source(
        tmp_path: Path, toml: str | None, env: dict[str, str], needles: tuple[str, ...]) -> None:
    config = tmp_path / "settings.toml"
    if toml is not None:
        config.write_text(toml)
    out = await _run(tmp_path, "node", "--config", str(config), "--data-dir", str(tmp_path),
                     "--listen", "/ip4/127.0.76.1/tcp/0/ws", "--http", "", env=env)
    _one_line_error(out, 1, *(n.format(file=config) for n in needles))
    assert not (tmp_path / "p2p_keypair.ser").exists()  # failed before doing anything


@pytest.mark.parametrize(
    ("flags", "needles"),
    [(("--http", "nonsense"), ("http_listen", "nonsense")),
     (("--listen", "garbage"), ("listen", "garbage")),
     (("--peer", "/ip4/127.0.76.2/tcp/1/ws"), ("peers", "/p2p/")),
     (("--boot-url", "ftp://x/status"), ("boot_urls", "ftp://x/status")),
     (("--key", "/proc/self/no/such/key"), ("/proc/self/no/such/key",))],
    ids=["http", "listen", "peer", "boot-url", "key"])
async def test_bad_flag_values_exit_1_naming_the_setting(
        tmp_path: Path, flags: tuple[str, ...], needles: tuple[str, ...]) -> None:
    args = ("--data-dir", str(tmp_path), "--listen", "/ip4/127.0.76.1/tcp/0/ws", "--http", "")
    out = await _run(tmp_path, "node", *args, *flags)
    _one_line_error(out, 1, *needles)


@pytest.mark.parametrize("which", ["listen", "http"])
async def test_a_busy_explicit_port_is_a_one_line_error(tmp_path: Path, which: str) -> None:
    with trio.fail_after(20), trio.socket.socket() as busy:
        await busy.bind(("127.0.76.5", 0))
        busy.listen()
        port = _closed_port(busy)
        listen = f"/ip4/127.0.76.5/tcp/{port if which == 'listen' else 0}/ws"
        http = f"127.0.76.5:{port}" if which == "http" else ""
        out = await _run(tmp_path, "node", "--data-dir", str(tmp_path), "--listen", listen,
                         "--http", http)
    _one_line_error(out, 1, str(port))


async def test_boot_and_node_on_one_machine_are_two_identities(tmp_path: Path) -> None:
    """The README's first session: ``autonat boot``, then ``autonat node`` against it, both
    with their default data directories - two keys, and the node connects to the boot node."""
    boot_args = ("--listen", "/ip4/127.0.77.1/tcp/0/ws", "--http", "127.0.77.1:0",
                 "--allow-loopback")
    node_args = ("--listen", "/ip4/127.0.77.2/tcp/0/ws", "--http", "127.0.77.2:0",
                 "--allow-loopback")
    with trio.fail_after(60):
        async with _daemon(tmp_path, "boot", *boot_args) as boot, _daemon(
                tmp_path, "node", *node_args, "--boot-url", f"{boot.url}/status") as node:
            assert node.peer_id != boot.peer_id
            listing = await _status_listing(f"{boot.url}/status", node.listening[0])
            assert node.listening[0] in listing.json()["peer_addrs"]
    assert (tmp_path / "xdg" / "trio-autonat" / "boot" / "p2p_keypair.ser").exists()
    assert (tmp_path / "xdg" / "trio-autonat" / "p2p_keypair.ser").exists()


async def test_a_second_node_on_the_same_data_directory_is_a_one_line_error(
        tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with _daemon(tmp_path, "node", "--listen", "/ip4/127.0.77.3/tcp/0/ws", "--http",
                           "", "--data-dir", str(tmp_path / "data")) as first:
            out = await _run(tmp_path, "node", "--listen", "/ip4/127.0.77.4/tcp/0/ws",
                             "--http", "", "--data-dir", str(tmp_path / "data"))
            pid = first.process.pid
    _one_line_error(out, 1, f"data directory {tmp_path / 'data'} is in use by another autonat "
                            f"process (pid {pid})", "--data-dir")


# --- help ----------------------------------------------------------------------------------


NODE_FLAGS = ("--config", "--listen", "--http", "--boot-url", "--peer", "--key", "--data-dir",
              "--public-network", "--allow-loopback", "--dialback-source", "--log-format",
              "--log-level")
HELP = {
    "node": NODE_FLAGS,
    "boot": NODE_FLAGS,
    "probe": ("--boot-url", "--peer", "--listen", "--timeout", "--json", "--public-network",
              "--allow-loopback", "exit", "unknown"),
    "status": ("--http", "--json"),
    "id": ("--key", "--json"),
    "demo": ("SCENARIO", "--hosts", "--seed", "--plain", "--loopback"),
}


async def test_every_command_has_help_mentioning_its_flags(tmp_path: Path) -> None:
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    async def run(command: str) -> None:
        results[command] = await _run(tmp_path, command, "--help")

    async with trio.open_nursery() as nursery:
        for command in HELP:
            nursery.start_soon(run, command)
    for command, flags in HELP.items():
        out = results[command]
        assert out.returncode == 0, (command, out.stderr)
        assert out.stdout.startswith(f"usage: autonat {command}"), out.stdout
        for flag in flags:
            assert flag in out.stdout, (command, flag)
