"""Events of the AutoNAT protocol: probe outcomes, served probes, reachability (pure data).

The AutonatProbe reports each probe it ran as a :class:`ProbeResult` and its
conclusions as a :class:`ReachabilityUpdate`; the AutonatServer reports each
request it served as an :class:`InboundProbe`. The reachability machine
consumes ``ProbeResult``; the node model folds all three into the node's
state. Every event is validated at construction.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final, Literal

from ..core import LocalProtocolError, PeerId, WsAddress
from ._autonat_msg import DialBackSource, DialStatus, ResponseStatus

NatStatus = Literal["public", "private", "unknown"]
NatMapping = Literal["none", "endpoint-independent", "endpoint-dependent", "unknown"]
NatFiltering = Literal["endpoint-independent", "address-dependent",
                       "address-and-port-dependent", "unknown"]
"""TCP filtering as RFC 4787 names it (:mod:`protocols.autonat._nat_filtering`)."""


class ProbeOutcome(enum.Enum):
    """What one AutoNAT probe of one of our addresses through one server showed.

    Only ``REACHABLE`` and ``UNREACHABLE`` are evidence (docs/architecture.md,
    "AutoNAT client rules"); the rest are recorded for statistics. The
    probing actor maps what it saw like this (:func:`protocols.probe_outcome`
    implements the table)::

        DialBack with our nonce on an inbound conn  -> REACHABLE (whatever the server said)
        else DialResponse OK + dial_status OK        -> LIED (the server's word alone)
        else DialResponse OK + dial_status E_DIAL_ERROR -> UNREACHABLE
        else E_DIAL_REFUSED / E_REQUEST_REJECTED     -> REFUSED
        else no answer in time                       -> TIMEOUT
        else anything else (E_DIAL_BACK_ERROR, E_INTERNAL_ERROR, broken stream) -> ERROR
    """

    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"
    LIED = "lied"

    @property
    def is_evidence(self) -> bool:
        return self in (ProbeOutcome.REACHABLE, ProbeOutcome.UNREACHABLE)


MAX_EVENT_DETAIL: Final = 512


def _check_event_time(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"event time must be a finite number, got {value!r}")


def _check_detail(value: object) -> None:
    if not isinstance(value, str) or len(value) > MAX_EVENT_DETAIL:
        raise LocalProtocolError(f"detail must be a string of <= {MAX_EVENT_DETAIL} characters")


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of asking ``server`` to dial ``addr`` (one of our candidate addresses).

    ``addr`` is the address the server reported dialing (the request's
    ``addr_idx``); a ``/p2p/`` suffix is ignored by the reachability machine.
    ``at`` is when the probe ended (monotonic node time).
    ``via``: which of the server's dial-backs the evidence is about. For
    ``REACHABLE`` the one that arrived: ``OTHER_IP`` (from an IP we never
    contacted - no flow of ours opened the way, so the address is open to
    anyone) or ``CONTACTED_IP`` (which an address-dependent filter lets in
    too). For ``UNREACHABLE`` the one the server says failed: ``OTHER_IP``
    when it reported a dial-back from its second address, else
    ``CONTACTED_IP``. None: not known (no evidence, or a server that reports
    no dial-backs). The reachability machine weighs evidence by it.
    """

    addr: WsAddress
    server: PeerId
    outcome: ProbeOutcome
    at: float
    detail: str = ""
    via: DialBackSource | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.addr, WsAddress):
            raise LocalProtocolError(f"addr must be a WsAddress, got {type(self.addr).__name__}")
        if not isinstance(self.server, PeerId):
            raise LocalProtocolError(f"server must be a PeerId, got {type(self.server).__name__}")
        if not isinstance(self.outcome, ProbeOutcome):
            raise LocalProtocolError(f"outcome must be a ProbeOutcome, got {self.outcome!r}")
        _check_event_time(self.at)
        _check_detail(self.detail)
        if self.via is not None and not isinstance(self.via, DialBackSource):
            raise LocalProtocolError(f"via must be a DialBackSource or None, got {self.via!r}")
        if self.via is not None and not self.outcome.is_evidence:
            raise LocalProtocolError(f"via describes evidence only, not {self.outcome.value}")


@dataclass(frozen=True)
class InboundProbe:
    """We served one dial request from ``peer`` (whatever the answer was).

    ``status``/``dial_status`` are what we answered; ``dialed`` is the one
    address we dialed back (``None`` when we refused or rejected the request
    before dialing); ``requested`` is how many addresses the request named.
    The StatusTracker uses ``peer`` for the seed's "fully connected" rule.
    """

    peer: PeerId
    status: ResponseStatus
    at: float
    dial_status: DialStatus = DialStatus.UNUSED
    dialed: WsAddress | None = None
    requested: int = 0
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.peer, PeerId):
            raise LocalProtocolError(f"peer must be a PeerId, got {type(self.peer).__name__}")
        object.__setattr__(self, "status", ResponseStatus(self.status))
        object.__setattr__(self, "dial_status", DialStatus(self.dial_status))
        _check_event_time(self.at)
        if self.dialed is not None and not isinstance(self.dialed, WsAddress):
            raise LocalProtocolError(f"dialed must be a WsAddress or None, got {self.dialed!r}")
        if isinstance(self.requested, bool) or not isinstance(self.requested, int) \
                or self.requested < 0:
            raise LocalProtocolError(f"requested must be an int >= 0, got {self.requested!r}")
        _check_detail(self.detail)


@dataclass(frozen=True)
class ReachabilityUpdate:
    """The AutonatProbe's current conclusions, sent to the StatusTracker on change."""

    nat_status: NatStatus
    reachable_addrs: tuple[WsAddress, ...]
    unreachable_addrs: tuple[WsAddress, ...]
    nat_mapping: NatMapping
    at: float
    nat_filtering: NatFiltering = "unknown"
