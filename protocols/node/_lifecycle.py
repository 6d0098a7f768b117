"""The node's lifecycle: starting -> bootstrapping -> connected -> fully_connected.

Theory of operation
-------------------
The lifecycle is a small state machine written as a table (h11 style):
:data:`LIFECYCLE_TRANSITIONS` maps ``(state, trigger)`` to the next state,
and a pair missing from the table means "no change". The NodeModel fires
the triggers - listeners bound, a connection appeared, the last connection
closed, an inbound probe from a peer learned from a bootstrap source (the
seed's ``InboundProbe`` rule) - and asks :func:`next_lifecycle`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["LIFECYCLE_TRANSITIONS", "Lifecycle", "LifecycleTrigger", "next_lifecycle"]


class Lifecycle(enum.Enum):
    """Where the node is on its way to being fully connected."""

    STARTING = "starting"
    BOOTSTRAPPING = "bootstrapping"
    CONNECTED = "connected"
    FULLY_CONNECTED = "fully_connected"


class LifecycleTrigger(enum.Enum):
    """What can move the lifecycle."""

    LISTENING = "listening"  # listeners bound
    CONNECTION_UP = "connection_up"  # a live connection appeared
    ALL_CONNECTIONS_LOST = "all_connections_lost"  # the last one closed
    BOOTSTRAP_PROBE = "bootstrap_probe"  # probed by a peer from a bootstrap source


_L, _T = Lifecycle, LifecycleTrigger
LIFECYCLE_TRANSITIONS: Final[Mapping[tuple[Lifecycle, LifecycleTrigger], Lifecycle]] = (
    MappingProxyType(
        {
            (_L.STARTING, _T.LISTENING): _L.BOOTSTRAPPING,
            (_L.STARTING, _T.CONNECTION_UP): _L.CONNECTED,
            (_L.BOOTSTRAPPING, _T.CONNECTION_UP): _L.CONNECTED,
            (_L.CONNECTED, _T.BOOTSTRAP_PROBE): _L.FULLY_CONNECTED,
            (_L.CONNECTED, _T.ALL_CONNECTIONS_LOST): _L.BOOTSTRAPPING,
            (_L.FULLY_CONNECTED, _T.ALL_CONNECTIONS_LOST): _L.BOOTSTRAPPING,
        }
    )
)


def next_lifecycle(current: Lifecycle, trigger: LifecycleTrigger) -> Lifecycle:
    """The state after ``trigger``; unchanged when the table has no entry."""
    return LIFECYCLE_TRANSITIONS.get((current, trigger), current)
