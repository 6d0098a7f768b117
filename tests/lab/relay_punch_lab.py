"""Private nodes reaching each other in the NAT lab: relay reservations, then hole punching.

Topology: :mod:`.holepunch_lab`'s two hosts behind two masquerading routers, plus
boot nodes (``autonat boot``: AutoNAT servers and relays) on the internet segment::

    boot1 198.51.100.11, boot2 198.51.100.12 --+
    hosta 192.168.1.2 -- routera (198.51.100.30) --+-- inet bridge
    hostb 192.168.2.2 -- routerb (198.51.100.31) --+

Each host runs ``autonat node`` (listen port 44000) bootstrapping from both boot
nodes: the dial-backs are dropped by the routers, so both become ``private``
and reserve on the boot nodes (``relay_addrs`` in ``/status``). Then host A
runs ``autonat connect <B's circuit address> --json`` - each run a fresh
process with a fresh key and a random listen port, so every run is a first
meeting through fresh NAT mappings: connect to the relay, relayed connection to
B, B starts the hole punch at once, both dial from their listen ports at the
moment the exchange set. :func:`connect_runs` returns the JSON of every run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .holepunch_lab import HOST_B_LAN, REPO, TwoNats, _behind_nat
from .netlab import Lab, LabCancelled, LabError, LabProcess, Namespace, autonat_argv
from .processes import RunningNode, boot_argv, http_get_json, policy_flags, wait_for_status
from .topologies import (
    _ADDRESS_RESTRICTED_NFT,
    LISTEN_PORT,
    BootSite,
    Internet,
    _internet_with_boots,
)

ROUTER_A_WAN, ROUTER_B_WAN = "198.51.100.30", "198.51.100.31"
NODE_HTTP = "127.0.0.1:7888"
CONNECT_TIMEOUT = 20.0


def lab_env() -> dict[str, str]:
    """The worktree first on ``sys.path`` of every process the lab starts."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(REPO),
                                                       os.environ.get("PYTHONPATH"))))}


@dataclass(frozen=True)
class RelayLab:
    nats: TwoNats
    boots: list[BootSite]
    nodes: dict[str, LabProcess]
    """The ``autonat node`` process of each host (``"a"``, ``"b"``)."""

    def boot_urls(self) -> list[str]:
        return [site.status_url for site in self.boots]


def build(lab: Lab, *, b_random_fully: bool = False, b_address_restricted: bool = False,
          boots: int = 2, boot_env: Mapping[str, str] | None = None) -> RelayLab:
    """The topology, boot nodes (``boot_env``: extra ``AUTONAT_*`` settings, e.g. relay
    limits) and an ``autonat node`` on each host. ``b_address_restricted``: B's router is
    the matrix's address-restricted cone NAT (nftables: the listen port lets in any port
    of an IP B contacted) instead of a masquerade."""
    internet, sites = _internet_with_boots(lab, boots)
    router_a, host_a = _behind_nat(lab, internet, "a", ROUTER_A_WAN, "192.168.1",
                                   random_fully=False)
    if b_address_restricted:
        router_b, host_b = _behind_address_restricted(lab, internet)
    else:
        router_b, host_b = _behind_nat(lab, internet, "b", ROUTER_B_WAN, "192.168.2",
                                       random_fully=b_random_fully)
    _start_boots(lab, sites, boot_env or {})
    relay_lab = RelayLab(TwoNats(host_a, host_b, (router_a, router_b)), sites, {})
    for name, host in (("a", host_a), ("b", host_b)):
        relay_lab.nodes[name] = _start_node(lab, host, name, relay_lab.boot_urls())
    return relay_lab


def _behind_address_restricted(lab: Lab, internet: Internet) -> tuple[Namespace, Namespace]:
    router = lab.namespace("routerb", forwarding=True)
    host = lab.namespace("hostb")
    internet.attach(router, "wan", ROUTER_B_WAN)
    lab.veth(router, "lan", host, "eth0")
    router.add_addr("lan", "192.168.2.1/24")
    host.add_addr("eth0", f"{HOST_B_LAN}/24")
    host.add_route("default", "via", "192.168.2.1")
    router.nft(_ADDRESS_RESTRICTED_NFT.format(port=LISTEN_PORT, host=HOST_B_LAN))
    return router, host


