"""Transports: the :class:`FrameStream` seam, WebSocket (``/ws``, ``/wss``) and
in-memory transports, socket options and TLS contexts; STUN over UDP (server and
behaviour-discovery client).

May import: :mod:`actors.runtime`, :mod:`protocols`.
"""

from __future__ import annotations

from ._framestream import (
    LOCAL_DIAL_ERRNOS,
    DeliversFrames,
    DialError,
    FrameStream,
    HandshakeTimedOut,
    LocalDialError,
    SendsNowait,
    SimultaneousOpen,
    Transport,
    TransportBroken,
    TransportClosed,
    TransportError,
)
from ._memory_transport import (
    MemoryFrameStream,
    MemoryNetwork,
    MemoryTransport,
    StaticNat,
    memory_stream_pair,
)
from ._sim_network import SYN_RETRIES, SimNetwork
from ._stun_udp import StunServer, StunServerStatistics, discover_udp_profile, open_stun_server
from ._tls import check_tls_files, client_context, server_context
from ._ws_stream import WebSocketBroken, WebSocketFrameStream
from ._ws_transport import WebSocketTransport

__all__ = [
    "LOCAL_DIAL_ERRNOS",
    "SYN_RETRIES",
    "DeliversFrames",
    "DialError",
    "FrameStream",
    "HandshakeTimedOut",
    "LocalDialError",
    "MemoryFrameStream",
    "MemoryNetwork",
    "MemoryTransport",
    "SendsNowait",
    "SimNetwork",
    "SimultaneousOpen",
    "StaticNat",
    "StunServer",
    "StunServerStatistics",
    "Transport",
    "TransportBroken",
    "TransportClosed",
    "TransportError",
    "WebSocketBroken",
    "WebSocketFrameStream",
    "WebSocketTransport",
    "check_tls_files",
    "client_context",
    "discover_udp_profile",
    "memory_stream_pair",
    "open_stun_server",
    "server_context",
]
