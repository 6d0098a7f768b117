"""Fault injection on a live node over real loopback WebSockets: crash every actor, count leaks.

Theory of operation
-------------------
One process runs three boot nodes (AutoNAT servers, welcome probes on, the
first one serving ``/status`` over HTTP) and the node under test, which
bootstraps from that URL, connects to all three, is probed and reaches its
verdict; it serves its own ``/status`` on an HTTP port too. Everything is on
127.0.6.x: real TCP, WebSockets, HTTP (hypercorn, httpx), no mock clock.

Once the process is quiet (the counts below unchanged for ``QUIET_SECONDS``,
longer than an idle HTTP keep-alive connection lives), the resources are
counted: Trio tasks (the whole task tree from the root task), open file
descriptors (``/proc/self/fd``) and the connections of the node under test.
Then the drill: ``rounds`` rounds, each crashing the five actors of the node
under test (BootstrapFetcher, Dialer, IdentifyActor, AutonatProbe,
StatusTracker - children ``bootstrap``, ``dialer``, ``identify``,
``autonat``, ``status-tracker``) once each with
:meth:`Supervisor.inject_fault <actors.Supervisor.inject_fault>`, at the
supervisor's default restart intensity (5 restarts in 10 s, supervisor-wide):
injections ``spacing`` seconds apart (default 2.5 s, a quarter above the
budget's 2 s, so one real crash in a window would not escalate either). A
Dialer crash closes every connection and the next incarnation redials them; a
BootstrapFetcher crash closes its HTTP client and the next one fetches again.
In each gap the node's ``/status`` is fetched ``SAMPLES`` times over HTTP (a
fresh client each time); a sample is *ok* when it is a 200 whose document
carries the verdict from before the drill.

Afterwards the script waits (bounded) until the counts are back to the ones
from before, and prints one row per actor (injections, restarts, ``/status``
samples taken after its injections, verdict before and after) and a row for
the whole node with the resources before and after. The resources are not
split per actor because the actors take turns: each child's backoff only
resets after 10 quiet seconds, so one actor crashed 100 times in a row would
wait up to 5 s before each restart; in turns, each restart waits 0.05 s. The exit status is 0 only
when nothing leaked, no sample failed and the verdict held.

Run: ``.venv/bin/python benchmarks/fault_injection.py [--rounds 100] [--spacing 2.5]``
(at the defaults it takes about ``5 * rounds * spacing`` seconds: ~21 minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
import trio

from actors import ChildState, Node, configure_logging, open_node, serve_http
from protocols import AddressPolicy, NodeConfig

ACTORS = ("bootstrap", "dialer", "identify", "autonat", "status-tracker")
SAMPLES = 2  # /status requests per gap between two injections
QUIET_SECONDS = 12  # unchanged counts for this long make the process quiet (> keep-alive 5 s)
SETTLE_LIMIT = 120.0  # seconds to wait for quiet, before and after the drill
HTTP_TIMEOUT = 5.0
LOOPBACK = AddressPolicy(allow_loopback=True)


@dataclass(frozen=True)
class Resources:
    tasks: int
    fds: int
    connections: int


@dataclass
class Tally:
    """What one actor's injections produced."""

    crashes: int = 0
    restarts: int = 0
    status_ok: int = 0
    status_total: int = 0
    verdict_after: str = "-"


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries
                       for child in nursery.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


def resources(node: Node) -> Resources:
    return Resources(count_tasks(), len(os.listdir("/proc/self/fd")),
                     len(node.snapshot().connections))


async def settle(node: Node, want: Resources | None = None) -> Resources:
    """The counts once they equal ``want`` (or, without it, hold still); bounded."""
    readings = [resources(node)]  # one a second, the latest QUIET_SECONDS + 1
    with trio.move_on_after(SETTLE_LIMIT):
        while readings[-1] != want:
            await trio.sleep(1)
            readings = [*readings[-QUIET_SECONDS:], resources(node)]
            if want is None and len(readings) > QUIET_SECONDS and len(set(readings)) == 1:
                break
    return readings[-1]


def _config(host: str, **settings: object) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **settings)


