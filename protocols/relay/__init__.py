"""Circuit Relay v2 over our wire: messages, relayed addresses, the relay's settings and
its admission rules (reservations and circuits), a private node's choice of relays, and
the end-to-end security of relayed connections.

May import: :mod:`protocols.wire`, :mod:`protocols.core` (not its siblings).
"""

from __future__ import annotations

from ._circuit_address import CIRCUIT_COMPONENT, CircuitAddress
from ._circuit_security import (
    CIRCUIT_SECURITY_CONTEXT,
    SEAL_OVERHEAD,
    CircuitKeyExchange,
    CircuitKeys,
    FrameOpener,
    FrameSealer,
)
from ._relay_config import RelayConfig
from ._relay_msg import (
    HOP_PROTOCOL_ID,
    MAX_CIRCUIT_DATA,
    MAX_RESERVATION_ADDRS,
    STOP_PROTOCOL_ID,
    CircuitData,
    CircuitLimit,
    HopConnect,
    HopMessage,
    HopReserve,
    HopStatus,
    RelayMessage,
    RelayStatus,
    ReservationInfo,
    StopConnect,
    StopMessage,
    StopStatus,
    decode_circuit_data,
    decode_hop_message,
    decode_stop_message,
)
from ._relay_paths import MAX_RELAY_ADDRS, MAX_RELAYED_PEERS, RelayPathsChanged
from ._relay_planner import RelayPlanner, RelayPlannerStatistics, RelayState, ReserveOn
from ._relay_rules import (
    CircuitAdmitted,
    CircuitDirection,
    CircuitEnd,
    CircuitExpired,
    CircuitRefused,
    CircuitState,
    RelayRules,
    RelayStatistics,
    RelayTimeoutEvent,
    ReservationExpired,
    ReservationGranted,
    ReservationRefused,
)

__all__ = [
    "CIRCUIT_COMPONENT",
    "CIRCUIT_SECURITY_CONTEXT",
    "HOP_PROTOCOL_ID",
    "MAX_CIRCUIT_DATA",
    "MAX_RELAYED_PEERS",
    "MAX_RELAY_ADDRS",
    "MAX_RESERVATION_ADDRS",
    "SEAL_OVERHEAD",
    "STOP_PROTOCOL_ID",
    "CircuitAddress",
    "CircuitAdmitted",
    "CircuitData",
    "CircuitDirection",
    "CircuitEnd",
    "CircuitExpired",
    "CircuitKeyExchange",
    "CircuitKeys",
    "CircuitLimit",
    "CircuitRefused",
    "CircuitState",
    "FrameOpener",
    "FrameSealer",
    "HopConnect",
    "HopMessage",
    "HopReserve",
    "HopStatus",
    "RelayConfig",
    "RelayMessage",
    "RelayPathsChanged",
    "RelayPlanner",
    "RelayPlannerStatistics",
    "RelayRules",
    "RelayState",
    "RelayStatistics",
    "RelayStatus",
    "RelayTimeoutEvent",
    "ReservationExpired",
    "ReservationGranted",
    "ReservationInfo",
    "ReservationRefused",
    "ReserveOn",
    "StopConnect",
    "StopMessage",
    "StopStatus",
    "decode_circuit_data",
    "decode_hop_message",
    "decode_stop_message",
]
