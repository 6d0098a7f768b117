"""What the nodes log: fields instead of reprs, short lines, quiet normal closes and
shutdowns, and nothing below warning until the application configures logging.

The node runs use the in-memory network in virtual time and render through
``configure_logging(..., file=buffer)``; the fixture restores the test-wide
structlog configuration (tests/conftest.py) afterwards. The "unconfigured"
checks need structlog's pristine defaults, so they run the README snippet in
a subprocess (and, in-process, between ``reset_defaults`` and a restore).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from actors import (
    MemoryNetwork,
    Node,
    configure_logging,
    memory_stream_pair,
    open_connection,
    open_node,
)
from protocols import AddressPolicy, HttpConfig, Keypair, Lifecycle, NodeConfig, WsAddress

ROOT = Path(__file__).parents[1]
LOOPBACK = AddressPolicy(allow_loopback=True)
TIMEOUT = 120  # virtual seconds
LONG_LINE = 160
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PEER_ID = re.compile(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}")


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def _config(host: str) -> NodeConfig:
    return NodeConfig(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                      http=HttpConfig(http_listen=""))


async def _run_three_nodes() -> tuple[Node, Node, Node]:
    """Two servers and a client that reaches ``public``; then the client leaves first.

    Returns the (stopped) nodes: a and b are the servers, c the client.
    """
    net = MemoryNetwork()
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as servers:
            a, b = [await servers.enter_async_context(
                        _open(net, f"127.0.1.{i}")) for i in (1, 2)]
            await b.connect(a.listen_addrs[0])
            async with _open(net, "127.0.1.9") as c:
                for server in (a, b):
                    await c.connect(server.listen_addrs[0])
                await c.wait_for(lambda s: s.nat_status == "public")
            # c stopped: a and b saw it go and plan to redial it
            await a.wait_for(lambda s: s.peer(c.peer_id) is not None
                             and c.peer_id not in s.connected_peers)
            await trio.sleep(0.1)
    return a, b, c


def _open(net: MemoryNetwork, host: str) -> AbstractAsyncContextManager[Node]:
    return open_node(_config(host), transport=net.transport(host))


def _json_entries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# --- events as fields -------------------------------------------------------------------


def test_reachability_events_become_message_and_fields() -> None:
    from actors.node._autonat_probe import reachability_log
    from protocols import NatStatusChanged, ReachabilityChanged

    assert reachability_log(NatStatusChanged(old="unknown", new="public", at=187921.91)) == (
        "nat status changed", {"nat_status": "public", "previous": "unknown"})
    addr = WsAddress(host="203.0.113.7", kind="ip4", port=4001, secure=False)
    message, fields = reachability_log(ReachabilityChanged(
        addr=addr, old="reachable", new="unknown", at=5.0, reachable_votes=1,
        unreachable_votes=0, reason="expired"))
    assert message == "address verdict changed"
    assert fields == {"addr": "/ip4/203.0.113.7/tcp/4001/ws", "verdict": "unknown",
                      "previous": "reachable", "votes": "1:0", "reason": "expired"}


async def test_verdict_is_logged_as_fields_not_as_a_repr(
        autojump_clock: trio.testing.MockClock, restore_structlog: None) -> None:
    console, jsonl = io.StringIO(), io.StringIO()
    configure_logging("console", "info", file=console)
    await _run_three_nodes()
    configure_logging("json", "info", file=jsonl)
    _, _, c = await _run_three_nodes()
    text = console.getvalue()
    assert "nat_status=public previous=unknown" in text
    for repr_start in ("NatStatusChanged(", "ReachabilityChanged(", "WsAddress(", "PeerId("):
        assert repr_start not in text
        assert repr_start not in jsonl.getvalue()
    verdicts = [e for e in _json_entries(jsonl) if e["event"] == "nat status changed"
                and e["node"] == str(c.peer_id)]
    assert [(e["nat_status"], e["previous"]) for e in verdicts] == [("public", "unknown")]


# --- one short id for our node, short lines -----------------------------------------------


async def test_console_lines_are_short_and_name_our_node_once(
        autojump_clock: trio.testing.MockClock, restore_structlog: None) -> None:
    console = io.StringIO()
    configure_logging("console", "info", file=console)
    await _run_three_nodes()
    lines = [ANSI.sub("", line) for line in console.getvalue().splitlines()]
    assert len(lines) > 20
    lengths = sorted(len(line) for line in lines)
    short = sum(length <= LONG_LINE for length in lengths)
    assert short >= 0.9 * len(lines), f"lengths {lengths}"
    assert lengths[-1] <= 200, max(lines, key=len)
    for line in lines:
        assert line.count(" node=") == 1, line  # our node, named once
        assert "local_peer=" not in line
        assert not PEER_ID.search(line), line  # the console shows ids by their tail


async def test_json_lines_carry_our_full_id_once_and_iso_utc_times(
        autojump_clock: trio.testing.MockClock, restore_structlog: None) -> None:
    jsonl = io.StringIO()
    configure_logging("json", "info", file=jsonl)
    a, b, c = await _run_three_nodes()
    entries = _json_entries(jsonl)
    ours = {str(n.peer_id) for n in (a, b, c)}
    assert entries
    for entry in entries:
        assert entry["node"] in ours and "local_peer" not in entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", entry["timestamp"])


# --- closes -------------------------------------------------------------------------------


async def test_normal_closes_are_debug_and_failures_info(
        autojump_clock: trio.testing.MockClock, restore_structlog: None) -> None:
    jsonl = io.StringIO()
    configure_logging("json", "debug", file=jsonl)
    await _run_three_nodes()
    entries = _json_entries(jsonl)
    closed = [e for e in entries if e["event"] == "connection closed"]
    assert closed
    assert all(e["level"] == "debug" for e in closed), [e for e in closed if e["level"] != "debug"]
    reasons = {e["reason"] for e in closed}
    assert "dial-back done" in reasons and "closed by the peer: dial-back done" in reasons
    assert not any("NORMAL_CLOSURE" in r or r.startswith("connection lost") for r in reasons)

    # a peer breaking the protocol is news: info, with the reason
    fs_a, fs_b = memory_stream_pair(WsAddress(host="192.0.2.1", kind="ip4", port=1, secure=False),
                                    WsAddress(host="192.0.2.2", kind="ip4", port=2, secure=False))
    key_a, key_b = Keypair.generate(), Keypair.generate()
    jsonl.seek(0)
    jsonl.truncate()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            async def peer() -> None:
                async with open_connection(fs_b, key_b, initiator=False) as conn:
                    await conn.closed.wait()
            nursery.start_soon(peer)
            async with open_connection(fs_a, key_a, initiator=True,
                                       expected_peer=key_b.peer_id) as conn:
                await fs_b.send(b"\xc1\x00")  # undecodable
                await conn.closed.wait()
    [ours] = [e for e in _json_entries(jsonl)
              if e["event"] == "connection closed" and e["node"] == str(key_a.peer_id)]
    assert ours["level"] == "info" and "protocol violation" in ours["reason"]


# --- shutdown -----------------------------------------------------------------------------


async def test_a_stopping_node_plans_no_redials_and_reports_no_lifecycle_regression(
        autojump_clock: trio.testing.MockClock, restore_structlog: None) -> None:
    jsonl = io.StringIO()
    configure_logging("json", "info", file=jsonl)
    a, _, c = await _run_three_nodes()
    entries = _json_entries(jsonl)
    client = [e for e in entries if e.get("node") == str(c.peer_id)]
    assert not [e for e in client if "redial_in" in e]
    assert any(e["event"] == "nat status changed" for e in client)  # the run got that far
    assert not [e for e in client if e["event"] == "lifecycle changed"
                and e["lifecycle"] == Lifecycle.BOOTSTRAPPING.value
                and e["previous"] != Lifecycle.STARTING.value]
    # the servers, which keep running, do report the client leaving (normally)
    left = [e for e in entries if e["node"] == str(a.peer_id) and e["event"] == "connection down"
            and e["peer"] == str(c.peer_id)]
    assert left and left[0]["reason"] == "closed by the peer" and "redial_in" in left[0]


async def test_a_stopping_node_logs_its_connections_going_down_at_debug(
        autojump_clock: trio.testing.MockClock, restore_structlog: None) -> None:
    jsonl = io.StringIO()
    configure_logging("json", "debug", file=jsonl)
    _, _, c = await _run_three_nodes()
    client = [e for e in _json_entries(jsonl) if e.get("node") == str(c.peer_id)]
    down = [e for e in client if e["event"] == "connection down"]
    assert len(down) == 2
    assert all(e["level"] == "debug" and e["reason"] == "this node is stopping" for e in down)
    [regression] = [e for e in client if e["event"] == "lifecycle changed"
                    and e["lifecycle"] == "bootstrapping" and e["previous"] != "starting"]
    assert regression["level"] == "debug"


# --- quiet until configured ---------------------------------------------------------------


def _readme_snippet() -> str:
    section = (ROOT / "README.md").read_text().split("## Embedding a node in a Trio program")[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README embedding section lost its python snippet"
    return match.group(1)


def _log_lines(output: str) -> list[str]:
    """Lines rendered by structlog's console renderer (any timestamp style), at debug/info."""
    return [line for line in ANSI.sub("", output).splitlines()
            if re.search(r"\[(debug|info)\s*\]", line)]