@asynccontextmanager
async def live_network() -> AsyncIterator[tuple[Node, str]]:
    """Three boot nodes and the node under test; yields it and its ``/status`` URL."""
    async with AsyncExitStack() as stack:
        boots = [await stack.enter_async_context(open_node(
            _config(f"127.0.6.{i}", welcome_probes=True))) for i in (1, 2, 3)]
        for boot in boots[1:]:
            await boots[0].connect(boot.listen_addrs[0])
        nursery = await stack.enter_async_context(trio.open_nursery())
        host, port = await nursery.start(serve_http, boots[0], "127.0.6.1", 0)
        node = await stack.enter_async_context(open_node(_config(
            "127.0.6.9", boot_urls=(f"http://{host}:{port}/status",), target_peers=3)))
        host, port = await nursery.start(serve_http, node, "127.0.6.9", 0)
        yield node, f"http://{host}:{port}/status"
        nursery.cancel_scope.cancel()


async def get_verdict(url: str) -> str | None:
    """The ``nat_status`` of one ``GET /status``; None for anything but a 200 document."""
    try:
        with trio.fail_after(HTTP_TIMEOUT):
            async with httpx.AsyncClient(trust_env=False, timeout=HTTP_TIMEOUT) as client:
                response = await client.get(url)
        if response.status_code != 200:
            return None
        return str(response.json().get("nat_status"))
    except (httpx.HTTPError, ValueError, trio.TooSlowError):
        return None


async def wait_running(node: Node, name: str) -> None:
    with trio.fail_after(30):
        while node.supervisor.statistics().child(name).state is not ChildState.RUNNING:
            await trio.sleep(0.01)


async def drill(node: Node, url: str, verdict: str, rounds: int,
                spacing: float) -> dict[str, Tally]:
    tallies = {name: Tally() for name in ACTORS}
    restarts = {c.name: c.restarts for c in node.supervisor.statistics().children}
    for round_ in range(rounds):
        for name in ACTORS:
            await wait_running(node, name)
            node.supervisor.inject_fault(name, f"fault injection round {round_}")
            tally = tallies[name]
            for _ in range(SAMPLES):
                await trio.sleep(spacing / SAMPLES)
                seen = await get_verdict(url)
                tally.status_total += 1
                tally.status_ok += seen == verdict
                tally.verdict_after = seen or "-"
    for child in node.supervisor.statistics().children:
        tallies[child.name].crashes = child.faults_injected
        tallies[child.name].restarts = child.restarts - restarts[child.name]
    return tallies


def print_table(tallies: dict[str, Tally], verdict: str, before: Resources,
                after: Resources) -> None:
    print("| actor | crashes | restarts | /status served during (ok/total) "
          "| verdict before/after | tasks before/after | fds before/after "
          "| connections before/after |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for name, t in tallies.items():
        print(f"| {name} | {t.crashes} | {t.restarts} | {t.status_ok}/{t.status_total} "
              f"| {verdict}/{t.verdict_after} | | | |")
    total = Tally(*(sum(getattr(t, f) for t in tallies.values())
                    for f in ("crashes", "restarts", "status_ok", "status_total")))
    print(f"| whole node | {total.crashes} | {total.restarts} "
          f"| {total.status_ok}/{total.status_total} | | {before.tasks}/{after.tasks} "
          f"| {before.fds}/{after.fds} | {before.connections}/{after.connections} |")


async def main(rounds: int, spacing: float) -> int:
    started = time.monotonic()
    with trio.fail_after(5 * rounds * (spacing + 30) + 4 * SETTLE_LIMIT):
        async with live_network() as (node, url):
            snap = await node.wait_for(lambda s: s.nat_status != "unknown"
                                       and len(s.connections) == 3)
            before = await settle(node)
            tallies = await drill(node, url, snap.nat_status, rounds, spacing)
            after = await settle(node, before)
            final = await get_verdict(url)
            escalations = node.supervisor.statistics().escalations
    print_table(tallies, snap.nat_status, before, after)
    print(f"\n{rounds} rounds, injections {spacing:g} s apart, {SAMPLES} /status samples per "
          f"gap; escalations: {escalations}; final /status verdict: {final}; "
          f"{time.monotonic() - started:.0f} s in all")
    failed = sum(t.status_total - t.status_ok for t in tallies.values())
    held = final == snap.nat_status and all(t.restarts == rounds for t in tallies.values())
    return 0 if before == after and failed == 0 and held and escalations == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="crashes per actor")
    parser.add_argument("--spacing", type=float, default=2.5,
                        help="seconds between two injections (>= 2 at the default intensity)")
    args = parser.parse_args()
    configure_logging("console", level="critical")  # 500 crash tracebacks are expected
    sys.exit(trio.run(main, args.rounds, args.spacing))
