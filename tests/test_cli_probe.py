"""``autonat probe``: why a probe has no verdict, when it gives up early, what it shows.

Three layers:

* the pure decisions of :mod:`actors.surfaces._cli_probe` (dead end, reason, mapping
  grace, progress lines) on hand-made :class:`ProbeFacts`;
* the facts the node exposes through ``node.statistics()`` (per-URL fetch
  outcomes, per-peer dial failures, servers contacted, the small-network
  wait), on the in-memory network in virtual time;
* the real command as an operator runs it (subprocesses, loopback
  ``127.0.87.x``/``127.0.88.x``, port 0): a dead URL, HTTP 500, an HTML page and a
  wrong ``--peer`` id exit 2 at once with a ``reason``; a successful probe
  under a pseudo-terminal prints progress lines on stderr and exactly one
  JSON object on stdout.

Every wait is bounded (``trio.fail_after``).
"""

from __future__ import annotations

import io
import json
import os
import pty
import random
import select
import subprocess
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs
from test_cli_node import (
    AUTONAT,
    _boot_cluster,
    _check_probe_shape,
    _closed_port,
    _config,
    _env,
    _run,
)

from actors import MemoryNetwork, open_node
from actors.node._autonat_probe import SmallNetworkWait
from actors.node._dialer import DialFailure
from actors.surfaces._cli_probe import (
    ProbeFacts,
    ProgressPrinter,
    ProgressState,
    give_up_reason,
    mapping_grace_useful,
    no_verdict_reason,
    progress_lines,
    progress_stream,
)
from protocols import (
    AddressPolicy,
    BootstrapPlan,
    BootUrlStatus,
    FetchOutcome,
    FetchUrl,
    Keypair,
    NodeConfig,
    WsAddress,
)

URL_A = "http://127.0.0.1:1/status"
URL_B = "http://boot.example/status"
PEER = Keypair.generate().peer_id
OTHER = Keypair.generate().peer_id
PEER_ADDR = WsAddress.parse(f"/ip4/192.0.2.7/tcp/44000/ws/p2p/{PEER}")
MISMATCH = DialFailure(PEER, PEER_ADDR, f"handshake failed: dialed {PEER} but the peer "
                       f"authenticated as {OTHER}", 1, peer_id_mismatch=True)


def _url(url: str, *, fetches: int = 1, succeeded: bool = False, error: str = "HTTP 500",
         in_flight: bool = False) -> BootUrlStatus:
    outcome = (None if not fetches else FetchOutcome.OK if succeeded and not error
               else FetchOutcome.HTTP_ERROR)
    return BootUrlStatus(url, fetches, succeeded, outcome, error, in_flight)


# --- the dead end: when probe exits at once ----------------------------------------------


def test_every_boot_url_failed_is_a_dead_end_naming_each_url() -> None:
    facts = ProbeFacts(boot_urls=(_url(URL_A, error="ConnectError: ... (connection refused)"),
                                  _url(URL_B, error="HTTP 500 Internal Server Error")))
    assert give_up_reason(facts) == (
        f"every boot URL failed: {URL_A}: ConnectError: ... (connection refused); "
        f"{URL_B}: HTTP 500 Internal Server Error")


@pytest.mark.parametrize("facts", [
    ProbeFacts(boot_urls=(_url(URL_A), _url(URL_B, fetches=0, error="", in_flight=True))),
    ProbeFacts(boot_urls=(_url(URL_A, fetches=3, succeeded=True),)),  # worked once
    ProbeFacts(boot_urls=(_url(URL_A),), connected=1),
    ProbeFacts(boot_urls=(_url(URL_A),), fetching=1),  # its retry is running
    ProbeFacts(given_peers=(PEER_ADDR,), dial_failures=(MISMATCH,), dialing=1),
    ProbeFacts(boot_urls=(_url(URL_A),), given_peers=(PEER_ADDR,)),  # --peer not failed yet
    ProbeFacts(given_peers=(PEER_ADDR,), dial_failures=(replace(MISMATCH, peer=OTHER),)),
    ProbeFacts(),
], ids=["url-in-flight", "url-worked-once", "connected", "fetching", "dialing", "peer-pending",
        "other-peer-failed", "nothing-configured"])
