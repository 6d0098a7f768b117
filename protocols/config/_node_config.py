"""Every setting of a node, with documented defaults, validated at construction.

Theory of operation
-------------------
``NodeConfig`` is the one place where a node's knobs live. Actors read the
fields they need; nothing else holds configuration. It is pure data (no
files are read here): the CLI and the TOML loader build it, tests and
embedding programs construct it directly, e.g. ::

    NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",),
               policy=AddressPolicy(allow_loopback=True))

Validation happens in ``__post_init__`` so an impossible configuration
(zero target peers, a negative timeout, a listen address with a peer id)
fails at once with a message naming the field, instead of surfacing later
as a strange runtime error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..core import AddressPolicy, WsAddress

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/44000/ws"


def _check_ip(name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be an IP address, got {value!r}") from exc


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


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
    boot_urls: tuple[str, ...] = ()
    """Bootstrap ``/status`` URLs (used by the BootstrapFetcher)."""
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    """Which addresses count as routable (docs/architecture.md, "Address policy")."""
    target_peers: int = 8
    """Connections the Dialer tries to keep."""
    max_connections: int = 64
    """Hard cap; inbound connections beyond it are refused."""
    dial_concurrency: int = 8
    """Dials in flight at once."""
    dial_timeout: float = 10.0
    """Per dial, TCP + WebSocket + handshake."""
    reconnect_initial: float = 1.0
    """First reconnect delay after losing a peer; doubles up to ``reconnect_max``."""
    reconnect_max: float = 60.0
    handshake_timeout: float = 10.0
    stream_timeout: float = 30.0
    idle_timeout: float | None = None
    """Close a connection with no stream for this long; ``None`` keeps it (the Dialer
    maintains ``target_peers``, so idling out would only churn connections)."""
    max_streams: int = 64
    """Concurrent streams per connection."""
    max_frame_bytes: int = 64 * 1024
    identify_timeout: float = 10.0
    agent_version: str = "trio-autonat/0.1.0"
    mailbox_size: int = 256
    """Capacity of every actor mailbox."""
    save_interval: float = 5.0
    """Peer store is written at most this often (and at shutdown)."""
    max_peers: int = 1000
    """Peer store bound; least recently seen unconnected peers are evicted."""
    # --- autonat ---
    probe_servers: int = 3
    """Servers asked in parallel about one candidate address."""
    probe_timeout: float = 15.0
    """One probe: request, dial data, the server's dial-back and its response."""
    confidence: int = 2
    """Agreeing servers needed for a verdict (and contrary ones to flip it)."""
    autonat_server: bool = True
    """Serve ``/libp2p/autonat/2/dial-request`` for other nodes."""
    dialback_source: str | None = None
    """Local IP the server dials back from (a second address lets clients behind
    address-restricted NATs learn they are not reachable); ``None`` = any."""
    allow_other_ip: bool = True
    """Dial back an IP other than the requester's observed one (after 30-100 KB of
    dial data); False refuses such addresses."""
    rate_global_per_minute: int = 60
    rate_per_peer_per_minute: int = 12
    rate_concurrent_per_peer: int = 2
    server_timeout: float = 30.0
    """Whole dial request on the server side, dial data and dial-back included."""
    dialback_timeout: float = 5.0
    """A dial-back's connect + handshake. Shorter than ``dial_timeout``: a client
    behind a NAT or firewall that silently drops the dial-back learns it is
    unreachable after this long (it covers two TCP SYN retransmissions)."""
    welcome_probes: bool = False
    """Send one dial request to every newly connected AutoNAT peer (boot nodes)."""
    # --- bootstrap and surfaces ---
    fetch_timeout: float = 10.0
    """Total deadline of one bootstrap fetch (connect, redirects, headers, body); each
    network step (connect, read, write, pool wait) gets at most half of it."""
    fetch_retry_initial: float = 2.0
    """First retry delay of a failed bootstrap URL; doubles (jittered) per failure."""
    fetch_retry_max: float = 300.0
    """Cap of the per-URL retry delay."""
    max_status_bytes: int = 256 * 1024
    """A ``/status`` body larger than this is abandoned while streaming (``too_large``)."""
    max_status_addrs: int = 256
    """Entries of ``peer_addrs`` looked at per document (and fallback addresses sent)."""
    refetch_interval: float = 30.0
    """Minimum time between bootstrap rounds while connected peers < ``target_peers``;
    grows (doubling, up to 16x) while the target stays out of reach."""
    http_listen: str = "127.0.0.1:7888"
    """``HOST:PORT`` of the HTTP API (``/status``, ``/metrics``, ``/healthz``); "" = off."""
    log_format: str = "auto"
    """``auto`` (console on a TTY, JSON lines otherwise), ``json`` or ``console``."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""
    # --- TLS for /wss ---
    tls_cert: Path | None = None
    """PEM certificate chain (leaf first) served on ``/wss`` listen addresses; needs
    ``tls_key``. ``None`` = no ``/wss`` listening."""
    tls_key: Path | None = None
    """PEM private key (unencrypted) of ``tls_cert``."""
    tls_ca: Path | None = None
    """PEM CA certificates trusted when dialing ``/wss``, *in addition to* the system's
    trusted CAs; ``None`` = system CAs only. Certificates are always verified."""

    def __post_init__(self) -> None:
        if not self.listen:
            raise ValueError("listen must name at least one address")
        for text in self.listen:
            addr = WsAddress.parse(text)
            if addr.peer_id is not None:
                raise ValueError(f"listen address {text} must not contain /p2p/")
        for text in self.peers:
            if WsAddress.parse(text).peer_id is None:
                raise ValueError(f"peer address {text} must end in /p2p/<peer id>")
        for name in ("target_peers", "max_connections", "dial_concurrency", "max_streams",
                     "max_frame_bytes", "mailbox_size", "max_peers"):
            _positive(name, getattr(self, name))
        for name in ("dial_timeout", "reconnect_initial", "reconnect_max", "handshake_timeout",
                     "stream_timeout", "identify_timeout", "save_interval"):
            _positive(name, getattr(self, name))
        for name in ("probe_servers", "confidence", "rate_global_per_minute",
                     "rate_per_peer_per_minute", "rate_concurrent_per_peer"):
            _positive(name, getattr(self, name))
        for name in ("probe_timeout", "server_timeout", "dialback_timeout"):
            _positive(name, getattr(self, name))
        if self.dialback_source is not None:
            _check_ip("dialback_source", self.dialback_source)
        if self.idle_timeout is not None:
            _positive("idle_timeout", self.idle_timeout)
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        if self.target_peers > self.max_connections:
            raise ValueError("target_peers must be <= max_connections")
        _check_surface_fields(self)
        _check_tls_fields(self)

    @property
    def listen_addrs(self) -> tuple[WsAddress, ...]:
        return tuple(WsAddress.parse(text) for text in self.listen)

    @property
    def peer_addrs(self) -> tuple[WsAddress, ...]:
        return tuple(WsAddress.parse(text) for text in self.peers)


# --- bootstrap and surfaces ---

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_URL_LENGTH = 2048


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6); ``ValueError`` says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:7888, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        _check_ip("IPv6 host", host)
    elif ":" in host:
        raise ValueError(f"write an IPv6 host in brackets, e.g. [::1]:7888, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0..65535, got {port}")
    return host, port


def _check_http_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH
            or any(ch.isspace() for ch in url)):
        raise ValueError(f"{name} entries must be http(s) URLs such as "
                         f"http://boot.example:7888/status, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{name} entry {url!r} has a bad port: {exc}") from None


def _check_surface_fields(config: NodeConfig) -> None:
    for url in config.boot_urls:
        _check_http_url("boot_urls", url)
    for name in ("fetch_timeout", "fetch_retry_initial", "fetch_retry_max", "refetch_interval",
                 "max_status_bytes", "max_status_addrs"):
        _positive(name, getattr(config, name))
    if config.fetch_retry_max < config.fetch_retry_initial:
        raise ValueError("fetch_retry_max must be >= fetch_retry_initial")
    if config.http_listen:
        try:
            parse_host_port(config.http_listen)
        except ValueError as exc:
            raise ValueError(f"http_listen: {exc}") from None
    if config.log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, "
                         f"got {config.log_format!r}")
    if config.log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, "
                         f"got {config.log_level!r}")


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
