"""Events shared by the wire machines (handshake and stream mux)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SendFrame:
    """Send ``data`` to the peer as one frame, in the order the events come."""

    data: bytes
