"""The node: its actors (Dialer, Identify, AutoNAT probe and server, dial-back
receiver, bootstrap fetcher, status tracker, STUN server and UDP profiler), their messages, the node
assembly (:func:`open_node`) and file storage (crash-safe writes, the key file).

May import: :mod:`actors.connection`, :mod:`actors.transport`,
:mod:`actors.runtime`, :mod:`protocols`.
"""

from __future__ import annotations

from ._autonat_probe import SmallNetworkWait
from ._autonat_server import AutonatServerStatistics
from ._bootstrap import BootstrapFetcher, ClientFactory
from ._dialback import DialBackStatistics
from ._dialer import Dialer, DialerState, DialerStatistics, DialFailure
from ._holepunch import HolePunchReport, HolePunchService, HolePunchStatistics
from ._identify import (
    IdentifyActor,
    IdentifyResponder,
    IdentifyResponderStatistics,
    IdentifyState,
    IdentifyStatistics,
)
from ._messages import Connect, ConnectionOpened, DialFailed, IdentifyPushed
from ._node import ConnectError, Node, NodeStatistics, open_node
from ._relay import RelayService, RelayServiceStatistics
from ._relay_circuit import RelayRefused
from ._relay_client import (
    RelayClient,
    RelayClientStatistics,
    RelayReservation,
    RelayUnavailable,
)
from ._status_tracker import PEER_STORE_FILE, StatusTracker, StatusTrackerStatistics
from ._storage import (
    atomic_write_bytes,
    create_exclusive,
    load_config_file,
    load_keypair,
    load_or_create_keypair,
    save_keypair,
)
from ._stun import StunServerActor, StunStatistics, UdpProfiler, stun_bind_hint

__all__ = [
    "PEER_STORE_FILE",
    "AutonatServerStatistics",
    "BootstrapFetcher",
    "ClientFactory",
    "Connect",
    "ConnectError",
    "ConnectionOpened",
    "DialBackStatistics",
    "DialFailed",
    "DialFailure",
    "Dialer",
    "DialerState",
    "DialerStatistics",
    "HolePunchReport",
    "HolePunchService",
    "HolePunchStatistics",
    "IdentifyActor",
    "IdentifyPushed",
    "IdentifyResponder",
    "IdentifyResponderStatistics",
    "IdentifyState",
    "IdentifyStatistics",
    "Node",
    "NodeStatistics",
    "RelayClient",
    "RelayClientStatistics",
    "RelayRefused",
    "RelayReservation",
    "RelayService",
    "RelayServiceStatistics",
    "RelayUnavailable",
    "SmallNetworkWait",
    "StatusTracker",
    "StatusTrackerStatistics",
    "StunServerActor",
    "StunStatistics",
    "UdpProfiler",
    "atomic_write_bytes",
    "create_exclusive",
    "load_config_file",
    "load_keypair",
    "load_or_create_keypair",
    "open_node",
    "save_keypair",
    "stun_bind_hint",
]
