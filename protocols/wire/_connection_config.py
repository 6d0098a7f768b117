"""The limits and timeouts of one authenticated connection, declared once.

Theory of operation
-------------------
A connection (docs/architecture.md, "Wire protocol") is bounded in time - the
handshake, every stream's lifetime, an optional idle period - and in size -
concurrent streams per direction, the largest frame, the messages buffered
per stream and the frames queued for sending. :class:`ConnectionConfig` holds
all of them and is the only place they are declared: a node's
:class:`~protocols.NodeConfig` carries one as its ``connection`` component
(settings ``handshake_timeout``, ``stream_timeout``, ``idle_timeout``,
``max_streams``, ``max_frame_bytes``, ``max_refusals``, ``refusal_window``),
the connection actor runs with it (its :class:`~protocols.RefusalWindow`
comes from :meth:`ConnectionConfig.new_refusal_window`), and
the sans-io :class:`~protocols.StreamMux` gets its share through
:meth:`ConnectionConfig.mux_limits`. The defaults of the mux limits are the
:mod:`protocols.wire._mux` constants, so a bare :class:`MuxLimits` and a bare
:class:`ConnectionConfig` agree.

``stream_buffer`` and ``send_buffer`` tune the connection actor's queues; they
are not configuration-file settings (field metadata ``setting=False``), but
code may set them. ``stream_buffer`` is also the per-stream flow-control
window (``MuxLimits.stream_window``), which is part of the wire protocol:
both ends of a connection must use the same value. (With different values
the side with the larger window has the streams it overfills reset with
``flow-control``, and the other side may wait for credit its peer only
grants after half of its larger window, until the stream times out.)

Validation happens at construction: a wrong type or a value that is not
positive raises :class:`ValueError` naming the field
(``max_streams must be > 0, got 0``); ``idle_timeout=None`` means a connection
never idles out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, replace

from ..core import check_positive_setting
from ._flow import DEFAULT_STREAM_WINDOW
from ._handshake import DEFAULT_HANDSHAKE_TIMEOUT
from ._mux import DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_STREAMS, DEFAULT_STREAM_TIMEOUT, MuxLimits
from ._refusals import DEFAULT_MAX_REFUSALS, DEFAULT_REFUSAL_WINDOW, RefusalWindow

__all__ = ["ConnectionConfig"]

_NOT_A_SETTING = {"setting": False}


@dataclass(frozen=True)
class ConnectionConfig:
    """Per-connection limits and timeouts (seconds, bytes); validated at construction."""

    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    """The authentication handshake at the start of every connection."""
    stream_timeout: float = DEFAULT_STREAM_TIMEOUT
    """Lifetime of one protocol stream, from its opening to both fins."""
    idle_timeout: float | None = None
    """Close a connection with no stream for this long; ``None`` keeps it (a node's
    Dialer maintains ``target_peers``, so idling out would only churn connections)."""
    inbound_idle_timeout: float | None = None
    """For connections the peer opened: close after this long without a stream;
    ``None`` = ``idle_timeout``. A boot node sets it, so a newcomer that got its
    verdict and went quiet gives its slot back."""
    max_streams: int = DEFAULT_MAX_STREAMS
    """Concurrent streams per connection and direction."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest frame (WebSocket message) accepted or sent."""
    max_refusals: int = DEFAULT_MAX_REFUSALS
    """Refused requests of the peer's (streams the mux refused, requests a rate limit
    refused) within ``refusal_window`` that close the connection."""
    refusal_window: float = DEFAULT_REFUSAL_WINDOW
    """Seconds over which ``max_refusals`` are counted."""
    stream_buffer: int = field(default=DEFAULT_STREAM_WINDOW, metadata=_NOT_A_SETTING)
    """Messages a peer may send on a stream ahead of its consumer: the stream's
    flow-control window, hence the most its inbox ever holds."""
    send_buffer: int = field(default=32, metadata=_NOT_A_SETTING)
    """Frames queued for the writer before stream senders wait."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None and spec.name in ("idle_timeout", "inbound_idle_timeout"):
                continue
            integral = spec.type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, int if integral else int | float):
                kind = "an integer" if integral else "a number"
                raise ValueError(f"{spec.name} must be {kind}, got {value!r}")
            check_positive_setting(spec.name, value)
        try:
            self.mux_limits()
        except ValueError as exc:
            raise ValueError(f"max_frame_bytes is out of range ({exc}), "
                             f"got {self.max_frame_bytes!r}") from None

    def for_inbound(self) -> ConnectionConfig:
        """The config of a connection the peer opened (``inbound_idle_timeout`` applied)."""
        if self.inbound_idle_timeout is None:
            return self
        return replace(self, idle_timeout=self.inbound_idle_timeout)

    def mux_limits(self) -> MuxLimits:
        """The sans-io stream mux's share of these limits (one shared, frozen value per
        set of limits: every connection's mux holds it)."""
        return _mux_limits(self.max_streams, self.stream_timeout, self.max_frame_bytes,
                           self.stream_buffer)

    def new_refusal_window(self) -> RefusalWindow:
        """A fresh count of one connection's refused requests."""
        return RefusalWindow(self.max_refusals, self.refusal_window)


@functools.lru_cache(maxsize=64)
def _mux_limits(max_streams: int, stream_timeout: float, max_frame_bytes: int,
                stream_window: int) -> MuxLimits:
    return MuxLimits(max_streams=max_streams, stream_timeout=stream_timeout,
                     max_frame_bytes=max_frame_bytes, stream_window=stream_window)