def test_no_dead_end_while_something_may_still_work(facts: ProbeFacts) -> None:
    assert give_up_reason(facts) is None


def test_a_wrong_peer_id_is_a_dead_end_naming_the_mismatch() -> None:
    facts = ProbeFacts(given_peers=(PEER_ADDR,), dial_failures=(MISMATCH,))
    assert give_up_reason(facts) == (
        f"--peer dial failed: peer id mismatch at {PEER_ADDR}: dialed {PEER} but the peer "
        f"authenticated as {OTHER}")


def test_failed_urls_and_peers_together_mismatch_first() -> None:
    refused_peer = Keypair.generate().peer_id
    refused_addr = WsAddress.parse(f"/ip4/192.0.2.8/tcp/1/ws/p2p/{refused_peer}")
    refused = DialFailure(refused_peer, refused_addr, "connection refused", 2)
    facts = ProbeFacts(boot_urls=(_url(URL_A),), given_peers=(refused_addr, PEER_ADDR),
                       dial_failures=(refused, MISMATCH))
    reason = give_up_reason(facts)
    assert reason is not None
    assert reason.startswith(f"every boot URL failed: {URL_A}: HTTP 500; every --peer dial "
                             f"failed: peer id mismatch at {PEER_ADDR}")
    assert reason.endswith(f"{refused_addr}: connection refused")


# --- the reason at the timeout -----------------------------------------------------------


@pytest.mark.parametrize(("facts", "expected"), [
    (ProbeFacts(), "no AutoNAT server reached: no peer connected"),
    (ProbeFacts(connected=2), "no AutoNAT server reached: 2 peers connected, none serves"),
    (ProbeFacts(connected=1, servers_available=1), "no candidate address of ours to probe"),
    (ProbeFacts(connected=1, servers_available=1, servers_contacted=1),
     "no AutoNAT server answered (1 server asked)"),
    (ProbeFacts(servers_answered=2, probe_outcomes=(("refused", 2),)),
     "no verdict: 2 AutoNAT servers answered (refused 2)"),
    (ProbeFacts(servers_answered=1, small_network_wait=SmallNetworkWait(1, 2, 5.0, 9.0)),
     "still waiting for more servers (a verdict needs 2, or 5 s without more)"),
    (ProbeFacts(boot_urls=(_url(URL_A, error="timeout"),), dial_failures=(MISMATCH,)),
     f"no peer connected; {URL_A}: timeout; peer id mismatch at {PEER_ADDR}"),
], ids=["nothing", "no-server", "no-candidate", "silent", "refused", "small-network",
        "details"])
def test_no_verdict_reason_says_what_was_missing(facts: ProbeFacts, expected: str) -> None:
    assert expected in no_verdict_reason(facts)


# --- the NAT mapping grace -------------------------------------------------------------------


@pytest.mark.parametrize(("facts", "useful"), [
    (ProbeFacts(nat_mapping="none", pending_observers=frozenset({"10.0.0.2"}),
                observers=frozenset({"10.0.0.1"})), False),  # already known
    (ProbeFacts(observers=frozenset({"10.0.0.1"})), False),  # one observer, nobody else
    (ProbeFacts(observers=frozenset({"10.0.0.1"}), pending_observers=frozenset({"10.0.0.2"})),
     True),  # a second IP still running Identify
    (ProbeFacts(pending_observers=frozenset({"10.0.0.1"})), False),  # one IP in all
    (ProbeFacts(observers=frozenset({"10.0.0.1"}), pending_observers=frozenset({"10.0.0.1"})),
     False),  # same host: not independent
    (ProbeFacts(observers=frozenset({"10.0.0.1", "10.0.0.2"}),
                pending_observers=frozenset({"10.0.0.1"})), True),  # may complete a group
    (ProbeFacts(observers=frozenset({"10.0.0.1"}), dialing=1), True),  # a new peer may come
    (ProbeFacts(observers=frozenset({"10.0.0.1"}), fetching=1), True),
    (ProbeFacts(), False),
], ids=["known", "lone-observer", "second-ip-pending", "one-ip", "same-ip", "other-group",
        "dialing", "fetching", "nothing"])
