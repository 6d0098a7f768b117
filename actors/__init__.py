"""Everything that runs: Trio actors, supervisor, transport, HTTP and CLI."""

from __future__ import annotations

# --- actor runtime: supervisor, child specs, mailboxes (issue 3) ---
# isort: split
from ._childspec import (
    ChildRun,
    ChildSpec,
    ChildStartError,
    ChildState,
    ChildStatistics,
    Restart,
    SupervisorStatistics,
)
from ._mailbox import (
    ActorGone,
    Mailbox,
    MailboxClosed,
    MailboxReceiver,
    MailboxSender,
    MailboxState,
    MailboxStatistics,
    ReplySender,
    call,
)
from ._supervisor import Supervisor, SupervisorEscalation

# isort: split

# --- node state: status tracker, watch, atomic writes (issue 4, point 4) ---
from ._atomic import atomic_write_bytes
from ._status_tracker import PEER_STORE_FILE, StatusTracker, StatusTrackerStatistics
from ._watch import Watch, WatchClosed, WatchStatistics, WatchSubscription

# isort: split

# --- WebSocket transport (issue 4, point 1: sockets) ---
from ._ws_stream import WebSocketBroken, WebSocketFrameStream
from ._ws_transport import WebSocketTransport

# isort: split

# --- connections: stream mux and per-connection actor layer (issue 4, point 1: streams) ---
from ._connection import (
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionFailed,
    ConnectionStatistics,
    ProtocolHandler,
    open_connection,
)
from ._stream import CONNECTION_CLOSED, Stream, StreamEnded, StreamReset

# isort: split

# --- transport seam, node assembly, Dialer and Identify (issue 4) ---
from ._dialer import Dialer, DialerState, DialerStatistics
from ._framestream import (
    DialError,
    FrameStream,
    Transport,
    TransportBroken,
    TransportClosed,
    TransportError,
)
from ._identify import IdentifyActor, IdentifyResponder, IdentifyState
from ._logsetup import configure_logging
from ._memory_transport import MemoryFrameStream, MemoryNetwork, MemoryTransport, memory_stream_pair
from ._messages import Connect, ConnectionOpened, DialFailed, IdentifyPushed
from ._node import ConnectError, Node, NodeStatistics, open_node

# isort: split

# --- HTTP API and metrics (issue 6, point 2) ---
from ._http_api import HttpApi, HttpApiStatistics, HttpResponse, package_version, serve_http
from ._metrics import (
    METRIC_NAMES,
    NodeCollector,
    StatisticsProvider,
    StatisticsProviders,
    StatusSource,
    node_registry,
    render_metrics,
)

# isort: split

# --- bootstrap and config (section H) ---
from ._bootstrap import BootstrapFetcher, ClientFactory

__all__ = [
    "CONNECTION_CLOSED",
    "METRIC_NAMES",
    "PEER_STORE_FILE",
    "ActorGone",
    "BootstrapFetcher",
    "ChildRun",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "ChildStatistics",
    "ClientFactory",
    "Connect",
    "ConnectError",
    "Connection",
    "ConnectionClosed",
    "ConnectionConfig",
    "ConnectionFailed",
    "ConnectionOpened",
    "ConnectionStatistics",
    "DialError",
    "DialFailed",
    "Dialer",
    "DialerState",
    "DialerStatistics",
    "FrameStream",
    "HttpApi",
    "HttpApiStatistics",
    "HttpResponse",
    "IdentifyActor",
    "IdentifyPushed",
    "IdentifyResponder",
    "IdentifyState",
    "Mailbox",
    "MailboxClosed",
    "MailboxReceiver",
    "MailboxSender",
    "MailboxState",
    "MailboxStatistics",
    "MemoryFrameStream",
    "MemoryNetwork",
    "MemoryTransport",
    "Node",
    "NodeCollector",
    "NodeStatistics",
    "ProtocolHandler",
    "ReplySender",
    "Restart",
    "StatisticsProvider",
    "StatisticsProviders",
    "StatusSource",
    "StatusTracker",
    "StatusTrackerStatistics",
    "Stream",
    "StreamEnded",
    "StreamReset",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorStatistics",
    "Transport",
    "TransportBroken",
    "TransportClosed",
    "TransportError",
    "Watch",
    "WatchClosed",
    "WatchStatistics",
    "WatchSubscription",
    "WebSocketBroken",
    "WebSocketFrameStream",
    "WebSocketTransport",
    "atomic_write_bytes",
    "call",
    "configure_logging",
    "memory_stream_pair",
    "node_registry",
    "open_connection",
    "open_node",
    "package_version",
    "render_metrics",
    "serve_http",
]
