"""User errors and Ctrl-C as an operator meets them: real ``autonat`` subprocesses.

Every user error, in every command, is one line on stderr starting with
``autonat``, no traceback, exit 1 (usage errors 2; ``probe`` keeps 2 for
"unknown"). Ctrl-C exits 130 with ``autonat: interrupted`` - except that a
running ``node``/``boot`` daemon treats SIGINT as its normal stop (clean
shutdown, exit 0, like SIGTERM; see tests/test_cli_node.py).

Loopback only (``127.0.9x.y``, port 0), every wait bounded. 192.0.2.1
(TEST-NET-1) is only ever *bound* - which fails - never sent to.
"""

from __future__ import annotations

import importlib.metadata
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import trio
from test_cli_node import (
    AUTONAT,
    _config,
    _daemon,
    _env,
    _get,
    _log_events,
    _one_line_error,
    _run,
)

from actors import open_node, serve_http
from actors.surfaces._cli_settings import bind_problems
from protocols import NodeConfig

NOT_HERE = "192.0.2.1"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _make_key(tmp_path: Path, key: Path) -> None:
    out = await _run(tmp_path, "id", "--key", str(key))
    assert out.returncode == 0, out.stderr


# --- listen addresses: the hint matches the errno ------------------------------------------


@pytest.mark.parametrize(("command", "listen"), [
    ("node", f"/ip4/{NOT_HERE}/tcp/0/ws"),
    ("node", f"/ip4/{NOT_HERE}/tcp/5555/ws"),  # was reported as "address already in use"
    ("boot", f"/ip4/{NOT_HERE}/tcp/0/ws"),
    ("probe", f"/ip4/{NOT_HERE}/tcp/0/ws"),
])
async def test_listening_on_an_address_this_machine_lacks_is_one_line(
        tmp_path: Path, command: str, listen: str) -> None:
    extra = (("--boot-url", "http://127.0.91.9:1/status") if command == "probe"
             else ("--http", "", "--data-dir", str(tmp_path)))
    out = await _run(tmp_path, command, "--listen", listen, *extra)
    line = _one_line_error(out, 1, f"cannot listen on {listen}: Cannot assign requested address "
                                   f"(is {NOT_HERE} an address of this machine?)")
    assert "another node" not in line and "in use" not in line
    assert not (tmp_path / "p2p_keypair.ser").exists()  # failed before doing anything


def test_a_listen_name_that_does_not_resolve_is_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the check the CLI runs before starting; the resolver is replaced (no query leaves)
    def no_such_name(*_args: object, **_kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    listen = "/dns4/peer.example.net/tcp/4001/ws"
    config = NodeConfig.from_settings(listen=(listen,), http_listen="")
    assert bind_problems(config) == [
        f"cannot listen on {listen}: cannot resolve 'peer.example.net': Name or service not "
        "known (is the name right? an IP address avoids the lookup)"]


def test_a_listen_name_is_checked_on_the_address_it_resolves_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def resolves_here(*_args: object, **_kwargs: object) -> object:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (NOT_HERE, 4001))]

    monkeypatch.setattr(socket, "getaddrinfo", resolves_here)
    config = NodeConfig.from_settings(listen=("/dns4/peer.example.net/tcp/4001/ws",),
                                      http_listen="")
    [problem] = bind_problems(config)
    assert "an address of this machine" in problem


async def test_an_http_address_this_machine_lacks_is_one_line(tmp_path: Path) -> None:
    out = await _run(tmp_path, "node", "--listen", "/ip4/127.0.91.1/tcp/0/ws",
                     "--http", f"{NOT_HERE}:0", "--data-dir", str(tmp_path))
    _one_line_error(out, 1, f"{NOT_HERE}:0 (HTTP API)", "an address of this machine")


# --- version, stray variables, where the configuration came from -------------------------


