"""Inbound admission: who may hold a connection slot, per host and per network.

Theory of operation
-------------------
A boot node on the open internet has a fixed number of connection slots, and
peer ids cost nothing: without limits per network, one host opening
connections with fresh keys holds every slot and honest newcomers are
refused for as long as it likes. :class:`InboundAdmission` keeps the counts
and makes the decisions; the Dialer asks it at two moments and reports when
connections end. It never reads a clock or touches a socket.

Two stages are counted separately, each per IP, per subnet (IPv4 /24, IPv6
/56 by default, see :mod:`protocols.core._networks`) and in total:

pending
    Connections still in our handshake. ``max_pending`` slots in all and
    ``pending_per_ip`` per IP; a half-open connection never takes an
    established slot, so reopening handshakes cannot lock honest peers out
    of the node (they only compete for pending slots, a few per host).
    :meth:`InboundAdmission.handle_pending` answers None (go on) or
    :class:`AdmissionRefused`.

established
    Authenticated connections. ``per_ip`` and ``per_subnet`` caps refuse a
    newcomer from a host or network that already has its share. When all
    ``max_connections`` slots are taken, a newcomer is not simply refused:
    :meth:`InboundAdmission.handle_established` picks a victim - the oldest
    *evictable* connection of the most-represented subnet - and answers
    :class:`EvictConnection`, provided that subnet has more connections than
    the newcomer's would have after joining. Evictable means inbound and not
    protected: the caller passes the connections that are busy (open
    streams: a probe in progress) or otherwise protected (peers we dialed,
    such as bootstrap peers, are outbound and never evicted). So a host that
    holds every slot loses its oldest idle connection to each honest newcomer
    from another network, while it cannot evict its own connections to make
    room for more of them.

Outbound connections (we dialed them) are counted, so the caps see them,
but are never refused or evicted: the Dialer keeps at most ``target_peers``
of them, which is within ``max_connections``.

Costs: O(1) per event, except when the node is full, when choosing a victim
looks at the subnets (and the connections of one subnet).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from ..core import (
    DEFAULT_IPV4_PREFIX,
    DEFAULT_IPV6_PREFIX,
    IPAddress,
    IPNetwork,
    LocalProtocolError,
    check_network_limits,
    count_down,
    plain_ip,
    subnet_of,
)

__all__ = [
    "AdmissionLimits",
    "AdmissionRefused",
    "AdmissionStatistics",
    "EvictConnection",
    "InboundAdmission",
]


@dataclass(frozen=True)
class AdmissionLimits:
    """Slots per stage; see the module docstring."""

    max_connections: int = 64
    per_ip: int = 8
    per_subnet: int = 32
    max_pending: int = 64
    pending_per_ip: int = 4
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX

    def __post_init__(self) -> None:
        check_network_limits(self, ("max_connections", "per_ip", "per_subnet", "max_pending",
                                    "pending_per_ip"),
                             ipv4_prefix=self.ipv4_prefix, ipv6_prefix=self.ipv6_prefix)


@dataclass(frozen=True)
class AdmissionRefused:
    """Refuse the connection; ``reason`` says which limit (for logs and the peer)."""

    reason: str


@dataclass(frozen=True)
class EvictConnection:
    """Admit the newcomer after closing ``connection_id`` (the node was full)."""

    connection_id: int
    subnet: IPNetwork


@dataclass(frozen=True)
class AdmissionStatistics:
    pending: int
    established: int
    refused: tuple[tuple[str, int], ...]
    """Refusals by reason, sorted."""
    evicted: int
    networks: int
    """Subnets with at least one established connection."""


@dataclass(slots=True)
class _Established:
    ip: IPAddress
    subnet: IPNetwork
    inbound: bool


@dataclass
class InboundAdmission:
    """See the module docstring."""

    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    _pending_total: int = 0
    _pending: Counter[IPAddress] = field(default_factory=Counter)
    _established: dict[int, _Established] = field(default_factory=dict)
    _per_ip: Counter[IPAddress] = field(default_factory=Counter)
    _per_subnet: Counter[IPNetwork] = field(default_factory=Counter)
    _inbound_by_subnet: dict[IPNetwork, dict[int, None]] = field(default_factory=dict)
    """Inbound connection ids per subnet, oldest first (eviction candidates)."""
    _refused: Counter[str] = field(default_factory=Counter)
    _evicted: int = 0

    # --- pending ------------------------------------------------------------------

    def handle_pending(self, ip: IPAddress) -> AdmissionRefused | None:
        """A connection from ``ip`` starts its handshake: None to go on, or a refusal."""
        ip = plain_ip(ip)
        if self._pending_total >= self.limits.max_pending:
            return self._refuse("too many handshakes in progress")
        if self._pending[ip] >= self.limits.pending_per_ip:
            return self._refuse("too many handshakes in progress from this IP")
        self._pending_total += 1
        self._pending[ip] += 1
        return None

    def handle_pending_ended(self, ip: IPAddress) -> None:
        """The handshake that :meth:`handle_pending` admitted ended (either way)."""
        ip = plain_ip(ip)
        if self._pending[ip] <= 0:
            raise LocalProtocolError(f"admission: no handshake in progress from {ip}")
        self._pending_total -= 1
        count_down(self._pending, ip)

    # --- established --------------------------------------------------------------

    def handle_established(self, connection_id: int, ip: IPAddress, *, inbound: bool,
                           protected: Collection[int] = ()
                           ) -> AdmissionRefused | EvictConnection | None:
        """An authenticated connection wants a slot.

        None: it has one. :class:`EvictConnection`: it has one once the named
        connection is closed (already forgotten here). :class:`AdmissionRefused`:
        close it. ``protected`` are connection ids that must not be evicted
        (busy with streams).
        """
        if connection_id in self._established:
            raise LocalProtocolError(f"admission: connection {connection_id} is already counted")
        ip = plain_ip(ip)
        subnet = subnet_of(ip, ipv4_prefix=self.limits.ipv4_prefix,
                           ipv6_prefix=self.limits.ipv6_prefix)
        decision: AdmissionRefused | EvictConnection | None = None
        if inbound:
            if self._per_ip[ip] >= self.limits.per_ip:
                return self._refuse("too many connections from this IP")
            if self._per_subnet[subnet] >= self.limits.per_subnet:
                return self._refuse("too many connections from this network")
            if len(self._established) >= self.limits.max_connections:
                decision = self._evict_for(subnet, protected)
                if decision is None:
                    return self._refuse("connection limit reached")
        self._add(connection_id, _Established(ip, subnet, inbound))
        return decision

    def handle_closed(self, connection_id: int) -> None:
        """An established connection ended (unknown ids are ignored: evicted ones)."""
        entry = self._established.pop(connection_id, None)
        if entry is None:
            return
        count_down(self._per_ip, entry.ip)
        count_down(self._per_subnet, entry.subnet)
        if entry.inbound:
            ids = self._inbound_by_subnet[entry.subnet]
            del ids[connection_id]
            if not ids:
                del self._inbound_by_subnet[entry.subnet]

    def statistics(self) -> AdmissionStatistics:
        return AdmissionStatistics(
            pending=self._pending_total, established=len(self._established),
            refused=tuple(sorted(self._refused.items())), evicted=self._evicted,
            networks=len(self._per_subnet))

    # --- helpers -------------------------------------------------------------------

    def _add(self, connection_id: int, entry: _Established) -> None:
        self._established[connection_id] = entry
        self._per_ip[entry.ip] += 1
        self._per_subnet[entry.subnet] += 1
        if entry.inbound:
            self._inbound_by_subnet.setdefault(entry.subnet, {})[connection_id] = None

    def _evict_for(self, subnet: IPNetwork, protected: Collection[int]
                   ) -> EvictConnection | None:
        """The oldest evictable connection of the most-represented subnet, if that subnet
        has more connections than the newcomer's would have after joining."""
        newcomer = self._per_subnet[subnet] + 1
        for count, candidate in sorted(
                ((self._per_subnet[net], net) for net in self._inbound_by_subnet),
                key=lambda item: -item[0]):
            if count <= newcomer:
                return None
            victim = next((cid for cid in self._inbound_by_subnet[candidate]
                           if cid not in protected), None)
            if victim is not None:
                self.handle_closed(victim)
                self._evicted += 1
                return EvictConnection(victim, candidate)
        return None

    def _refuse(self, reason: str) -> AdmissionRefused:
        self._refused[reason] += 1
        return AdmissionRefused(reason)
