"""STUN in a whole node: config, the stun-server child, Identify, the UDP profile.

Real sockets on loopback (127.0.0.0/8, port 0, real clock), each test bounded.
"""

from __future__ import annotations

import json
import socket
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from actors import HttpApi, Node, open_node
from actors.node import NodeStatistics
from actors.transport import discover_udp_profile
from protocols import AddressPolicy, ConfigError, NodeConfig, build_node_config
from protocols.stun import Endpoint, NatBehaviour

LOOPBACK = AddressPolicy(allow_loopback=True)
EI = NatBehaviour.ENDPOINT_INDEPENDENT


def _config(host: str, **settings: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **settings)


def _boot(host: str = "127.0.0.1", alternate: str | None = "127.0.0.2") -> NodeConfig:
    return _config(host, stun_listen=f"{host}:0", stun_alternate=alternate)


# --- configuration -------------------------------------------------------------------------


def test_stun_addresses_follow_listen_and_stun_alternate() -> None:
    plain = NodeConfig()
    assert plain.stun_addresses() is None  # a plain node serves no STUN
    config = NodeConfig.from_settings(listen=("/ip4/198.51.100.7/tcp/44000/ws",),
                                      stun_listen="3478", stun_alternate="198.51.100.9",
                                      dialback_source="198.51.100.8")
    addresses = config.stun_addresses()
    assert addresses is not None
    assert (str(addresses[0]), str(addresses[1])) == ("198.51.100.7:3478", "198.51.100.9:3479")
    # dialback_source alone gives no alternate (see the next test for why)
    derived = config.with_settings(stun_alternate="")
    assert derived.stun_addresses() == (addresses[0], None)
    wildcard = derived.with_settings(listen=("/ip4/0.0.0.0/tcp/44000/ws",))
    assert wildcard.stun_addresses() == (Endpoint.of("0.0.0.0", 3478), None)
    explicit = config.with_settings(stun_listen="[::1]:5000", stun_alternate="[::2]:6000")
    assert [str(a) for a in explicit.stun_addresses() or ()] == ["[::1]:5000", "[::2]:6000"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"stun_listen": "3478", "stun_alternate": "198.51.100.8"},
     "invalid setting stun_alternate='198.51.100.8' from flag --x, stun_listen='3478' from "
     "flag --x: stun_alternate needs the STUN server on a concrete IP, not 0.0.0.0"),
    ({"stun_listen": "127.0.0.1:3478", "stun_alternate": "::2"},
     "stun_alternate: ::2 must be another IP of the primary's family"),
    ({"stun_listen": "127.0.0.1:3478", "stun_alternate": "127.0.0.2:3478"},
     "stun_alternate: port 3478 must differ from the primary STUN port"),
    ({"stun_listen": "127.0.0.1:65535", "stun_alternate": "127.0.0.2"},
     "the primary STUN port is 65535"),
    ({"stun_listen": "stun.example.org"}, "stun_listen: 'stun.example.org' is not an IP address"),
    ({"stun_listen": "127.0.0.1:3478", "stun_alternate": "127.0.0.2",
      "dialback_source": "127.0.0.2"},
     "stun_alternate must not be the dialback_source IP 127.0.0.2"),
])
def test_impossible_stun_settings_are_one_clear_error(settings: dict[str, str],
                                                      message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_node_config(settings, sources=({key: "flag --x" for key in settings},))
    assert message in str(info.value), str(info.value)


def test_the_profiles_boot_serves_stun_a_plain_node_does_not() -> None:
    from actors.surfaces._cli_settings import profile_text
    from protocols import load_config_text

    boot = build_node_config(load_config_text(profile_text("boot")[0], source="boot"))
    plain = build_node_config(load_config_text(profile_text("default")[0], source="default"))
    assert str((boot.stun_addresses() or ())[0]) == "0.0.0.0:3478"
    assert plain.stun_addresses() is None
    assert boot.udp.udp_discovery and plain.udp.udp_discovery


# --- a node serving STUN, another measuring its UDP profile ------------------------------------


async def _pair(stack: AsyncExitStack, **client: Any) -> tuple[Node, Node]:
    boot = await stack.enter_async_context(open_node(_boot()))
    node = await stack.enter_async_context(open_node(_config("127.0.0.3", **client)))
    await node.connect(boot.listen_addrs[0])
    return boot, node


async def test_a_node_learns_the_stun_server_through_identify_and_measures_udp() -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            boot, node = await _pair(stack)
            served = boot.snapshot().stun_server
            assert served is not None and served.alternate is not None
            assert str(served.primary.ip) == "127.0.0.1" and served.primary.port != 0
            snap = await node.wait_for(lambda s: s.udp.filtering is not NatBehaviour.UNKNOWN)
            assert (snap.udp.mapping, snap.udp.filtering) == (NatBehaviour.NONE, EI)
            stats: NodeStatistics = node.statistics()
            assert stats.udp_discovery is not None and stats.udp_discovery.complete == 1
            assert stats.stun is None  # the client serves no STUN
            boot_stats = boot.statistics().stun
            assert boot_stats is not None and boot_stats.answered >= 3
            assert boot_stats.changed >= 1  # the filtering test came from the alternate
            assert len(boot_stats.addresses) == 4
            status = json.loads(HttpApi(node, window=1).respond("GET", "/status").body)
            assert status["udp"] == {"mapping": "none", "filtering": "endpoint-independent"}
            assert "stun_addrs" not in status
            boot_status = json.loads(HttpApi(boot, window=1).respond("GET", "/status").body)
            assert boot_status["stun_addrs"] == [f"/ip4/127.0.0.1/udp/{served.primary.port}"]
            assert boot_status["udp"] == {"mapping": "unknown", "filtering": "unknown"}
            metrics = {f.name: f for f in text_string_to_metric_families(
                HttpApi(node).respond("GET", "/metrics").body.decode())}
            samples = {s.labels["filtering"]: s.value for s in metrics["autonat_udp_filtering"]
                       .samples}
            assert samples["endpoint-independent"] == 1 and samples["unknown"] == 0
            boot_metrics = {f.name: f for f in text_string_to_metric_families(
                HttpApi(boot).respond("GET", "/metrics").body.decode())}
            responses = {s.labels["kind"]: s.value
                         for s in boot_metrics["autonat_stun_responses"].samples}
            assert responses["success"] >= 3


async def test_without_an_alternate_only_the_mapping_is_known() -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            boot = await stack.enter_async_context(open_node(_boot(alternate=None)))
            node = await stack.enter_async_context(open_node(_config("127.0.0.3")))
            await node.connect(boot.listen_addrs[0])
            snap = await node.wait_for(lambda s: s.udp.mapping is not NatBehaviour.UNKNOWN)
            assert (snap.udp.mapping, snap.udp.filtering) == (NatBehaviour.NONE,
                                                              NatBehaviour.UNKNOWN)


async def test_udp_discovery_off_measures_nothing() -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            boot, node = await _pair(stack, udp_discovery=False)
            await node.wait_for(lambda s: any(p.agent_version for p in s.peers))  # identified
            assert node.statistics().udp_discovery is None
            assert node.snapshot().udp.mapping is NatBehaviour.UNKNOWN
            assert "udp-profile" not in {c.name for c in node.statistics().supervisor.children}
            assert "stun-server" in {c.name for c in boot.statistics().supervisor.children}


async def test_the_stun_server_restarts_and_keeps_serving() -> None:
    with trio.fail_after(30):
        async with open_node(_boot()) as boot:
            before = boot.snapshot().stun_server
            assert before is not None
            boot.supervisor.inject_fault("stun-server")
            stats = await _wait_stats(boot, lambda s: any(
                c.name == "stun-server" and c.restarts == 1 and c.state.value == "running"
                for c in s.supervisor.children))
            assert stats.stun is not None and stats.stun.addresses
            after = await boot.wait_for(lambda s: s.stun_server not in (None, before))
            assert after.stun_server is not None  # port 0: rebound on other ports
            profile = await discover_udp_profile(after.stun_server.primary, timeout=10.0)
            assert (profile.mapping, profile.filtering) == (NatBehaviour.NONE, EI)


async def _wait_stats(node: Node, predicate: Any) -> NodeStatistics:
    while True:
        stats = node.statistics()
        if predicate(stats):
            return stats
        await trio.sleep(0.01)


async def test_a_busy_stun_port_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = _config("127.0.0.1", stun_listen=f"127.0.0.1:{port}")
        with trio.fail_after(30), pytest.raises(BaseException) as info:
            async with open_node(config):
                pass  # pragma: no cover - the node does not start
    from actors.surfaces._cli_commands import user_facing_cause

    cause = user_facing_cause(info.value)
    assert isinstance(cause, OSError)
    assert f"cannot serve STUN on 127.0.0.1:{port}/udp" in str(cause.strerror)
    assert "choose another port with stun_listen" in str(cause.strerror)