def _start_boots(lab: Lab, sites: Sequence[BootSite], env: Mapping[str, str]) -> None:
    nodes = []
    for index, site in enumerate(sites, start=1):
        argv = boot_argv(lab, index, site, dialback_source=True, stun_alternate=False)
        nodes.append(RunningNode(site, lab.spawn(site.ns, f"boot{index}", argv,
                                                 env={**lab_env(), **env})))
    for node in nodes:
        wait_for_status(lab, node)


def _start_node(lab: Lab, host: Namespace, name: str, boot_urls: Sequence[str]) -> LabProcess:
    data_dir = lab.tmp / f"node{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [*autonat_argv(), "node", "--listen", f"/ip4/0.0.0.0/tcp/{LISTEN_PORT}/ws",
            "--http", NODE_HTTP, "--data-dir", str(data_dir), *policy_flags(),
            "--log-format", "json", "--log-level", "info"]
    for url in boot_urls:
        argv += ["--boot-url", url]
    return lab.spawn(host, f"node{name}", argv, env=lab_env())


def node_status(host: Namespace) -> dict[str, Any] | None:
    return http_get_json(host, f"http://{NODE_HTTP}/status", timeout=1.0)


def wait_for_relay_addrs(lab: Lab, host: Namespace, proc: LabProcess, *,
                         count: int = 2, timeout: float = 40.0) -> dict[str, Any]:
    """Poll the host's node until it is private and holds ``count`` reservations."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        if not proc.running():
            raise LabError(f"{proc.label} exited\n{proc.tail()}")
        doc = node_status(host)
        if doc is not None and len(doc.get("relay_addrs") or []) >= count:
            found.append(doc)
        return bool(found)

    lab.wait_until(ready, timeout=timeout, interval=0.5, what=f"{proc.label} relay_addrs")
    return found[0]


@dataclass(frozen=True)
class ConnectRun:
    index: int
    returncode: int | None
    doc: dict[str, Any] | None
    wall_s: float
    stderr_path: Path

    @property
    def path(self) -> str | None:
        return None if self.doc is None else self.doc.get("path")


def connect_runs(lab: Lab, relay_lab: RelayLab, target: str, *, runs: int,
                 label: str = "connect", timeout: float = CONNECT_TIMEOUT) -> list[ConnectRun]:
    """``autonat connect TARGET --json`` from host A, ``runs`` times, one after another."""
    results = []
    for index in range(runs):
        argv = [*autonat_argv(), "connect", target, "--json", "--timeout", f"{timeout:g}",
                *policy_flags(), "--log-format", "json", "--log-level", "info"]
        for url in relay_lab.boot_urls():
            argv += ["--boot-url", url]
        started = time.monotonic()
        proc = lab.spawn(relay_lab.nats.host_a, f"{label}{index}", argv, env=lab_env())
        try:
            proc.wait(timeout + 30.0)
        except LabCancelled:
            proc.stop(grace=3.0)
            raise
        except LabError:
            pass  # ignored its own --timeout: stopped below, judged "no JSON"
        code = proc.stop(grace=3.0)
        try:
            parsed = json.loads(proc.stdout())
            doc = parsed if isinstance(parsed, dict) else None
        except ValueError:
            doc = None
        results.append(ConnectRun(index, code, doc, time.monotonic() - started,
                                  proc.stderr_path))
    return results


def summary(runs: Sequence[ConnectRun]) -> str:
    lines = []
    for run in runs:
        doc = run.doc or {}
        lines.append(f"#{run.index}: path={run.path} attempts={doc.get('attempts')} "
                     f"elapsed_s={doc.get('elapsed_s')} "
                     f"time_to_direct_s={doc.get('time_to_direct_s')} "
                     f"rtt_ms={doc.get('rtt_ms')} wall_s={run.wall_s:.2f} "
                     f"reason={doc.get('reason')}")
    return "\n".join(lines)


def limit_run(lab: Lab, relay_lab: RelayLab, circuit: str, *, mode: str, label: str,
              timeout: float = 20.0) -> dict[str, Any]:
    """:mod:`.relay_limit_peer` from host A through ``circuit``: its JSON line."""
    argv = [sys.executable, "-m", "tests.lab.relay_limit_peer", "--circuit", circuit,
            "--mode", mode, "--timeout", f"{timeout:g}"]
    proc = lab.spawn(relay_lab.nats.host_a, label, argv, env=lab_env())
    try:
        proc.wait(timeout + 20.0)
    finally:
        proc.stop(grace=3.0)
    lines = proc.stdout().strip().splitlines()
    if not lines:
        raise LabError(f"{label} printed nothing\n{proc.tail()}")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc
