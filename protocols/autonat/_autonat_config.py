"""The AutoNAT client's and server's settings: :class:`AutonatClientConfig`,
:class:`AutonatServerConfig`.

Theory of operation
-------------------
The *client* side (docs/architecture.md, "AutoNAT client rules") asks ``probe_servers``
servers at once about each candidate address, gives every probe
``probe_timeout`` seconds, and needs ``confidence`` agreeing answers for a
verdict; ``welcome_probes`` makes it also probe through every newly connected
AutoNAT peer once (what boot nodes do). The *server* side answers other
nodes' dial requests within rate limits (global, per peer, per IP, per
subnet; concurrent per peer and per IP), bounds a whole request by
``server_timeout`` and one dial-back's connect and handshake by
``dialback_timeout``, may dial back from a chosen local IP
(``dialback_source``) and may dial an IP other than the requester's
(``allow_other_ip``, after dial data).

Whether a node serves the protocol at all is not a server setting but a
node-wide one (``NodeConfig.autonat_server``, setting key ``autonat_server``):
it decides which actors run. Both classes are components of
:class:`~protocols.NodeConfig` (``autonat_client`` and
``autonat_server_config``); each value is declared only here and validated at
construction with a :class:`ValueError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import ConfigError, check_ip_setting, check_positive_setting

__all__ = ["AutonatClientConfig", "AutonatServerConfig"]


@dataclass(frozen=True)
class AutonatClientConfig:
    """How this node probes its own reachability; validated at construction."""

    probe_servers: int = 3
    """Servers asked in parallel about one candidate address."""
    probe_timeout: float = 15.0
    """One probe: request, dial data, the server's dial-back and its response (the
    server side also bounds its dial-back exchange by it)."""
    confidence: int = 2
    """Agreeing servers needed for a verdict (and contrary ones to flip it)."""
    welcome_probes: bool = False
    """Send one dial request to every newly connected AutoNAT peer (boot nodes)."""

    def __post_init__(self) -> None:
        for name in ("probe_servers", "confidence", "probe_timeout"):
            check_positive_setting(name, getattr(self, name))


@dataclass(frozen=True)
class AutonatServerConfig:
    """How this node answers other nodes' dial requests; validated at construction."""

    dialback_source: str | None = None
    """Local IP the server dials back from (a second address lets clients behind
    address-restricted NATs learn they are not reachable); ``None`` = any."""
    allow_other_ip: bool = True
    """Dial back an IP other than the requester's observed one (after 30-100 KB of
    dial data); False refuses such addresses."""
    rate_global_per_minute: int = 60
    """Dial requests served per minute, all peers together."""
    rate_per_peer_per_minute: int = 12
    """Dial requests served per minute and peer."""
    rate_concurrent_per_peer: int = 2
    """Dial requests of one peer served at once."""
    rate_per_ip_per_minute: int = 24
    """Dial requests served per minute and requester IP, whatever the peer ids."""
    rate_per_subnet_per_minute: int = 48
    """Dial requests served per minute and requester subnet (IPv4 /24, IPv6 /56)."""
    rate_concurrent_per_ip: int = 4
    """Dial requests from one IP served at once."""
    server_timeout: float = 30.0
    """Whole dial request on the server side, dial data and dial-back included."""
    dialback_timeout: float = 5.0
    """A dial-back's connect phase (SYN to SYN-ACK), at most; the handshakes after it
    have their own timeouts. Shorter than ``dial_timeout``: it covers two TCP SYN
    retransmissions. It is the ceiling of the adaptive give-up: where the request's
    connection has an RTT measurement, the connect phase gives up after a few
    retransmission timeouts of that path (see ``dialback_floor``)."""
    dialback_floor: float = 0.3
    """Seconds: the adaptive give-up of a dial-back's connect phase is never sooner
    (scheduling and jitter on fast paths). Equal to ``dialback_timeout``: the fixed
    timeout of old (hedged attempts still go out)."""

    def __post_init__(self) -> None:
        for name in ("rate_global_per_minute", "rate_per_peer_per_minute",
                     "rate_concurrent_per_peer", "rate_per_ip_per_minute",
                     "rate_per_subnet_per_minute", "rate_concurrent_per_ip",
                     "server_timeout", "dialback_timeout", "dialback_floor"):
            check_positive_setting(name, getattr(self, name))
        if self.dialback_floor > self.dialback_timeout:
            raise ConfigError(f"dialback_floor ({self.dialback_floor:g} s) must not exceed "
                              f"dialback_timeout ({self.dialback_timeout:g} s)")
        if self.dialback_source is not None:
            check_ip_setting("dialback_source", self.dialback_source)
