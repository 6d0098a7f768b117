"""Run the NAT lab: every scenario several times against real ``autonat`` processes.

Theory of operation
-------------------
For each :class:`~.topologies.Scenario` one :class:`~.netlab.Lab` is built and
reused for all of its runs: the topology is checked with plain TCP first (so a
broken lab is never blamed on the node), three ``autonat boot`` nodes start on
the internet segment (dialing back from their second address unless the
scenario says otherwise, serving STUN with their third address as RFC 5780
alternate), then ``autonat probe --json`` runs ``runs`` times in the host
namespace - a fresh process with a fresh key each time, the NAT's UDP mappings
forgotten before each - and every verdict (TCP and UDP profile) is judged
against the scenario's expectation. Scenarios that expect a UDP profile then
run the UDP oracle once (:mod:`.oracle`: coturn's client against coturn's
server and ours, our client against coturn's server). The boot cluster job puts
four sibling boot nodes behind nginx, checks that successive ``/status`` fetches
through the one URL reach different boot nodes, probes through that URL, kills
one boot node and checks both again.

Scenarios are independent, so they run in parallel threads (``--jobs``); a
scenario's runs are sequential. Ctrl-C (or SIGTERM) sets a cancel event every
lab polls; each lab tears down in its own thread and the interrupt propagates.

``--links`` runs instead the delay/loss scenarios (``LINK_SCENARIOS``: a public
host and a masqueraded one behind an emulated access link, see ``linkem``),
whose probes get ``LINK_PROBE_TIMEOUT``; below the table it prints what each
link emulator forwarded and lost.

``make lab`` runs this module and prints a Markdown table (scenario, expected and
got TCP profile, expected and got UDP profile, right, time to verdict, the
oracle's three answers); the exit status is non-zero on any wrong verdict or
oracle disagreement. The
pytest suite (``test_nat_lab.py``) runs the same jobs and asserts per run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netlab import (
    Lab,
    LabCancelled,
    LabError,
    LabProcess,
    Namespace,
    autonat_argv,
    cleanup_stale,
    unavailable_reason,
)
from .oracle import OracleResult, coturn_missing, run_oracle
from .processes import (
    PROBE_TIMEOUT,
    ProbeOutcome,
    RunningNode,
    diagnose,
    http_get,
    http_get_json,
    judge,
    log_tail,
    policy_flags,
    run_probe,
    start_boot_nodes,
    wait_for_status,
)
from .topologies import (
    HTTP_PORT,
    LB_IP,
    LINK_SCENARIOS,
    LISTEN_PORT,
    SCENARIOS,
    SCENARIOS_BY_KEY,
    BootSite,
    Expectation,
    Scenario,
    Topology,
    build_cluster,
    check_plain_tcp,
)

RUNS = 5
LINK_PROBE_TIMEOUT = 60.0
"""The probe's ``--timeout`` through an emulated link: a 25 % lossy link loses SYNs
(retransmitted after 1, 3, 7 s ...) on the way to the boot nodes and back, so a
probe can need several times the ~5-12 s of a private verdict."""
CLUSTER_URL = f"http://{LB_IP}:{HTTP_PORT}/status"
PYRSIA_URL = f"http://{LB_IP}:{HTTP_PORT}/pyrsia/status"
"""A Pyrsia-shaped document (``{peers_count, peer_id, peer_addrs}``) listing one boot node's
own address only: peer exchange must find the other servers."""
CLUSTER_EXPECT = Expectation("public", "none", True)
NODE_EXPECT = Expectation("private", "endpoint-independent", False)
CLUSTER_FETCHES = 8

# --- scenario jobs -----------------------------------------------------------------------


@dataclass
class RunRecord:
    index: int
    outcome: ProbeOutcome
    problems: list[str]


@dataclass
class ScenarioResult:
    """Everything one scenario job found; ``error`` is a lab failure (not a verdict)."""

    scenario: Scenario
    plain_problems: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    error: str | None = None
    diagnostics: list[str] = field(default_factory=list)
    log_dir: Path | None = None
    duration_s: float = 0.0
    link_stats: list[dict[str, Any]] = field(default_factory=list)
    """The link emulators' statistics (JSON from ``linkem``), read before teardown."""
    oracle: OracleResult | None = None
    """The UDP oracle's answers (scenarios that expect a UDP profile)."""
    oracle_problems: list[str] = field(default_factory=list)

    def wrong(self) -> int:
        return sum(1 for run in self.runs if run.problems)


