"""The operator's view of /metrics: ``promtool check metrics`` on a live node's output,
the standard ``process_*``/``python_*`` families, and the Grafana dashboard's queries.

The node is real (WebSockets and the HTTP API on loopback); its /metrics text is
what Prometheus would scrape. promtool comes with the Debian package
``prometheus`` (``.ci/run`` installs it); the check can fail, as the test of a
counter without ``_total`` shows.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import trio

from actors import open_node, serve_http
from protocols import AddressPolicy, NodeConfig
from tests.required_tools import required_tool

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "autonat-node.json"
METRIC = re.compile(r"\b((?:autonat|process|python)_[a-z_]+)\b")
PROMQL_WORDS = {"rate", "increase", "sum", "max", "count", "by", "time", "clamp_min"}


async def _scrape(host: str) -> str:
    config = NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",),
                                      policy=AddressPolicy(allow_loopback=True), http_listen="")
    with trio.fail_after(30):
        async with open_node(config) as node, trio.open_nursery() as nursery:
            bound = await nursery.start(serve_http, node, host, 0)
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                response = await client.get(f"http://{host}:{bound[1]}/metrics")
            nursery.cancel_scope.cancel()
    assert response.status_code == 200
    return response.text


def _promtool(text: str) -> subprocess.CompletedProcess[str]:
    promtool = required_tool("promtool", "prometheus")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)


def _sample_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def _exported_names(text: str) -> set[str]:
    """Sample names and declared families (a labelled family may have no sample yet)."""
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return _sample_names(text) | declared


async def test_promtool_accepts_a_live_nodes_metrics() -> None:
    text = await _scrape("127.0.77.1")
    out = _promtool(text)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_promtool_rejects_a_counter_without_total() -> None:
    out = _promtool("# HELP autonat_dials x\n# TYPE autonat_dials counter\nautonat_dials 1\n")
    assert out.returncode != 0 and "_total" in out.stdout + out.stderr


async def test_process_and_python_families_are_on_the_node_registry() -> None:
    names = _sample_names(await _scrape("127.0.77.2"))
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
            "process_start_time_seconds", "python_info",
            "python_gc_collections_total"} <= names
    assert {"autonat_dials_total", "autonat_dial_failures_total",
            "autonat_start_time_seconds"} <= names
    assert not any(name.startswith("autonat_") and name.endswith("_total_total")
                   for name in names)


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


async def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    queried = {name for expr in _exprs(dashboard) for name in METRIC.findall(expr)}
    queried |= set(METRIC.findall(json.dumps(dashboard["templating"])))
    assert {"autonat_nat_status", "process_cpu_seconds_total"} <= queried
    missing = queried - _exported_names(await _scrape("127.0.77.3"))
    assert not missing, f"the dashboard queries metrics /metrics does not have: {missing}"
