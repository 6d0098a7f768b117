"""The node: its actors (Dialer, Identify, AutoNAT probe and server, dial-back
receiver, bootstrap fetcher, status tracker), their messages, the node
assembly (:func:`open_node`) and atomic file storage.

May import: :mod:`actors.connection`, :mod:`actors.transport`,
:mod:`actors.runtime`, :mod:`protocols`.
"""

from __future__ import annotations

from ._atomic import atomic_write_bytes
from ._autonat_probe import SmallNetworkWait
from ._bootstrap import BootstrapFetcher, ClientFactory
from ._dialer import Dialer, DialerState, DialerStatistics, DialFailure
from ._identify import IdentifyActor, IdentifyResponder, IdentifyState
from ._messages import Connect, ConnectionOpened, DialFailed, IdentifyPushed
from ._node import ConnectError, Node, NodeStatistics, open_node
from ._status_tracker import PEER_STORE_FILE, StatusTracker, StatusTrackerStatistics

__all__ = [
    "PEER_STORE_FILE",
    "BootstrapFetcher",
    "ClientFactory",
    "Connect",
    "ConnectError",
    "ConnectionOpened",
    "DialFailed",
    "DialFailure",
    "Dialer",
    "DialerState",
    "DialerStatistics",
    "IdentifyActor",
    "IdentifyPushed",
    "IdentifyResponder",
    "IdentifyState",
    "Node",
    "NodeStatistics",
    "SmallNetworkWait",
    "StatusTracker",
    "StatusTrackerStatistics",
    "atomic_write_bytes",
    "open_node",
]
