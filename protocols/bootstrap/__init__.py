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
from ._round_robin import RoundRobin
from ._status_doc import (
    ParsedStatus,
    StatusDocument,
    StatusScalar,
    StatusValue,
    build_status_document,
    parse_status_document,
)
from ._status_view import StatusListing, own_addresses, public_peer_addresses, status_document

__all__ = [
    "DEFAULT_FETCH_BACKOFF",
    "MAX_URL_LENGTH",
    "AddressSelection",
    "BootUrlStatus",
    "BootstrapCommand",
    "BootstrapConfig",
    "BootstrapPlan",
    "BootstrapStatistics",
    "FallBackToPersisted",
    "FetchOutcome",
    "FetchUrl",
    "ParsedStatus",
    "RoundRobin",
    "SkipKind",
    "SkippedEntry",
    "StatusDocument",
    "StatusListing",
    "StatusScalar",
    "StatusValue",
    "build_status_document",
    "fallback_addresses",
    "own_addresses",
    "parse_status_document",
    "public_peer_addresses",
    "refetch_backoff",
    "select_addresses",
    "status_document",
]
