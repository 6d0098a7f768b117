"""The AutoNAT v2 protocol: messages, events, candidate addresses, server rules,
reachability verdicts and NAT mapping classification.

May import: :mod:`protocols.wire`, :mod:`protocols.core` (not its sibling
:mod:`protocols.identify`).
"""

from __future__ import annotations

from ._autonat_candidates import (
    ProbeServer,
    candidate_addresses,
    choose_servers,
    dial_back_mismatch,
)
from ._autonat_events import (
    InboundProbe,
    NatMapping,
    NatStatus,
    ProbeOutcome,
    ProbeResult,
    ReachabilityUpdate,
)
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

__all__ = [
    "DIAL_BACK_PROTOCOL_ID",
    "DIAL_REQUEST_PROTOCOL_ID",
    "MAX_DIAL_DATA",
    "MIN_DIAL_DATA",
    "AddressObservation",
    "AddressReachability",
    "AddressRejection",
    "AddressVerdict",
    "AutonatMessage",
    "DialBack",
    "DialBackResponse",
    "DialBackStatus",
    "DialChoice",
    "DialDataBudget",
    "DialDataRequest",
    "DialDataResponse",
    "DialRequest",
    "DialResponse",
    "DialStatus",
    "InboundProbe",
    "NatMapping",
    "NatMappingReport",
    "NatStatus",
    "NatStatusChanged",
    "ProbeOutcome",
    "ProbeResult",
    "ProbeServer",
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
    "analyse_nat_mapping",
    "candidate_addresses",
    "choose_dial_address",
    "choose_servers",
    "classify_nat_mapping",
    "decode_autonat_message",
    "dial_back_mismatch",
    "dial_data_chunks",
    "probe_outcome",
]
