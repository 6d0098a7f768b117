"""The simulator's bootstrapping through ``/status`` and its hole-punch matrix.

``config/scenarios/punch.toml`` (3 relaying boot nodes, 2 hosts per NAT type of
interest) runs once per module in simulated time: its hosts fetch the boot nodes'
real ``/status`` over the simulated internet and, once converged, every private
type's dialer connects to every private type's target through a relay.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from actors import open_node
from actors.surfaces._cli_sim import load_scenario
from actors.surfaces._http_api import HttpApi
from actors.surfaces._sim_bootstrap import StatusServers
from actors.surfaces._simulator import SimHost, _boot_config, _host_config, simulate
from actors.transport import SimNetwork
from protocols import Keypair
from protocols.sim import NAT_TYPES, NatBehaviour, expected_punch


@pytest.fixture(scope="module")
def punch() -> dict[str, Any]:
    return simulate(load_scenario("punch"))


def test_every_pair_of_private_nat_types_ends_as_the_definitions_predict(
        punch: dict[str, Any]) -> None:
    matrix = punch["punch_matrix"]
    private = {t.name for t in NAT_TYPES if t.truth.nat_status == "private"}
    present = private & set(punch["by_nat_type"])
    assert set(matrix["rows"]) == present
    assert matrix["pairs"] == len(present) ** 2
    for dialer, row in matrix["rows"].items():
        assert set(row) == present
        for target, cell in row.items():
            assert cell["path"] == expected_punch(dialer, target), (dialer, target, cell)
            assert (cell["time_to_direct_s"] is not None) == (cell["path"] == "direct")
    assert matrix["as_expected"] == matrix["pairs"]


def test_the_matrix_agrees_with_the_relay_lab(punch: dict[str, Any]) -> None:
    """The kernel lab (README "NAT lab", tests/lab/test_relay_punch_lab.py): two
    masquerading NATs punch, a ``--random-fully`` one stays relayed and says why, an
    address-restricted one punches."""
    rows = punch["punch_matrix"]["rows"]
    assert rows["port_restricted"]["port_restricted"]["path"] == "direct"
    assert rows["port_restricted"]["address_restricted"]["path"] == "direct"
    cell = rows["port_restricted"]["symmetric"]
    assert cell["path"] == "relayed"
    assert "endpoint-dependent" in cell["reason"]


def test_status_requests_per_boot_node_are_the_hosts_fetches(punch: dict[str, Any]) -> None:
    boots, fetches = punch["boot_nodes"], punch["status_fetches"]
    assert len(boots) == len(fetches) == 3
    for boot, counted in zip(boots, fetches, strict=True):
        assert counted["finished"] >= punch["hosts"]  # every host fetched every boot node
        served = boot["status_requests"]
        assert counted["finished"] <= served <= counted["finished"] + counted["in_flight"]


def test_the_report_prints_the_matrix_and_the_status_load(punch: dict[str, Any]) -> None:
    from protocols.sim import format_report

    text = format_report(punch)
    assert "/status requests " + "/".join(str(b["status_requests"])
                                          for b in punch["boot_nodes"]) in text
    assert "dialer \\ target" in text and "!" not in text.split("dialer \\ target")[1]


async def test_a_host_knows_only_what_the_fetched_status_document_lists(
        autojump_clock: trio.testing.MockClock) -> None:
    """The URL of boot node 0 serves node 1's real status document: the host, which is
    given no peers, connects to node 1 and never to node 0 - the addresses came from
    the document, through the real fetcher's parse and selection."""
    net = SimNetwork(seed=5)
    servers = StatusServers(net)
    rng = random.Random(5)
    ips = ["10.0.0.1", "10.0.0.2"]
    host = SimHost(0, "port_restricted", "172.16.0.2", "10.16.0.1")
    for ip in ips:
        net.add_host(ip, latency=0.01)
    async with open_node(_boot_config(ips[0], None, [], 4), transport=net.transport(ips[0]),
                         keypair=Keypair.from_seed(rng.randbytes(32))) as decoy, \
            open_node(_boot_config(ips[1], None, [], 4), transport=net.transport(ips[1]),
                      keypair=Keypair.from_seed(rng.randbytes(32))) as listed:
        url = servers.add(ips[0], HttpApi(listed, version="sim"))
        net.add_host(host.ip, behaviour=NatBehaviour(), public_ip=host.face, latency=0.01)
        async with open_node(_host_config(host, [], [url]), transport=net.transport(host.ip),
                             keypair=Keypair.from_seed(rng.randbytes(32)),
                             http_client_factory=servers.client_factory(host.ip)) as node:
            with trio.fail_after(30):
                await node.wait_for(lambda s: bool(s.connections_to(listed.peer_id)))
            await trio.sleep(5)
            assert not node.snapshot().connections_to(decoy.peer_id)
            fetched = node.statistics().bootstrap.urls[0]
            assert fetched.url == url and fetched.succeeded


def test_the_punch_scenario_repeats_for_its_seed(punch: dict[str, Any]) -> None:
    again = simulate(load_scenario("punch"))
    strip = ("resources",)
    assert json.dumps({k: v for k, v in again.items() if k not in strip}, sort_keys=True) == \
        json.dumps({k: v for k, v in punch.items() if k not in strip}, sort_keys=True)


async def test_a_stopped_boot_node_serves_no_status(
        autojump_clock: trio.testing.MockClock) -> None:
    """The fetch goes over the simulated internet (a round trip per step) and a server
    whose node stopped refuses the flow, as a dead host's port does."""
    net = SimNetwork(seed=6)
    net.add_host("10.0.0.1", latency=0.02)
    net.add_host("172.16.0.2", behaviour=NatBehaviour(), public_ip="10.16.0.1", latency=0.02)
    servers = StatusServers(net)
    async with open_node(_boot_config("10.0.0.1", None, [], 4),
                         transport=net.transport("10.0.0.1"),
                         keypair=Keypair.from_seed(bytes(32))) as boot:
        alive = [True]
        url = servers.add("10.0.0.1", HttpApi(boot, version="sim"), alive=lambda: alive[0])
        async with servers.client_factory("172.16.0.2")() as client:
            started = trio.current_time()
            response = await client.get(url)
            assert response.status_code == 200 and str(boot.peer_id) in response.text
            assert trio.current_time() - started == pytest.approx(0.16)  # 2 round trips
            alive[0] = False
            with pytest.raises(httpx.ConnectError, match="nothing serves HTTP"):
                await client.get(url)