def test_mapping_grace_only_while_another_observer_can_come(facts: ProbeFacts,
                                                             useful: bool) -> None:
    assert mapping_grace_useful(facts) is useful


# --- progress lines --------------------------------------------------------------------------


def test_progress_lines_follow_the_phases_once_each() -> None:
    wait = SmallNetworkWait(servers=1, threshold=2, wait_s=5.0, until=12.0)
    steps = [
        ProbeFacts(boot_urls=(_url(URL_A, fetches=0, error=""),), given_peers=(PEER_ADDR,)),
        ProbeFacts(connected=1),
        ProbeFacts(connected=1),  # nothing new: nothing printed
        ProbeFacts(connected=1, servers_contacted=1),
        ProbeFacts(connected=1, servers_contacted=1, small_network_wait=wait),
        ProbeFacts(connected=1, servers_contacted=1, small_network_wait=wait),
        ProbeFacts(connected=1, servers_contacted=1, nat_status="public"),
    ]
    state: ProgressState | None = None
    printed = []
    for facts in steps:
        state, lines = progress_lines(state, facts)
        printed.append(lines)
    assert printed == [
        [f"probe: fetching peers from {URL_A}; dialing 1 peer given with --peer"],
        ["probe: connected to 1 peer"],
        [],
        ["probe: probing: asked 1 AutoNAT server to dial us back"],
        ["probe: only 1 AutoNAT server of the 2 a verdict needs: waiting 5 s for more"],
        [],
        ["probe: verdict public"],
    ]


class _FakeTerminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_goes_to_a_terminal_only() -> None:
    terminal, pipe = _FakeTerminal(True), _FakeTerminal(False)
    assert progress_stream(terminal) is terminal
    assert progress_stream(pipe) is None
    for stream in (terminal, pipe):
        printer = ProgressPrinter(progress_stream(stream))
        printer.update(ProbeFacts(boot_urls=(_url(URL_A, fetches=0, error=""),)))
        printer.update(ProbeFacts(connected=3))
    assert terminal.getvalue() == (f"probe: fetching peers from {URL_A}\n"
                                   "probe: connected to 3 peers\n")
    assert pipe.getvalue() == ""


# --- the facts the node exposes ----------------------------------------------------------------


def test_bootstrap_plan_keeps_each_urls_last_outcome_and_error() -> None:
    plan = BootstrapPlan((URL_A, URL_B), target_peers=2, rng=random.Random(1))
    assert plan.handle_timeout(0.0) == [FetchUrl(URL_A), FetchUrl(URL_B)]
    plan.handle_fetch_finished(URL_A, FetchOutcome.NETWORK_ERROR, 0.1, "connection refused")
    a, b = plan.statistics().urls
    assert (a.url, a.fetches, a.succeeded, a.last_outcome, a.last_error, a.in_flight) == (
        URL_A, 1, False, FetchOutcome.NETWORK_ERROR, "connection refused", False)
    assert (b.fetches, b.last_outcome, b.in_flight) == (0, None, True)
    plan.handle_fetch_finished(URL_B, FetchOutcome.OK, 0.2)
    plan.handle_fetch_finished(URL_B, FetchOutcome.TIMEOUT, 0.3)  # no reason given: the outcome
    b = plan.statistics().urls[1]
    assert (b.fetches, b.succeeded, b.last_error) == (2, True, "timeout")


