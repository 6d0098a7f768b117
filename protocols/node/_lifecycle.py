"""The node's lifecycle: starting -> bootstrapping -> connected -> fully_connected.

Theory of operation
-------------------
The lifecycle is a small state machine written as a table (h11 style):
:data:`LIFECYCLE_TRANSITIONS` maps *every* ``(state, trigger)`` pair to the
next state; a pair that leaves the state alone says so with an explicit
"stay" entry (the same state). The table is complete - checked when this
module is imported - and :func:`next_lifecycle` raises
:class:`~protocols.LocalProtocolError` for a pair that is missing, naming
the state and the trigger, so a gap can never again drop a trigger silently.

The NodeModel fires the triggers - listeners bound, a connection appeared,
the last connection closed, an inbound probe from a peer learned from a
bootstrap source (the ``InboundProbe`` rule) - and asks :func:`next_lifecycle`.

A probe that races ahead of its connection
    The AutoNAT server and the Dialer report to the tracker independently, so
    ``InboundProbe`` can arrive before the ``ConnectionUp`` of the very
    connection it came over. The table keeps ``BOOTSTRAP_PROBE`` in
    ``starting`` and ``bootstrapping`` as a "stay": the lifecycle does not
    jump to ``fully_connected`` with no connection on record (that would
    break "connected states iff live connections", and a probe that arrives
    *after* its connection closed would leave the node fully connected with
    nothing connected). Instead the NodeModel remembers the probing peer and
    fires ``BOOTSTRAP_PROBE`` again right after that peer's ``CONNECTION_UP``,
    so the node goes ``connected`` and then ``fully_connected`` in one step.
    The remembered probes are forgotten once the node is fully connected.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ..core import LocalProtocolError

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
            (_L.STARTING, _T.CONNECTION_UP): _L.CONNECTED,  # a client with no listener
            (_L.STARTING, _T.ALL_CONNECTIONS_LOST): _L.STARTING,  # stay: none were up
            (_L.STARTING, _T.BOOTSTRAP_PROBE): _L.STARTING,  # stay: the model holds it
            (_L.BOOTSTRAPPING, _T.LISTENING): _L.BOOTSTRAPPING,  # stay: addresses changed
            (_L.BOOTSTRAPPING, _T.CONNECTION_UP): _L.CONNECTED,
            (_L.BOOTSTRAPPING, _T.ALL_CONNECTIONS_LOST): _L.BOOTSTRAPPING,  # stay
            (_L.BOOTSTRAPPING, _T.BOOTSTRAP_PROBE): _L.BOOTSTRAPPING,  # stay: the model holds it
            (_L.CONNECTED, _T.LISTENING): _L.CONNECTED,  # stay
            (_L.CONNECTED, _T.CONNECTION_UP): _L.CONNECTED,  # stay
            (_L.CONNECTED, _T.ALL_CONNECTIONS_LOST): _L.BOOTSTRAPPING,
            (_L.CONNECTED, _T.BOOTSTRAP_PROBE): _L.FULLY_CONNECTED,
            (_L.FULLY_CONNECTED, _T.LISTENING): _L.FULLY_CONNECTED,  # stay
            (_L.FULLY_CONNECTED, _T.CONNECTION_UP): _L.FULLY_CONNECTED,  # stay
            (_L.FULLY_CONNECTED, _T.ALL_CONNECTIONS_LOST): _L.BOOTSTRAPPING,  # probe again
            (_L.FULLY_CONNECTED, _T.BOOTSTRAP_PROBE): _L.FULLY_CONNECTED,  # stay
        }
    )
)


def missing_pairs(
    table: Mapping[tuple[Lifecycle, LifecycleTrigger], Lifecycle],
) -> list[tuple[Lifecycle, LifecycleTrigger]]:
    """The ``(state, trigger)`` pairs ``table`` has no entry for (empty: complete)."""
    return [pair for pair in itertools.product(Lifecycle, LifecycleTrigger) if pair not in table]


if missing_pairs(LIFECYCLE_TRANSITIONS):  # pragma: no cover - a table edit gone wrong
    raise LocalProtocolError(
        f"LIFECYCLE_TRANSITIONS lacks {missing_pairs(LIFECYCLE_TRANSITIONS)}")


def next_lifecycle(
    current: Lifecycle,
    trigger: LifecycleTrigger,
    *,
    table: Mapping[tuple[Lifecycle, LifecycleTrigger], Lifecycle] = LIFECYCLE_TRANSITIONS,
) -> Lifecycle:
    """The state after ``trigger`` (the same state for a "stay" entry).

    Raises :class:`~protocols.LocalProtocolError` when ``table`` has no entry
    for the pair. ``table`` exists for tests; the node always uses
    :data:`LIFECYCLE_TRANSITIONS`.
    """
    try:
        return table[(current, trigger)]
    except KeyError:
        raise LocalProtocolError(
            f"lifecycle: no transition for trigger {trigger.value!r} in state "
            f"{current.value!r}") from None