def _run_oracle(lab: Lab, topo: Topology, boots: Sequence[RunningNode],
                result: ScenarioResult) -> None:
    """The UDP oracle, once; a failure of it is an oracle problem, not a lab error (the
    probe verdicts stay judged)."""
    try:
        result.oracle = run_oracle(lab, topo, boots[0].site.ip)
        result.oracle_problems = result.oracle.problems(result.scenario.expect)
    except LabCancelled:
        raise
    except Exception as exc:
        result.oracle_problems = [f"UDP oracle failed: {type(exc).__name__}: {exc}"]
    if result.oracle_problems:
        tails = "\n".join(f"--- {label} ---\n{log_tail(lab.tmp / f'{label}.out')}"
                          for label in ("natdiscovery-coturn", "natdiscovery-ours",
                                        "discovery-coturn"))
        result.diagnostics.append("UDP oracle: " + "; ".join(result.oracle_problems)
                                  + f"\n{tails}\n--- firewall ---\n{topo.firewall_dump()}")


def run_scenario(scenario: Scenario, *, runs: int, tmp_root: Path,
                 cancel: threading.Event | None = None, oracle: bool = True) -> ScenarioResult:
    """Build the scenario's topology once, check it, start boot nodes, probe ``runs`` times,
    then (``oracle``, when the scenario expects a UDP profile) run the UDP oracle."""
    result = ScenarioResult(scenario)
    started = time.monotonic()
    try:
        with Lab(tmp_dir=tmp_root / scenario.key, cancel=cancel) as lab:
            result.log_dir = lab.tmp
            topo = scenario.build(lab)
            result.plain_problems = check_plain_tcp(topo, scenario.plain_tcp)
            if result.plain_problems:
                result.error = "topology check failed: " + "; ".join(result.plain_problems)
                result.diagnostics.append(topo.firewall_dump())
                return result
            boots = start_boot_nodes(lab, topo.boots, dialback_source=scenario.dialback_source,
                                     stun_alternate=scenario.stun_alternate)
            urls = [boot.site.status_url for boot in boots]
            timeout = PROBE_TIMEOUT if scenario.link is None else LINK_PROBE_TIMEOUT
            for index in range(1, runs + 1):
                lab.check_cancelled()
                topo.forget_udp_mappings()
                outcome = run_probe(topo.host, urls, label=f"probe{index}", timeout=timeout)
                problems = judge(scenario.expect, topo.face_addr, outcome)
                problems += [f"{boot.proc.label} died" for boot in boots if not boot.proc.running()]
                result.runs.append(RunRecord(index, outcome, problems))
                if problems:
                    result.diagnostics.append(diagnose(outcome, problems, boots, topo))
            if oracle and scenario.stun_alternate and scenario.expect.asserts_udp \
                    and coturn_missing() is None:
                _run_oracle(lab, topo, boots, result)
            result.link_stats = [link.stop() for link in topo.internet.links]
    except LabCancelled:
        raise
    except Exception as exc:  # a lab failure is a result too: reported, not hidden
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.duration_s = time.monotonic() - started
    return result


# --- the boot cluster behind nginx -------------------------------------------------------