LOOPBACK = AddressPolicy(allow_loopback=True)


def _memory_config(host: str, **overrides: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **overrides)


async def test_a_peer_id_mismatch_is_a_warning_and_a_recorded_failure(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60), capture_logs() as logs:
        async with open_node(_memory_config("127.0.2.1"),
                             transport=net.transport("127.0.2.1")) as server:
            wrong = server.listen_addrs[0].with_peer_id(OTHER)
            config = _memory_config("127.0.2.2", peers=(str(wrong),))
            async with open_node(config, transport=net.transport("127.0.2.2")) as client:
                while not client.statistics().dialer.failing:
                    await trio.sleep(0.1)
                [failure] = client.statistics().dialer.failing
                await client.connect(server.listen_addrs[0])  # the right id: connects
                after = client.statistics().dialer.failing
    assert failure.peer == OTHER and failure.addr == wrong and failure.peer_id_mismatch
    assert f"dialed {OTHER}" in failure.reason and str(server.peer_id) in failure.reason
    assert [f.peer for f in after] == [OTHER]  # still failing; the server connected
    warnings = [e for e in logs if e["event"] == "dial failed: peer id mismatch"]
    assert warnings and warnings[0]["log_level"] == "warning"
    assert warnings[0]["addr"] == str(wrong)


