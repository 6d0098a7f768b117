"""From command-line flags to a :class:`NodeConfig`: file < environment < flags.

The CLI's node-running commands share one set of flags (``--listen``,
``--http``, ``--boot-url``, policy flags, ...). Each command starts from a
*profile* - ``config/default.toml`` for ``node``, ``config/boot.toml`` for
``boot`` - unless ``--config`` (or ``$AUTONAT_CONFIG``) names another file;
then ``AUTONAT_*`` environment variables; then the flags given. The merge
and every check are :func:`protocols.build_node_config`'s; this module only
maps flags to setting keys and finds the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from protocols import (
    ConfigError,
    NodeConfig,
    Settings,
    build_node_config,
    env_settings,
    load_config_file,
    parse_host_port,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
KEY_FILE_NAME = "p2p_keypair.ser"

# flag dest -> setting key (lists: append flags; None: not a setting)
_FLAG_KEYS = {
    "listen": "listen", "http": "http_listen", "boot_url": "boot_urls", "peer": "peers",
    "key": "key_file", "data_dir": "data_dir", "public_network": "public_networks",
    "allow_loopback": "allow_loopback", "dialback_source": "dialback_source",
    "log_format": "log_format", "log_level": "log_level",
}


def add_node_flags(parser: argparse.ArgumentParser, *, probe: bool = False) -> None:
    """The flags shared by ``node``, ``boot`` and (mostly) ``probe``."""
    if not probe:
        parser.add_argument("--config", metavar="FILE",
                            help="TOML settings file (default: the command's profile in config/)")
        parser.add_argument("--http", metavar="HOST:PORT",
                            help="HTTP API address for /status, /metrics, /healthz "
                                 "(default 127.0.0.1:7888; '' disables)")
        parser.add_argument("--key", metavar="FILE",
                            help=f"64-byte Ed25519 keypair file (default DATA_DIR/{KEY_FILE_NAME})")
        parser.add_argument("--data-dir", metavar="DIR",
                            help="where the peer store and default key live")
        parser.add_argument("--dialback-source", metavar="IP",
                            help="local IP to dial AutoNAT dial-backs from")
    parser.add_argument("--listen", metavar="MULTIADDR", action="append",
                        help="listen address, repeatable (default /ip4/0.0.0.0/tcp/44000/ws"
                             + (", probe: port 0" if probe else "") + ")")
    parser.add_argument("--boot-url", metavar="URL", action="append",
                        help="bootstrap /status URL, repeatable")
    parser.add_argument("--peer", metavar="MULTIADDR", action="append",
                        help="peer to dial, ending in /p2p/<id>; repeatable")
    parser.add_argument("--public-network", metavar="CIDR", action="append",
                        help="treat this network as publicly routable (labs), repeatable")
    parser.add_argument("--allow-loopback", action="store_true", default=None,
                        help="treat loopback addresses as routable (local testing)")
    parser.add_argument("--log-format", choices=("json", "console"),
                        help="log lines as JSON or readable console (default: console on a TTY)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$AUTONAT_DATA_DIR``, else ``$XDG_DATA_HOME/trio-autonat``, else ``~/.local/share``."""
    explicit = environ.get("AUTONAT_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "trio-autonat"


def flag_settings(args: argparse.Namespace) -> Settings:
    """The settings the user gave as flags (unset flags are absent)."""
    settings: Settings = {}
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        settings[key] = tuple(value) if isinstance(value, list) else value
    return settings


def profile_path(args: argparse.Namespace, profile: str,
                 environ: Mapping[str, str] = os.environ) -> Path | None:
    explicit = getattr(args, "config", None) or environ.get("AUTONAT_CONFIG")
    if explicit:
        return Path(explicit)
    path = CONFIG_DIR / f"{profile}.toml"
    return path if path.exists() else None


def node_config(args: argparse.Namespace, *, profile: str | None,
                extra: Settings | None = None,
                environ: Mapping[str, str] = os.environ) -> NodeConfig:
    """Build the config: profile file < environment < ``extra`` < flags.

    Raises :class:`ConfigError` (a one-line message naming the key or file).
    """
    layers: list[Settings] = []
    path = profile_path(args, profile, environ) if profile else None
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist or is not a file")
        layers.append(load_config_file(path))
    layers.append(env_settings(environ))
    layers.append(dict(extra or {}))
    layers.append(flag_settings(args))
    merged: Settings = {}
    for layer in layers:
        merged.update(layer)
    if profile and merged.get("data_dir") in (None, ""):
        merged["data_dir"] = default_data_dir(environ)
    if profile and merged.get("key_file") in (None, ""):
        data_dir = merged["data_dir"]
        assert isinstance(data_dir, (str, Path))
        merged["key_file"] = Path(data_dir) / KEY_FILE_NAME
    return build_node_config(merged)


def explicit_keys(args: argparse.Namespace,
                  environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """Setting keys the user chose by flag or environment (not profile defaults)."""
    chosen = set(flag_settings(args))
    chosen |= {key for key in ("listen", "http_listen")
               if f"AUTONAT_{key.upper()}" in environ}
    return frozenset(chosen)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_default_ports(config: NodeConfig,
                       explicit: frozenset[str]) -> tuple[NodeConfig, list[str]]:
    """Replace *default* ports that are busy by port 0 (any free port).

    Two nodes started with default settings on one machine (``autonat boot``
    and ``autonat node`` in two terminals) would otherwise collide on 44000
    and 7888. Ports the user chose explicitly are never changed: a busy one is
    an error. Returns the new config and one warning per change.
    """
    notes: list[str] = []
    listen = list(config.listen)
    if "listen" not in explicit:
        for i, addr in enumerate(config.listen_addrs):
            if addr.ip is not None and addr.port and not _port_free(addr.host, addr.port):
                listen[i] = str(dataclasses.replace(addr, port=0))
                notes.append(f"default listen port {addr.port} is busy; using a free port")
    http = config.http_listen
    if http and "http_listen" not in explicit:
        host, port = parse_host_port(http)
        if port and not _port_free(host, port):
            http = f"[{host}]:0" if ":" in host else f"{host}:0"
            notes.append(f"default HTTP port {port} is busy; using a free port")
    return dataclasses.replace(config, listen=tuple(listen), http_listen=http), notes


def busy_ports(config: NodeConfig) -> list[str]:
    """Listen and HTTP addresses that cannot be bound right now (checked before starting,
    so a taken port is one clear line instead of a restart loop in the Dialer)."""
    busy = [str(addr) for addr in config.listen_addrs
            if addr.ip is not None and addr.port and not _port_free(addr.host, addr.port)]
    if config.http_listen:
        host, port = parse_host_port(config.http_listen)
        if port and not _port_free(host, port):
            busy.append(f"HTTP {config.http_listen}")
    return busy
