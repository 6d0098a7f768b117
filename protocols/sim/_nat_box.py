"""A NAT box (or a host firewall): translates outbound flows, judges inbound ones. Sans-io.

Theory of operation
-------------------
The box keeps one *binding* per mapping key - the private endpoint alone
(endpoint-independent mapping), with the destination IP (address-dependent) or
with the destination IP and port (address-and-port-dependent). A binding holds
its public port, every remote endpoint it has sent to, and when it was last
used. Two indexes make both directions O(1): by key (outbound) and by public
port (inbound).

* :meth:`NatBox.outbound` - a new flow from ``private`` to ``remote`` at
  ``now``: reuse or create the binding, remember ``remote``, return the
  public endpoint the remote sees.
* :meth:`NatBox.inbound` - a new flow from ``remote`` to ``public`` at
  ``now``: :class:`Deliver` to the binding's private endpoint when the
  filtering admits ``remote``, else :class:`Drop` or :class:`Reject` as the
  behaviour says. A flow to another IP than the box's is an error (it was
  routed to the wrong box), as is time running backwards.
* :meth:`NatBox.hairpin` - a flow from a private endpoint behind this box to
  the box's own public address: refused unless the box hairpins; then it is
  translated like an outbound flow (RFC 4787 REQ-9: the target sees the
  external source) and judged like an inbound one.

A port forward (:meth:`NatBox.forward`) is a static binding: it never
expires and lets every new inbound flow to its port through; outbound flows
from the forwarded endpoint leave from the forwarded port when the mapping
preserves ports.

Only *new* flows go through the box: packets of an established flow are not
modelled (a simulated connection, once up, stays up). Bindings are refreshed by
outbound flows only (RFC 4787 REQ-6 makes inbound refresh optional) and
forgotten ``mapping_timeout`` seconds after their last use. Ports the box
picks come from the ``random.Random`` it is given, so a seeded run repeats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ._nat_behaviour import Endpoint, Filtering, Mapping, NatBehaviour, Unsolicited

__all__ = ["Deliver", "Drop", "InboundVerdict", "NatBox", "Reject"]

EPHEMERAL_PORTS = (1024, 65535)
"""Where a box picks a port when it does not (or cannot) preserve the private one."""


@dataclass(frozen=True)
class Deliver:
    """The inbound flow reaches ``private``."""

    private: Endpoint


@dataclass(frozen=True)
class Drop:
    """The inbound flow vanishes: the sender waits until its own timeout."""

    reason: str


@dataclass(frozen=True)
class Reject:
    """The inbound flow is refused at once (a TCP RST)."""

    reason: str


InboundVerdict = Deliver | Drop | Reject


@dataclass
class _Binding:
    private: Endpoint
    public_port: int
    key: tuple[object, ...]
    last_used: float
    contacted: set[Endpoint] = field(default_factory=set)
    contacted_ips: set[str] = field(default_factory=set)


class NatBox:
    """One box with public IP ``public_ip`` (see the module docstring)."""

    def __init__(self, behaviour: NatBehaviour, public_ip: str, rng: random.Random) -> None:
        self.behaviour = behaviour
        self.public_ip = public_ip
        self._rng = rng
        self._by_key: dict[tuple[object, ...], _Binding] = {}
        self._by_port: dict[int, _Binding] = {}
        self._forwards: dict[int, Endpoint] = {}
        self._now = float("-inf")

    # --- the three transitions ---------------------------------------------------------

    def outbound(self, private: Endpoint, remote: Endpoint, now: float) -> Endpoint:
        """The public endpoint a new flow from ``private`` to ``remote`` leaves from."""
        self._advance(now)
        key = self._key(private, remote)
        binding = self._by_key.get(key)
        if binding is None:
            binding = _Binding(private, self._allocate(private), key, now)
            self._by_key[key] = binding
            self._by_port[binding.public_port] = binding
        binding.last_used = now
        binding.contacted.add(remote)
        binding.contacted_ips.add(remote[0])
        return (self._public_host(private), binding.public_port)

    def inbound(self, remote: Endpoint, public: Endpoint, now: float) -> InboundVerdict:
        """What a new flow from ``remote`` to the box's ``public`` endpoint meets."""
        if public[0] != self.public_ip:
            raise ValueError(f"flow to {public[0]} routed to the box of {self.public_ip}")
        self._advance(now)
        forwarded = self._forwards.get(public[1])
        if forwarded is not None:
            return Deliver(forwarded)
        binding = self._by_port.get(public[1])
        if binding is None:
            return self._refuse(f"no mapping for port {public[1]}")
        if not self._admits(binding, remote):
            return self._refuse(f"{self.behaviour.filtering.value} filter: "
                                f"{remote[0]}:{remote[1]} was not contacted")
        return Deliver(binding.private)

    def hairpin(self, private: Endpoint, public: Endpoint,
                now: float) -> tuple[Endpoint | None, InboundVerdict]:
        """A flow from ``private`` (behind this box) to its own ``public`` side: where it
        is seen from (``None`` when refused before translation) and what it meets."""
        if not self.behaviour.hairpin:
            self._advance(now)
            return None, self._refuse("the box does not hairpin")
        seen_from = self.outbound(private, public, now)
        return seen_from, self.inbound(seen_from, public, now)

    def forward(self, public_port: int, private: Endpoint) -> None:
        """A static rule: new inbound flows to ``public_port`` reach ``private``."""
        if not self.behaviour.translates:
            raise ValueError("a box that does not translate forwards no ports")
        if public_port in self._forwards:
            raise ValueError(f"port {public_port} is already forwarded")
        self._forwards[public_port] = private

    # --- introspection (tests, reports) ---------------------------------------------------

    def bindings(self) -> list[tuple[Endpoint, int]]:
        """Live ``(private endpoint, public port)`` pairs, in creation order."""
        return [(b.private, b.public_port) for b in self._by_key.values()]

    # --- helpers -------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        timeout = self.behaviour.mapping_timeout
        stale = [b for b in self._by_key.values() if now - b.last_used >= timeout]
        for binding in stale:
            del self._by_key[binding.key]
            del self._by_port[binding.public_port]

    def _key(self, private: Endpoint, remote: Endpoint) -> tuple[object, ...]:
        mapping = self.behaviour.mapping
        if mapping is Mapping.ENDPOINT_INDEPENDENT:
            return (private,)
        if mapping is Mapping.ADDRESS_DEPENDENT:
            return (private, remote[0])
        if mapping is Mapping.ADDRESS_AND_PORT_DEPENDENT:
            return (private, remote)
        raise ValueError(f"unknown mapping {mapping!r}")

    def _public_host(self, private: Endpoint) -> str:
        return self.public_ip if self.behaviour.translates else private[0]

    def _allocate(self, private: Endpoint) -> int:
        if not self.behaviour.translates:
            if private[1] in self._by_port:
                raise ValueError(f"port {private[1]} already bound behind a firewall")
            return private[1]
        if self.behaviour.port_preservation and private[1] not in self._by_port and (
                self._forwards.get(private[1], private) == private):
            return private[1]
        low, high = EPHEMERAL_PORTS
        if len(self._by_port) > high - low:
            raise ValueError(f"the box of {self.public_ip} has no free port")
        while True:
            port = self._rng.randint(low, high)
            if port not in self._by_port and port not in self._forwards:
                return port

    def _admits(self, binding: _Binding, remote: Endpoint) -> bool:
        filtering = self.behaviour.filtering
        if filtering is Filtering.ENDPOINT_INDEPENDENT:
            return True
        if filtering is Filtering.ADDRESS_DEPENDENT:
            return remote[0] in binding.contacted_ips
        if filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT:
            return remote in binding.contacted
        if filtering is Filtering.CLOSED:
            return False
        raise ValueError(f"unknown filtering {filtering!r}")

    def _refuse(self, reason: str) -> Drop | Reject:
        if self.behaviour.unsolicited is Unsolicited.DROP:
            return Drop(reason)
        return Reject(reason)
