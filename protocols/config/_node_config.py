"""Every setting of a node, with documented defaults, validated at construction.

Theory of operation
-------------------
``NodeConfig`` is the one place where a node's knobs are gathered. It holds
the node-wide settings itself (listen and peer addresses, key file, data
directory, address policy, Identify, mailboxes, the peer store, TLS, and
whether to serve AutoNAT) and *composes* one frozen component per part of the
node, each declared and validated in the layer that uses it:

==========================  ========================  =========================
field                       class                     declared in
==========================  ========================  =========================
``dialer``                  :class:`DialerConfig`     :mod:`protocols.node`
``connection``              :class:`ConnectionConfig` :mod:`protocols.wire`
``autonat_client``          :class:`AutonatClientConfig`  :mod:`protocols.autonat`
``autonat_server_config``   :class:`AutonatServerConfig`  :mod:`protocols.autonat`
``bootstrap``               :class:`BootstrapConfig`  :mod:`protocols.bootstrap`
``http``                    :class:`HttpConfig`       :mod:`protocols.config`
``logging``                 :class:`LoggingConfig`    :mod:`protocols.config`
``stun``                    :class:`StunServerConfig` :mod:`protocols.stun`
``udp``                     :class:`UdpDiscoveryConfig`   :mod:`protocols.stun`
``relay``                   :class:`RelayConfig`      :mod:`protocols.relay`
==========================  ========================  =========================

(``autonat_server_config`` is not called ``autonat_server`` because that name
is the node-wide boolean setting that decides whether the server runs at all.)

Actors read what they need (``config.dialer.target_peers``,
``config.connection``); nothing else holds configuration, and every limit is
declared once, in its component. It is pure data (no files are read here).

Settings are *flat*: every field of NodeConfig and of its components is one
setting key (the TOML key, ``AUTONAT_<KEY>``, the flag's key), and a key
names exactly one field in the whole tree. :func:`setting_fields` finds, by
reflecting on the dataclasses, which component owns each key - so a field
added to a component is a setting without any list to update - and refuses a
name declared twice. Code builds a config either way::

    NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), dialer=DialerConfig(target_peers=3))
    NodeConfig.from_settings(listen=("/ip4/127.0.0.1/tcp/0/ws",), target_peers=3)
    config.with_settings(http_listen="")   # a copy with flat keys changed

Validation happens in each component's ``__post_init__`` and in NodeConfig's
own, so an impossible configuration (zero target peers, a negative timeout, a
listen address with a peer id) fails at once with a :class:`ValueError`
naming the field, instead of surfacing later as a strange runtime error.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from ..autonat import AutonatClientConfig, AutonatServerConfig
from ..bootstrap import BootstrapConfig
from ..core import AddressPolicy, WsAddress, check_positive_setting
from ..node import DialerConfig
from ..relay import RelayConfig
from ..stun import DEFAULT_STUN_PORT, Endpoint, StunServerConfig, UdpDiscoveryConfig
from ..stun import parse_stun_host_port as _stun_host_port
from ..wire import ConnectionConfig
from ._announce import announce_address
from ._surface_config import HttpConfig, LoggingConfig

__all__ = ["DEFAULT_LISTEN", "NodeConfig", "SettingField", "setting_fields"]

DEFAULT_LISTEN: Final = "/ip4/0.0.0.0/tcp/44000/ws"


@dataclass(frozen=True)
class NodeConfig:
    """Settings of one node. Times are seconds, sizes bytes."""

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    """Multiaddrs to listen on (``/ws`` or ``/wss``, port 0 = any free port)."""
    key_file: Path | None = None
    """64-byte raw Ed25519 keypair; ``None`` = a fresh in-memory key (tests, probes)."""
    data_dir: Path | None = None
    """Where the peer store is persisted; ``None`` = nothing written to disk."""
    peers: tuple[str, ...] = ()
    """Peers to dial at start, as multiaddrs ending in ``/p2p/<id>``."""
    announce: tuple[str, ...] = ()
    """Externally visible addresses advertised as our own (a port forward's or a load
    balancer's public address), multiaddrs or ``HOST:PORT``; stored as multiaddrs
    (:mod:`protocols.config._announce`)."""
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    """Which addresses count as routable (docs/architecture.md, "Address policy")."""
    identify_timeout: float = 10.0
    """One Identify request."""
    agent_version: str = "trio-autonat/0.1.0"
    """Agent version announced in Identify."""
    mailbox_size: int = 256
    """Capacity of every actor mailbox."""
    save_interval: float = 5.0
    """Peer store is written at most this often (and at shutdown)."""
    max_peers: int = 1000
    """Peer store bound; least recently seen unconnected peers are evicted."""
    autonat_server: bool = True
    """Serve ``/libp2p/autonat/2/dial-request`` for other nodes (its settings are
    ``autonat_server_config``)."""
    relay_service: bool = False
    """Serve Circuit Relay v2 reservations and circuits for private nodes (its limits are
    ``relay``); on in ``config/boot.toml``."""
    # --- TLS for /wss ---
    tls_cert: Path | None = None
    """PEM certificate chain (leaf first) served on ``/wss`` listen addresses; needs
    ``tls_key``. ``None`` = no ``/wss`` listening."""
    tls_key: Path | None = None
    """PEM private key (unencrypted) of ``tls_cert``."""
    tls_ca: Path | None = None
    """PEM CA certificates trusted when dialing ``/wss`` and fetching ``https://`` boot
    URLs, *in addition to* the system's trusted CAs; ``None`` = system CAs only.
    Certificates are always verified."""
    # --- components (metadata "component": the class; setting_fields() reflects on it) ---
    dialer: DialerConfig = field(
        default_factory=DialerConfig, metadata={"component": DialerConfig})
    """Connections kept, the cap, dial concurrency and timeouts, reconnect delays."""
    connection: ConnectionConfig = field(
        default_factory=ConnectionConfig, metadata={"component": ConnectionConfig})
    """Per-connection limits: handshake, stream and idle timeouts, streams, frame size."""
    autonat_client: AutonatClientConfig = field(
        default_factory=AutonatClientConfig, metadata={"component": AutonatClientConfig})
    """Probing our own reachability: servers per address, timeout, confidence."""
    autonat_server_config: AutonatServerConfig = field(
        default_factory=AutonatServerConfig, metadata={"component": AutonatServerConfig})
    """Answering other nodes' dial requests (when ``autonat_server`` is true)."""
    bootstrap: BootstrapConfig = field(
        default_factory=BootstrapConfig, metadata={"component": BootstrapConfig})
    """Bootstrap ``/status`` URLs, fetch deadlines and retries."""
    http: HttpConfig = field(
        default_factory=HttpConfig, metadata={"component": HttpConfig})
    """Where the HTTP API listens."""
    logging: LoggingConfig = field(
        default_factory=LoggingConfig, metadata={"component": LoggingConfig})
    """Log format and level."""
    stun: StunServerConfig = field(
        default_factory=StunServerConfig, metadata={"component": StunServerConfig})
    """The STUN server (off unless ``stun_listen`` is set) and its rate limits."""
    udp: UdpDiscoveryConfig = field(
        default_factory=UdpDiscoveryConfig, metadata={"component": UdpDiscoveryConfig})
    """Measuring our UDP NAT profile against STUN servers peers advertise."""
    relay: RelayConfig = field(
        default_factory=RelayConfig, metadata={"component": RelayConfig})
    """The relay service's limits (when ``relay_service`` is true)."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            cls = spec.metadata.get("component")
            if cls is not None and not isinstance(getattr(self, spec.name), cls):
                raise TypeError(f"{spec.name} must be a {cls.__name__}, "
                                f"got {getattr(self, spec.name)!r}")
        if not self.listen:
            raise ValueError("listen must name at least one address")
        for text in self.listen:
            addr = WsAddress.parse(text)
            if addr.peer_id is not None:
                raise ValueError(f"listen address {text} must not contain /p2p/")
        if isinstance(self.announce, str) or not isinstance(self.announce, tuple):
            raise ValueError(f"announce must be a tuple of addresses, got {self.announce!r}")
        object.__setattr__(self, "announce",
                           tuple(dict.fromkeys(str(announce_address(t)) for t in self.announce)))
        for text in self.peers:
            if WsAddress.parse(text).peer_id is None:
                raise ValueError(f"peer address {text} must end in /p2p/<peer id>")
        for name in ("mailbox_size", "max_peers", "identify_timeout", "save_interval"):
            check_positive_setting(name, getattr(self, name))
        _check_tls_fields(self)
        self.stun_addresses()

    @property
    def listen_addrs(self) -> tuple[WsAddress, ...]:
        return tuple(WsAddress.parse(text) for text in self.listen)

    @property
    def announce_addrs(self) -> tuple[WsAddress, ...]:
        """``announce`` parsed: the addresses we advertise first."""
        return tuple(WsAddress.parse(text) for text in self.announce)

    @property
    def peer_addrs(self) -> tuple[WsAddress, ...]:
        return tuple(WsAddress.parse(text) for text in self.peers)

    def stun_addresses(self) -> tuple[Endpoint, Endpoint | None] | None:
        """The STUN server's primary and RFC 5780 alternate address (None: no server).

        ``stun_listen = "PORT"`` takes the IP of the first IP listen address; the
        alternate is ``stun_alternate`` (none when unset), its port by default the
        primary's + 1 (0 when the primary's is 0: any free port). Raises ValueError
        naming the setting for an impossible combination: an alternate with a
        wildcard primary, of another family, on the primary's IP or port, or on the
        ``dialback_source`` IP. That last one is not derived either, on purpose: a
        client's RFC 5780 mapping tests send datagrams to the alternate IP, which
        opens an address-restricted NAT's filter to that IP - and a dial-back from
        ``dialback_source`` would then prove nothing (the NAT lab's
        address-restricted scenario turned ``private`` into ``public`` that way).
        """
        stun = self.stun
        if not stun.enabled:
            return None
        ip, port = _stun_host_port("stun_listen", stun.stun_listen, DEFAULT_STUN_PORT)
        assert port is not None
        if ip is None:
            ip = next((a.ip for a in self.listen_addrs if a.ip is not None),
                      Endpoint.of("0.0.0.0", 0).ip)
        primary = Endpoint(ip, port)
        if stun.stun_alternate is None:
            return primary, None
        alt_ip, alt_port = _stun_host_port("stun_alternate", stun.stun_alternate, None)
        assert alt_ip is not None
        if alt_port is None:
            if port == 0xFFFF:
                raise ValueError("stun_alternate: the primary STUN port is 65535, so the "
                                 "alternate needs a port of its own (stun_alternate = "
                                 "\"IP:PORT\")")
            alt_port = port + 1 if port else 0
        if ip.is_unspecified:
            raise ValueError(f"stun_alternate needs the STUN server on a concrete IP, not "
                             f"{ip}: set stun_listen = \"IP:PORT\" (one of this machine's "
                             "addresses)")
        if alt_ip.version != ip.version or alt_ip == ip:
            raise ValueError(f"stun_alternate: {alt_ip} must be another IP of the primary's "
                             f"family (the primary STUN IP is {ip})")
        if alt_port and alt_port == port:
            raise ValueError(f"stun_alternate: port {alt_port} must differ from the primary "
                             "STUN port")
        dialback = self.autonat_server_config.dialback_source
        if dialback is not None and ipaddress.ip_address(dialback) == alt_ip:
            raise ValueError(f"stun_alternate must not be the dialback_source IP {alt_ip}: "
                             "STUN clients send datagrams to the alternate, which opens "
                             "address-restricted NATs to it, so dial-backs from it would "
                             "prove nothing; use a third IP")
        return primary, Endpoint(alt_ip, alt_port)

    # --- flat settings ---

    @classmethod
    def from_settings(cls, **settings: Any) -> NodeConfig:
        """A config from flat keys (``target_peers=3``), each routed to its component.

        Components may be given whole too (``dialer=DialerConfig(...)``); flat keys
        of that component then change the given one. An unknown key is a
        :class:`TypeError`, a bad value the owning component's :class:`ValueError`.
        """
        return _with_settings(None, settings)

    def with_settings(self, **settings: Any) -> NodeConfig:
        """A copy with flat keys (and/or whole components) changed; see :meth:`from_settings`."""
        return _with_settings(self, settings)

    def settings(self) -> dict[str, Any]:
        """Every flat key and its value (``policy`` as the :class:`AddressPolicy`)."""
        return {name: getattr(self if owner.component is None else getattr(self, owner.component),
                              name)
                for name, owner in setting_fields().items()}


class SettingField(NamedTuple):
    """Where a flat setting key lives."""

    component: str | None
    """The NodeConfig field of the owning component; ``None`` = NodeConfig itself."""
    owner: type
    """The dataclass that declares the field."""
    field: dataclasses.Field[Any]
    """The field (its ``metadata`` may say ``setting=False``: code-only, not in files)."""


@functools.cache
def _setting_fields() -> Mapping[str, SettingField]:
    found: dict[str, SettingField] = {}

    def add(name: str, where: SettingField) -> None:
        if name in found or name in components:
            raise TypeError(f"setting {name!r} is declared twice "
                            f"({found[name].owner.__name__ if name in found else 'NodeConfig'} "
                            f"and {where.owner.__name__})")
        found[name] = where

    components = {spec.name: spec.metadata["component"] for spec in dataclasses.fields(NodeConfig)
                  if "component" in spec.metadata}
    for spec in dataclasses.fields(NodeConfig):
        if spec.name not in components:
            add(spec.name, SettingField(None, NodeConfig, spec))
    for component, cls in components.items():
        for spec in dataclasses.fields(cls):
            add(spec.name, SettingField(component, cls, spec))
    return types.MappingProxyType(found)


def setting_fields() -> Mapping[str, SettingField]:
    """Every flat key (NodeConfig's own fields and its components' fields), in
    declaration order, with the component that owns it; found by reflection."""
    return _setting_fields()


def component_fields() -> dict[str, type]:
    """NodeConfig field name -> component class, in declaration order."""
    return {spec.name: spec.metadata["component"] for spec in dataclasses.fields(NodeConfig)
            if "component" in spec.metadata}


def _with_settings(base: NodeConfig | None, settings: Mapping[str, Any]) -> NodeConfig:
    owners = setting_fields()
    components = component_fields()
    node_args: dict[str, Any] = {}
    per_component: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if key in components:
            node_args[key] = value
        elif key in owners:
            component = owners[key].component
            if component is None:
                node_args[key] = value
            else:
                per_component.setdefault(component, {})[key] = value
        else:
            raise TypeError(f"NodeConfig has no setting {key!r}")
    for component, cls in components.items():  # declaration order: errors are predictable
        if component in per_component:
            given = node_args.get(component, None if base is None else getattr(base, component))
            node_args[component] = (cls(**per_component[component]) if given is None
                                    else dataclasses.replace(given, **per_component[component]))
    return NodeConfig(**node_args) if base is None else dataclasses.replace(base, **node_args)


# --- TLS for /wss ---


def _check_tls_fields(config: NodeConfig) -> None:
    """Only the combination is checked here; the files are loaded when a node starts."""
    if (config.tls_cert is None) != (config.tls_key is None):
        given, missing = ("tls_cert", "tls_key") if config.tls_key is None \
            else ("tls_key", "tls_cert")
        raise ValueError(f"{given} is set but {missing} is not: serving /wss needs both "
                         "(--tls-cert FILE --tls-key FILE)")
    if config.tls_cert is None:
        for text in config.listen:
            if WsAddress.parse(text).secure:
                raise ValueError(f"listen address {text} needs tls_cert and tls_key "
                                 "(--tls-cert FILE --tls-key FILE)")
