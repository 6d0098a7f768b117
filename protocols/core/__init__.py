"""Bottom layer of :mod:`protocols`: identity, addresses, the address policy, backoff, errors.

Holds Ed25519 keys and libp2p peer ids, the parsed WebSocket multiaddrs, the
:class:`AddressPolicy` that decides what is routable, jittered exponential
backoff and restart intensity, and every exception type of the package.

May import: nothing of this project (only the standard library, ``multiaddr``,
``base58`` and ``cryptography``).
"""

from __future__ import annotations

from ._addresses import HOST_KINDS, IPAddress, WsAddress, describe, parse_addresses
from ._backoff import Backoff, BackoffSchedule, RestartIntensity
from ._errors import (
    AddressError,
    BadSignature,
    ConfigError,
    DecodeError,
    FrameTooLarge,
    HandshakeError,
    HandshakeOrderError,
    HandshakeTimeout,
    InvalidKey,
    KeyFileError,
    LocalProtocolError,
    PeerIdMismatch,
    PeerStoreError,
    ProtocolError,
    RemoteProtocolError,
    SelfConnection,
    SettingsError,
    StatusDocumentError,
    StreamError,
    StreamLimitReached,
    ValidationError,
)
from ._identity import Keypair, PeerId, PublicKey
from ._networks import (
    DEFAULT_IPV4_PREFIX,
    DEFAULT_IPV6_PREFIX,
    IPNetwork,
    check_network_limits,
    count_down,
    plain_ip,
    subnet_of,
)
from ._policy import AddressPolicy
from ._settings_checks import check_ip_setting, check_positive_setting
from ._udp_address import UdpAddress

__all__ = [
    "DEFAULT_IPV4_PREFIX",
    "DEFAULT_IPV6_PREFIX",
    "HOST_KINDS",
    "AddressError",
    "AddressPolicy",
    "Backoff",
    "BackoffSchedule",
    "BadSignature",
    "ConfigError",
    "DecodeError",
    "FrameTooLarge",
    "HandshakeError",
    "HandshakeOrderError",
    "HandshakeTimeout",
    "IPAddress",
    "IPNetwork",
    "InvalidKey",
    "KeyFileError",
    "Keypair",
    "LocalProtocolError",
    "PeerId",
    "PeerIdMismatch",
    "PeerStoreError",
    "ProtocolError",
    "PublicKey",
    "RemoteProtocolError",
    "RestartIntensity",
    "SelfConnection",
    "SettingsError",
    "StatusDocumentError",
    "StreamError",
    "StreamLimitReached",
    "UdpAddress",
    "ValidationError",
    "WsAddress",
    "check_ip_setting",
    "check_network_limits",
    "check_positive_setting",
    "count_down",
    "describe",
    "parse_addresses",
    "plain_ip",
    "subnet_of",
]