async def test_a_failed_peer_that_connects_is_no_longer_failing(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(dial_filter=lambda source, destination: (
        "refused" if blocked else None))
    blocked = True
    with trio.fail_after(60):
        async with open_node(_memory_config("127.0.3.1"),
                             transport=net.transport("127.0.3.1")) as server:
            config = _memory_config("127.0.3.2", peers=(str(server.listen_addrs[0]),),
                                    reconnect_initial=1.0)
            async with open_node(config, transport=net.transport("127.0.3.2")) as client:
                while not client.statistics().dialer.failing:
                    await trio.sleep(0.1)
                [failure] = client.statistics().dialer.failing
                blocked = False
                await client.wait_for(lambda s: bool(s.connected_peers))
                after = client.statistics().dialer.failing
    assert failure.peer == server.peer_id and not failure.peer_id_mismatch
    assert after == ()


async def test_one_server_small_network_wait_is_logged_and_exposed(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(60), capture_logs() as logs:
        async with open_node(_memory_config("127.0.4.1"),
                             transport=net.transport("127.0.4.1")) as server, \
                open_node(_memory_config("127.0.4.9", autonat_server=False),
                          transport=net.transport("127.0.4.9")) as client:  # one prober
            await client.connect(server.listen_addrs[0])
            while client.statistics().small_network_wait is None:
                await trio.sleep(0.05)
            waiting = client.statistics()
            started = trio.current_time()
            snap = await client.wait_for(lambda s: s.nat_status != "unknown")
            decided = trio.current_time()
            done = client.statistics()
    wait = waiting.small_network_wait
    assert wait is not None and (wait.servers, wait.threshold, wait.wait_s) == (1, 2, 5.0)
    assert waiting.servers_available == 1 and waiting.probe_candidates >= 1
    assert snap.nat_status == "public" and 4.0 <= decided - started <= 5.5
    assert done.small_network_wait is None
    assert done.servers_contacted == (server.peer_id,) == done.servers_answered
    events = [(e["event"], e["log_level"]) for e in logs if e.get("actor") == "autonat-probe"
              and "wait" in e["event"]]
    assert events == [
        ("few AutoNAT servers: waiting for more before they may decide alone", "info"),
        ("small-network wait over", "info")]
    start = next(e for e in logs if e["event"].startswith("few AutoNAT servers"))
    assert (start["servers"], start["threshold"], start["wait_s"]) == (1, 2, 5.0)


# --- the command: failures exit at once, with a reason ------------------------------------------

_HEAD = b"HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: %d\r\nContent-Type: %s\r\n\r\n"
_HTML = b"<!doctype html><html><body>It works!</body></html>"
_PAGES = {
    b"/500": _HEAD % (b"500 Internal Server Error", 2, b"application/json") + b"{}",
    b"/html": _HEAD % (b"200 OK", len(_HTML), b"text/html") + _HTML,
}
PROBE_LIMIT = 60.0
"""The ``--timeout`` of the failing probes: they must end long before it."""
WALL_LIMIT = 20.0
"""How long a failing probe may take as a process (interpreter start included)."""


async def _serve_page(stream: trio.SocketStream) -> None:
    try:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            head += chunk
        await stream.send_all(_PAGES[head.split(b" ", 2)[1]])
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def _failing_probe(tmp_path: Path, *flags: str) -> tuple[dict[str, Any], str, float]:
    started = time.monotonic()
    out = await _run(tmp_path, "probe", *flags, "--allow-loopback", "--json",
                     "--timeout", str(PROBE_LIMIT), "--listen", "/ip4/127.0.87.1/tcp/0/ws",
                     timeout=WALL_LIMIT + 10)
    wall = time.monotonic() - started
    assert out.returncode == 2, (out.stdout, out.stderr)
    result = _check_probe_shape(out)
    assert result["nat_status"] == "unknown" and result["servers"] == []
    assert result["servers_contacted"] == []
    assert result["elapsed_s"] < 10, result
    assert wall < WALL_LIMIT, wall
    assert "probe:" not in out.stderr  # no progress lines: stderr is not a terminal
    return result, out.stderr, wall


@pytest.mark.parametrize("case", ["dead", "500", "html"])
async def test_probe_with_only_failing_boot_urls_exits_at_once_with_a_reason(
        tmp_path: Path, case: str) -> None:
    with trio.fail_after(WALL_LIMIT + 20), trio.socket.socket() as dead:
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, _serve_page, 0,
                                                     host="127.0.87.5"))
            await dead.bind(("127.0.87.6", 0))  # bound, never listening: refused
            urls = {"dead": f"http://127.0.87.6:{_closed_port(dead)}/status",
                    "500": f"http://127.0.87.5:{listener.socket.getsockname()[1]}/500",
                    "html": f"http://127.0.87.5:{listener.socket.getsockname()[1]}/html"}
            result, stderr, _ = await _failing_probe(tmp_path, "--boot-url", urls[case])
            nursery.cancel_scope.cancel()
    expected = {"dead": "connection refused", "500": "HTTP 500 Internal Server Error",
                "html": "not valid JSON"}[case]
    assert result["reason"].startswith(f"every boot URL failed: {urls[case]}: "), result
    assert expected in result["reason"], result["reason"]
    assert "bootstrap fetch failed" in stderr


async def test_probe_with_a_wrong_peer_id_exits_at_once_naming_the_mismatch(
        tmp_path: Path) -> None:
    with trio.fail_after(WALL_LIMIT + 20):
        async with open_node(_config("127.0.87.2")) as node:
            wrong = node.listen_addrs[0].with_peer_id(OTHER)
            result, stderr, _ = await _failing_probe(tmp_path, "--peer", str(wrong))
    assert result["reason"] == (f"--peer dial failed: peer id mismatch at {wrong}: dialed "
                                f"{OTHER} but the peer authenticated as {node.peer_id}")
    [warning] = [line for line in stderr.splitlines() if "peer id mismatch" in line]
    assert "warning" in warning and f"{wrong.host}/tcp/{wrong.port}/" in warning


async def test_probe_that_hears_nothing_waits_out_the_timeout_with_a_reason(
        tmp_path: Path) -> None:
    """A boot server that accepts but never answers is not a dead end before --timeout."""
    with trio.fail_after(40), trio.socket.socket() as silent:
        await silent.bind(("127.0.87.7", 0))
        silent.listen()  # the kernel accepts; nobody ever reads or answers
        url = f"http://127.0.87.7:{_closed_port(silent)}/status"
        out = await _run(tmp_path, "probe", "--boot-url", url, "--allow-loopback", "--json",
                         "--timeout", "3", "--listen", "/ip4/127.0.87.8/tcp/0/ws")
    assert out.returncode == 2, out.stderr
    result = _check_probe_shape(out)
    assert 2.9 <= result["elapsed_s"] < 10
    assert result["reason"] == "no AutoNAT server reached: no peer connected"


