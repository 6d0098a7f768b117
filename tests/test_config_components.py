"""NodeConfig's components: per-component validation, flat keys routed by reflection,
and one declaration per limit (the connection limits a node runs with)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from actors import MemoryNetwork, load_config_file, open_node
from protocols import (
    AddressPolicy,
    AutonatClientConfig,
    AutonatServerConfig,
    BootstrapConfig,
    ConfigError,
    ConnectionConfig,
    DialerConfig,
    HttpConfig,
    Keypair,
    LoggingConfig,
    MuxLimits,
    NodeConfig,
    build_node_config,
    component_fields,
    env_settings,
    load_config_text,
    setting_fields,
    setting_keys,
)
from protocols.relay import RelayConfig
from protocols.stun import StunServerConfig, UdpDiscoveryConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
LOOPBACK = AddressPolicy(allow_loopback=True)
PEER = Keypair.generate().peer_id

# The defaults NodeConfig had as one flat class; nodes must keep running with them.
TODAYS_DEFAULTS: dict[str, object] = {
    "listen": ("/ip4/0.0.0.0/tcp/44000/ws",), "key_file": None, "data_dir": None, "peers": (),
    "announce": (),
    "boot_urls": (), "target_peers": 8, "max_connections": 64, "dial_concurrency": 8,
    "dial_timeout": 10.0, "reconnect_initial": 1.0, "reconnect_max": 60.0,
    "handshake_timeout": 10.0, "stream_timeout": 30.0, "idle_timeout": None,
    "inbound_idle_timeout": None,
    "max_streams": 64, "max_frame_bytes": 64 * 1024, "identify_timeout": 10.0,
    "max_refusals": 8, "refusal_window": 60.0,
    "agent_version": "trio-autonat/0.1.0", "mailbox_size": 256, "save_interval": 5.0,
    "max_peers": 1000, "probe_servers": 3, "probe_timeout": 15.0, "confidence": 2,
    "autonat_server": True, "dialback_source": None, "allow_other_ip": True,
    "rate_global_per_minute": 60, "rate_per_peer_per_minute": 12,
    "rate_concurrent_per_peer": 2, "server_timeout": 30.0, "dialback_timeout": 5.0,
    "dialback_floor": 0.3,
    "rate_per_ip_per_minute": 24, "rate_per_subnet_per_minute": 48,
    "rate_concurrent_per_ip": 4, "max_connections_per_ip": 8,
    "max_connections_per_subnet": 32, "max_pending_handshakes": 64, "max_pending_per_ip": 4,
    "max_pending_upgrades": 256, "max_pending_upgrades_per_ip": 8,
    "max_pending_upgrades_per_subnet": 32,
    "welcome_probes": False, "fetch_timeout": 10.0, "fetch_retry_initial": 2.0,
    "fetch_retry_max": 300.0, "max_status_bytes": 256 * 1024, "max_status_addrs": 256,
    "refetch_interval": 30.0, "cross_host_redirects": False, "http_listen": "127.0.0.1:7888",
    "log_format": "auto", "log_level": "info", "tls_cert": None, "tls_key": None,
    "tls_ca": None,
    "stun_listen": "", "stun_alternate": None, "stun_ip_rate": 5.0, "stun_ip_burst": 20,
    "stun_subnet_rate": 20.0, "stun_subnet_burst": 80, "stun_global_rate": 1000.0,
    "stun_global_burst": 2000, "udp_discovery": True, "udp_rto": 0.5, "udp_sends": 4,
    "udp_discovery_timeout": 20.0, "udp_discovery_interval": 1800.0,
    "relay_service": False, "relay_max_reservations": 128, "relay_max_reservations_per_ip": 8,
    "relay_max_reservations_per_subnet": 32, "relay_reservation_ttl": 3600.0,
    "relay_max_circuits_per_peer": 16, "relay_max_circuits": 256,
    "relay_circuit_duration": 120.0, "relay_circuit_data": 131072,
    "relay_connect_timeout": 10.0, "relay_reservations": 2,
}
OWNERS = {
    DialerConfig: "dialer", ConnectionConfig: "connection",
    AutonatClientConfig: "autonat_client", AutonatServerConfig: "autonat_server_config",
    BootstrapConfig: "bootstrap", HttpConfig: "http", LoggingConfig: "logging",
    StunServerConfig: "stun", UdpDiscoveryConfig: "udp", RelayConfig: "relay",
}


# --- one declaration per key -----------------------------------------------------------


def test_no_key_is_declared_twice() -> None:
    own = [spec.name for spec in dataclasses.fields(NodeConfig)
           if spec.name not in component_fields()]
    declared = own + [spec.name for cls in component_fields().values()
                      for spec in dataclasses.fields(cls)]
    twice = [name for name, count in Counter(declared).items() if count > 1]
    assert twice == []
    assert set(setting_fields()) == set(declared)
    assert not set(component_fields()) & set(declared)  # "dialer" is no setting key


def test_the_components_are_the_documented_ones() -> None:
    assert component_fields() == {name: cls for cls, name in OWNERS.items()}
    for name, cls in component_fields().items():
        assert isinstance(getattr(NodeConfig(), name), cls)


def test_the_setting_keys_are_todays() -> None:
    keys = set(setting_keys()) - {"allow_loopback", "allow_private", "public_networks",
                                  "allow_dns"}
    assert keys == set(TODAYS_DEFAULTS)


def test_defaults_are_todays_defaults() -> None:
    settings = NodeConfig().settings()
    assert {key: settings[key] for key in TODAYS_DEFAULTS} == TODAYS_DEFAULTS
    assert NodeConfig().connection.idle_timeout is None  # nodes keep idle connections


@pytest.mark.parametrize("key", sorted(TODAYS_DEFAULTS))
def test_every_key_lives_in_exactly_one_place(key: str) -> None:
    where = setting_fields()[key]
    holder = NodeConfig() if where.component is None else getattr(NodeConfig(), where.component)
    assert where.owner is type(holder)
    assert getattr(holder, key) == TODAYS_DEFAULTS[key]


# --- routing flat keys ---------------------------------------------------------------------


def test_from_settings_routes_flat_keys_to_their_components() -> None:
    config = NodeConfig.from_settings(
        listen=("/ip4/127.0.0.1/tcp/0/ws",), agent_version="x/1", target_peers=3,
        handshake_timeout=2.5, idle_timeout=60.0, probe_servers=1, dialback_source="10.0.0.1",
        boot_urls=("http://boot.example/status",), http_listen="", log_level="debug",
        stream_buffer=4)
    assert config == NodeConfig(
        listen=("/ip4/127.0.0.1/tcp/0/ws",), agent_version="x/1",
        dialer=DialerConfig(target_peers=3),
        connection=ConnectionConfig(handshake_timeout=2.5, idle_timeout=60.0, stream_buffer=4),
        autonat_client=AutonatClientConfig(probe_servers=1),
        autonat_server_config=AutonatServerConfig(dialback_source="10.0.0.1"),
        bootstrap=BootstrapConfig(boot_urls=("http://boot.example/status",)),
        http=HttpConfig(http_listen=""), logging=LoggingConfig(log_level="debug"))


def test_flat_keys_change_a_given_component_and_with_settings_keeps_the_rest() -> None:
    config = NodeConfig.from_settings(dialer=DialerConfig(max_connections=10), target_peers=3)
    assert config.dialer == DialerConfig(target_peers=3, max_connections=10)
    changed = config.with_settings(http_listen="", reconnect_max=5.0)
    assert changed.dialer == DialerConfig(target_peers=3, max_connections=10, reconnect_max=5.0)
    assert changed.http == HttpConfig(http_listen="")
    assert changed.with_settings() == changed
    assert NodeConfig.from_settings(**changed.settings()) == changed
    with pytest.raises(TypeError, match="no setting 'target_peer'"):
        NodeConfig.from_settings(target_peer=3)
    with pytest.raises(TypeError, match="dialer must be a DialerConfig"):
        NodeConfig(dialer=ConnectionConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dataclasses.replace(config, target_peers=4)  # type: ignore[call-arg]


def _other_value(key: str, value: object) -> object:
    changed: dict[str, object] = {
        "listen": ("/ip4/127.0.0.1/tcp/0/ws",), "peers": (f"/ip4/1.2.3.4/tcp/1/ws/p2p/{PEER}",),
        "announce": ("/ip4/203.0.113.7/tcp/44001/ws",),
        "boot_urls": ("http://b/status",),
        "dialback_source": "127.0.0.2", "http_listen": "", "log_format": "json",
        "log_level": "debug", "agent_version": "other/1", "key_file": Path("/k"),
        "data_dir": Path("/d"), "idle_timeout": 99.0, "inbound_idle_timeout": 77.0,
        "autonat_server": False,
        "allow_other_ip": False, "welcome_probes": True, "cross_host_redirects": True,
        "tls_cert": Path("/c.pem"),
        "tls_key": Path("/k.pem"), "tls_ca": Path("/ca.pem"), "max_connections": 99,
        "stun_listen": "127.0.0.1:3478", "stun_alternate": "127.0.0.2", "udp_discovery": False,
        "udp_rto": 0.25, "udp_sends": 3, "relay_service": True,
    }
    if key in changed:
        return changed[key]
    assert isinstance(value, int | float)
    return value + 1 if key != "target_peers" else 9


@pytest.mark.parametrize("key", sorted(TODAYS_DEFAULTS))
def test_each_file_key_reaches_its_component(key: str) -> None:
    keys = ("tls_cert", "tls_key") if key in ("tls_cert", "tls_key") else (key,)  # a pair
    values = {k: _other_value(k, TODAYS_DEFAULTS[k]) for k in keys}
    config = build_node_config(values)
    for k, value in values.items():
        where = setting_fields()[k]
        holder = config if where.component is None else getattr(config, where.component)
        assert getattr(holder, k) == value
    untouched = {k: v for k, v in config.settings().items() if k not in keys}
    assert untouched == {k: v for k, v in NodeConfig().settings().items() if k not in keys}


def test_environment_and_files_route_like_flags() -> None:
    env = env_settings({"AUTONAT_IDLE_TIMEOUT": "12", "AUTONAT_LOG_LEVEL": "error",
                        "AUTONAT_RATE_CONCURRENT_PER_PEER": "5"})
    config = build_node_config(env)
    assert config.connection.idle_timeout == 12.0
    assert config.logging.log_level == "error"
    assert config.autonat_server_config.rate_concurrent_per_peer == 5


def test_code_only_fields_are_no_settings() -> None:
    for key in ("stream_buffer", "send_buffer"):
        assert key not in setting_keys()
        with pytest.raises(ConfigError, match=f"unknown setting '{key}'"):
            build_node_config({key: 4})
        with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
            load_config_text(f"{key} = 4", source="x.toml")


@pytest.mark.parametrize("name", ["default.toml", "boot.toml"])
def test_every_key_of_the_shipped_files_still_loads(name: str) -> None:
    settings = load_config_file(CONFIG_DIR / name)
    config = build_node_config(settings)
    flat = config.settings()
    for key, value in settings.items():
        if key in ("allow_loopback", "allow_private", "public_networks", "allow_dns"):
            continue
        assert flat[key] == value, key


# --- per-component validation --------------------------------------------------------------


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (DialerConfig, {"target_peers": 0}, "target_peers must be > 0, got 0"),
    (DialerConfig, {"dial_concurrency": -1}, "dial_concurrency must be > 0, got -1"),
    (DialerConfig, {"dial_timeout": 0.0}, "dial_timeout must be > 0, got 0.0"),
    (DialerConfig, {"reconnect_initial": 5.0, "reconnect_max": 4.0},
     "reconnect_max must be >= reconnect_initial"),
    (DialerConfig, {"target_peers": 65}, "target_peers must be <= max_connections"),
    (ConnectionConfig, {"handshake_timeout": 0}, "handshake_timeout must be > 0, got 0"),
    (ConnectionConfig, {"stream_timeout": -1.0}, "stream_timeout must be > 0, got -1.0"),
    (ConnectionConfig, {"idle_timeout": 0.0}, "idle_timeout must be > 0, got 0.0"),
    (ConnectionConfig, {"max_streams": 0}, "max_streams must be > 0, got 0"),
    (ConnectionConfig, {"max_streams": 1.5}, "max_streams must be an integer, got 1.5"),
    (ConnectionConfig, {"stream_buffer": True}, "stream_buffer must be an integer, got True"),
    (ConnectionConfig, {"send_buffer": 0}, "send_buffer must be > 0, got 0"),
    (ConnectionConfig, {"stream_timeout": "soon"}, "stream_timeout must be a number"),
    (ConnectionConfig, {"max_frame_bytes": 2**30}, "max_frame_bytes is out of range"),
    (AutonatClientConfig, {"probe_servers": 0}, "probe_servers must be > 0, got 0"),
    (AutonatClientConfig, {"confidence": 0}, "confidence must be > 0, got 0"),
    (AutonatClientConfig, {"probe_timeout": -2.0}, "probe_timeout must be > 0, got -2.0"),
    (AutonatServerConfig, {"dialback_source": "here"},
     "dialback_source must be an IP address, got 'here'"),
    (AutonatServerConfig, {"rate_global_per_minute": 0}, "rate_global_per_minute must be > 0"),
    (AutonatServerConfig, {"rate_per_peer_per_minute": 0},
     "rate_per_peer_per_minute must be > 0"),
    (AutonatServerConfig, {"rate_concurrent_per_peer": 0},
     "rate_concurrent_per_peer must be > 0"),
    (AutonatServerConfig, {"server_timeout": 0.0}, "server_timeout must be > 0"),
    (AutonatServerConfig, {"dialback_timeout": 0.0}, "dialback_timeout must be > 0"),
    (BootstrapConfig, {"boot_urls": ("ftp://b/status",)}, "boot_urls entries must be http(s)"),
    (BootstrapConfig, {"boot_urls": ("http://b:99999/status",)}, "boot_urls entry"),
    (BootstrapConfig, {"fetch_timeout": 0.0}, "fetch_timeout must be > 0"),
    (BootstrapConfig, {"fetch_retry_initial": 10.0, "fetch_retry_max": 5.0},
     "fetch_retry_max must be >= fetch_retry_initial"),
    (BootstrapConfig, {"max_status_bytes": 0}, "max_status_bytes must be > 0"),
    (BootstrapConfig, {"max_status_addrs": 0}, "max_status_addrs must be > 0"),
    (BootstrapConfig, {"refetch_interval": 0.0}, "refetch_interval must be > 0"),
    (HttpConfig, {"http_listen": "localhost"}, "http_listen: expected HOST:PORT"),
    (HttpConfig, {"http_listen": "[nope]:1"}, "http_listen: IPv6 host must be an IP address"),
    (HttpConfig, {"http_listen": "http://127.0.0.1:7888/"},
     "http_listen: expected HOST:PORT, not a URL: write '127.0.0.1:7888'"),
    (LoggingConfig, {"log_format": "xml"}, "log_format must be one of auto, json, console"),
    (LoggingConfig, {"log_level": "loud"}, "log_level must be one of debug, info"),
    (StunServerConfig, {"stun_listen": "stun.example:3478"},
     "stun_listen: 'stun.example' is not an IP address"),
    (StunServerConfig, {"stun_listen": "127.0.0.1:65536"}, "stun_listen: port must be 0..65535"),
    (StunServerConfig, {"stun_listen": "[::1"}, "stun_listen: expected [IPv6]:PORT"),
    (StunServerConfig, {"stun_alternate": "3479"}, "stun_alternate must name an IP"),
    (StunServerConfig, {"stun_ip_rate": 0.0}, "stun_ip_rate must be > 0"),
    (StunServerConfig, {"stun_global_burst": 0}, "stun_global_burst must be an int >= 1"),
    (UdpDiscoveryConfig, {"udp_rto": 0.0}, "udp_rto must be > 0, got 0.0"),
    (UdpDiscoveryConfig, {"udp_sends": 11}, "udp_sends must be an integer 1..10"),
    (UdpDiscoveryConfig, {"udp_discovery_timeout": 10.0},
     "udp_discovery_timeout (10 s) must be >= 16.5 s"),
    (UdpDiscoveryConfig, {"udp_discovery_interval": 0.0}, "udp_discovery_interval must be > 0"),
])
def test_each_component_validates_its_fields(cls: type, kwargs: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert str(info.value).startswith(message), str(info.value)
    field_name = next(iter(kwargs)) if len(kwargs) == 1 else None
    if field_name is not None:
        assert re.search(rf"\b{field_name}\b", str(info.value))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mailbox_size": 0}, "mailbox_size must be > 0, got 0"),
    ({"max_peers": 0}, "max_peers must be > 0, got 0"),
    ({"identify_timeout": 0.0}, "identify_timeout must be > 0"),
    ({"save_interval": -1.0}, "save_interval must be > 0"),
    ({"listen": ()}, "listen must name at least one address"),
    ({"tls_cert": Path("c.pem")}, "tls_cert is set but tls_key is not"),
])
def test_node_wide_fields_are_validated_by_node_config(kwargs: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        NodeConfig(**kwargs)


def test_the_loader_names_component_errors_like_before() -> None:
    with pytest.raises(ConfigError) as info:
        build_node_config({"max_streams": 0}, sources=("config file c",))
    assert str(info.value) == ("invalid setting max_streams=0 from config file c: "
                               "max_streams must be > 0, got 0")
    with pytest.raises(ConfigError) as info:
        build_node_config({"fetch_retry_initial": 10.0, "fetch_retry_max": 5.0},
                          sources=({"fetch_retry_initial": "flag --a",
                                    "fetch_retry_max": "flag --b"},))
    assert str(info.value) == (
        "invalid setting fetch_retry_max=5.0 from flag --b, fetch_retry_initial=10.0 from "
        "flag --a: fetch_retry_max must be >= fetch_retry_initial")


# --- one declaration per limit: what a node runs with --------------------------------------


def test_the_mux_limits_derive_from_the_connection_config() -> None:
    assert ConnectionConfig().mux_limits() == MuxLimits()  # the same defaults, declared once
    limits = ConnectionConfig(max_streams=3, stream_timeout=7.0, max_frame_bytes=4096).mux_limits()
    assert (limits.max_streams, limits.stream_timeout, limits.max_frame_bytes) == (3, 7.0, 4096)
    assert NodeConfig().connection == ConnectionConfig()


def _memory_config(host: str, **settings: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **settings)


async def _idle_closes(idle_settings: dict[str, Any], wait: float) -> list[str]:
    net = MemoryNetwork()
    with trio.fail_after(wait + 60), capture_logs() as logs:
        async with AsyncExitStack() as stack:
            b = await stack.enter_async_context(
                open_node(_memory_config("127.0.77.2"), transport=net.transport("127.0.77.2")))
            a = await stack.enter_async_context(
                open_node(_memory_config("127.0.77.1", **idle_settings),
                          transport=net.transport("127.0.77.1")))
            await a.connect(b.listen_addrs[0])
            await trio.sleep(wait)
    return [str(entry.get("reason")) for entry in logs
            if entry["event"] == "connection down" and "idle" in str(entry.get("reason"))]


async def test_a_node_runs_its_connections_with_config_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    reasons = await _idle_closes({"idle_timeout": 20.0}, wait=200.0)
    assert "idle for 20 s with no open stream" in reasons  # a's side closes
    assert "closed by the peer: idle for 20 s with no open stream" in reasons  # b only follows
    assert all("idle for 20 s" in reason for reason in reasons)


async def test_a_node_keeps_idle_connections_by_default(
        autojump_clock: trio.testing.MockClock) -> None:
    """The connection actor's old default of 300 s is gone: None is what nodes run with
    (with 300 s, connections here idle out about every 430 s)."""
    assert await _idle_closes({}, wait=1500.0) == []


async def test_inbound_idle_timeout_closes_only_connections_the_peer_opened(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    with trio.fail_after(600), capture_logs() as logs:
        async with AsyncExitStack() as stack:
            boot = await stack.enter_async_context(open_node(
                _memory_config("127.0.78.1", inbound_idle_timeout=20.0),
                transport=net.transport("127.0.78.1")))
            other = await stack.enter_async_context(open_node(
                _memory_config("127.0.78.3"), transport=net.transport("127.0.78.3")))
            newcomer = await stack.enter_async_context(open_node(
                _memory_config("127.0.78.2", target_peers=1),
                transport=net.transport("127.0.78.2")))
            await newcomer.connect(boot.listen_addrs[0])  # inbound at the boot node
            await boot.connect(other.listen_addrs[0])  # outbound from the boot node
            await trio.sleep(100)
            snap = boot.snapshot()
    closed = [(e.get("node"), e.get("reason")) for e in logs
              if e["event"] == "connection down" and "idle for 20 s" in str(e.get("reason"))]
    assert (str(boot.peer_id), "idle for 20 s with no open stream") in closed
    assert other.peer_id in snap.connected_peers  # its own outbound connection is kept
    assert ConnectionConfig(inbound_idle_timeout=20.0).for_inbound().idle_timeout == 20.0
    assert ConnectionConfig().for_inbound() == ConnectionConfig()
