"""STUN through the CLI: a real ``autonat boot`` serving STUN, ``autonat probe --json``
reporting ``udp``, and the one-line errors and default-port fallback of the STUN port."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio
from test_cli_node import _daemon, _get, _one_line_error, _run

from actors.surfaces._cli_settings import bind_problems, free_default_ports
from protocols import NodeConfig


async def test_probe_json_reports_the_udp_profile_measured_against_a_boot_node(
        tmp_path: Path) -> None:
    flags = ("--listen", "/ip4/127.0.74.1/tcp/0/ws", "--http", "127.0.74.1:0",
             "--data-dir", str(tmp_path / "boot"), "--dialback-source", "127.0.74.2",
             "--stun-alternate", "127.0.74.3")
    with trio.fail_after(60):
        # the boot profile serves STUN on the listen IP (3478; the alternate 3479)
        async with _daemon(tmp_path, "boot", *flags) as boot:
            status = (await _get(f"{boot.url}/status")).json()
            probe = await _run(tmp_path, "probe", "--boot-url", f"{boot.url}/status",
                               "--allow-loopback", "--json", "--timeout", "20",
                               "--listen", "/ip4/127.0.74.9/tcp/0/ws")
            plain = await _run(tmp_path, "probe", "--boot-url", f"{boot.url}/status",
                               "--allow-loopback", "--timeout", "20",
                               "--listen", "/ip4/127.0.74.8/tcp/0/ws")
            assert await boot.stop() == 0
    assert status["udp"] == {"mapping": "unknown", "filtering": "unknown"}
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    assert result["nat_status"] == "public"
    assert result["udp"] == {"mapping": "none", "filtering": "endpoint-independent"}
    assert "udp          mapping none, filtering endpoint-independent" in plain.stdout
    assert "Traceback" not in boot.stderr()
    assert '"stun server running"' in boot.stderr()


async def test_a_taken_stun_port_is_one_line_before_starting(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.74.1", 0))
        port = taken.getsockname()[1]
        out = await _run(tmp_path, "boot", "--listen", "/ip4/127.0.74.1/tcp/0/ws",
                         "--http", "127.0.74.1:0", "--data-dir", str(tmp_path / "boot"),
                         env={"AUTONAT_STUN_LISTEN": f"127.0.74.1:{port}"})
    _one_line_error(out, 1, f"cannot serve STUN on 127.0.74.1:{port}/udp",
                    "Address already in use", "choose another port with stun_listen")


def test_a_busy_default_stun_port_becomes_a_free_one_an_explicit_one_is_an_error() -> None:
    config = NodeConfig.from_settings(listen=("/ip4/127.0.75.1/tcp/0/ws",), stun_listen="3478",
                                      http_listen="")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        try:
            taken.bind(("127.0.75.1", 3478))
        except OSError:
            pytest.skip("127.0.75.1:3478/udp is taken by something else")
        moved, notes = free_default_ports(config, frozenset())
        kept, no_notes = free_default_ports(config, frozenset({"stun_listen"}))
        problems = bind_problems(kept)
    assert moved.stun.stun_listen == "127.0.75.1:0"
    assert notes == ["default STUN port 3478 is busy; using a free port (peers learn it "
                     "through Identify)"]
    assert kept == config and no_notes == []
    assert len(problems) == 1 and "cannot serve STUN on 127.0.75.1:3478/udp" in problems[0]