_NGINX_CONF = """\
worker_processes 1;
user root root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream boot_cluster {{
{servers}
    }}
    server {{
        listen {ip}:{port};
        location = /pyrsia/status {{
            default_type application/json;
            return 200 '{pyrsia}';
        }}
        location / {{
            proxy_pass http://boot_cluster;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


def start_nginx(lab: Lab, ns: Namespace, upstreams: Sequence[str], *,
                pyrsia: dict[str, Any] | None = None) -> LabProcess:
    """nginx in ``ns`` on ``LB_IP:HTTP_PORT``, round robin over ``upstreams`` (``ip:port``);
    ``pyrsia`` is served as is at :data:`PYRSIA_URL`."""
    servers = "\n".join(f"        server {up} max_fails=1 fail_timeout=30s;" for up in upstreams)
    document = json.dumps(pyrsia if pyrsia is not None else {})
    conf = lab.write_file("nginx.conf", _NGINX_CONF.format(
        tmp=lab.tmp, servers=servers, ip=LB_IP, port=HTTP_PORT, pyrsia=document))
    proc = ns.spawn("nginx", ["nginx", "-e", str(lab.tmp / "nginx-startup.log"),
                              "-p", str(lab.tmp), "-c", str(conf), "-g", "daemon off;"])

    def listening() -> bool:
        if not proc.running():
            startup = log_tail(lab.tmp / "nginx-startup.log")
            raise LabError(f"nginx exited\n{proc.tail()}\n{startup}")
        error = str(http_get(ns, f"http://{LB_IP}:{HTTP_PORT}/healthz", timeout=1.0).get("error"))
        return "Connection refused" not in error

    lab.wait_until(listening, timeout=15.0, interval=0.2, what="nginx to listen")
    return proc


@dataclass
class ClusterResult:
    """What the boot-cluster job saw, before and after one boot node was killed."""

    boot_ids: list[str] = field(default_factory=list)
    fetched_before: list[str | None] = field(default_factory=list)
    fetched_after: list[str | None] = field(default_factory=list)
    killed: str = ""
    probes_before: list[RunRecord] = field(default_factory=list)
    probes_after: list[RunRecord] = field(default_factory=list)
    probes_pyrsia: list[RunRecord] = field(default_factory=list)
    """Probes through :data:`PYRSIA_URL` (one boot node listed; peer exchange finds more)."""
    node_status: dict[str, Any] | None = None
    """``/status`` of an ``autonat node`` behind a NAT, started after the kill."""
    node_s: float = 0.0
    """Seconds from starting that node to its verdict and ``fully_connected``."""
    error: str | None = None
    diagnostics: list[str] = field(default_factory=list)
    log_dir: Path | None = None
    duration_s: float = 0.0


def _fetch_ids(ns: Namespace, count: int) -> list[str | None]:
    ids = []
    for _ in range(count):
        doc = http_get_json(ns, CLUSTER_URL, timeout=5.0)
        ids.append(str(doc.get("peer_id")) if doc is not None else None)
    return ids


def _cluster_probes(topo: Topology, boots: Sequence[RunningNode], result: ClusterResult,
                    records: list[RunRecord], count: int, prefix: str,
                    url: str = CLUSTER_URL) -> None:
    for index in range(1, count + 1):
        outcome = run_probe(topo.host, [url], label=f"{prefix}{index}")
        problems = judge(CLUSTER_EXPECT, topo.face_addr, outcome)
        records.append(RunRecord(index, outcome, problems))
        if problems:
            result.diagnostics.append(diagnose(outcome, problems, boots, None))


def _pyrsia_document(boot: RunningNode) -> dict[str, Any]:
    """What a Pyrsia boot node serves: its id and its own address, nothing else."""
    doc = http_get_json(boot.site.ns, boot.site.status_url, timeout=5.0) or {}
    own = [a for a in doc.get("peer_addrs") or [] if str(a).endswith(f"/p2p/{boot.peer_id}")]
    return {"peers_count": doc.get("peers_count", 0), "peer_id": boot.peer_id,
            "peer_addrs": own[:1]}


def _node_behind_nat(lab: Lab, topo: Topology, result: ClusterResult) -> None:
    """A long-running ``autonat node`` behind the NAT, bootstrapping from the cluster URL,
    must reach a verdict and lifecycle ``fully_connected``."""
    data_dir = lab.tmp / "node-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [*autonat_argv(), "node", "--listen", f"/ip4/0.0.0.0/tcp/{LISTEN_PORT}/ws",
            "--http", f"{topo.host_ip}:{HTTP_PORT}", "--data-dir", str(data_dir), *policy_flags(),
            "--boot-url", CLUSTER_URL,
            "--log-format", "json", "--log-level", "debug"]
    started = time.monotonic()
    node = RunningNode(BootSite(topo.host, topo.host_ip, ""), topo.host.spawn("node", argv))
    try:
        result.node_status = wait_for_status(
            lab, node, timeout=60.0, what="a verdict and fully_connected",
            accept=lambda doc: doc.get("nat_status") in ("public", "private")
            and doc.get("state") == "fully_connected")
    except LabCancelled:
        raise
    except LabError as exc:
        result.node_status = http_get_json(topo.host, node.site.status_url, timeout=2.0)
        result.diagnostics.append(f"autonat node: {exc}\n{node.proc.tail()}")
    result.node_s = time.monotonic() - started


def node_problems(cluster: ClusterResult) -> list[str]:
    doc = cluster.node_status
    if doc is None:
        return ["autonat node behind NAT: no /status"]
    got = (doc.get("nat_status"), doc.get("nat_mapping"), doc.get("state"))
    want = (NODE_EXPECT.nat_status, NODE_EXPECT.nat_mapping, "fully_connected")
    return [] if got == want else [f"autonat node behind NAT: got {got}, expected {want}"]


def run_cluster(*, tmp_root: Path, probes: int = 3,
                cancel: threading.Event | None = None) -> ClusterResult:
    """Four sibling boot nodes behind nginx: fetch and probe through the one URL, kill a
    boot node, fetch and probe again, then run an ``autonat node`` behind a NAT."""
    result = ClusterResult()
    started = time.monotonic()
    try:
        with Lab(tmp_dir=tmp_root / "cluster", cancel=cancel) as lab:
            result.log_dir = lab.tmp
            cluster = build_cluster(lab)
            topo = cluster.public
            boots = start_boot_nodes(lab, topo.boots, dialback_source=True, siblings=True)
            result.boot_ids = [boot.peer_id for boot in boots]
            for boot in boots:  # siblings probe each other; wait until all are confirmed
                wait_for_status(lab, boot, timeout=60.0, what="to be public",
                                accept=lambda doc: doc.get("nat_status") == "public")
            start_nginx(lab, cluster.lb, [f"{boot.site.ip}:{HTTP_PORT}" for boot in boots],
                        pyrsia=_pyrsia_document(boots[1]))
            # first: every probe asks the one listed boot node for peers, from one IP
            _cluster_probes(topo, boots, result, result.probes_pyrsia, probes, "probe-pyrsia",
                            PYRSIA_URL)
            result.fetched_before = _fetch_ids(topo.host, CLUSTER_FETCHES)
            _cluster_probes(topo, boots, result, result.probes_before, probes, "probe-all")
            victim = boots[0]
            victim.proc.signal(signal.SIGKILL)
            victim.proc.wait(10.0)
            result.killed = victim.peer_id
            result.fetched_after = _fetch_ids(topo.host, CLUSTER_FETCHES)
            _cluster_probes(topo, boots, result, result.probes_after, probes, "probe-killed")
            _node_behind_nat(lab, cluster.home, result)
    except LabCancelled:
        raise
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.duration_s = time.monotonic() - started
    return result


# --- the matrix --------------------------------------------------------------------------


@dataclass
class Matrix:
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    cluster: ClusterResult | None = None
    duration_s: float = 0.0


def _slow_first(scenario: Scenario) -> int:
    """Scenarios whose dial-backs are silently dropped wait for timeouts: start them first."""
    return 0 if scenario.plain_tcp.inbound_other == "timeout" else 1


def run_all(scenarios: Sequence[Scenario], *, runs: int, tmp_root: Path, jobs: int,
            cluster: bool, cluster_probes: int = 3, link_runs: int | None = None) -> Matrix:
    """Run the scenario jobs (and the cluster job) in ``jobs`` threads; Ctrl-C cancels all.

    ``link_runs``: probe runs of the scenarios with an emulated link (default ``runs``)."""
    matrix = Matrix()
    cancel = threading.Event()
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="natlab")
    try:
        cluster_future: Future[ClusterResult] | None = None
        if cluster:
            cluster_future = pool.submit(run_cluster, tmp_root=tmp_root, probes=cluster_probes,
                                         cancel=cancel)
        futures = {sc.key: pool.submit(run_scenario, sc,
                                       runs=runs if sc.link is None or link_runs is None
                                       else link_runs, tmp_root=tmp_root, cancel=cancel)
                   for sc in sorted(scenarios, key=_slow_first)}
        for scenario in scenarios:
            matrix.scenarios[scenario.key] = futures[scenario.key].result()
        if cluster_future is not None:
            matrix.cluster = cluster_future.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        matrix.duration_s = time.monotonic() - started
    return matrix


def _times(records: Sequence[RunRecord]) -> str:
    """Time to verdict: median (min-max), then the median of the whole probe run."""
    values = [run.outcome.elapsed_s for run in records]
    if not values:
        return "-"
    median = statistics.median(values)
    total = statistics.median(run.outcome.total_s for run in records)
    return f"{median:.2f} s ({min(values):.2f}-{max(values):.2f}); {total:.2f} s in all"


def _got(records: Sequence[RunRecord], what: str = "tcp") -> str:
    counts = Counter(run.outcome.got() if what == "tcp" else short(run.outcome.got_udp())
                     for run in records)
    return ", ".join(f"{got} ({n}/{len(records)})" for got, n in counts.most_common()) or "-"


def _right(records: Sequence[RunRecord]) -> str:
    return f"{sum(1 for run in records if not run.problems)}/{len(records)}"


_SHORT = {"endpoint-independent": "EI", "address-dependent": "AD",
          "address-and-port-dependent": "APD", ", filtering ": " / "}


def short(text: str) -> str:
    """A UDP profile ``M, filtering F`` as ``M / F``, behaviours abbreviated (EI, AD, APD)."""
    for long, abbreviation in _SHORT.items():
        text = text.replace(long, abbreviation)
    return text


def _oracle_cells(result: ScenarioResult) -> str:
    oracle = result.oracle
    if oracle is None:
        text = "failed" if result.oracle_problems else "-"
        return " | ".join([text] * 3)
    answers = (oracle.coturn_vs_coturn, oracle.coturn_vs_ours, oracle.ours_vs_coturn)
    return " | ".join(short(answer.describe()) for answer in answers)


def format_table(matrix: Matrix) -> str:
    """The Markdown table: scenario | TCP expected, got | UDP expected, got | right | time to
    verdict | the UDP oracle's answers (coturn's client vs coturn's and our server, our
    client vs coturn's server)."""
    lines = ["| scenario | expected TCP | got TCP | expected UDP | got UDP | right | "
             "time to verdict (probe elapsed_s): median (min-max); in all (total_s) | "
             "oracle: coturn → coturn | coturn → ours | ours → coturn |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in matrix.scenarios.values():
        sc = result.scenario
        expected = sc.expect.describe() + (" (contrast)" if sc.informational else "")
        if result.error is None:
            got, got_udp = _got(result.runs), _got(result.runs, "udp")
        else:
            got, got_udp = f"LAB ERROR: {result.error[:80]}", "-"
        lines.append(f"| {sc.title.strip()} | {expected} | {got} | "
                     f"{short(sc.expect.describe_udp())} | {got_udp} | {_right(result.runs)} | "
                     f"{_times(result.runs)} | {_oracle_cells(result)} |")
    cluster = matrix.cluster
    if cluster is not None:
        expected = CLUSTER_EXPECT.describe()
        for name, records in (("boot cluster behind nginx (4 boot nodes)", cluster.probes_before),
                              ("boot cluster, one boot node killed", cluster.probes_after)):
            got = _got(records) if cluster.error is None else f"LAB ERROR: {cluster.error[:80]}"
            lines.append(f"| {name} | {expected} | {got} | - | {_got(records, 'udp')} | "
                         f"{_right(records)} | {_times(records)} | - | - | - |")
        doc = cluster.node_status or {}
        got = f"{doc.get('nat_status')}, {doc.get('nat_mapping')}, {doc.get('state')}"
        right = f"{int(not node_problems(cluster))}/1"
        lines.append(f"| `autonat node` behind NAT via the cluster URL (after the kill) | "
                     f"{NODE_EXPECT.describe()}, fully_connected | {got} | - | - | {right} | "
                     f"{cluster.node_s:.2f} s (from process start) | - | - | - |")
    return "\n".join(lines)


def format_link_stats(matrix: Matrix) -> str:
    """One line per emulated link: frames forwarded and lost in each direction."""
    lines = []
    for result in matrix.scenarios.values():
        for stats in result.link_stats:
            parts = []
            for name, counts in sorted(stats.items()):
                if not isinstance(counts, dict) or "->" not in name:
                    continue
                ipv4 = max(1, int(counts["ipv4_received"]))
                parts.append(f"{name} {counts['forwarded']} forwarded, {counts['dropped_loss']} "
                             f"lost ({100.0 * counts['dropped_loss'] / ipv4:.1f} % of IPv4), "
                             f"{counts['dropped_queue']} over the queue limit")
            lines.append(f"{result.scenario.key}: " + "; ".join(parts))
    return "\n".join(lines)


def format_oracle_stats(matrix: Matrix) -> str:
    """One line: in how many scenarios the UDP oracle agreed, and how long it took."""
    results = [r for r in matrix.scenarios.values() if r.oracle is not None or r.oracle_problems]
    if not results:
        return ""
    agreed = sum(1 for r in results if not r.oracle_problems)
    times = [r.oracle.wall_s for r in results if r.oracle is not None]
    took = (f"; coturn's start and the three clients took {statistics.median(times):.1f} s "
            f"({min(times):.1f}-{max(times):.1f}) per scenario" if times else "")
    return (f"UDP oracle (coturn): all three answers agree in {agreed}/{len(results)} "
            f"scenarios{took}")


def summary(matrix: Matrix) -> tuple[int, int, list[str]]:
    """(verdicts, wrong verdicts, problems) over the whole matrix."""
    total, wrong, problems = 0, 0, []
    for result in matrix.scenarios.values():
        total += len(result.runs)
        wrong += result.wrong()
        if result.error is not None:
            problems.append(f"{result.scenario.key}: {result.error}")
        problems += [f"{result.scenario.key}: {text}" for text in result.oracle_problems]
    cluster = matrix.cluster
    if cluster is not None:
        problems += cluster_problems(cluster)
        problems += node_problems(cluster) if cluster.error is None else []
        records = cluster.probes_before + cluster.probes_after
        total += len(records)
        wrong += sum(1 for run in records if run.problems)
    return total, wrong, problems


def cluster_problems(cluster: ClusterResult) -> list[str]:
    """Round-robin and failover problems of the cluster job (verdicts are judged per run)."""
    if cluster.error is not None:
        return [f"cluster: {cluster.error}"]
    problems = []
    before, after = cluster.fetched_before, cluster.fetched_after
    if None in before or set(before) != set(cluster.boot_ids):
        problems.append(f"cluster: fetches through nginx reached {before}, "
                        f"expected all of {cluster.boot_ids}")
    alive = set(cluster.boot_ids) - {cluster.killed}
    if None in after or set(after) != alive:
        problems.append(f"cluster: after killing {cluster.killed}, fetches reached {after}, "
                        f"expected all of {sorted(alive)} and no failure")
    return problems


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make lab", description=__doc__.split("\n")[0] if __doc__
                                     else None)
    parser.add_argument("--runs", type=int, default=RUNS, help="probe runs per scenario")
    parser.add_argument("--jobs", type=int, default=6, help="scenarios run in parallel")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS_BY_KEY),
                        help="only this scenario (repeatable; default: all but the link "
                        "scenarios)")
    parser.add_argument("--links", action="store_true",
                        help="only the delay/loss scenarios (emulated access links); "
                        "implies --no-cluster")
    parser.add_argument("--no-cluster", action="store_true", help="skip the nginx boot cluster")
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs even on success")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"NAT lab cannot run: {reason}", file=sys.stderr)
        return 1
    if args.links:
        args.no_cluster = True
    if coturn_missing() is not None:
        print(f"NAT lab: {coturn_missing()}; running without it", file=sys.stderr)
    if not args.no_cluster and shutil.which("nginx") is None:
        print("NAT lab: nginx not found (Debian package nginx-light); use --no-cluster",
              file=sys.stderr)
        return 1
    removed = cleanup_stale()
    if removed:
        print(f"removed {len(removed)} stale lab namespaces", file=sys.stderr)
    scenarios: Sequence[Scenario] = SCENARIOS
    if args.scenario:
        scenarios = [SCENARIOS_BY_KEY[key] for key in args.scenario]
    elif args.links:
        scenarios = LINK_SCENARIOS
    tmp_root = Path(tempfile.mkdtemp(prefix="ta-lab-"))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    print(f"NAT lab: {len(scenarios)} scenarios x {args.runs} runs"
          f"{'' if args.no_cluster else ' + boot cluster'}, {args.jobs} in parallel; "
          f"logs in {tmp_root}", file=sys.stderr, flush=True)
    try:
        matrix = run_all(scenarios, runs=args.runs, tmp_root=tmp_root, jobs=args.jobs,
                         cluster=not args.no_cluster)
    except KeyboardInterrupt:
        print(f"\ninterrupted: lab torn down; logs kept in {tmp_root}", file=sys.stderr)
        return 130
    print(format_table(matrix))
    link_stats = format_link_stats(matrix)
    if link_stats:
        print(f"\nlink emulators (whole scenario, all runs):\n{link_stats}")
    oracle_stats = format_oracle_stats(matrix)
    if oracle_stats:
        print(f"\n{oracle_stats}")
    total, wrong, problems = summary(matrix)
    if matrix.cluster is not None and matrix.cluster.error is None:
        print(f"\n/status through nginx: {len(set(matrix.cluster.fetched_before))} boot nodes in "
              f"{CLUSTER_FETCHES} fetches; after killing one: "
              f"{len({i for i in matrix.cluster.fetched_after if i})} boot nodes, "
              f"{matrix.cluster.fetched_after.count(None)} failed fetches")
        pyrsia = [r.outcome for r in matrix.cluster.probes_pyrsia if r.outcome.doc]
        if pyrsia:
            print("Pyrsia-shaped document (one boot node listed), per probe: " + ", ".join(
                f"{o.got().split(',')[0]} in {o.elapsed_s:.2f} s, "
                f"{len(o.doc.get('servers_contacted') or []) if o.doc else 0} servers asked"
                for o in pyrsia))
    print(f"\n{total - wrong}/{total} verdicts right, lab took {matrix.duration_s:.0f} s")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    failed = wrong > 0 or bool(problems)
    if failed:
        for result in matrix.scenarios.values():
            for text in result.diagnostics:
                print(f"\n=== {result.scenario.key} ===\n{text}", file=sys.stderr)
        for text in matrix.cluster.diagnostics if matrix.cluster else []:
            print(f"\n=== cluster ===\n{text}", file=sys.stderr)
    if failed or args.keep_logs:
        print(f"logs kept in {tmp_root}", file=sys.stderr)
    else:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
