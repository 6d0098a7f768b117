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

from dataclasses import dataclass, field
from pathlib import Path

from ._addresses import WsAddress
from ._policy import AddressPolicy

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/44000/ws"


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
    """Which addresses count as routable (DESIGN 5.7)."""
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
        if self.idle_timeout is not None:
            _positive("idle_timeout", self.idle_timeout)
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        if self.target_peers > self.max_connections:
            raise ValueError("target_peers must be <= max_connections")

    @property
    def listen_addrs(self) -> tuple[WsAddress, ...]:
        return tuple(WsAddress.parse(text) for text in self.listen)

    @property
    def peer_addrs(self) -> tuple[WsAddress, ...]:
        return tuple(WsAddress.parse(text) for text in self.peers)
