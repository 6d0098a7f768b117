"""STUN over UDP: the message codec (RFC 8489, RFC 5780 attributes), the Binding
responder with behaviour-discovery support, and the RFC 5780 discovery client.

All sans-io: the responder and the discovery machine take datagrams and time
and return :class:`Datagram` values to send; :mod:`actors.transport` drives
them on UDP sockets.

May import: :mod:`protocols.core`.
"""

from __future__ import annotations

from ._datagram import Datagram
from ._discovery import (
    MIN_PATH_RTO,
    PATH_RTOS,
    BehaviourDiscovery,
    DiscoveryFinished,
    DiscoveryState,
    DiscoveryStatistics,
    NatBehaviour,
    Retransmission,
    UdpProfile,
)
from ._rate_limit import TokenBuckets
from ._stun_codec import (
    BINDING,
    HEADER_SIZE,
    MAGIC_COOKIE,
    MAX_MESSAGE_SIZE,
    Attribute,
    AttrType,
    ChangeRequest,
    DecodedMessage,
    Endpoint,
    ErrorCode,
    MappedAddress,
    Nonce,
    OtherAddress,
    Realm,
    ResponseOrigin,
    Software,
    StunClass,
    StunDecodeError,
    StunMessage,
    UnknownAttribute,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    attribute_size,
    decode_message,
    encode_message,
    long_term_key,
    short_term_key,
)
from ._stun_config import (
    DEFAULT_STUN_PORT,
    StunServerConfig,
    UdpDiscoveryConfig,
    parse_stun_host_port,
)
from ._stun_responder import (
    StunAddresses,
    StunResponder,
    StunResponderConfig,
    StunResponderStatistics,
    check_no_amplification,
)
from ._udp_plan import (
    UNKNOWN_UDP_PROFILE,
    PublishUdpProfile,
    RunDiscovery,
    StunServerBound,
    UdpDiscoveryPlan,
    UdpDiscoveryStatistics,
    UdpProfileMeasured,
)

__all__ = [
    "BINDING",
    "DEFAULT_STUN_PORT",
    "HEADER_SIZE",
    "MAGIC_COOKIE",
    "MAX_MESSAGE_SIZE",
    "MIN_PATH_RTO",
    "PATH_RTOS",
    "UNKNOWN_UDP_PROFILE",
    "AttrType",
    "Attribute",
    "BehaviourDiscovery",
    "ChangeRequest",
    "Datagram",
    "DecodedMessage",
    "DiscoveryFinished",
    "DiscoveryState",
    "DiscoveryStatistics",
    "Endpoint",
    "ErrorCode",
    "MappedAddress",
    "NatBehaviour",
    "Nonce",
    "OtherAddress",
    "PublishUdpProfile",
    "Realm",
    "ResponseOrigin",
    "Retransmission",
    "RunDiscovery",
    "Software",
    "StunAddresses",
    "StunClass",
    "StunDecodeError",
    "StunMessage",
    "StunResponder",
    "StunResponderConfig",
    "StunResponderStatistics",
    "StunServerBound",
    "StunServerConfig",
    "TokenBuckets",
    "UdpDiscoveryConfig",
    "UdpDiscoveryPlan",
    "UdpDiscoveryStatistics",
    "UdpProfile",
    "UdpProfileMeasured",
    "UnknownAttribute",
    "UnknownAttributes",
    "Username",
    "XorMappedAddress",
    "attribute_size",
    "check_no_amplification",
    "decode_message",
    "encode_message",
    "long_term_key",
    "parse_stun_host_port",
    "short_term_key",
]