def test_readme_snippet_logs_nothing_below_warning_until_logging_is_configured() -> None:
    snippet = _readme_snippet()
    quiet = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert quiet.returncode == 0, quiet.stderr
    assert "saw us at" in quiet.stdout  # the snippet's own output
    assert _log_lines(quiet.stdout + quiet.stderr) == []

    configured = subprocess.run(
        [sys.executable, "-c",
         "from actors import configure_logging\nconfigure_logging('console', 'info')\n" + snippet],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert configured.returncode == 0, configured.stderr
    assert "saw us at" in configured.stdout and _log_lines(configured.stdout) == []
    assert len(_log_lines(configured.stderr)) > 5  # logs go to stderr, once configured


@pytest.mark.parametrize("config_view", ["private", "public"])
def test_loggers_are_quiet_below_warning_until_structlog_is_configured(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        restore_structlog: None, config_view: str) -> None:
    from actors.runtime import _logsetup
    from actors.runtime._logsetup import get_logger

    if config_view == "public":  # the fallback for a structlog without _config._CONFIG
        monkeypatch.setattr(_logsetup, "_structlog_config", _logsetup._PublicConfig())
    structlog.reset_defaults()
    assert not structlog.is_configured()
    log = get_logger("actors.test", actor="test", node="me")  # created while unconfigured
    log.debug("hidden debug")
    log.info("hidden info")
    log.bind(peer="p").info("hidden bound info")
    log.warning("shown warning")
    out = capsys.readouterr()
    assert "hidden" not in out.out + out.err
    assert "shown warning" in out.out + out.err

    buffer = io.StringIO()
    configure_logging("console", "info", file=buffer)  # the same logger follows the config
    log.info("now shown", peer="p")
    log.debug("still filtered by level")
    assert "now shown" in buffer.getvalue() and "still filtered" not in buffer.getvalue()
    assert "actor=test node=me peer=p" in buffer.getvalue()
    with structlog.testing.capture_logs() as captured:  # in-place processor edits are seen
        log.info("captured", n=1)
    assert captured == [{"actor": "test", "node": "me", "n": 1, "event": "captured",
                         "log_level": "info"}]
