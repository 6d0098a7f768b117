"""From command-line flags to a :class:`NodeConfig`: profile < file < environment < flags.

The CLI's node-running commands share one set of flags (``--listen``,
``--http``, ``--boot-url``, policy flags, ...). Each command starts from a
*profile* - ``default.toml`` for ``node``, ``boot.toml`` for ``boot`` - then
overlays the file ``--config`` (or ``$AUTONAT_CONFIG``) names, if any; then
``AUTONAT_*`` environment variables; then the flags given. The profiles are
the files of the repository's ``config/`` folder, shipped inside the package
as ``actors._profiles`` (see ``pyproject.toml``) and read with
:mod:`importlib.resources`, so an installed wheel has them too. The merge and
every check are :func:`protocols.build_node_config`'s; this module maps flags
to setting keys, finds the files and names the source of every layer, so an
error says which file, variable or flag a bad value came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib.resources
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from protocols import (
    ConfigError,
    LayerSource,
    NodeConfig,
    Settings,
    build_node_config,
    env_settings,
    env_source,
    env_warnings,
    load_config_text,
    parse_host_port,
)
from protocols.stun import Endpoint

from ..node import load_config_file, stun_bind_hint

PROFILE_PACKAGE = "actors._profiles"
"""The package the profiles ship in (``config/*.toml``, mapped by ``pyproject.toml``)."""
SOURCE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
"""``config/`` of a source checkout (used when the package mapping is not installed)."""
KEY_FILE_NAME = "p2p_keypair.ser"

# flag dest -> setting key (lists: append flags; None: not a setting)
_FLAG_KEYS = {
    "listen": "listen", "announce": "announce", "http": "http_listen", "boot_url": "boot_urls",
    "peer": "peers",
    "key": "key_file", "data_dir": "data_dir", "public_network": "public_networks",
    "allow_loopback": "allow_loopback", "dialback_source": "dialback_source",
    "log_format": "log_format", "log_level": "log_level",
    "tls_cert": "tls_cert", "tls_key": "tls_key", "tls_ca": "tls_ca",
    "stun_listen": "stun_listen", "stun_alternate": "stun_alternate",
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
        parser.add_argument("--stun-listen", metavar="[IP:]PORT",
                            help="serve STUN over UDP there ('' = no STUN; boot: 3478 on "
                                 "the listen IP)")
        parser.add_argument("--stun-alternate", metavar="IP[:PORT]",
                            help="RFC 5780 second STUN address (another IP than "
                                 "--dialback-source; port: the STUN port + 1)")
        parser.add_argument("--announce", metavar="ADDR", action="append",
                            help="externally visible address to advertise first (a port "
                                 "forward's or load balancer's), multiaddr or HOST:PORT; "
                                 "repeatable")
        parser.add_argument("--tls-cert", metavar="FILE",
                            help="PEM certificate chain to serve /wss listen addresses "
                                 "(needs --tls-key)")
        parser.add_argument("--tls-key", metavar="FILE",
                            help="PEM private key (unencrypted) of --tls-cert")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="PEM CA certificates to trust when dialing /wss and fetching "
                             "https:// boot URLs, in addition to the system CAs")
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
    parser.add_argument("--log-format", choices=("json", "console", "journal"),
                        help="log lines as JSON, readable console, or journald's key=value "
                        "lines with a priority prefix (default: console on a TTY, journal "
                        "under systemd, else JSON)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$AUTONAT_DATA_DIR``, else ``$XDG_DATA_HOME/trio-autonat``, else ``~/.local/share``."""
    explicit = environ.get("AUTONAT_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "trio-autonat"


def profile_data_dir(profile: str, environ: Mapping[str, str] = os.environ) -> Path:
    """The data directory a profile uses when none is configured.

    A boot node keeps its own (``<default>/boot``), so that ``autonat boot``
    and ``autonat node`` on one machine - the README's first session - are two
    identities, not one key dialing itself.
    """
    base = default_data_dir(environ)
    return base / "boot" if profile == "boot" else base


def flag_settings(args: argparse.Namespace) -> Settings:
    """The settings the user gave as flags (unset flags are absent)."""
    settings: Settings = {}
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        settings[key] = tuple(value) if isinstance(value, list) else value
    return settings


def flag_sources() -> dict[str, str]:
    """Setting key -> the flag that sets it (``listen`` -> ``flag --listen``)."""
    return {key: f"flag --{dest.replace('_', '-')}" for dest, key in _FLAG_KEYS.items()}


def profile_text(profile: str) -> tuple[str, str]:
    """The TOML text of a profile and where it was read from.

    From the package (:data:`PROFILE_PACKAGE`, via :mod:`importlib.resources`);
    from ``config/`` only in a source checkout whose installation predates the
    mapping. A profile missing from both is an error, never a silent default.
    """
    name = f"{profile}.toml"
    try:
        resource = importlib.resources.files(PROFILE_PACKAGE) / name
        if resource.is_file():
            return resource.read_text(encoding="utf-8"), str(resource)
    except (ModuleNotFoundError, OSError):
        pass
    fallback = SOURCE_CONFIG_DIR / name
    if fallback.is_file():
        return fallback.read_text(encoding="utf-8"), str(fallback)
    raise ConfigError(f"profile {name} is missing from package {PROFILE_PACKAGE} "
                      "(a broken installation? reinstall trio-autonat)")


def config_file_path(args: argparse.Namespace,
                     environ: Mapping[str, str] = os.environ) -> tuple[Path, str] | None:
    """The file ``--config`` or ``$AUTONAT_CONFIG`` names, and how to name it in errors."""
    flag = getattr(args, "config", None)
    if flag:
        return Path(flag).expanduser(), f"config file {flag} (flag --config)"
    variable = environ.get("AUTONAT_CONFIG")
    if variable:
        return Path(variable).expanduser(), f"config file {variable} (AUTONAT_CONFIG)"
    return None


@dataclasses.dataclass(frozen=True)
class LoadedConfig:
    """A node's configuration and where it came from (for the first log line)."""

    config: NodeConfig
    profile: str | None
    """``default``, ``boot`` or None (``probe``)."""
    profile_file: str | None
    """Where the profile was read from (inside the installed package)."""
    config_file: Path | None
    """The ``--config``/``$AUTONAT_CONFIG`` file overlaid on the profile, if any."""
    explicit: frozenset[str]
    """Keys set by the config file, the environment or a flag (not the profile)."""
    warnings: tuple[str, ...] = ()
    """One line each, e.g. an ``AUTONAT_*`` variable that names no setting."""


def load_node_config(args: argparse.Namespace, *, profile: str | None,
                     extra: Settings | None = None,
                     environ: Mapping[str, str] = os.environ) -> LoadedConfig:
    """Build the config: profile < config file < environment < ``extra`` < flags.

    Raises :class:`ConfigError` (a one-line message naming the key and where
    its value came from: profile, config file, environment variable or flag).
    """
    # (settings, where they came from, chosen by the user rather than built in)
    layers: list[tuple[Settings, LayerSource, bool]] = []
    profile_file = config_file = None
    if profile:
        text, profile_file = profile_text(profile)
        source = f"profile {profile_file}"
        layers.append((load_config_text(text, source=source), source, False))
        chosen = config_file_path(args, environ)
        if chosen is not None:
            config_file, name = chosen
            if not config_file.is_file():
                raise ConfigError(f"{name} does not exist or is not a file")
            layers.append((load_config_file(config_file), f"config file {config_file}", True))
    env = env_settings(environ)
    layers.append((env, {key: env_source(key) for key in env}, True))
    layers.append((dict(extra or {}), "the command's fixed settings", False))
    layers.append((flag_settings(args), flag_sources(), True))
    merged: Settings = {}
    origin: dict[str, str] = {}
    chosen_keys: set[str] = set()
    for layer, where, by_user in layers:
        merged.update(layer)
        origin.update({key: where if isinstance(where, str) else where[key] for key in layer})
        chosen_keys = chosen_keys | set(layer) if by_user else chosen_keys - set(layer)
    explicit = frozenset(chosen_keys)
    if profile and merged.get("data_dir") in (None, ""):
        merged["data_dir"] = profile_data_dir(profile, environ)
    key_file = merged.get("key_file")
    if profile and key_file in (None, ""):
        data_dir = merged["data_dir"]
        assert isinstance(data_dir, (str, Path))
        merged["key_file"] = Path(data_dir).expanduser() / KEY_FILE_NAME
    elif "key_file" in explicit and isinstance(key_file, str | Path) and key_file != "":
        _check_key_exists(Path(key_file).expanduser(), origin["key_file"])
    config = build_node_config(merged, sources=[origin])
    return LoadedConfig(config, profile, profile_file, config_file, explicit,
                        tuple(env_warnings(environ)))


def _check_key_exists(path: Path, source: str) -> None:
    """A key file the user named must exist: a typo must not create a new identity."""
    if not path.exists():
        raise ConfigError(f"key file {path} (from {source}) does not exist; "
                          f"create one with: autonat id --key {path}")


def node_config(args: argparse.Namespace, *, profile: str | None,
                extra: Settings | None = None,
                environ: Mapping[str, str] = os.environ) -> NodeConfig:
    """:func:`load_node_config`'s :class:`NodeConfig`."""
    return load_node_config(args, profile=profile, extra=extra, environ=environ).config


def bind_error(host: str, port: int, *, udp: bool = False) -> OSError | None:
    """Why ``(host, port)`` cannot be bound right now (None: it can). Binds, never sends."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
            if not udp:  # the STUN server binds its UDP sockets without SO_REUSEADDR
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc
    return None


def _port_free(host: str, port: int, *, udp: bool = False) -> bool:
    error = bind_error(host, port, udp=udp)
    return error is None or error.errno != errno.EADDRINUSE


def bind_hint(exc: OSError, host: str | None = None, port: int | None = None) -> str:
    """What to check for a failed bind, by errno (`` (...)`` or "")."""
    if exc.errno == errno.EADDRINUSE:
        return " (is another node running? choose another port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f" (is {host or 'the IP'} an address of this machine?)"
    if exc.errno == errno.EACCES:
        if port is not None and 0 < port < 1024:
            return f" (port {port} is privileged: choose a port >= 1024)"
        return " (ports below 1024 are privileged: choose a port >= 1024)"
    if exc.errno == errno.EAFNOSUPPORT:
        return " (is IPv6 enabled on this machine?)"
    return ""


def _bind_problem(what: str, host: str, port: int) -> str | None:
    error = bind_error(host, port)
    if error is None:
        return None
    reason = error.strerror or str(error)
    return f"cannot listen on {what}: {reason}{bind_hint(error, host, port)}"


def _name_problem(what: str, host: str, port: int) -> str | None:
    """A ``/dns4``/``/dns6`` listen address: its name must resolve, to an IP we can bind."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return (f"cannot listen on {what}: cannot resolve {host!r}: {reason} "
                "(is the name right? an IP address avoids the lookup)")
    return _bind_problem(what, str(infos[0][4][0]), port)


def host_port(host: str, port: int) -> str:
    """``HOST:PORT``, an IPv6 host in brackets (``[::1]:7888``), as in a URL."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_default_ports(config: NodeConfig,
                       explicit: frozenset[str]) -> tuple[NodeConfig, list[str]]:
    """Replace *default* ports that are busy by port 0 (any free port).

    Two nodes started with default settings on one machine (``autonat boot``
    and ``autonat node`` in two terminals) would otherwise collide on 44000
    and 7888 (two boot nodes also on STUN's 3478). Ports the user chose
    explicitly are never changed: a busy one is an error. Returns the new
    config and one warning per change.
    """
    notes: list[str] = []
    listen = list(config.listen)
    if "listen" not in explicit:
        for i, addr in enumerate(config.listen_addrs):
            if addr.ip is not None and addr.port and not _port_free(addr.host, addr.port):
                listen[i] = str(dataclasses.replace(addr, port=0))
                notes.append(f"default listen port {addr.port} is busy; using a free port")
    http = config.http.http_listen
    if http and "http_listen" not in explicit:
        host, port = parse_host_port(http)
        if port and not _port_free(host, port):
            http = host_port(host, 0)
            notes.append(f"default HTTP port {port} is busy; using a free port")
    config = config.with_settings(listen=tuple(listen), http_listen=http)
    stun = config.stun_addresses()
    if stun is not None and "stun_listen" not in explicit:
        primary, alternate = stun
        busy = [e for e in _stun_sockets(primary, alternate)
                if e.port and not _port_free(str(e.ip), e.port, udp=True)]
        if busy:
            host = str(primary.ip) if ":" not in str(primary.ip) else f"[{primary.ip}]"
            config = config.with_settings(stun_listen=f"{host}:0")
            notes.append(f"default STUN port {primary.port} is busy; using a free port "
                         "(peers learn it through Identify)")
    return config, notes


def _stun_sockets(primary: Endpoint, alternate: Endpoint | None) -> list[Endpoint]:
    """The addresses a STUN server binds: the primary, or all four RFC 5780 combinations."""
    if alternate is None:
        return [primary]
    return [primary, Endpoint(primary.ip, alternate.port), Endpoint(alternate.ip, primary.port),
            alternate]


def bind_problems(config: NodeConfig) -> list[str]:
    """Listen, HTTP and STUN addresses that cannot be bound right now, one line each with a hint
    matching the errno (checked before starting, so a taken port or an address this
    machine does not have is one clear line instead of a restart loop in the Dialer)."""
    problems = [_bind_problem(str(addr), addr.host, addr.port) if addr.ip is not None
                else _name_problem(str(addr), addr.host, addr.port)
                for addr in config.listen_addrs]
    if config.http.http_listen:
        host, port = parse_host_port(config.http.http_listen)
        problems.append(_bind_problem(f"{config.http.http_listen} (HTTP API)", host, port))
    stun = config.stun_addresses()
    if stun is not None:
        for endpoint in _stun_sockets(*stun):
            if endpoint.port == 0:
                continue
            error = bind_error(str(endpoint.ip), endpoint.port, udp=True)
            if error is not None:
                problems.append(f"cannot serve STUN on {endpoint}/udp: "
                                f"{error.strerror or error}{stun_bind_hint(error)}")
                break
    return [problem for problem in problems if problem]
