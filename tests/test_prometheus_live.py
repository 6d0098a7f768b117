"""A real Prometheus scrapes a live node, and its query API answers with the node's verdict.

The node bootstraps from three boot nodes on loopback until it has a verdict
(as in tests/test_bootstrap_e2e.py), so the value is one the node decided,
not its initial ``unknown``. ``prometheus`` (Debian package ``prometheus``,
which ``.ci/run`` installs; a missing one fails the test) runs with a
temporary configuration that scrapes the node's ``/metrics`` every second,
its storage in ``tmp_path`` and its own listener on a free loopback port.
The test polls ``/api/v1/query`` (bounded) until the series arrives; the
answer must name the verdict the node's ``/status`` reports. Prometheus is
always stopped: it runs in the test's nursery, whose cancellation
terminates it (and kills it if it lingers).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from protocols import Lifecycle, NodeSnapshot
from tests.node_fixtures import live_newcomer
from tests.required_tools import required_tool

NET = "127.0.142"
SCRAPE_WAIT = 60.0
"""Seconds Prometheus may take to start, scrape and answer on a loaded machine."""


def _decided(snap: NodeSnapshot) -> bool:
    return snap.lifecycle is Lifecycle.FULLY_CONNECTED and snap.nat_status != "unknown"


@asynccontextmanager
async def _live_node() -> AsyncIterator[str]:
    """A node with a verdict; yields its HTTP API's ``host:port``."""
    async with live_newcomer(NET) as live:
        await live.node.wait_for(_decided)
        yield f"{live.host}:{live.port}"


def _free_port(host: str) -> int:
    """A port free on ``host`` now (Prometheus binds it itself a moment later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _prometheus_config(path: Path, target: str) -> Path:
    path.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: autonat\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n")
    return path


async def _query(client: httpx.AsyncClient, api: str, query: str) -> list[dict[str, Any]]:
    """The result vector of ``query``; empty while Prometheus is not up or has no sample."""
    try:
        response = await client.get(f"{api}/api/v1/query", params={"query": query})
    except httpx.TransportError:
        return []  # not listening yet
    if response.status_code != 200:
        return []
    document = response.json()
    assert document["status"] == "success", document
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


async def test_prometheus_scrapes_the_nodes_verdict(tmp_path: Path) -> None:
    prometheus = required_tool("prometheus", "prometheus")
    with trio.fail_after(SCRAPE_WAIT + 60), ExitStack() as stack:
        async with _live_node() as target, trio.open_nursery() as nursery:
            host = target.split(":")[0]
            listen = f"{host}:{_free_port(host)}"
            log = stack.enter_context((tmp_path / "prometheus.log").open("wb"))
            command = [prometheus,
                       f"--config.file={_prometheus_config(tmp_path / 'p.yml', target)}",
                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                       f"--web.listen-address={listen}", "--log.level=warn"]
            await nursery.start(partial(trio.run_process, command, check=False,
                                        stdout=log, stderr=subprocess.STDOUT))
            api = f"http://{listen}"
            found: list[dict[str, Any]] = []
            async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
                with trio.move_on_after(SCRAPE_WAIT):
                    while not found:
                        await trio.sleep(0.5)
                        found = await _query(client, api, "autonat_nat_status == 1")
                status = (await client.get(f"http://{target}/status")).json()
                up = await _query(client, api, 'up{job="autonat"}')
            nursery.cancel_scope.cancel()  # stops prometheus
    assert found, ("no autonat_nat_status sample within the wait; prometheus said:\n"
                   + (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:])
    (series,) = found  # one-hot: exactly one status has the value 1
    assert series["metric"]["status"] == status["nat_status"] != "unknown"
    assert series["metric"]["instance"] == target and series["value"][1] == "1"
    assert [sample["value"][1] for sample in up] == ["1"]
