"""Config layers: TOML file < AUTONAT_* environment < flags, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from actors import load_config_file
from actors.node._storage import MAX_CONFIG_BYTES
from protocols import (
    AddressPolicy,
    ConfigError,
    Keypair,
    NodeConfig,
    ProtocolError,
    SettingsError,
    build_node_config,
    component_fields,
    env_settings,
    load_config_text,
    setting_keys,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
PEER = Keypair.generate().peer_id


def test_precedence_file_then_env_then_flags() -> None:
    file = load_config_text(
        """
        [dialer]
        target_peers = 5
        max_connections = 20
        [policy]
        allow_loopback = true
        public_networks = ["198.51.100.0/24"]
        [bootstrap]
        boot_urls = ["http://file.example/status"]
        """, source="node.toml")
    env = env_settings({"AUTONAT_TARGET_PEERS": "7", "AUTONAT_ALLOW_PRIVATE": "yes",
                        "AUTONAT_BOOT_URLS": "http://a.example/status, http://b.example/status",
                        "HOME": "/root", "PATH": "/bin"})
    flags = {"target_peers": 9, "listen": ["/ip4/127.0.0.1/tcp/0/ws"]}
    config = build_node_config(file, env, flags)
    assert config.dialer.target_peers == 9  # flags win
    assert config.dialer.max_connections == 20  # only in the file
    assert config.bootstrap.boot_urls == (  # env
        "http://a.example/status", "http://b.example/status")
    assert config.listen == ("/ip4/127.0.0.1/tcp/0/ws",)
    assert config.policy == AddressPolicy.from_strings(  # policy keys merge one by one
        allow_loopback=True, allow_private=True, public_networks=["198.51.100.0/24"])
    assert build_node_config(file, env).dialer.target_peers == 7
    assert build_node_config(file).dialer.target_peers == 5
    assert build_node_config() == NodeConfig()


def test_keys_may_sit_at_top_level_or_in_any_table_but_only_once() -> None:
    assert load_config_text("target_peers = 3\n[log]\nlog_level = 'debug'", source="x") == {
        "target_peers": 3, "log_level": "debug"}
    with pytest.raises(ConfigError, match=r"x: key 'target_peers' is set twice \(top level and "
                                          r"\[dialer\]\)"):
        load_config_text("target_peers = 3\n[dialer]\ntarget_peers = 4", source="x")


@pytest.mark.parametrize(("text", "message"), [
    ("[dialer]\ntarget_peer = 3",
     r"node.toml: unknown key 'target_peer' in \[dialer\] \(did you mean 'target_peers'\?\)"),
    ("[dialr]\ntarget_peers = 3", r"node.toml: unknown table \[dialr\]"),
    ("policy = 'open'", r"node.toml: unknown key 'policy' in top level"),
    ("[dialer.more]\nx = 1", r"node.toml: \[dialer\] more: nested tables are not allowed"),
    ("target_peers = 'eight'", r"node.toml: target_peers: expected an integer, got 'eight'"),
    ("target_peers = true", r"node.toml: target_peers: expected an integer, got True"),
    ("dial_timeout = 'soon'", r"node.toml: dial_timeout: expected a number, got 'soon'"),
    ("dial_timeout = nan", r"node.toml: dial_timeout: expected a number, got nan"),
    ("allow_loopback = 'yes'", r"node.toml: allow_loopback: expected true or false"),
    ("listen = '/ip4/0.0.0.0/tcp/1/ws'", r"node.toml: listen: expected a list of strings"),
    ("peers = [1, 2]", r"node.toml: peers: expected a list of strings, got \[1, 2\]"),
    ("key_file = 5", r"node.toml: key_file: expected a path"),
    ("target_peers = ", r"node.toml: not valid TOML"),
])
def test_file_errors_name_the_source_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config_text(text, source="node.toml")


@pytest.mark.parametrize(("settings", "key", "fragment"), [
    ({"target_peers": 0}, "target_peers", "must be > 0"),
    ({"target_peers": 100}, "target_peers", "<= max_connections"),
    ({"listen": ("nonsense",)}, "listen", "starts with '/'"),
    ({"listen": (f"/ip4/1.2.3.4/tcp/1/ws/p2p/{PEER}",)}, "listen", "must not contain /p2p/"),
    ({"peers": ("/ip4/1.2.3.4/tcp/1/ws",)}, "peers", "must end in /p2p/"),
    ({"public_networks": ("300.1.0.0/16",)}, "public_networks", "not a CIDR"),
    ({"boot_urls": ("ftp://boot.example/status",)}, "boot_urls", "http(s) URLs"),
    ({"http_listen": "localhost"}, "http_listen", "HOST:PORT"),
    ({"http_listen": "::1:7888"}, "http_listen", "brackets"),
    ({"log_format": "xml"}, "log_format", "one of auto, json, console"),
    ({"log_level": "loud"}, "log_level", "one of debug"),
    ({"fetch_timeout": -1.0}, "fetch_timeout", "must be > 0"),
    ({"fetch_retry_max": 1.0}, "fetch_retry_max", ">= fetch_retry_initial"),
    ({"max_status_bytes": 0}, "max_status_bytes", "must be > 0"),
])
def test_bad_values_name_the_key(settings: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_node_config(settings)
    assert re.search(rf"\b{key}\b", str(info.value)), str(info.value)
    assert fragment in str(info.value)
    assert isinstance(info.value, SettingsError) and not isinstance(info.value, ProtocolError)


def test_flag_layer_values_are_type_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"target_peers: expected an integer, got '3'"):
        build_node_config({"target_peers": "3"})
    with pytest.raises(ConfigError, match=r"unknown setting 'target' \(did you mean"):
        build_node_config({"target": 3})


def test_environment_variables() -> None:
    settings = env_settings({
        "AUTONAT_ALLOW_LOOPBACK": "TRUE", "AUTONAT_ALLOW_DNS": "0",
        "AUTONAT_DIAL_TIMEOUT": " 2.5 ", "AUTONAT_PEERS": "",
        "AUTONAT_DATA_DIR": "~/nodes/a", "AUTONAT_IDLE_TIMEOUT": "",
        "AUTONAT_DIALBACK_SOURCE": "none", "AUTONAT_HTTP_LISTEN": "",
        "AUTONAT_CONFIG": "/etc/autonat.toml",  # the CLI's own variable: ignored here
    })
    assert settings == {
        "allow_loopback": True, "allow_dns": False, "dial_timeout": 2.5, "peers": (),
        "data_dir": Path("~/nodes/a").expanduser(), "idle_timeout": None,
        "dialback_source": None, "http_listen": ""}
    config = build_node_config(settings)
    assert config.data_dir == Path.home() / "nodes" / "a"
    assert config.http.http_listen == ""  # "" disables the HTTP API


@pytest.mark.parametrize(("environ", "message"), [
    # an unknown AUTONAT_* variable is a warning, not an error: tests/test_config_sources.py
    ({"AUTONAT_TARGET_PEERS": "many"},
     r"environment variable AUTONAT_TARGET_PEERS: expected an integer, got 'many'"),
    ({"AUTONAT_ALLOW_LOOPBACK": "maybe"},
     r"environment variable AUTONAT_ALLOW_LOOPBACK: expected true or false"),
    ({"AUTONAT_DIAL_TIMEOUT": "nan"}, r"AUTONAT_DIAL_TIMEOUT: expected a number"),
])
def test_environment_errors_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        env_settings(environ)


def test_every_node_config_field_is_configurable() -> None:
    """A field whose type the loader cannot convert would make this fail; so would a
    field of NodeConfig or of a component that is not a setting key."""
    defaults = NodeConfig()
    keys = setting_keys()
    code_only = {"policy", "stream_buffer", "send_buffer"}  # policy: from POLICY_KEYS
    for name, value in defaults.settings().items():
        if name in code_only:
            assert name not in keys
            continue
        assert name in keys
        assert build_node_config({name: value}) == defaults
    for component in component_fields().values():
        for spec in dataclasses.fields(component):
            assert spec.name in keys or spec.name in code_only


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config_file(bad)


# --- the shipped files -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["default.toml", "boot.toml"])
def test_shipped_files_document_every_key(name: str) -> None:
    text = (CONFIG_DIR / name).read_text()
    missing = [key for key in setting_keys()
               if not re.search(rf"^#? ?{key} = ", text, flags=re.MULTILINE)]
    assert missing == [], f"{name} does not document {missing}"
    lines = text.splitlines()
    for index, line in enumerate(lines):  # every active key has a comment above it
        if re.match(r"^\w+ = ", line):
            above = lines[max(0, index - 6):index]
            assert any(prev.startswith("#") for prev in above), f"{name}: {line} is undocumented"


def test_default_toml_is_the_defaults() -> None:
    config = build_node_config(load_config_file(CONFIG_DIR / "default.toml"))
    assert config == NodeConfig()
    assert config.listen == ("/ip4/0.0.0.0/tcp/44000/ws",)
    assert config.http.http_listen == "127.0.0.1:7888"


def test_boot_toml_is_a_bootstrap_node() -> None:
    config = build_node_config(load_config_file(CONFIG_DIR / "boot.toml"))
    defaults = NodeConfig()
    assert config.autonat_client.welcome_probes is True
    assert config.dialer.max_connections == 512 and config.dialer.target_peers == 16
    server, default_server = config.autonat_server_config, defaults.autonat_server_config
    assert server.rate_global_per_minute > default_server.rate_global_per_minute
    assert server.rate_per_peer_per_minute > default_server.rate_per_peer_per_minute
    assert config.http.http_listen == "0.0.0.0:7888"
    assert config.policy == defaults.policy  # a public boot node serves only public addresses
    assert config.relay_service and not defaults.relay_service  # boot nodes relay


# --- hostile files: every failure is one ConfigError naming the file ----------------------


def test_deeply_nested_toml_is_a_config_error() -> None:
    text = "a = " + "[" * 5000 + "]" * 5000
    with pytest.raises(ConfigError, match=r"^f\.toml: .*nested too deeply"):
        load_config_text(text, source="f.toml")


def test_a_number_too_long_to_convert_names_its_line_and_key() -> None:
    text = "[dialer]\ntarget_peers = " + "9" * 5000 + "\n"
    with pytest.raises(ConfigError, match=r"^f\.toml: line 2 \(key target_peers\): a number "
                                          r"far too long"):
        load_config_text(text, source="f.toml")


def test_a_huge_config_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_config_file(path)
    path.write_text("target_peers = 3\n" + "#" * (MAX_CONFIG_BYTES - 100))
    assert load_config_file(path) == {"target_peers": 3}
