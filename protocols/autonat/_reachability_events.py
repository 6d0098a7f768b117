"""What :class:`~._reachability.Reachability` reports: its events and its views.

Theory of operation
-------------------
Every change the machine makes is returned as an event stamped with the
``now`` of the input that caused it: one address's verdict
(:class:`ReachabilityChanged`) and then, if it moved, the overall status
(:class:`NatStatusChanged`). Readers that want the state rather than the
changes take a :class:`ReachabilityView`: the overall status, the addresses
by verdict and each address's votes, all immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from ..core import WsAddress
from ._autonat_events import NatStatus

__all__ = [
    "AddressReachability",
    "AddressVerdict",
    "NatStatusChanged",
    "ReachabilityChanged",
    "ReachabilityEvent",
    "ReachabilityStatistics",
    "ReachabilityView",
]

AddressVerdict = Literal["reachable", "unreachable", "unknown"]


@dataclass(frozen=True)
class ReachabilityChanged:
    """The verdict on ``addr`` changed from ``old`` to ``new`` at ``at``.

    ``reason`` is ``"evidence"``, ``"expired"``, ``"distrusted"`` (a lying
    server's claims were dropped) or ``"removed"`` (no longer a candidate).
    """

    addr: WsAddress
    old: AddressVerdict
    new: AddressVerdict
    at: float
    reachable_votes: int
    unreachable_votes: int
    reason: str = "evidence"


@dataclass(frozen=True)
class NatStatusChanged:
    """The overall ``nat_status`` changed from ``old`` to ``new`` at ``at``."""

    old: NatStatus
    new: NatStatus
    at: float


ReachabilityEvent: TypeAlias = ReachabilityChanged | NatStatusChanged


@dataclass(frozen=True)
class AddressReachability:
    """One candidate address as the machine last judged it."""

    addr: WsAddress
    verdict: AddressVerdict
    since: float
    reachable_votes: int
    unreachable_votes: int
    next_probe_at: float


@dataclass(frozen=True)
class ReachabilityStatistics:
    """Counters since creation. Results by outcome are counted by the driver
    (:class:`~protocols.ProbeScheduler`), not here."""

    ignored: int
    distrusted_servers: int


@dataclass(frozen=True)
class ReachabilityView:
    """An immutable snapshot: overall status, addresses by verdict (sorted), details."""

    nat_status: NatStatus
    nat_status_since: float | None
    reachable_addrs: tuple[WsAddress, ...]
    unreachable_addrs: tuple[WsAddress, ...]
    unknown_addrs: tuple[WsAddress, ...]
    addresses: tuple[AddressReachability, ...]
    statistics: ReachabilityStatistics
