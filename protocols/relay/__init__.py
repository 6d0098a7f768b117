"""Circuit Relay v2 over our wire: messages, relayed addresses, the relay's settings and
its admission rules (reservations and circuits), and a private node's choice of relays.

May import: :mod:`protocols.wire`, :mod:`protocols.core` (not its siblings).
"""

from __future__ import annotations

from ._circuit_address import CIRCUIT_COMPONENT, CircuitAddress
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
    "HOP_PROTOCOL_ID",
    "MAX_CIRCUIT_DATA",
    "MAX_RESERVATION_ADDRS",
    "STOP_PROTOCOL_ID",
    "CircuitAddress",
    "CircuitAdmitted",
    "CircuitData",
    "CircuitDirection",
    "CircuitEnd",
    "CircuitExpired",
    "CircuitLimit",
    "CircuitRefused",
    "CircuitState",
    "HopConnect",
    "HopMessage",
    "HopReserve",
    "HopStatus",
    "RelayConfig",
    "RelayMessage",
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
