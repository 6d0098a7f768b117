"""One authenticated connection and the protocol streams it carries.

May import: :mod:`actors.transport`, :mod:`actors.runtime`, :mod:`protocols`.

:class:`ConnectionConfig` (the limits and timeouts of a connection) is declared
once, in :mod:`protocols.wire`; it is re-exported here because a connection
runs with it.
"""

from __future__ import annotations

from protocols import ConnectionConfig

from ._connection import (
    CONNECT_FAILURES,
    EXCHANGE_FAILURES,
    Connection,
    ConnectionEnded,
    ConnectionFailed,
    ConnectionStatistics,
    ProtocolHandler,
    open_connection,
)
from ._stream import (
    CONNECTION_CLOSED,
    Stream,
    StreamEnded,
    StreamFailure,
    StreamReset,
    StreamTimeout,
)

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECT_FAILURES",
    "EXCHANGE_FAILURES",
    "Connection",
    "ConnectionConfig",
    "ConnectionEnded",
    "ConnectionFailed",
    "ConnectionStatistics",
    "ProtocolHandler",
    "Stream",
    "StreamEnded",
    "StreamFailure",
    "StreamReset",
    "StreamTimeout",
    "open_connection",
]
