"""Sans-io core of trio-autonat: identity, addresses, wire messages and decisions.

Nothing in this package imports trio or performs I/O. State machines take
bytes, events and the current time as arguments and return events and bytes
(the h11 style), so they are tested without sockets and driven by the actors
in :mod:`actors`.
"""

from __future__ import annotations

from ._errors import (
    AddressError,
    BadSignature,
    DecodeError,
    FrameTooLarge,
    HandshakeError,
    HandshakeOrderError,
    HandshakeTimeout,
    InvalidKey,
    KeyFileError,
    PeerIdMismatch,
    ProtocolError,
    StatusDocumentError,
    StreamError,
    ValidationError,
)

# --- identity, addresses, policy, status document (section A) ---
# isort: split
from ._addresses import HOST_KINDS, WsAddress, parse_addresses
from ._identity import Keypair, PeerId, PublicKey
from ._keyfile import load_keypair, load_or_create_keypair, save_keypair
from ._policy import AddressPolicy
from ._status_doc import (
    ParsedStatus,
    StatusDocument,
    StatusScalar,
    StatusValue,
    build_status_document,
    parse_status_document,
)

# isort: split

# --- wire codec and messages (section B) ---
# isort: split
from ._autonat_msg import (
    DIAL_BACK_PROTOCOL_ID,
    DIAL_REQUEST_PROTOCOL_ID,
    AutonatMessage,
    DialBack,
    DialBackResponse,
    DialBackStatus,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    ResponseStatus,
    decode_autonat_message,
)
from ._codec import DEFAULT_LIMITS, Limits, WireMap, WireMessage, WireValue, pack, unpack
from ._frames import (
    HANDSHAKE_CONTEXT,
    Auth,
    ErrorCode,
    ErrorFrame,
    Frame,
    HandshakeFrame,
    Hello,
    StreamFrame,
    decode_handshake_frame,
    decode_stream_frame,
    handshake_payload,
)
from ._identify_msg import (
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    MAX_IDENTIFY_SIZE,
    Identify,
)

# isort: split

# --- handshake (section C) ---
from ._dial_plan import DialPlanner, DialPlanStatistics
from ._events import (
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    Direction,
    ListenAddrsChanged,
    PeerIdentified,
    PeersFound,
)
from ._handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Handshake,
    HandshakeResult,
    HandshakeState,
)
from ._node_config import DEFAULT_LISTEN, NodeConfig

# isort: split

# --- backoff (section D) ---
from ._backoff import Backoff, BackoffSchedule, RestartIntensity

# isort: split

# --- stream mux (section E) ---
from ._errors import StreamLimitReached
from ._mux import (
    InboundStreamOpened,
    InboundStreamRejected,
    MuxEvent,
    MuxLimits,
    MuxOutput,
    MuxStatistics,
    StreamErrored,
    StreamMessage,
    StreamMux,
    StreamState,
)

# isort: split

# --- node model (section F) ---
from ._errors import PeerStoreError
from ._node_model import (
    LIFECYCLE_TRANSITIONS,
    Lifecycle,
    LifecycleTrigger,
    NatMapping,
    NatStatus,
    NodeEvent,
    NodeModel,
    NodeSnapshot,
    ObservedAddr,
    PeerRecord,
    next_lifecycle,
)
from ._peer_store import PEER_STORE_VERSION, decode_peer_store, encode_peer_store

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_LIMITS",
    "DEFAULT_LISTEN",
    "DIAL_BACK_PROTOCOL_ID",
    "DIAL_REQUEST_PROTOCOL_ID",
    "HANDSHAKE_CONTEXT",
    "HOST_KINDS",
    "IDENTIFY_PROTOCOL_ID",
    "IDENTIFY_PUSH_PROTOCOL_ID",
    "LIFECYCLE_TRANSITIONS",
    "MAX_IDENTIFY_SIZE",
    "PEER_STORE_VERSION",
    "AddressError",
    "AddressPolicy",
    "Auth",
    "AutonatMessage",
    "Backoff",
    "BackoffSchedule",
    "BadSignature",
    "ConnectionDown",
    "ConnectionInfo",
    "ConnectionUp",
    "DecodeError",
    "DialBack",
    "DialBackResponse",
    "DialBackStatus",
    "DialDataRequest",
    "DialDataResponse",
    "DialPlanStatistics",
    "DialPlanner",
    "DialRequest",
    "DialResponse",
    "DialStatus",
    "Direction",
    "ErrorCode",
    "ErrorFrame",
    "Frame",
    "FrameTooLarge",
    "Handshake",
    "HandshakeError",
    "HandshakeFrame",
    "HandshakeOrderError",
    "HandshakeResult",
    "HandshakeState",
    "HandshakeTimeout",
    "Hello",
    "Identify",
    "InboundStreamOpened",
    "InboundStreamRejected",
    "InvalidKey",
    "KeyFileError",
    "Keypair",
    "Lifecycle",
    "LifecycleTrigger",
    "Limits",
    "ListenAddrsChanged",
    "MuxEvent",
    "MuxLimits",
    "MuxOutput",
    "MuxStatistics",
    "NatMapping",
    "NatStatus",
    "NodeConfig",
    "NodeEvent",
    "NodeModel",
    "NodeSnapshot",
    "ObservedAddr",
    "ParsedStatus",
    "PeerId",
    "PeerIdMismatch",
    "PeerIdentified",
    "PeerRecord",
    "PeerStoreError",
    "PeersFound",
    "ProtocolError",
    "PublicKey",
    "ResponseStatus",
    "RestartIntensity",
    "StatusDocument",
    "StatusDocumentError",
    "StatusScalar",
    "StatusValue",
    "StreamError",
    "StreamErrored",
    "StreamFrame",
    "StreamLimitReached",
    "StreamMessage",
    "StreamMux",
    "StreamState",
    "ValidationError",
    "WireMap",
    "WireMessage",
    "WireValue",
    "WsAddress",
    "build_status_document",
    "decode_autonat_message",
    "decode_handshake_frame",
    "decode_peer_store",
    "decode_stream_frame",
    "encode_peer_store",
    "handshake_payload",
    "load_keypair",
    "load_or_create_keypair",
    "next_lifecycle",
    "pack",
    "parse_addresses",
    "parse_status_document",
    "save_keypair",
    "unpack",
]
