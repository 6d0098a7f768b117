"""The ``autonat`` CLI as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from protocols import Keypair

# libp2p peer-id spec vector (see tests/test_identity.py for the source).
SPEC_SEED = bytes.fromhex("7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d")


def _autonat(*args: str, env_extra: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


def test_id_prints_peer_id_of_existing_pyrsia_style_key(tmp_path: Path) -> None:
    keypair = Keypair.from_seed(SPEC_SEED)
    key = tmp_path / "p2p_keypair.ser"
    key.write_bytes(keypair.to_bytes())
    key.chmod(0o600)
    out = _autonat("id", "--key", str(key))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(keypair.peer_id)
    assert out.stdout.startswith("12D3KooW")


def test_id_creates_missing_key_with_mode_0600(tmp_path: Path) -> None:
    key = tmp_path / "sub" / "k.ser"
    first = _autonat("id", "--key", str(key), "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["created"] is True and doc["key_file"] == str(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 64
    second = _autonat("id", "--key", str(key), "--json")
    assert json.loads(second.stdout) == {**doc, "created": False}


def test_id_uses_data_dir_from_environment(tmp_path: Path) -> None:
    out = _autonat("id", env_extra={"AUTONAT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p2p_keypair.ser").exists()


def test_id_uses_the_key_file_from_environment_like_node_does(tmp_path: Path) -> None:
    key = tmp_path / "elsewhere.key"
    out = _autonat("id", "--json", env_extra={"AUTONAT_KEY_FILE": str(key),
                                              "AUTONAT_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["key_file"] == str(key) and key.exists()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("content", "mode", "needle"),
    [(b"\x00" * 10, 0o600, "64"), (os.urandom(64), 0o600, "match"),
     (b"", 0o644, "chmod 600")],
)
def test_bad_key_file_is_a_one_line_error(tmp_path: Path, content: bytes, mode: int,
                                          needle: str) -> None:
    key = tmp_path / "bad.ser"
    key.write_bytes(content if content else Keypair.generate().to_bytes())
    key.chmod(mode)
    out = _autonat("id", "--key", str(key))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("autonat: error:")
    assert str(key) in lines[0] and needle in lines[0]


def test_help_lists_existing_commands() -> None:
    out = _autonat("--help")
    assert out.returncode == 0
    for command in ("id", "demo", "node", "boot", "probe", "connect", "status", "sim"):
        assert command in out.stdout


def test_bad_flag_is_a_one_line_usage_error() -> None:
    out = _autonat("id", "--no-such-flag")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "--no-such-flag" in out.stderr and "--help" in out.stderr


def test_loopback_demo_bootstraps_a_newcomer_to_a_verdict() -> None:
    out = _autonat("demo", "--loopback")
    assert out.returncode == 0, out.stderr
    assert "verdict after" in out.stdout and ": public, reachable at /ip4/127.0.5.9/" in out.stdout
    assert "lifecycle: fully_connected" in out.stdout
    document = json.loads(out.stdout.split("boot node /status: ", 1)[1])
    assert {"peers_count", "peer_id", "peer_addrs"} <= set(document)
