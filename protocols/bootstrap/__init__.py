"""Bootstrap ``/status``: the document, the node's view of it, round robin, the fetch plan.

May import: :mod:`protocols.node` and the layers below it (not
:mod:`protocols.config`, the layer above).
"""

from __future__ import annotations

from ._bootstrap_config import MAX_URL_LENGTH, BootstrapConfig
from ._bootstrap_plan import (
    DEFAULT_FETCH_BACKOFF,
    AddressSelection,
    BootstrapCommand,
    BootstrapPlan,
    BootstrapStatistics,
    BootUrlStatus,
    FallBackToPersisted,
    FetchOutcome,
    FetchUrl,
    SkipKind,
    SkippedEntry,
    fallback_addresses,
    refetch_backoff,
    select_addresses,
)
from ._peer_exchange import (
    AskForPeers,
    ExchangedPeers,
    PeerExchangePlan,
    PeerExchangeStatistics,
    interpret_peers_response,
    peer_exchange_limiter,
    sample_peers,
)
from ._peer_exchange_msg import (
    MAX_EXCHANGE_ADDRS,
    MAX_EXCHANGE_PEERS,
    PEER_EXCHANGE_PROTOCOL_ID,
    PeerEntry,
    PeersRequest,
    PeersResponse,
)
from ._round_robin import RoundRobin
from ._status_doc import (
    ParsedStatus,
    StatusDocument,
    StatusScalar,
    StatusValue,
    build_status_document,
    parse_status_document,
)
from ._status_view import (
    StatusListing,
    own_addresses,
    public_peer_addresses,
    status_document,
    verified_peers,
)

__all__ = [
    "DEFAULT_FETCH_BACKOFF",
    "MAX_EXCHANGE_ADDRS",
    "MAX_EXCHANGE_PEERS",
    "MAX_URL_LENGTH",
    "PEER_EXCHANGE_PROTOCOL_ID",
    "AddressSelection",
    "AskForPeers",
    "BootUrlStatus",
    "BootstrapCommand",
    "BootstrapConfig",
    "BootstrapPlan",
    "BootstrapStatistics",
    "ExchangedPeers",
    "FallBackToPersisted",
    "FetchOutcome",
    "FetchUrl",
    "ParsedStatus",
    "PeerEntry",
    "PeerExchangePlan",
    "PeerExchangeStatistics",
    "PeersRequest",
    "PeersResponse",
    "RoundRobin",
    "SkipKind",
    "SkippedEntry",
    "StatusDocument",
    "StatusListing",
    "StatusScalar",
    "StatusValue",
    "build_status_document",
    "fallback_addresses",
    "interpret_peers_response",
    "own_addresses",
    "parse_status_document",
    "peer_exchange_limiter",
    "public_peer_addresses",
    "refetch_backoff",
    "sample_peers",
    "select_addresses",
    "status_document",
    "verified_peers",
]