# --- the command: a verdict, with progress on a terminal ----------------------------------------


def _run_with_terminal_stderr(argv: list[str], env: dict[str, str],
                              limit: float) -> tuple[int, str, str]:
    """Run ``argv`` with stderr on a pseudo-terminal: (exit status, stdout, terminal text)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=slave, env=env)
    finally:
        os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + limit
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"still running after {limit} s: {seen.decode()}")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert process.stdout is not None
        stdout = process.stdout.read()
        status = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
        os.close(master)
        if process.stdout is not None:
            process.stdout.close()
    return status, stdout.decode(), seen.decode(errors="replace").replace("\r\n", "\n")


async def test_successful_probe_on_a_terminal_shows_progress_and_one_json(
        tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with _boot_cluster("88") as (boots, url):
            argv = [*AUTONAT, "probe", "--boot-url", url, "--allow-loopback", "--json",
                    "--timeout", "20", "--listen", "/ip4/127.0.88.9/tcp/0/ws"]
            status, stdout, terminal = await trio.to_thread.run_sync(
                _run_with_terminal_stderr, argv, _env(tmp_path), 45.0)
    assert status == 0, (stdout, terminal)
    out = subprocess.CompletedProcess(argv, status, stdout, terminal)
    result = _check_probe_shape(out)  # stdout: exactly one JSON object
    assert result["nat_status"] == "public" and result["reason"] is None
    assert result["servers"] and set(result["servers"]) <= set(result["servers_contacted"])
    assert set(result["servers_contacted"]) <= {str(b.peer_id) for b in boots}
    progress = [line for line in terminal.splitlines() if line.startswith("probe: ")]
    assert progress[0] == f"probe: fetching peers from {url}", terminal
    assert any(line.startswith("probe: connected to ") for line in progress), terminal
    assert any(line.startswith("probe: probing: asked ") for line in progress), terminal
    assert "probe: verdict public" in progress, terminal
    assert progress[-1].startswith("probe: done after ") and progress[-1].endswith(
        ": public"), terminal
    assert json.loads(stdout) == result


async def test_probe_with_one_boot_node_shows_the_wait_and_skips_the_mapping_grace(
        tmp_path: Path) -> None:
    """One server: the 5 s small-network wait is announced; no second observer can come,
    so the 2 s MAPPING_GRACE is not spent (before, such a probe took 7 s or more)."""
    with trio.fail_after(60):
        async with _boot_cluster("88", count=1) as (_, url):
            argv = [*AUTONAT, "probe", "--boot-url", url, "--allow-loopback", "--json",
                    "--timeout", "20", "--listen", "/ip4/127.0.88.8/tcp/0/ws"]
            status, stdout, terminal = await trio.to_thread.run_sync(
                _run_with_terminal_stderr, argv, _env(tmp_path), 45.0)
    assert status == 0, (stdout, terminal)
    result = _check_probe_shape(subprocess.CompletedProcess(argv, status, stdout, terminal))
    assert result["nat_status"] == "public" and result["nat_mapping"] == "unknown"
    assert len(result["servers"]) == 1 and result["servers"] == result["servers_contacted"]
    progress = [line for line in terminal.splitlines() if line.startswith("probe: ")]
    assert ("probe: only 1 AutoNAT server of the 2 a verdict needs: waiting 5 s for more"
            in progress), terminal
    assert not any("NAT mapping" in line for line in progress), terminal  # grace skipped
    assert 4.5 <= result["elapsed_s"] < 7.0, result
