"""The operator's everyday commands: ``autonat peers``, ``status --watch``, ``completion``.

``peers`` and ``status --watch`` run as real subprocesses against a node
(with its HTTP API) that runs inside the test on loopback; the completion
scripts are checked by the shells themselves (``bash -n``, ``zsh -n``) and
the bash one is run: completing a few command lines gives the expected words.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from actors import Node, open_node, serve_http
from actors.surfaces._cli import build_parser
from actors.surfaces._cli_commands import CliError
from actors.surfaces._cli_ops import bash_completion, watch, zsh_completion
from protocols import (
    AddressPolicy,
    ConnectionInfo,
    Direction,
    Keypair,
    Lifecycle,
    NodeConfig,
    NodeSnapshot,
    PeerRecord,
    WsAddress,
)
from protocols.node import peers_document
from tests.required_tools import required_tool

_SCRIPT = Path(sys.executable).with_name("autonat")
AUTONAT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "actors.cli"]
LOOPBACK = AddressPolicy(allow_loopback=True)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTONAT_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    return env


def _config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **overrides)


@asynccontextmanager
async def _pair(a_host: str, b_host: str) -> AsyncIterator[tuple[Node, Node, str]]:
    """Node a (with its HTTP API: the third value, HOST:PORT) connected to node b."""
    async with open_node(_config(a_host)) as a, open_node(_config(b_host)) as b, \
            trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_http, a, a_host, 0)
        await b.connect(a.listen_addrs[0])
        await a.wait_for(lambda s: any(r.agent_version for r in s.peers
                                       if r.peer_id == b.peer_id))
        yield a, b, f"{host}:{port}"
        nursery.cancel_scope.cancel()


async def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process([*AUTONAT, *args], capture_stdout=True,
                                      capture_stderr=True, check=False, env=_env(tmp_path))


# --- /peers and autonat peers -----------------------------------------------------------------


def test_peers_document_joins_connections_and_agents() -> None:
    me, them = Keypair.generate().peer_id, Keypair.generate().peer_id
    remote = WsAddress.parse(f"/ip4/198.51.100.7/tcp/4001/ws/p2p/{them}")
    local = WsAddress.parse("/ip4/192.0.2.1/tcp/44000/ws")
    conns = tuple(ConnectionInfo(i, them, direction, local, remote, opened_at)
                  for i, direction, opened_at in ((1, Direction.INBOUND, 90.0),
                                                  (2, Direction.OUTBOUND, 40.0)))
    record = PeerRecord(them, (remote,), 0.0, 0.0, agent_version="trio-autonat/0.1.0")
    snap = NodeSnapshot(peer_id=me, lifecycle=Lifecycle.CONNECTED, lifecycle_since=0.0,
                        listen_addrs=(), peers=(record,), connections=conns,
                        observed_addrs=(), started_at=0.0, updated_at=0.0, revision=1)
    document = peers_document(snap, wall_now=1_000_000.0, loop_now=100.0)
    assert document["peer_id"] == str(me) and document["count"] == 2
    assert document["truncated"] is False
    first, second = document["peers"]  # oldest first
    assert first == {"peer_id": str(them), "address": str(remote), "direction": "outbound",
                     "path": "direct", "agent": "trio-autonat/0.1.0", "since": 999_940.0,
                     "connected_s": 60.0}
    assert second["direction"] == "inbound" and second["connected_s"] == 10.0
    short = peers_document(replace(snap, peers=()), wall_now=0.0, loop_now=100.0, limit=1)
    assert short["truncated"] is True and short["count"] == 2
    assert [row["agent"] for row in short["peers"]] == [""]  # not identified yet
    # a hole-punched connection, and a peer reached only through a relay
    relayed = Keypair.generate().peer_id
    paths = peers_document(replace(snap, connections=(replace(conns[0], hole_punched=True),),
                                   relayed_peers=(relayed,)), wall_now=0.0, loop_now=100.0)
    assert [(row["peer_id"], row["path"]) for row in paths["peers"]] == [
        (str(them), "hole-punched"), (str(relayed), "relayed")]
    assert paths["peers"][1]["address"] is None and paths["count"] == 2


async def test_peers_lists_the_connected_peer_as_text_and_json(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with _pair("127.0.76.1", "127.0.76.2") as (_a, b, http):
            as_json = await _run(tmp_path, "peers", "--http", http, "--json")
            text = await _run(tmp_path, "peers", "--http", http)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    [row] = document["peers"]
    assert row["peer_id"] == str(b.peer_id) and row["direction"] == "inbound"
    assert row["path"] == "direct" and row["agent"].startswith("trio-autonat")
    assert row["address"].startswith("/ip4/127.0.76.2/tcp/")
    assert 0 <= row["connected_s"] < 60 and row["since"] > 1.6e9
    assert text.returncode == 0, text.stderr
    header, line, total = text.stdout.decode().splitlines()
    assert header.split() == ["PEER", "DIRECTION", "PATH", "SINCE", "AGENT", "ADDRESS"]
    assert line.split()[:3] == [str(b.peer_id), "inbound", "direct"]
    assert total == "1 connected peer"


async def test_peers_of_a_node_that_is_not_running_is_a_one_line_error(tmp_path: Path) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.76.9", 0))
        port = sock.getsockname()[1]
        out = await _run(tmp_path, "peers", "--http", f"127.0.76.9:{port}")
    assert out.returncode == 1 and out.stdout == b""
    [line] = out.stderr.decode().splitlines()
    assert line.startswith("autonat: error: cannot read http://127.0.76.9") and "--http" in line


# --- status --watch -----------------------------------------------------------------------


async def test_status_watch_refreshes_until_ctrl_c_and_exits_0(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with _pair("127.0.76.3", "127.0.76.4") as (a, _b, http):
            process = await trio.lowlevel.open_process(
                [*AUTONAT, "status", "--watch", "--interval", "0.2", "--http", http],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path))
            assert process.stdout is not None and process.stderr is not None
            seen = b""
            ours = f"peer_id         {a.peer_id}".encode()
            try:
                # three frames that read the node (on a loaded machine a read may time
                # out: that frame says "unreachable" and the watch goes on - not counted)
                while seen.count(ours) < 3:
                    chunk = await process.stdout.receive_some(65536)
                    assert chunk, seen
                    seen += chunk
                process.send_signal(signal.SIGINT)
                # read on to the end: a watch blocked writing into a full pipe could
                # never finish its last flush (a loaded CI run hung here until timeout)
                while chunk := await process.stdout.receive_some(65536):
                    seen += chunk
                status = await process.wait()
                err = await process.stderr.receive_some(65536)
            finally:
                with trio.CancelScope(shield=True):
                    if process.returncode is None:
                        process.kill()
                    await process.wait()
                    await process.stdout.aclose()
                    await process.stderr.aclose()
    assert status == 0, err
    assert b"Traceback" not in err and b"interrupted" not in err
    frames = seen.decode().split("autonat status every")[1:]
    assert len(frames) >= 3
    # every frame but the last, which Ctrl-C may have cut short, is complete
    assert all(f"peer_id         {a.peer_id}" in frame or "unreachable: " in frame
               for frame in frames[:-1])


def test_watch_shows_an_unreachable_node_and_keeps_going() -> None:
    answers: list[dict[str, Any] | CliError] = [
        CliError("cannot read http://x/status: refused"),
        {"peer_id": "12D3KooWx", "state": "connected"}]
    sleeps: list[float] = []

    def read() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, CliError):
            raise answer
        return answer

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not answers:
            raise KeyboardInterrupt

    out = io.StringIO()
    assert watch(read, 0.5, out, sleep=sleep) == 0
    text = out.getvalue()
    assert "unreachable: cannot read http://x/status: refused" in text
    assert "state           connected" in text and sleeps == [0.5, 0.5]


async def test_watch_flag_errors_are_one_line(tmp_path: Path) -> None:
    out = await _run(tmp_path, "status", "--watch", "--interval", "0")
    assert out.returncode == 1 and b"--interval" in out.stderr
    out = await _run(tmp_path, "status", "--watch", "--json")
    assert out.returncode == 1 and b"--watch and --json" in out.stderr


# --- completion -----------------------------------------------------------------------------


def _complete(script: Path, *words: str) -> set[str]:
    """What bash offers after ``autonat *words`` (the last word being completed)."""
    line = " ".join(("autonat", *words))
    program = (f"source {script}\nCOMP_WORDS=(autonat {' '.join(repr(w) for w in words)})\n"
               f"COMP_CWORD={len(words)}\nCOMP_LINE={line!r}\n_autonat\n"
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True,
                         text=True, timeout=30, check=True)
    return set(out.stdout.split())


async def test_bash_completion_is_valid_and_completes_commands_flags_and_choices(
        tmp_path: Path) -> None:
    out = await _run(tmp_path, "completion", "bash")
    assert out.returncode == 0, out.stderr
    script = tmp_path / "autonat.bash"
    script.write_bytes(out.stdout)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                           timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    assert _complete(script, "pe") == {"peers"}
    assert _complete(script, "") >= {"node", "boot", "probe", "status", "peers", "completion"}
    assert {"--watch", "--interval"} <= _complete(script, "status", "--")
    assert _complete(script, "node", "--log-format", "j") == {"json", "journal"}
    assert _complete(script, "completion", "") == {"bash", "zsh"}


def test_completion_scripts_follow_the_parser() -> None:
    parser = build_parser()
    bash, zsh = bash_completion(parser), zsh_completion(parser)
    for command in ("node", "boot", "probe", "status", "peers", "completion", "id", "demo"):
        assert f"        {command})" in bash and f"'{command}:" in zsh
    assert zsh.startswith("#compdef autonat\n")


def test_zsh_completion_parses(tmp_path: Path) -> None:
    script = tmp_path / "_autonat"
    script.write_text(zsh_completion(build_parser()))
    zsh = required_tool("zsh", "zsh")
    check = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True,
                           timeout=30, check=False)
    assert check.returncode == 0, check.stderr
