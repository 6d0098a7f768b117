"""The node's own state: connection events, the lifecycle table, the node model
that folds every event, the dial plan, the peer store encoding and the key file.

May import: :mod:`protocols.identify`, :mod:`protocols.autonat`,
:mod:`protocols.wire`, :mod:`protocols.core`.
"""

from __future__ import annotations

from ._dial_plan import DialPlanner, DialPlanStatistics
from ._events import (
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    Direction,
    ListenAddrsChanged,
    PeersFound,
)
from ._keyfile import load_keypair, load_or_create_keypair, save_keypair
from ._lifecycle import LIFECYCLE_TRANSITIONS, Lifecycle, LifecycleTrigger, next_lifecycle
from ._node_model import NodeEvent, NodeModel, NodeSnapshot, ObservedAddr, PeerRecord
from ._peer_store import PEER_STORE_VERSION, decode_peer_store, encode_peer_store

__all__ = [
    "LIFECYCLE_TRANSITIONS",
    "PEER_STORE_VERSION",
    "ConnectionDown",
    "ConnectionInfo",
    "ConnectionUp",
    "DialPlanStatistics",
    "DialPlanner",
    "Direction",
    "Lifecycle",
    "LifecycleTrigger",
    "ListenAddrsChanged",
    "NodeEvent",
    "NodeModel",
    "NodeSnapshot",
    "ObservedAddr",
    "PeerRecord",
    "PeersFound",
    "decode_peer_store",
    "encode_peer_store",
    "load_keypair",
    "load_or_create_keypair",
    "next_lifecycle",
    "save_keypair",
]
