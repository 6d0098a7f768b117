"""How the NAT lab runs ``autonat`` processes and judges what a probe said.

Theory of operation
-------------------
Boot nodes (``autonat boot``) start in their sites' namespaces with the lab's
public networks declared and, unless a scenario says otherwise, their second
address as ``--dialback-source`` and their third as ``--stun-alternate`` (the
STUN server itself listens on the boot profile's default, UDP port 3478 of the
first address, so every probe measures its UDP profile by RFC 5780);
:func:`wait_for_status` waits (bounded) until each serves ``/status``.
:func:`run_probe` runs one ``autonat probe --json`` in a namespace - a fresh
process with a fresh in-memory key - bounded by its timeout, and keeps its
output files. :func:`judge` lists every way the probe's JSON (TCP verdict and
profile, and the ``udp`` profile) differs from a scenario's
:class:`~.topologies.Expectation` and
:func:`diagnose` adds what a reader needs to see why: the probe's JSON and log
tail, the boot nodes' log tails and the routers' rulesets. HTTP requests inside
a namespace go through a tiny standard-library script (``ip netns exec``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .netlab import Lab, LabCancelled, LabError, LabProcess, Namespace, autonat_argv
from .topologies import HTTP_PORT, LISTEN_PORT, PUBLIC_NETWORKS, BootSite, Expectation, Topology

PROBE_TIMEOUT = 30.0
"""Seconds one probe process may take (link scenarios pass more)."""

# --- autonat processes -------------------------------------------------------------------

_HTTP_GET = r"""
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read(1 << 20).decode()}))
except Exception as exc:
    print(json.dumps({"status": None, "error": f"{type(exc).__name__}: {exc}"}))
"""


def http_get(ns: Namespace, url: str, *, timeout: float = 3.0) -> dict[str, Any]:
    """GET ``url`` from inside ``ns``: ``{"status": int|None, "body"|"error": str}``."""
    proc = ns.run(sys.executable, "-c", _HTTP_GET, url, str(timeout), timeout=timeout + 10.0)
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def http_get_json(ns: Namespace, url: str, *, timeout: float = 3.0) -> dict[str, Any] | None:
    """The JSON object at ``url`` (fetched from inside ``ns``) on HTTP 200, else ``None``."""
    doc = http_get(ns, url, timeout=timeout)
    if doc.get("status") != 200:
        return None
    try:
        body = json.loads(doc["body"])
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def policy_flags() -> list[str]:
    return [flag for cidr in PUBLIC_NETWORKS for flag in ("--public-network", cidr)]


@dataclass
class RunningNode:
    """A running ``autonat boot``/``node`` process and its peer id (from its ``/status``)."""

    site: BootSite
    proc: LabProcess
    peer_id: str = ""


def boot_argv(lab: Lab, index: int, site: BootSite, *, dialback_source: bool,
              stun_alternate: bool = True, sibling_urls: Sequence[str] = ()) -> list[str]:
    data_dir = lab.tmp / f"boot{index}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [*autonat_argv(), "boot", "--listen", f"/ip4/{site.ip}/tcp/{LISTEN_PORT}/ws",
            "--http", f"{site.ip}:{HTTP_PORT}", "--data-dir", str(data_dir), *policy_flags(),
            "--log-format", "json", "--log-level", "debug"]
    if dialback_source:
        argv += ["--dialback-source", site.alt_ip]
    if stun_alternate and site.stun_alt_ip:
        argv += ["--stun-alternate", site.stun_alt_ip]
    for url in sibling_urls:
        argv += ["--boot-url", url]
    return argv


def start_boot_nodes(lab: Lab, sites: Sequence[BootSite], *, dialback_source: bool,
                     stun_alternate: bool = True, siblings: bool = False) -> list[RunningNode]:
    """Start ``autonat boot`` at every site; return once each serves ``/status``.

    ``siblings``: every boot node also bootstraps from the other sites' URLs.
    """
    nodes = []
    for index, site in enumerate(sites, start=1):
        urls = [other.status_url for other in sites if other is not site] if siblings else []
        argv = boot_argv(lab, index, site, dialback_source=dialback_source,
                         stun_alternate=stun_alternate, sibling_urls=urls)
        nodes.append(RunningNode(site, site.ns.spawn(f"boot{index}", argv)))
    for node in nodes:
        node.peer_id = str(wait_for_status(lab, node)["peer_id"])
    return nodes


def wait_for_status(lab: Lab, node: RunningNode, *, timeout: float = 30.0,
                    accept: Callable[[dict[str, Any]], bool] = lambda doc: True,
                    what: str = "/status") -> dict[str, Any]:
    """Poll the node's ``/status`` (from its own namespace) until ``accept(doc)``."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        if not node.proc.running():
            raise LabError(f"{node.proc.label} exited with {node.proc.popen.returncode}\n"
                           f"{node.proc.tail()}")
        doc = http_get_json(node.site.ns, node.site.status_url, timeout=1.0)
        if doc is not None and accept(doc):
            found.append(doc)
        return bool(found)

    lab.wait_until(ready, timeout=timeout, interval=0.2, what=f"{node.proc.label} {what}")
    return found[0]