async def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    out = await _run(tmp_path, "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"autonat {importlib.metadata.version('trio-autonat')}\n"
    assert out.stdout == "autonat 0.1.0\n"


async def test_boot_warns_about_stray_variables_logs_its_sources_and_stops_on_sigint(
        tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("[dialer]\ntarget_peers = 3\n")
    key = tmp_path / "boot.ser"
    env = _env(tmp_path, AUTONAT_FOO="1", AUTONAT_TARGET_PEER="2", AUTONAT_REGEN_GOLDEN="1")
    with trio.fail_after(40):
        await _make_key(tmp_path, key)
        async with _daemon(tmp_path, "boot", "--config", str(config), "--key", str(key),
                           "--listen", "/ip4/127.0.92.1/tcp/0/ws", "--http", "127.0.92.1:0",
                           "--data-dir", str(tmp_path / "data"), env=env) as boot:
            status = (await _get(boot.url + "/status")).json()
            assert await boot.stop(signal.SIGINT) == 0  # a daemon's normal stop, not 130
    assert status["peer_id"] == boot.peer_id
    events = _log_events(boot)
    first = events[0]
    assert first["event"] == "configuration loaded", first
    assert first["profile"] == "boot" and str(first["profile_file"]).endswith("boot.toml")
    assert first["config_file"] == str(config) and first["key_file"] == str(key)
    stray = sorted(str(e["event"]) for e in events if "is not a setting" in str(e["event"]))
    assert stray == [
        "environment variable AUTONAT_FOO is not a setting; ignored",
        "environment variable AUTONAT_REGEN_GOLDEN is not a setting; ignored",
        "environment variable AUTONAT_TARGET_PEER is not a setting; ignored "
        "(did you mean AUTONAT_TARGET_PEERS?)"]
    assert all(e["level"] == "warning" for e in events if "is not a setting" in str(e["event"]))
    assert "Traceback" not in boot.stderr() and "interrupted" not in boot.stderr()


# --- configuration errors name their source ------------------------------------------------


@pytest.mark.parametrize(("flags", "env", "needle"), [
    (("--http", "nonsense"), {}, "invalid setting http_listen='nonsense' from flag --http: "),
    ((), {"AUTONAT_MAX_CONNECTIONS": "0"},
     "invalid setting max_connections=0 from environment variable AUTONAT_MAX_CONNECTIONS: "),
    (("--config", "{file}"), {}, "invalid setting dial_timeout=-1.0 from config file {file}: "),
], ids=["flag", "environment", "file"])
async def test_config_errors_name_file_variable_or_flag(
        tmp_path: Path, flags: tuple[str, ...], env: dict[str, str], needle: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("[dialer]\ndial_timeout = -1.0\n")
    out = await _run(tmp_path, "boot", "--listen", "/ip4/127.0.91.2/tcp/0/ws", "--http", "",
                     "--data-dir", str(tmp_path), *(f.format(file=file) for f in flags), env=env)
    _one_line_error(out, 1, needle.format(file=file))


# --- key files: an explicit one must exist ---------------------------------------------------


@pytest.mark.parametrize(("command", "how"), [("node", "flag"), ("boot", "environment"),
                                              ("node", "config")])
async def test_an_explicit_missing_key_file_is_one_line_and_not_created(
        tmp_path: Path, command: str, how: str) -> None:
    key = tmp_path / "typo.ser"
    args = [command, "--listen", "/ip4/127.0.91.3/tcp/0/ws", "--http", "",
            "--data-dir", str(tmp_path / "data")]
    env: dict[str, str] = {}
    if how == "flag":
        args += ["--key", str(key)]
    elif how == "environment":
        env["AUTONAT_KEY_FILE"] = str(key)
    else:
        (tmp_path / "c.toml").write_text(f"key_file = '{key}'\n")
        args += ["--config", str(tmp_path / "c.toml")]
    out = await _run(tmp_path, *args, env=env)
    _one_line_error(out, 1, f"key file {key}", "does not exist", f"autonat id --key {key}")
    assert not key.exists() and not (tmp_path / "data").exists()


# --- other unusable paths: one line each -----------------------------------------------------


@pytest.mark.parametrize("what", ["data-dir-is-a-file", "config-is-a-directory"])
async def test_unusable_paths_are_one_line(tmp_path: Path, what: str) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    flag = (("--data-dir", str(file)) if what == "data-dir-is-a-file"
            else ("--config", str(tmp_path), "--data-dir", str(tmp_path / "d")))
    out = await _run(tmp_path, "node", "--listen", "/ip4/127.0.91.4/tcp/0/ws", "--http", "",
                     *flag)
    _one_line_error(out, 1, str(file) if what == "data-dir-is-a-file" else str(tmp_path))


# --- IPv6: addresses in URLs are bracketed -----------------------------------------------------


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
async def test_an_ipv6_http_api_is_printed_bracketed(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with _daemon(tmp_path, "node", "--listen", "/ip6/::1/tcp/0/ws",
                           "--http", "[::1]:0", "--data-dir", str(tmp_path / "d")) as node:
            assert node.http.startswith("[::1]:") and not node.http.endswith(":0"), node.http
            document = (await _get(node.url + "/status")).json()  # the printed URL works
            status = await _run(tmp_path, "status", "--http", node.http, "--json")
            assert await node.stop() == 0
    assert document["peer_id"] == node.peer_id
    assert status.returncode == 0, status.stderr


# --- Ctrl-C: 130 and one line -----------------------------------------------------------------


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default disposition.

    A process started from a non-interactive shell's background job (``cmd &``,
    as some CI runners and nohup'd scripts do) inherits SIGINT *ignored*, and
    Python then leaves it ignored - as a user's shell intends. The test wants
    the Ctrl-C of an interactive terminal, whatever started pytest.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _interrupt(tmp_path: Path, args: list[str], running: trio.Event) -> tuple[int, str, str]:
    """Start ``autonat *args``, send SIGINT once ``running`` is set; (rc, stdout, stderr)."""
    out, err = tmp_path / "interrupted.out", tmp_path / "interrupted.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await trio.lowlevel.open_process([*AUTONAT, *args], stdout=stdout,
                                                   stderr=stderr, env=_env(tmp_path),
                                                   preexec_fn=_default_sigint)
    try:
        await running.wait()
        process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            code = await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
    return code, out.read_text(), err.read_text()


async def test_ctrl_c_during_probe_exits_130_with_one_line(tmp_path: Path) -> None:
    """The boot node never answers a dial request, so the probe would wait 60 s."""
    with trio.fail_after(45):
        async with (open_node(_config("127.0.93.1", autonat_server=False)) as boot,
                    trio.open_nursery() as nursery):
            host, port = await nursery.start(serve_http, boot, "127.0.93.1", 0)
            connected = trio.Event()

            async def watch() -> None:
                await boot.wait_for(lambda s: bool(s.connected_peers))  # probe inside trio.run
                connected.set()

            nursery.start_soon(watch)
            code, out, err = await _interrupt(
                tmp_path, ["probe", "--boot-url", f"http://{host}:{port}/status",
                           "--allow-loopback", "--timeout", "60",
                           "--listen", "/ip4/127.0.93.2/tcp/0/ws"], connected)
            nursery.cancel_scope.cancel()
    assert (code, out, err) == (130, "", "autonat: interrupted\n")


async def test_ctrl_c_during_status_exits_130_with_one_line(tmp_path: Path) -> None:
    """The 'node' accepts the connection and never answers."""
    with trio.fail_after(30), trio.socket.socket() as server:
        await server.bind(("127.0.93.3", 0))
        server.listen()
        port = server.getsockname()[1]
        accepted = trio.Event()
        held: list[trio.socket.SocketType] = []

        async def accept() -> None:
            conn, _ = await server.accept()
            held.append(conn)
            accepted.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            code, out, err = await _interrupt(
                tmp_path, ["status", "--http", f"127.0.93.3:{port}"], accepted)
        for conn in held:
            conn.close()
    assert (code, out, err) == (130, "", "autonat: interrupted\n")


def test_usage_errors_keep_their_codes() -> None:
    """Usage errors stay 2 (probe: 1, since 2 means "unknown"), one line each."""
    for argv, code in ((["node", "--bogus"], 2), (["probe", "--bogus"], 1), (["nope"], 2)):
        out = subprocess.run([*AUTONAT, *argv], capture_output=True, text=True, timeout=30)
        assert out.returncode == code, (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("autonat")
