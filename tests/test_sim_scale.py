"""The simulator's scale pieces: the scale scenarios, how hosts spread over many boot
nodes, the arrival spacing, and the shortcuts that must not change what a node runs.

The timed scale runs themselves are a benchmark (benchmarks/sim_scale.py), never a test.
"""

from __future__ import annotations

import gc

import pytest

from actors.surfaces import _simulator
from actors.surfaces._cli_sim import load_scenario
from actors.surfaces._simulator import BOOT_LIST, boot_list, plan_world
from actors.transport._memory_transport import EPHEMERAL_PORTS, MemoryNetwork
from protocols.sim import LISTEN_PORT, ScenarioError, SimScenario


@pytest.mark.parametrize(("name", "hosts", "boots", "spacing"),
                         [("scale-1k", 1000, 4, 0.1), ("scale-10k", 10000, 40, 0.01)])
def test_scale_scenarios_keep_hosts_per_boot_node_and_arrivals_per_boot_node(
        name: str, hosts: int, boots: int, spacing: float) -> None:
    scenario = load_scenario(name)
    assert (scenario.host_count, scenario.boot_nodes, scenario.start_spacing) == (
        hosts, boots, spacing)
    assert scenario.host_count / scenario.boot_nodes == 250
    assert 1 / (scenario.start_spacing * scenario.boot_nodes) == pytest.approx(2.5)
    assert max(n for _, n in scenario.hosts) - min(n for _, n in scenario.hosts) <= 1


def test_start_spacing_is_read_and_checked() -> None:
    text = "[scenario]\nstart_spacing = 0.5\n[hosts]\npublic = 1\n"
    assert SimScenario.from_toml(text).start_spacing == 0.5
    assert SimScenario.from_toml("[hosts]\npublic = 1\n").start_spacing == 0.01
    with pytest.raises(ScenarioError, match="start_spacing"):
        SimScenario.from_toml(text.replace("0.5", "-1"))


def test_a_few_boot_nodes_are_all_handed_over_in_order() -> None:
    addrs = [f"b{i}" for i in range(BOOT_LIST)]
    assert all(boot_list(addrs, index) == addrs for index in range(10))


def test_many_boot_nodes_are_spread_evenly_over_the_hosts() -> None:
    addrs = [f"b{i}" for i in range(40)]
    lists = [boot_list(addrs, index) for index in range(1000)]
    assert all(len(set(chosen)) == BOOT_LIST for chosen in lists)
    counts = {addr: sum(addr in chosen for chosen in lists) for addr in addrs}
    assert set(counts.values()) == {1000 * BOOT_LIST // 40}


def test_host_config_shortcut_equals_the_full_build() -> None:
    _, hosts = plan_world(load_scenario("small", hosts=3))
    peers = ["/ip4/10.0.0.1/tcp/4001/ws/p2p/12D3KooWGRUVh8uBEnxAfEV4CuAeHhKWbgTE2TyTxqrGNmMm2WmJ"]
    urls = ["http://10.0.0.1:7888/status", "http://10.0.0.2:7888/status"]
    for host in hosts:
        full = _simulator._profile("default", listen=[f"/ip4/{host.ip}/tcp/{LISTEN_PORT}/ws"],
                                   peers=peers)
        assert _simulator._host_config(host, peers) == full
        for serve in (True, False):
            full = _simulator._profile("default",
                                       listen=[f"/ip4/{host.ip}/tcp/{LISTEN_PORT}/ws"],
                                       peers=[], boot_urls=urls, autonat_server=serve)
            assert _simulator._host_config(host, [], urls, serve) == full


def test_batch_gc_thresholds_hold_for_the_run_and_are_restored() -> None:
    before = gc.get_threshold()
    with _simulator._batch_gc():
        assert gc.get_threshold() == _simulator.GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_ephemeral_ports_cycle_within_the_range_and_skip_the_askers_listeners() -> None:
    net = MemoryNetwork()
    net._listeners[("10.0.0.1", EPHEMERAL_PORTS[1])] = None  # type: ignore[assignment]
    first = [net.next_port("10.0.0.1") for _ in range(3)]
    assert first == [EPHEMERAL_PORTS[0], EPHEMERAL_PORTS[2], EPHEMERAL_PORTS[3]]
    assert net.next_port("10.0.0.2") == EPHEMERAL_PORTS[4]  # one counter: no clash
    ports = [net.next_port("10.0.0.3") for _ in range(30_000)]  # more than the range
    assert min(ports) == EPHEMERAL_PORTS[0] and max(ports) == EPHEMERAL_PORTS[-1]
    assert len(set(ports[:len(EPHEMERAL_PORTS)])) == len(EPHEMERAL_PORTS)
