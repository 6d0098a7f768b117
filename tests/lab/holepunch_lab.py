"""Two hosts behind two real NAT routers, and timed hole-punch trials between them.

Topology (all IPv4, every router a kernel NAT with the home-router filter: replies
pass, new inbound connections are dropped)::

    hosta 192.168.1.2 -- routera (WAN 198.51.100.30) --+
                                                       +-- inet bridge
    hostb 192.168.2.2 -- routerb (WAN 198.51.100.31) --+

``routera`` masquerades with port preservation (endpoint-independent mapping);
``routerb`` does the same, or with ``--random-fully`` (endpoint-dependent: each
destination gets a random port) for the contrast. :func:`punch_trials` runs
:mod:`.punch_peer` on both hosts with one shared schedule and returns each
side's per-trial results.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .netlab import Lab, Namespace
from .topologies import Internet, _masquerade, _stateful_wan_filter

ROUTER_A_WAN, ROUTER_B_WAN = "198.51.100.30", "198.51.100.31"
HOST_A_LAN, HOST_B_LAN = "192.168.1.2", "192.168.2.2"
BASE_A, BASE_B = 44000, 45000
TRIALS = 20
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TwoNats:
    host_a: Namespace
    host_b: Namespace
    routers: tuple[Namespace, Namespace]

    def firewall_dump(self) -> str:
        return "\n".join(f"# {ns.name}\n{ns.ruleset()}" for ns in self.routers)


def _behind_nat(lab: Lab, internet: Internet, name: str, wan_ip: str, lan: str,
                *, random_fully: bool) -> tuple[Namespace, Namespace]:
    router = lab.namespace(f"router{name}", forwarding=True)
    host = lab.namespace(f"host{name}")
    internet.attach(router, "wan", wan_ip)
    lab.veth(router, "lan", host, "eth0")
    router.add_addr("lan", f"{lan}.1/24")
    host.add_addr("eth0", f"{lan}.2/24")
    host.add_route("default", "via", f"{lan}.1")
    _masquerade(router, random_fully=random_fully)
    _stateful_wan_filter(router)
    return router, host


def build_two_nats(lab: Lab, *, b_random_fully: bool = False) -> TwoNats:
    internet = Internet(lab)
    router_a, host_a = _behind_nat(lab, internet, "a", ROUTER_A_WAN, "192.168.1",
                                   random_fully=False)
    router_b, host_b = _behind_nat(lab, internet, "b", ROUTER_B_WAN, "192.168.2",
                                   random_fully=b_random_fully)
    return TwoNats(host_a, host_b, (router_a, router_b))


@dataclass(frozen=True)
class PunchReport:
    a: list[dict[str, Any]]
    b: list[dict[str, Any]]
    logs: str

    @property
    def direct(self) -> int:
        """Trials in which both sides completed the exchange."""
        return sum(1 for ra, rb in zip(self.a, self.b, strict=True) if ra["ok"] and rb["ok"])

    def times(self) -> list[float]:
        return sorted(max(ra["elapsed_s"], rb["elapsed_s"])
                      for ra, rb in zip(self.a, self.b, strict=True) if ra["ok"] and rb["ok"])


def punch_trials(lab: Lab, topo: TwoNats, *, trials: int = TRIALS, label: str = "punch",
                 spacing: float = 0.5, timeout: float = 4.0) -> PunchReport:
    """Run ``trials`` timed punches: host A (WebSocket client) and host B (server)."""
    start = time.time() + 2.0  # both processes up and listening before trial 0
    env = {"PYTHONPATH": os.pathsep.join(filter(None, (str(REPO),
                                                       os.environ.get("PYTHONPATH"))))}
    common = ["--start", f"{start:.3f}", "--trials", str(trials), "--spacing", f"{spacing:g}",
              "--timeout", f"{timeout:g}"]
    procs = []
    for ns, side, peer_ip, base, peer_base, role in (
            (topo.host_a, "a", ROUTER_B_WAN, BASE_A, BASE_B, "client"),
            (topo.host_b, "b", ROUTER_A_WAN, BASE_B, BASE_A, "server")):
        argv = [sys.executable, "-m", "tests.lab.punch_peer", "--peer-ip", peer_ip,
                "--base-port", str(base), "--peer-base-port", str(peer_base), "--role", role,
                *common]
        procs.append(lab.spawn(ns, f"{label}-{side}", argv, env=env))
    budget = 2.0 + trials * spacing + timeout + 15.0
    for proc in procs:
        proc.wait(budget)
    results = [[json.loads(line) for line in proc.stdout().splitlines() if line.strip()]
               for proc in procs]
    logs = "\n".join(f"--- {proc.label}\n{proc.tail()}" for proc in procs)
    if any(len(side) != trials for side in results):
        raise AssertionError(f"expected {trials} results per side\n{logs}")
    return PunchReport(results[0], results[1], logs)
