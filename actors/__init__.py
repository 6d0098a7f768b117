"""Everything that runs: Trio actors, supervisor, transport, HTTP and CLI.

The package is a facade over sub-packages in layers, each importing only
from the layers below it (``lint-imports`` checks this)::

    surfaces     HTTP API, metrics, the ``autonat`` command line
    node         the node's actors and their messages, node assembly, storage
    connection   one authenticated connection and its streams
    transport    the FrameStream seam, WebSocket and in-memory transports, TLS
    runtime      mailboxes, child specs, supervisor, watch, logging, timeout driver

Any layer may import :mod:`protocols`; :mod:`protocols` never imports this package.

The facade is lazy: ``import actors`` loads no sub-package (and so neither
Trio nor the HTTP stack); the first use of a name imports the layer that
defines it. That keeps ``autonat`` responsive from its first instant - a
Ctrl-C while the command line's dependencies load is still a one-line exit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # mailboxes, child specs, supervisor, watch, logging, timeout driver
    from .runtime import (
        ActorGone,
        ChildRun,
        ChildSpec,
        ChildStartError,
        ChildState,
        ChildStatistics,
        DriverStatistics,
        InjectedFault,
        Mailbox,
        MailboxClosed,
        MailboxReceiver,
        MailboxSender,
        MailboxState,
        MailboxStatistics,
        Pulse,
        ReplySender,
        Restart,
        Supervisor,
        SupervisorEscalation,
        SupervisorStatistics,
        TimedMachine,
        TimeoutDriver,
        Watch,
        WatchClosed,
        WatchStatistics,
        WatchSubscription,
        call,
        configure_logging,
    )

    # isort: split
    # FrameStream seam, WebSocket and in-memory transports
    from .transport import (
        DialError,
        FrameStream,
        LocalDialError,
        MemoryFrameStream,
        MemoryNetwork,
        MemoryTransport,
        SimNetwork,
        StaticNat,
        Transport,
        TransportBroken,
        TransportClosed,
        TransportError,
        WebSocketBroken,
        WebSocketFrameStream,
        WebSocketTransport,
        memory_stream_pair,
    )

    # isort: split
    # authenticated connections and their streams
    from .connection import (
        CONNECT_FAILURES,
        CONNECTION_CLOSED,
        EXCHANGE_FAILURES,
        Connection,
        ConnectionConfig,
        ConnectionEnded,
        ConnectionFailed,
        ConnectionStatistics,
        ProtocolHandler,
        Stream,
        StreamEnded,
        StreamFailure,
        StreamReset,
        StreamTimeout,
        open_connection,
    )

    # isort: split
    # the node's actors, their messages, node assembly, atomic writes
    from .node import (
        PEER_STORE_FILE,
        AutonatServerStatistics,
        BootstrapFetcher,
        ClientFactory,
        Connect,
        ConnectError,
        ConnectionOpened,
        DialBackStatistics,
        Dialer,
        DialerState,
        DialerStatistics,
        DialFailed,
        IdentifyActor,
        IdentifyPushed,
        IdentifyResponder,
        IdentifyResponderStatistics,
        IdentifyState,
        IdentifyStatistics,
        Node,
        NodeStatistics,
        StatusTracker,
        StatusTrackerStatistics,
        atomic_write_bytes,
        create_exclusive,
        load_config_file,
        load_keypair,
        load_or_create_keypair,
        open_node,
        save_keypair,
    )

    # isort: split
    # HTTP API and metrics
    from .surfaces import (
        METRIC_NAMES,
        HttpApi,
        HttpApiStatistics,
        HttpResponse,
        NodeCollector,
        StatusSource,
        node_registry,
        package_version,
        render_metrics,
        serve_http,
    )

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECT_FAILURES",
    "EXCHANGE_FAILURES",
    "METRIC_NAMES",
    "PEER_STORE_FILE",
    "ActorGone",
    "AutonatServerStatistics",
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
    "ConnectionConfig",
    "ConnectionEnded",
    "ConnectionFailed",
    "ConnectionOpened",
    "ConnectionStatistics",
    "DialBackStatistics",
    "DialError",
    "DialFailed",
    "Dialer",
    "DialerState",
    "DialerStatistics",
    "DriverStatistics",
    "FrameStream",
    "HttpApi",
    "HttpApiStatistics",
    "HttpResponse",
    "IdentifyActor",
    "IdentifyPushed",
    "IdentifyResponder",
    "IdentifyResponderStatistics",
    "IdentifyState",
    "IdentifyStatistics",
    "InjectedFault",
    "LocalDialError",
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
    "Pulse",
    "ReplySender",
    "Restart",
    "SimNetwork",
    "StaticNat",
    "StatusSource",
    "StatusTracker",
    "StatusTrackerStatistics",
    "Stream",
    "StreamEnded",
    "StreamFailure",
    "StreamReset",
    "StreamTimeout",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorStatistics",
    "TimedMachine",
    "TimeoutDriver",
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
    "create_exclusive",
    "load_config_file",
    "load_keypair",
    "load_or_create_keypair",
    "memory_stream_pair",
    "node_registry",
    "open_connection",
    "open_node",
    "package_version",
    "render_metrics",
    "save_keypair",
    "serve_http",
]


_LAYERS = ("runtime", "transport", "connection", "node", "surfaces")
"""Sub-packages, lowest layer first: where a public name is looked up."""


def __getattr__(name: str) -> Any:
    """Import the layer that exports ``name`` (once; later reads find it in globals)."""
    if name in __all__:
        for layer in _LAYERS:
            module = importlib.import_module(f".{layer}", __name__)
            if name in module.__all__:
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
