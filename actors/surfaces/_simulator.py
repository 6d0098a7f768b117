"""``autonat sim``: real nodes behind modelled NATs on the simulated internet.

Theory of operation
-------------------
:func:`simulate` runs one :class:`~protocols.sim.SimScenario` in a fresh
``trio.run`` on ``MockClock(autojump_threshold=0)``: whenever every task
waits, the clock jumps to the next deadline, so a run costs only the CPU its
nodes use and simulated minutes pass in wall seconds.

The world (:func:`plan_world`): boot node ``i`` at ``10.0.0.i`` with its
dial-back source ``10.0.1.i`` (unless the scenario turns ``dialback_source``
off); host ``i`` either public (its own ``/24``
under ``10.16.0.0/12``, where a firewall may sit in front of it) or at the
private ``172.16.0.0/12`` address ``172.16.x.y`` behind a NAT box whose
public IP is such a ``/24`` of its own. The address policy calls
``10.0.0.0/8`` public (``public_networks``), so ``172.16/12`` stays private,
as on the real internet. Every node is the real thing - ``open_node`` with
all its actors, the real codec and handshake - built from the shipped
profiles (``config/boot.toml`` for boot nodes, ``config/default.toml`` for
hosts) with only what a simulation must change: addresses, no HTTP socket
(the HTTP API app is reached over the simulated internet, below), no STUN
or UDP (the simulated internet carries TCP only), the relay service only for
the punch matrix, no disk.

Bootstrapping: each boot node's real HTTP API app serves ``/status`` on the
simulated internet and each host's real BootstrapFetcher fetches every boot
node's document through it (:mod:`actors.surfaces._sim_bootstrap`), so the
hosts know only what the documents list and the boot nodes' ``/status``
load is counted; with the scenario's ``status_bootstrap`` off, hosts get
the boot nodes' addresses as ``peers`` instead. Boot nodes know one another
as ``peers``. With more than :data:`BOOT_LIST` boot nodes a host gets
:data:`BOOT_LIST` of their addresses when they are handed over (a host that
bootstraps through ``/status`` fetches every boot URL), the list rotated by its index
(:func:`boot_list`), so the hosts spread over the boot nodes as they would
over different configurations instead of all asking the first few. With
``punch_matrix`` on, boot nodes relay and, once the hosts converged, private
hosts connect through relays and hole-punch (:mod:`actors.surfaces._sim_punch`);
the report gains ``punch_matrix``.

The run: hosts start in index order, the scenario's ``start_spacing``
(:data:`START_SPACING` by default) apart; each records when its
``nat_status`` first leaves ``unknown``, and every value it takes after
that. Faults - lying or vanishing boot nodes, a boot node killed, churn - are
:mod:`._sim_events`' (and :mod:`._sim_adversary`'s). The run ends when every
host has a verdict and no host's (status, mapping, filtering) has changed
for :data:`QUIET` seconds - not before its faults and ``run_for`` are over -
or at the scenario's deadline. Then every host's snapshot and statistics are
graded (:func:`protocols.sim.build_report`, plus the faults' parts), and wall
time and peak memory (``ru_maxrss``) are added.

Garbage collection: a run builds thousands of nodes whose objects live until
its end, and CPython's full (generation 2) collections walk every one of them
each time the heap has grown by a quarter - at 300 hosts they took a third of
the run's CPU. :func:`_batch_gc` raises the collection thresholds for the run
(restoring them after): young garbage is still collected, every
:data:`GC_THRESHOLDS` ``[0]`` allocations, but the long-lived heap is not
walked again and again. Only reference cycles are affected (the rest is freed
by reference counting as always), so what the nodes do is unchanged.

Determinism: keys, node generators, NAT ports and loss come from generators
seeded by the scenario's seed, and Trio's scheduler - which shuffles ready
tasks with its own module-level generator - is put in the deterministic
mode Hypothesis uses (:func:`_seed_scheduler`; private Trio attributes), so
the same seed gives the same report, in one process or in two.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import ipaddress
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
import trio.testing

from protocols import Keypair, NodeConfig, NodeSnapshot, build_node_config, load_config_text
from protocols.sim import (
    LISTEN_PORT,
    BootLoad,
    HostOutcome,
    SimScenario,
    build_report,
    nat_type,
)

from ..node import Node, open_node
from ..transport import SimNetwork
from ._cli_settings import profile_text
from ._http_api import HttpApi
from ._sim_bootstrap import StatusServers
from ._sim_events import (
    BootRun,
    adversary_for,
    follow_verdicts,
    robustness_sections,
    run_boot,
    run_churn,
    run_faults,
    settle_not_before,
)
from ._sim_progress import HostProgress, SimProgress, report_progress
from ._sim_punch import run_punch_matrix

__all__ = ["BOOT_LIST", "QUIET", "START_SPACING", "SimHost", "boot_list", "plan_world",
           "simulate"]

PUBLIC_NETWORKS = ("10.0.0.0/8",)
START_SPACING = 0.01
"""Simulated seconds between two hosts' starts, unless the scenario says otherwise
(``SimScenario.start_spacing``'s default)."""
BOOT_LIST = 4
"""Boot nodes handed to one host at most: a few, as a real host starts from a few
boot nodes and learns the rest of the network from its peers."""
GC_THRESHOLDS = (50_000, 20, 1_000)
"""``gc.set_threshold`` during a run (module docstring): young collections every 50,000
allocations instead of 700; full ones practically never."""
STOP_BATCH = 100
"""Hosts stopped together when a run ends (:func:`_stop`)."""
QUIET = 20.0
"""With every verdict in, the run ends after this long without a change."""
_FIRST_PUBLIC = int(ipaddress.IPv4Address("10.16.0.1"))
_FIRST_PRIVATE = int(ipaddress.IPv4Address("172.16.0.2"))


@dataclass(frozen=True)
class SimHost:
    """Where host ``index`` of kind ``kind`` lives: ``ip`` (it listens there) and its
    public ``face`` (the same for a public host)."""

    index: int
    kind: str
    ip: str
    face: str


def plan_world(scenario: SimScenario) -> tuple[list[tuple[str, str]], list[SimHost]]:
    """Boot nodes' (IP, dial-back IP) and every host's addresses (module docstring)."""
    boots = [(f"10.0.0.{i + 1}", f"10.0.1.{i + 1}") for i in range(scenario.boot_nodes)]
    return boots, [sim_host(index, kind) for index, kind in enumerate(scenario.host_kinds())]


def sim_host(index: int, kind: str) -> SimHost:
    """Host ``index`` of NAT type ``kind`` (a churned-in host gets a fresh index)."""
    face = str(ipaddress.IPv4Address(_FIRST_PUBLIC + 256 * index))
    behaviour = nat_type(kind).behaviour
    private = behaviour is not None and behaviour.translates
    ip = str(ipaddress.IPv4Address(_FIRST_PRIVATE + index)) if private else face
    return SimHost(index, kind, ip, face)


def boot_list(addrs: list[str], index: int) -> list[str]:
    """The boot addresses host ``index`` starts from (module docstring)."""
    if len(addrs) <= BOOT_LIST:
        return addrs
    first = index * BOOT_LIST % len(addrs)
    return [addrs[(first + k) % len(addrs)] for k in range(BOOT_LIST)]


def _profile(name: str, **overrides: object) -> NodeConfig:
    text, source = profile_text(name)
    return build_node_config(load_config_text(text, source=f"profile {source}"), {
        "http_listen": "", "stun_listen": "", "udp_discovery": False, "relay_service": False,
        "public_networks": list(PUBLIC_NETWORKS), **overrides})


def _boot_config(ip: str, alt: str | None, peers: list[str], hosts: int,
                 relay: bool = False) -> NodeConfig:
    return _profile("boot", listen=[f"/ip4/{ip}/tcp/{LISTEN_PORT}/ws"], peers=peers,
                    dialback_source=alt, max_connections=max(512, hosts + 64),
                    relay_service=relay)


@functools.cache
def _host_template() -> NodeConfig:
    """The hosts' profile, parsed and validated once: only addresses differ per host."""
    return _profile("default")


def _host_config(host: SimHost, peers: list[str], urls: tuple[str, ...] | list[str] = (),
                 serve: bool = True) -> NodeConfig:
    """Equal to ``_profile("default", listen=..., peers=..., boot_urls=...,
    autonat_server=...)`` (a test checks), at a fraction of the cost: these are fields
    that ``replace`` validates again, and no other setting derives from them here."""
    template = _host_template()
    return dataclasses.replace(
        template, peers=tuple(peers), listen=(f"/ip4/{host.ip}/tcp/{LISTEN_PORT}/ws",),
        autonat_server=serve,
        bootstrap=dataclasses.replace(template.bootstrap, boot_urls=tuple(urls)))


@dataclass
class _HostRun:
    host: SimHost
    node: Node | None = None
    started: float = 0.0
    verdict_after: float | None = None
    history: list[str] = field(default_factory=list)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def kind(self) -> str:
        return self.host.kind

    def nat_status(self) -> str:
        return self.node.snapshot().nat_status if self.node else "unknown"

    def leave(self) -> None:
        self.scope.cancel()
        self.node = None  # a departed host's node can go (its history stays)


def _profile_of(snap: NodeSnapshot) -> tuple[str, str, str]:
    return (snap.nat_status, snap.nat_mapping, snap.nat_filtering)


async def _run_host(net: SimNetwork, run: _HostRun, peers: list[str], rng: random.Random,
                    latency: float, serve: bool, servers: StatusServers, urls: list[str],
                    task_status: trio.TaskStatus[None]) -> None:
    host = run.host
    behaviour = nat_type(host.kind).behaviour
    net.add_host(host.ip, behaviour=behaviour, public_ip=host.face, latency=latency)
    keypair, node_rng = Keypair.from_seed(rng.randbytes(32)), random.Random(rng.getrandbits(64))
    try:
        with run.scope:  # cancelled: the host leaves (churn), or the run ends (_stop)
            async with open_node(_host_config(host, peers, urls, serve),
                                 transport=net.transport(host.ip), keypair=keypair,
                                 rng=node_rng,
                                 http_client_factory=servers.client_factory(host.ip)) as node:
                run.node, run.started = node, trio.current_time()
                task_status.started()
                await node.wait_for(lambda snap: snap.nat_status != "unknown")
                run.verdict_after = trio.current_time() - run.started
                await follow_verdicts(node, run.history)
    finally:
        run.done.set()


async def _stop(net: SimNetwork, runs: list[_HostRun]) -> None:
    """End the run: switch the network off, then stop the hosts, :data:`STOP_BATCH` at
    a time, each through its own scope.

    All at once, every task of the network would be cancelled together, and the
    cancellations (an exception and a traceback per task) and the unwinding
    of every node would all be in memory at the same moment: a sixth more than
    the network's peak at 1000 hosts. With the network off, a stopping host's
    peers do not see its connections end, so a batch's shutdown stays its own
    and the hosts still running do nothing meanwhile."""
    net.halt()
    for start in range(0, len(runs), STOP_BATCH):
        batch = runs[start:start + STOP_BATCH]
        for run in batch:
            run.scope.cancel()
        for run in batch:
            await run.done.wait()


async def _until_settled(runs: list[_HostRun], deadline: float) -> None:
    last: list[tuple[str, str, str]] = []
    changed = trio.current_time()
    with trio.move_on_at(deadline):
        while True:
            await trio.sleep(1.0)
            now = [_profile_of(r.node.snapshot()) if r.node else ("", "", "") for r in runs]
            if now != last:
                last, changed = now, trio.current_time()
            done = all(r.verdict_after is not None for r in runs)
            if done and trio.current_time() - changed >= QUIET:
                return


def _outcome(run: _HostRun) -> HostOutcome:
    assert run.node is not None
    snap = run.node.snapshot()
    probes = sum(run.node.statistics().probes.values())
    return HostOutcome(run.host.kind, *_profile_of(snap), run.verdict_after, probes,
                       snap.hairpinning, tuple(run.history))


def _boot_load(node: Node, api: HttpApi) -> BootLoad:
    server = node.statistics().autonat_server
    refused = sum(count for key, count in server.answered
                  if key.startswith(("E_REQUEST_REJECTED/", "E_DIAL_REFUSED/")))
    return BootLoad(node.statistics().dialer.connections, server.total_answered, refused,
                    api.statistics().status_served)


def _listens(net: SimNetwork, ip: str) -> bool:
    return net.listener_at(ip, LISTEN_PORT) is not None


def _status_fetches(runs: list[_HostRun], urls: list[str]) -> list[dict[str, int]]:
    """Per boot URL: the hosts' finished fetches and those still in flight."""
    counts = {url: {"finished": 0, "in_flight": 0} for url in urls}
    for run in runs:
        for status in run.node.statistics().bootstrap.urls if run.node else ():
            if status.url in counts:
                counts[status.url]["finished"] += status.fetches
                counts[status.url]["in_flight"] += status.in_flight
    return [counts[url] for url in urls]


def _reading(scenario: SimScenario, runs: list[_HostRun], boots: list[Node],
             apis: list[HttpApi], t0: float, final: bool = False) -> SimProgress:
    """What :mod:`._sim_progress` passes a live view (cheap: snapshots, few statistics)."""
    hosts = [(r.host.kind, r.node.snapshot()) for r in runs if r.node]
    snaps = [snap for _, snap in hosts] + [b.snapshot() for b in boots]
    served = sum(r.node.probes_served() for r in runs if r.node)
    return SimProgress(
        scenario.name, scenario.seed, trio.current_time() - t0,
        tuple(r.host.kind for r in runs),
        tuple(HostProgress(kind, *_profile_of(snap)) for kind, snap in hosts),
        tuple(_boot_load(b, a) for b, a in zip(boots, apis, strict=True)),
        sum(len(snap.connected_peers) for snap in snaps) // 2,
        served + sum(b.probes_served() for b in boots), final)


async def run_scenario(scenario: SimScenario, progress: Callable[[str], None] | None = None,
                       observe: Callable[[SimProgress], None] | None = None
                       ) -> dict[str, Any]:
    """Build the world, run it until settled or the deadline, grade it (simulated time);
    ``observe``: see :mod:`._sim_progress`."""
    rng = random.Random(scenario.seed)
    net = SimNetwork(seed=rng.getrandbits(64), loss=scenario.loss)
    latency = scenario.latency_ms / 1000.0
    boot_ips, hosts = plan_world(scenario)
    keys = [Keypair.from_seed(rng.randbytes(32)) for _ in boot_ips]
    addrs = [f"/ip4/{ip}/tcp/{LISTEN_PORT}/ws/p2p/{key.peer_id}"
             for (ip, _), key in zip(boot_ips, keys, strict=True)]
    t0 = trio.current_time()
    servers, apis, urls = StatusServers(net), [], []
    async with trio.open_nursery() as nursery:
        boots: list[BootRun] = []
        for i, ((ip, alt), key) in enumerate(zip(boot_ips, keys, strict=True)):
            net.add_host(ip, latency=latency)
            net.add_host(alt, latency=latency)
            config = _boot_config(ip, alt if scenario.dialback_source else None, addrs[:i],
                                  len(hosts), relay=scenario.punch_matrix)
            boots.append(await nursery.start(run_boot, i, config, net.transport(ip), key,
                                             random.Random(rng.getrandbits(64)),
                                             adversary_for(scenario, i)))
            apis.append(HttpApi(boots[-1].node, version="sim"))
            urls.append(servers.add(ip, apis[-1], alive=partial(_listens, net, ip)))
        host_peers, host_urls = ([], urls) if scenario.status_bootstrap else (addrs, [])
        if progress:
            progress(f"{len(boots)} boot nodes up; starting {len(hosts)} hosts")
        runs = [_HostRun(host) for host in hosts]
        everyone = list(runs)
        boot_nodes = [b.node for b in boots]

        async def spawn(kind: str) -> _HostRun:
            run = _HostRun(sim_host(len(everyone), kind))
            everyone.append(run)
            await nursery.start(_run_host, net, run, boot_list(host_peers, run.host.index),
                                random.Random(rng.getrandbits(64)), latency,
                                scenario.host_servers, servers,
                                host_urls)
            return run

        if observe:
            nursery.start_soon(report_progress,
                               lambda: _reading(scenario, runs, boot_nodes, apis, t0), observe)
        for run in runs:
            host_rng = random.Random(rng.getrandbits(64))
            await nursery.start(_run_host, net, run, boot_list(host_peers, run.host.index),
                                host_rng, latency, scenario.host_servers, servers,
                                host_urls)
            await trio.sleep(scenario.start_spacing)
        nursery.start_soon(run_faults, scenario, boots, t0)
        churn = (await run_churn(scenario.churn, runs, spawn, random.Random(rng.getrandbits(64)),
                                 t0) if scenario.churn.active else None)
        await trio.sleep_until(t0 + settle_not_before(scenario))
        await _until_settled(runs, t0 + scenario.deadline)
        simulated = trio.current_time() - t0
        report = build_report(scenario.name, scenario.seed, [_outcome(r) for r in runs],
                              [_boot_load(b, a) for b, a in zip(boot_nodes, apis, strict=True)],
                              simulated)
        report.update(robustness_sections(scenario, boots, everyone, runs, churn, t0))
        report["status_fetches"] = _status_fetches(runs, host_urls)
        if observe:
            observe(_reading(scenario, runs, boot_nodes, apis, t0, final=True))
        if scenario.punch_matrix:
            report["punch_matrix"] = await run_punch_matrix(
                [(r.host.kind, r.node) for r in runs if r.node is not None])
        await _stop(net, everyone)
        nursery.cancel_scope.cancel()  # the boot nodes and the run's helpers
    return report


def _seed_scheduler(seed: int) -> None:
    """Make Trio's scheduler repeatable, as Hypothesis' Trio plugin does: each batch of
    ready tasks is sorted by creation before the seeded shuffle, so neither the order in
    which tasks were woken (which can follow ``id()``-ordered sets and deadline
    tie-breaks) nor an unseeded generator changes a run. Private Trio attributes: on a
    Trio without them a run only loses repeatability."""
    run_module = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(run_module, "_r", None)
    if isinstance(generator, random.Random) and hasattr(
            run_module, "_ALLOW_DETERMINISTIC_SCHEDULING"):
        setattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010
        generator.seed(seed)


@contextmanager
def _batch_gc() -> Iterator[None]:
    """The run's garbage-collection thresholds (module docstring), restored after."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def simulate(scenario: SimScenario, progress: Callable[[str], None] | None = None,
             observe: Callable[[SimProgress], None] | None = None) -> dict[str, Any]:
    """Run ``scenario`` in its own ``trio.run`` (virtual time); the report, with
    ``resources``: wall and CPU seconds of the run (CPU: this process, user + system -
    the steadier figure on a shared machine) and peak resident memory of this process
    (MiB; a process's peak, so a second run in one process reports at least the first's).
    ``observe`` receives readings of the run as it goes (:mod:`._sim_progress`)."""
    _seed_scheduler(scenario.seed)
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    with _batch_gc():
        report = trio.run(run_scenario, scenario, progress, observe,
                          clock=trio.testing.MockClock(autojump_threshold=0))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_mib = after.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    report["resources"] = {"wall_s": round(time.perf_counter() - start, 2),
                           "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak_mib, 1)}
    return report
