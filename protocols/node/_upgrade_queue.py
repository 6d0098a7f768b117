"""The upgrade queue: TCP connections accepted but not yet upgraded to WebSockets.

Theory of operation
-------------------
Between ``accept`` and the end of the TLS + WebSocket upgrade a connection
holds a file descriptor and a task for up to ``handshake_timeout``, and has
proved nothing: not even that it speaks HTTP. Without a cap, one host that
opens many TCP connections and never sends the upgrade request holds
descriptors until the process runs into its reserve, and then every honest
newcomer is refused. :class:`UpgradeQueue` counts these connections - in
total, per IP and per subnet (IPv4 /24, IPv6 /56 by default, see
:mod:`protocols.core._networks`) - and decides, for each newcomer, one
of (the answers the admission of authenticated connections gives, see
:mod:`protocols.node._admission`):

* go on (None): it joins the queue;
* :class:`~protocols.AdmissionRefused`: close it at once - its IP already has
  ``per_ip`` connections waiting (reason ``upgrade_ip``), or its subnet
  ``per_subnet`` (``upgrade_subnet``), or the queue is full and nothing may
  be evicted for it (``upgrade_full``);
* :class:`~protocols.EvictConnection`: the queue was full; the caller
  cancels the named waiting connection (``connection_id`` is its ticket)
  and closes its socket, and the newcomer joins. The victim is the
  *oldest* waiting connection of the *most-represented* subnet, provided
  that subnet has more waiting connections than the newcomer's would have
  after joining. So a network that fills the queue
  loses its oldest connections to newcomers from other networks, but can
  never evict its own connections to make room for more of them.

The caller names every connection with a ticket (any int it chooses, unique
while waiting) and reports :meth:`UpgradeQueue.handle_done` when the upgrade
ended either way; an evicted ticket is already forgotten, so reporting it
again is ignored.

Costs: O(1) per event. Subnets are kept in buckets by their count of waiting
connections, with the largest count tracked; counts move by one at a time,
so the most-represented subnet is found without scanning. Each subnet keeps
its tickets in arrival order (an ordered dict: the oldest is its first key).

Nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final

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
from ._admission import AdmissionRefused, EvictConnection

__all__ = ["UPGRADE_REFUSAL_REASONS", "UpgradeLimits", "UpgradeQueue", "UpgradeStatistics"]

UPGRADE_REFUSAL_REASONS: Final = ("upgrade_ip", "upgrade_subnet", "upgrade_full")
"""Every refusal reason of the queue: per-IP cap, per-subnet cap, queue full."""


@dataclass(frozen=True)
class UpgradeLimits:
    """Connections waiting for the upgrade; see the module docstring."""

    max_pending: int = 256
    per_ip: int = 8
    per_subnet: int = 32
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX

    def __post_init__(self) -> None:
        check_network_limits(self, ("max_pending", "per_ip", "per_subnet"),
                             ipv4_prefix=self.ipv4_prefix, ipv6_prefix=self.ipv6_prefix)


@dataclass(frozen=True)
class UpgradeStatistics:
    pending: int
    """Connections waiting for the upgrade now."""
    refused: tuple[tuple[str, int], ...]
    """Refusals by reason, sorted."""
    evicted: int


@dataclass(frozen=True)
class _Waiting:
    ip: IPAddress
    subnet: IPNetwork


@dataclass
class UpgradeQueue:
    """See the module docstring."""

    limits: UpgradeLimits = field(default_factory=UpgradeLimits)
    _waiting: dict[int, _Waiting] = field(default_factory=dict)
    _per_ip: Counter[IPAddress] = field(default_factory=Counter)
    _by_subnet: dict[IPNetwork, OrderedDict[int, None]] = field(default_factory=dict)
    """Waiting tickets per subnet, oldest first; a subnet's count is their number."""
    _buckets: dict[int, dict[IPNetwork, None]] = field(default_factory=dict)
    """Subnets by their count of waiting connections (counts >= 1 only)."""
    _largest: int = 0
    _refused: Counter[str] = field(default_factory=Counter)
    _evicted: int = 0

    def handle_accepted(self, ticket: int, ip: IPAddress
                        ) -> AdmissionRefused | EvictConnection | None:
        """A connection from ``ip`` was accepted: None (it waits), evict, or refuse."""
        if ticket in self._waiting:
            raise LocalProtocolError(f"upgrade queue: ticket {ticket} is already waiting")
        ip = plain_ip(ip)
        subnet = subnet_of(ip, ipv4_prefix=self.limits.ipv4_prefix,
                           ipv6_prefix=self.limits.ipv6_prefix)
        if self._per_ip[ip] >= self.limits.per_ip:
            return self._refuse("upgrade_ip")
        if self._count(subnet) >= self.limits.per_subnet:
            return self._refuse("upgrade_subnet")
        decision = None
        if len(self._waiting) >= self.limits.max_pending:
            decision = self._evict_for(subnet)
            if decision is None:
                return self._refuse("upgrade_full")
        self._add(ticket, _Waiting(ip, subnet))
        return decision

    def handle_done(self, ticket: int) -> None:
        """The upgrade of ``ticket`` ended, either way (unknown tickets are ignored)."""
        entry = self._waiting.pop(ticket, None)
        if entry is None:
            return
        count_down(self._per_ip, entry.ip)
        tickets = self._by_subnet[entry.subnet]
        del tickets[ticket]
        self._recount(entry.subnet, len(tickets) + 1, len(tickets))
        if not tickets:
            del self._by_subnet[entry.subnet]

    def statistics(self) -> UpgradeStatistics:
        return UpgradeStatistics(pending=len(self._waiting),
                                 refused=tuple(sorted(self._refused.items())),
                                 evicted=self._evicted)

    # --- helpers -------------------------------------------------------------------

    def _count(self, subnet: IPNetwork) -> int:
        tickets = self._by_subnet.get(subnet)
        return 0 if tickets is None else len(tickets)

    def _add(self, ticket: int, entry: _Waiting) -> None:
        self._waiting[ticket] = entry
        self._per_ip[entry.ip] += 1
        tickets = self._by_subnet.setdefault(entry.subnet, OrderedDict())
        tickets[ticket] = None
        self._recount(entry.subnet, len(tickets) - 1, len(tickets))

    def _recount(self, subnet: IPNetwork, before: int, after: int) -> None:
        """Move ``subnet`` from the bucket of ``before`` to that of ``after`` (one apart)."""
        if before:
            bucket = self._buckets[before]
            del bucket[subnet]
            if not bucket:
                del self._buckets[before]
        if after:
            self._buckets.setdefault(after, {})[subnet] = None
        if after > self._largest:
            self._largest = after
        elif before == self._largest and before not in self._buckets:
            self._largest = after  # one less: this subnet (or none at all) is now largest

    def _evict_for(self, subnet: IPNetwork) -> EvictConnection | None:
        """The oldest ticket of the most-represented subnet, if that subnet has more
        waiting than the newcomer's would have after joining."""
        if self._largest <= self._count(subnet) + 1:
            return None
        crowded = next(iter(self._buckets[self._largest]))
        victim = next(iter(self._by_subnet[crowded]))
        self.handle_done(victim)
        self._evicted += 1
        return EvictConnection(victim, crowded)

    def _refuse(self, reason: str) -> AdmissionRefused:
        self._refused[reason] += 1
        return AdmissionRefused(reason)
