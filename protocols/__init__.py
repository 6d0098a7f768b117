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
    PeersFound,
)
from ._handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Handshake,
    HandshakeResult,
    HandshakeState,
)
from ._identify_rules import PeerIdentified
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

# isort: split

# --- autonat decisions (section G) ---
from ._autonat_candidates import (
    ProbeServer,
    candidate_addresses,
    choose_servers,
    dial_back_mismatch,
)
from ._autonat_events import InboundProbe, ProbeOutcome, ProbeResult, ReachabilityUpdate
from ._autonat_server_rules import (
    MAX_DIAL_DATA,
    MIN_DIAL_DATA,
    AddressRejection,
    DialChoice,
    DialDataBudget,
    RateLimiter,
    RateLimitReason,
    RefusalReason,
    choose_dial_address,
    dial_data_chunks,
)
from ._nat_mapping import (
    AddressObservation,
    NatMappingReport,
    analyse_nat_mapping,
    classify_nat_mapping,
)
from ._reachability import (
    AddressReachability,
    AddressVerdict,
    NatStatusChanged,
    Reachability,
    ReachabilityChanged,
    ReachabilityConfig,
    ReachabilityEvent,
    ReachabilityStatistics,
    ReachabilityView,
    probe_outcome,
)

# isort: split

# --- status view and round robin (section I) ---
from ._round_robin import RoundRobin
from ._status_view import own_addresses, public_peer_addresses, status_document

# isort: split

# --- bootstrap and config (section H) ---
from ._bootstrap_plan import (
    DEFAULT_FETCH_BACKOFF,
    AddressSelection,
    BootstrapPlan,
    BootstrapStatistics,
    BootUrlStatus,
    FetchOutcome,
    SkipKind,
    SkippedEntry,
    fallback_addresses,
    refetch_backoff,
    select_addresses,
)
from ._config_file import (
    CONFIG_SECTIONS,
    ENV_ALLOWLIST,
    ENV_PREFIX,
    POLICY_KEYS,
    LayerSource,
    Settings,
    SettingValue,
    build_node_config,
    env_settings,
    env_source,
    env_warnings,
    load_config_file,
    load_config_text,
    setting_keys,
)
from ._errors import ConfigError
from ._node_config import LOG_FORMATS, LOG_LEVELS, parse_host_port

__all__ = [
    "CONFIG_SECTIONS",
    "DEFAULT_FETCH_BACKOFF",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_LIMITS",
    "DEFAULT_LISTEN",
    "DIAL_BACK_PROTOCOL_ID",
    "DIAL_REQUEST_PROTOCOL_ID",
    "ENV_ALLOWLIST",
    "ENV_PREFIX",
    "HANDSHAKE_CONTEXT",
    "HOST_KINDS",
    "IDENTIFY_PROTOCOL_ID",
    "IDENTIFY_PUSH_PROTOCOL_ID",
    "LIFECYCLE_TRANSITIONS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_DIAL_DATA",
    "MAX_IDENTIFY_SIZE",
    "MIN_DIAL_DATA",
    "PEER_STORE_VERSION",
    "POLICY_KEYS",
    "AddressError",
    "AddressObservation",
    "AddressPolicy",
    "AddressReachability",
    "AddressRejection",
    "AddressSelection",
    "AddressVerdict",
    "Auth",
    "AutonatMessage",
    "Backoff",
    "BackoffSchedule",
    "BadSignature",
    "BootUrlStatus",
    "BootstrapPlan",
    "BootstrapStatistics",
    "ConfigError",
    "ConnectionDown",
    "ConnectionInfo",
    "ConnectionUp",
    "DecodeError",
    "DialBack",
    "DialBackResponse",
    "DialBackStatus",
    "DialChoice",
    "DialDataBudget",
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
    "FetchOutcome",
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
    "InboundProbe",
    "InboundStreamOpened",
    "InboundStreamRejected",
    "InvalidKey",
    "KeyFileError",
    "Keypair",
    "LayerSource",
    "Lifecycle",
    "LifecycleTrigger",
    "Limits",
    "ListenAddrsChanged",
    "MuxEvent",
    "MuxLimits",
    "MuxOutput",
    "MuxStatistics",
    "NatMapping",
    "NatMappingReport",
    "NatStatus",
    "NatStatusChanged",
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
    "ProbeOutcome",
    "ProbeResult",
    "ProbeServer",
    "ProtocolError",
    "PublicKey",
    "RateLimitReason",
    "RateLimiter",
    "Reachability",
    "ReachabilityChanged",
    "ReachabilityConfig",
    "ReachabilityEvent",
    "ReachabilityStatistics",
    "ReachabilityUpdate",
    "ReachabilityView",
    "RefusalReason",
    "ResponseStatus",
    "RestartIntensity",
    "RoundRobin",
    "SettingValue",
    "Settings",
    "SkipKind",
    "SkippedEntry",
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
    "analyse_nat_mapping",
    "build_node_config",
    "build_status_document",
    "candidate_addresses",
    "choose_dial_address",
    "choose_servers",
    "classify_nat_mapping",
    "decode_autonat_message",
    "decode_handshake_frame",
    "decode_peer_store",
    "decode_stream_frame",
    "dial_back_mismatch",
    "dial_data_chunks",
    "encode_peer_store",
    "env_settings",
    "env_source",
    "env_warnings",
    "fallback_addresses",
    "handshake_payload",
    "load_config_file",
    "load_config_text",
    "load_keypair",
    "load_or_create_keypair",
    "next_lifecycle",
    "own_addresses",
    "pack",
    "parse_addresses",
    "parse_host_port",
    "parse_status_document",
    "probe_outcome",
    "public_peer_addresses",
    "refetch_backoff",
    "save_keypair",
    "select_addresses",
    "setting_keys",
    "status_document",
    "unpack",
]
