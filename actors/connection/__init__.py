"""One authenticated connection and the protocol streams it carries.

May import: :mod:`actors.transport`, :mod:`actors.runtime`, :mod:`protocols`.
"""

from __future__ import annotations

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

__all__ = [
    "CONNECTION_CLOSED",
    "Connection",
    "ConnectionClosed",
    "ConnectionConfig",
    "ConnectionFailed",
    "ConnectionStatistics",
    "ProtocolHandler",
    "Stream",
    "StreamEnded",
    "StreamReset",
    "open_connection",
]
