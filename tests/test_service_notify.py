"""systemd's notify protocol: the sans-io decisions, the sender, and a real daemon.

The daemon test is what systemd sees: ``autonat node`` started with
``NOTIFY_SOCKET`` pointing at a unix datagram socket this test listens on
(in its tmp dir) and ``WATCHDOG_USEC`` set; it must say ``READY=1`` (with a
``STATUS=``), keep sending ``WATCHDOG=1`` and say ``STOPPING=1`` on SIGTERM.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from actors import MemoryNetwork, open_node
from actors.runtime import ChildSpec, Restart, ServiceNotifier, Supervisor
from actors.surfaces._service import run_service_notify
from protocols import AddressPolicy, Keypair, Lifecycle, NodeConfig, NodeSnapshot, WsAddress
from protocols.node import (
    StatusThrottle,
    encode_notify,
    notify_address,
    status_key,
    status_text,
    watchdog_interval,
)
from tests.supervisor_support import EXACT, Script

ME = Keypair.generate().peer_id
SNAP = NodeSnapshot(peer_id=ME, lifecycle=Lifecycle.BOOTSTRAPPING, lifecycle_since=0.0,
                    listen_addrs=(), peers=(), connections=(), observed_addrs=(),
                    started_at=0.0, updated_at=0.0, revision=1)
_SCRIPT = Path(sys.executable).with_name("autonat")
AUTONAT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "actors.cli"]


# --- sans-io --------------------------------------------------------------------------------


def test_notify_address_paths_and_abstract_names() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@autonat/notify") == b"\0autonat/notify"
    for bad in ("relative/path", "@", "x"):
        with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
            notify_address(bad)


def test_encode_notify_is_newline_separated_assignments() -> None:
    assert encode_notify(READY="1", STATUS="up") == b"READY=1\nSTATUS=up\n"
    with pytest.raises(ValueError, match="one line"):
        encode_notify(STATUS="two\nlines")
    with pytest.raises(ValueError):
        encode_notify()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid() -> None:
    assert watchdog_interval("3000000", None, 42) == 1.5
    assert watchdog_interval("3000000", "42", 42) == 1.5
    assert watchdog_interval("3000000", "43", 42) is None  # meant for another process
    assert watchdog_interval(None, None, 42) is None
    assert watchdog_interval("0", None, 42) is None
    with pytest.raises(ValueError, match="WATCHDOG_USEC"):
        watchdog_interval("3s", None, 42)
    with pytest.raises(ValueError, match="WATCHDOG_PID"):
        watchdog_interval("3000000", "me", 42)


def test_status_text_names_lifecycle_verdict_and_peers() -> None:
    addr = WsAddress.parse("/ip4/198.51.100.7/tcp/4001/ws")
    snap = replace(SNAP, lifecycle=Lifecycle.CONNECTED, nat_status="public",
                   reachable_addrs=(addr,))
    text = status_text(snap)
    assert text.startswith("connected: NAT public (mapping unknown, filtering unknown), 0 peers")
    assert str(addr) in text and "\n" not in text


def test_status_throttle_sends_verdict_changes_at_most_once_per_interval() -> None:
    throttle = StatusThrottle(5.0)
    assert throttle.poll(0.0) is None  # nothing offered yet
    throttle.offer(SNAP)
    assert throttle.poll(0.0) == status_text(SNAP)  # the first one at once
    throttle.offer(replace(SNAP, revision=2, updated_at=1.0))  # same verdict: nothing new
    assert throttle.due() is None and throttle.poll(1.0) is None
    public = replace(SNAP, nat_status="public")
    throttle.offer(public)
    assert throttle.due() == 5.0 and throttle.poll(4.9) is None
    throttle.offer(replace(SNAP, nat_status="private"))  # folded: the last one wins
    assert throttle.poll(5.0) == status_text(replace(SNAP, nat_status="private"))
    throttle.offer(replace(SNAP, nat_status="private", revision=9))
    assert throttle.due() is None
    assert status_key(public) != status_key(SNAP)


# --- the sender --------------------------------------------------------------------------------


def _listener(path: Path | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path) if isinstance(path, Path) else path)
    sock.setblocking(False)
    return sock


async def _receive(sock: socket.socket, timeout: float = 5.0) -> str:
    with trio.fail_after(timeout):
        await trio.lowlevel.wait_readable(sock)
        return sock.recv(4096).decode()


async def test_notifier_sends_to_a_path_and_to_an_abstract_name(tmp_path: Path) -> None:
    with _listener(tmp_path / "notify") as path_sock:
        notifier = ServiceNotifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert notifier is not None and notifier.watchdog is None
        assert notifier.send(READY="1")
        assert await _receive(path_sock) == "READY=1\n"
        notifier.close()
    name = f"trio-autonat-test-{os.getpid()}"
    with _listener(b"\0" + name.encode()) as abstract:
        notifier = ServiceNotifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None
        notifier.send(STATUS="hello")
        assert await _receive(abstract) == "STATUS=hello\n"
        notifier.close()
    assert ServiceNotifier.from_environ({}) is None


async def test_a_vanished_receiver_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = ServiceNotifier(str(tmp_path / "nobody"))
    assert notifier.send(READY="1") is False
    assert (notifier.sent, notifier.failed) == (0, 1)
    notifier.close()


async def test_watchdog_pings_only_while_healthy(tmp_path: Path) -> None:
    healthy = True
    with _listener(tmp_path / "notify") as sock:
        notifier = ServiceNotifier(str(tmp_path / "notify"), watchdog=0.02)
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run_watchdog, lambda: healthy)
            for _ in range(3):
                assert await _receive(sock) == "WATCHDOG=1\n"
            healthy = False
            await trio.sleep(0.05)
            while True:  # drain what was sent before the change
                try:
                    sock.recv(4096)
                except BlockingIOError:
                    break
            await trio.sleep(0.1)  # five intervals: no ping
            with pytest.raises(BlockingIOError):
                sock.recv(4096)
            healthy = True
            assert await _receive(sock) == "WATCHDOG=1\n"
            nursery.cancel_scope.cancel()
        notifier.close()


async def test_supervisor_is_unhealthy_once_a_child_failed_for_good() -> None:
    keeper, crasher = Script([]), Script(["raise"])
    sup = Supervisor([ChildSpec("keeper", keeper.run),
                      ChildSpec("crasher", crasher.run, restart=Restart.TEMPORARY)],
                     backoff=EXACT)
    assert not sup.healthy()  # not running
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with trio.fail_after(5):
            while sup.healthy():
                await trio.sleep(0.01)
        assert sup.statistics().running  # still running, but a child is gone: unhealthy
        nursery.cancel_scope.cancel()


async def test_supervisor_is_healthy_while_its_children_run() -> None:
    keeper = Script([])
    sup = Supervisor([ChildSpec("keeper", keeper.run)], backoff=EXACT)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert sup.healthy()
        nursery.cancel_scope.cancel()


# --- a real daemon ------------------------------------------------------------------------------


async def test_node_daemon_notifies_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTONAT_", "NOTIFY_", "WATCHDOG_"))}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "WATCHDOG_USEC": "200000"}
    args = ["node", "--listen", "/ip4/127.0.79.1/tcp/0/ws", "--http", "127.0.79.1:0",
            "--data-dir", str(tmp_path / "data"), "--allow-loopback"]
    received: list[str] = []
    with _listener(tmp_path / "notify") as sock, (tmp_path / "stderr").open("wb") as stderr:
        process = await trio.lowlevel.open_process([*AUTONAT, *args], env=env,
                                                   stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            with trio.fail_after(30):
                received.append(await _receive(sock, 30))
                while sum(m == "WATCHDOG=1\n" for m in received) < 2:
                    received.append(await _receive(sock))
                process.terminate()
                while "STOPPING=1\n" not in received:
                    received.append(await _receive(sock))
                assert await process.wait() == 0
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
    ready = received[0].splitlines()
    assert ready[0] == "READY=1", (received, (tmp_path / "stderr").read_text())
    assert ready[1].startswith("STATUS=") and "NAT unknown" in ready[1]
    assert received.index("STOPPING=1\n") > received.index("WATCHDOG=1\n")


# --- in process: STATUS follows the verdict ------------------------------------------------------


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


async def test_status_follows_the_verdict_and_stopping_ends_it(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    policy = AddressPolicy(allow_loopback=True)

    def config(host: str) -> NodeConfig:
        return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=policy,
                                        http_listen="")

    with _listener(tmp_path / "notify") as sock, trio.fail_after(120):
        async with AsyncExitStack() as servers:
            a, b = [await servers.enter_async_context(
                open_node(config(host), transport=net.transport(host)))
                for host in ("127.0.1.1", "127.0.1.2")]
            await b.connect(a.listen_addrs[0])
            async with open_node(config("127.0.1.9"), transport=net.transport("127.0.1.9")) as c:
                notifier = ServiceNotifier(str(tmp_path / "notify"))
                async with trio.open_nursery() as nursery:
                    await nursery.start(partial(run_service_notify, c, notifier,
                                                status_interval=1.0))
                    for server in (a, b):
                        await c.connect(server.listen_addrs[0])
                    await c.wait_for(lambda s: s.nat_status == "public")
                    await trio.sleep(2.0)  # past the throttle's interval
                    nursery.cancel_scope.cancel()
                notifier.close()
        messages = _drain(sock)
    assert messages[0].startswith("READY=1\nSTATUS=") and "NAT unknown" in messages[0]
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any("NAT public" in m for m in statuses), messages
    assert messages[-1] == "STOPPING=1\n"
    assert "WATCHDOG=1\n" not in messages  # no WATCHDOG_USEC: no pings
