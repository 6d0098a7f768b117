"""The node's own state: connection events, the lifecycle table, the node model
that folds every event, the dial plan, the peer store encoding and the key file format.

May import: :mod:`protocols.identify`, :mod:`protocols.autonat`, :mod:`protocols.stun`,
:mod:`protocols.wire`, :mod:`protocols.core`.
"""

from __future__ import annotations

from ._admission import (
    AdmissionLimits,
    AdmissionRefused,
    AdmissionStatistics,
    EvictConnection,
    InboundAdmission,
)
from ._dial_plan import DialCommand, DialPeer, DialPlanner, DialPlanStatistics
from ._dialer_config import DialerConfig
from ._events import (
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    Direction,
    ListenAddrsChanged,
    PeersFound,
)
from ._keyfile import (
    KEY_FILE_MODE,
    KEY_FILE_SIZE,
    check_key_file_metadata,
    decode_key_file,
    encode_key_file,
)
from ._lifecycle import LIFECYCLE_TRANSITIONS, Lifecycle, LifecycleTrigger, next_lifecycle
from ._listener_health import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_CHECK_TIMEOUT,
    ListenerCheckPlan,
    ListenerHealth,
    self_check_target,
)
from ._node_model import (
    LifecycleChanged,
    NodeEvent,
    NodeModel,
    NodeModelEvent,
    NodeModelStatistics,
    StateChanged,
    StoredPeersLoaded,
)
from ._peer_store import PEER_STORE_VERSION, decode_peer_store, encode_peer_store
from ._peers_view import MAX_PEERS_LISTED, peers_document
from ._service_notify import (
    STATUS_MIN_INTERVAL,
    StatusKey,
    StatusThrottle,
    encode_notify,
    notify_address,
    status_key,
    status_text,
    watchdog_interval,
)
from ._snapshot import NodeSnapshot, ObservedAddr, PeerRecord
from ._upgrade_queue import (
    UPGRADE_REFUSAL_REASONS,
    UpgradeLimits,
    UpgradeQueue,
    UpgradeStatistics,
)

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_CHECK_TIMEOUT",
    "KEY_FILE_MODE",
    "KEY_FILE_SIZE",
    "LIFECYCLE_TRANSITIONS",
    "MAX_PEERS_LISTED",
    "PEER_STORE_VERSION",
    "STATUS_MIN_INTERVAL",
    "UPGRADE_REFUSAL_REASONS",
    "AdmissionLimits",
    "AdmissionRefused",
    "AdmissionStatistics",
    "ConnectionDown",
    "ConnectionInfo",
    "ConnectionUp",
    "DialCommand",
    "DialPeer",
    "DialPlanStatistics",
    "DialPlanner",
    "DialerConfig",
    "Direction",
    "EvictConnection",
    "InboundAdmission",
    "Lifecycle",
    "LifecycleChanged",
    "LifecycleTrigger",
    "ListenAddrsChanged",
    "ListenerCheckPlan",
    "ListenerHealth",
    "NodeEvent",
    "NodeModel",
    "NodeModelEvent",
    "NodeModelStatistics",
    "NodeSnapshot",
    "ObservedAddr",
    "PeerRecord",
    "PeersFound",
    "StateChanged",
    "StatusKey",
    "StatusThrottle",
    "StoredPeersLoaded",
    "UpgradeLimits",
    "UpgradeQueue",
    "UpgradeStatistics",
    "check_key_file_metadata",
    "decode_key_file",
    "decode_peer_store",
    "encode_key_file",
    "encode_notify",
    "encode_peer_store",
    "next_lifecycle",
    "notify_address",
    "peers_document",
    "self_check_target",
    "status_key",
    "status_text",
    "watchdog_interval",
]