@dataclass(frozen=True)
class ProbeOutcome:
    """One ``autonat probe --json`` run: exit status, its JSON (if any), wall time."""

    label: str
    returncode: int
    doc: dict[str, Any] | None
    wall_s: float
    stdout_path: Path
    stderr_path: Path

    @property
    def elapsed_s(self) -> float:
        """Time to verdict as the probe measured it (wall time when it printed none)."""
        value = self.doc.get("elapsed_s") if self.doc is not None else None
        return float(value) if isinstance(value, int | float) else self.wall_s

    @property
    def total_s(self) -> float:
        """The probe's whole run (verdict, then the mapping and UDP profile waits) as it
        measured it (wall time when it printed none)."""
        value = self.doc.get("total_s") if self.doc is not None else None
        return float(value) if isinstance(value, int | float) else self.wall_s

    def got(self) -> str:
        if self.doc is None:
            return f"error (exit {self.returncode})"
        return (f"{self.doc.get('nat_status')}, {self.doc.get('nat_mapping')}, "
                f"filtering {self.doc.get('nat_filtering')}, "
                f"hairpin {json.dumps(self.doc.get('hairpinning'))}")

    def got_udp(self) -> str:
        """The probe's ``udp`` object as ``mapping, filtering F``."""
        udp = self.doc.get("udp") if self.doc is not None else None
        if not isinstance(udp, dict):
            return "-" if self.doc is not None else f"error (exit {self.returncode})"
        return f"{udp.get('mapping')}, filtering {udp.get('filtering')}"


def run_probe(ns: Namespace, boot_urls: Sequence[str], *, label: str,
              timeout: float = PROBE_TIMEOUT) -> ProbeOutcome:
    """Run ``autonat probe --json`` in ``ns`` (fresh in-memory key), bounded in time."""
    argv = [*autonat_argv(), "probe", "--listen", f"/ip4/0.0.0.0/tcp/{LISTEN_PORT}/ws",
            *policy_flags(), "--timeout", f"{timeout:g}", "--json",
            "--log-format", "json", "--log-level", "debug"]
    for url in boot_urls:
        argv += ["--boot-url", url]
    started = time.monotonic()
    proc = ns.spawn(label, argv)
    try:
        proc.wait(timeout + 20.0)
    except LabCancelled:
        proc.stop(grace=3.0)
        raise
    except LabError:
        pass  # ignored its own --timeout: stopped below, judged "no JSON", logs kept
    code = proc.stop(grace=3.0)
    doc: dict[str, Any] | None = None
    try:
        parsed = json.loads(proc.stdout())
        doc = parsed if isinstance(parsed, dict) else None
    except ValueError:
        doc = None
    return ProbeOutcome(label, -999 if code is None else code, doc,
                        time.monotonic() - started, proc.stdout_path, proc.stderr_path)


def judge(expect: Expectation, face_addr: str, outcome: ProbeOutcome) -> list[str]:
    """Every way ``outcome`` differs from ``expect`` (empty: the verdict is right)."""
    doc = outcome.doc
    if doc is None:
        return [f"no JSON from the probe (exit {outcome.returncode})"]
    problems = []
    if outcome.returncode != 0:
        problems.append(f"exit status {outcome.returncode}, expected 0")
    if doc.get("nat_status") != expect.nat_status:
        problems.append(f"nat_status {doc.get('nat_status')!r}, expected {expect.nat_status!r}")
    if not expect.mapping_ok(doc.get("nat_mapping")):
        problems.append(f"nat_mapping {doc.get('nat_mapping')!r}, "
                        f"expected {expect.nat_mapping!r}")
    if not expect.filtering_ok(doc.get("nat_filtering")):
        problems.append(f"nat_filtering {doc.get('nat_filtering')!r}, "
                        f"expected {expect.nat_filtering!r}")
    problems += expect.udp_problems(doc.get("udp"))
    if not expect.hairpinning_ok(doc.get("hairpinning")):
        problems.append(f"hairpinning {json.dumps(doc.get('hairpinning'))}, "
                        f"expected {expect.hairpinning}")
    reachable = [str(addr) for addr in doc.get("reachable_addrs") or []]
    at_face = any(addr.split("/p2p/")[0] == face_addr for addr in reachable)
    if expect.reachable_at_face and not at_face:
        problems.append(f"reachable_addrs {reachable} lack {face_addr}")
    if not expect.reachable_at_face and reachable:
        problems.append(f"reachable_addrs {reachable}, expected none")
    return problems


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def diagnose(outcome: ProbeOutcome, problems: Sequence[str], boots: Sequence[RunningNode],
             topo: Topology | None) -> str:
    """What a reader needs to tell a lab fault from a node bug."""
    parts = [f"{outcome.label}: " + "; ".join(problems),
             f"probe JSON: {json.dumps(outcome.doc)}",
             f"--- {outcome.label} stderr (tail) ---\n{log_tail(outcome.stderr_path)}"]
    for boot in boots:
        state = "running" if boot.proc.running() else f"exited {boot.proc.popen.returncode}"
        parts.append(f"--- {boot.proc.label} {boot.peer_id} ({state}) stderr (tail) ---\n"
                     f"{log_tail(boot.proc.stderr_path, 15)}")
    if topo is not None:
        parts.append(f"--- firewall ---\n{topo.firewall_dump()}")
    return "\n".join(parts)
