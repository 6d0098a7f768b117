"""What a NAT or firewall does, as data (RFC 4787 / RFC 5382 / RFC 5780 vocabulary).

Theory of operation
-------------------
A NAT's behaviour has two independent halves (RFC 4787 sections 4.1 and 5):

* **Mapping** - when may an outbound flow from private endpoint ``(X, x)``
  reuse the public endpoint ``(Y, y)`` an earlier flow from ``(X, x)`` got?
  ``ENDPOINT_INDEPENDENT``: for any destination; ``ADDRESS_DEPENDENT``: only
  for the same destination IP; ``ADDRESS_AND_PORT_DEPENDENT``: only for the
  same destination IP and port (a "symmetric" NAT).
* **Filtering** - which new inbound flows to ``(Y, y)`` are let through to
  ``(X, x)``? ``ENDPOINT_INDEPENDENT``: from anyone ("full cone");
  ``ADDRESS_DEPENDENT``: from any port of an IP the mapping has sent to
  ("address-restricted cone"); ``ADDRESS_AND_PORT_DEPENDENT``: only from an
  exact IP and port it has sent to ("port-restricted cone").

Besides: **port preservation** (keep ``x`` as ``y`` when free, else a port
from the box's seeded random generator), **hairpinning** (a LAN host may reach
another - or itself - at the box's public address), what an unsolicited inbound
flow meets (**DROP**: silence until the sender times out; **REJECT**: an
immediate refusal, a TCP RST), and the **mapping timeout** (a mapping unused
for that long is forgotten; RFC 5382 REQ-5 asks at least 2 h 4 min for TCP).

A firewall in front of a public host is a box that translates nothing
(:attr:`NatBehaviour.translates` false) and still filters. A **port forward**
(``forwarded_ports``) is a static rule: new inbound flows to that public port
reach the same port of the host behind the box, whatever the filtering.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Endpoint", "Filtering", "Mapping", "NatBehaviour", "Unsolicited"]

Endpoint = tuple[str, int]
"""An (IP, port) pair."""

TCP_MAPPING_TIMEOUT = 7440.0
"""RFC 5382 REQ-5: an established TCP mapping lives at least 2 h 4 min."""


class Mapping(enum.Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Filtering(enum.Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
    CLOSED = "closed"
    """No unsolicited inbound flow passes, not even from a contacted endpoint (a host
    firewall refusing every new connection to the host)."""


class Unsolicited(enum.Enum):
    """What a new inbound flow the filter refuses meets."""

    DROP = "drop"
    REJECT = "reject"


@dataclass(frozen=True)
class NatBehaviour:
    """One box's behaviour (see the module docstring)."""

    mapping: Mapping = Mapping.ENDPOINT_INDEPENDENT
    filtering: Filtering = Filtering.ADDRESS_AND_PORT_DEPENDENT
    port_preservation: bool = True
    hairpin: bool = False
    unsolicited: Unsolicited = Unsolicited.DROP
    mapping_timeout: float = TCP_MAPPING_TIMEOUT
    translates: bool = True
    """False: a firewall - the public endpoint is the private one."""
    forwarded_ports: tuple[int, ...] = ()
    """Public ports forwarded (DNAT) to the same port of the host behind the box."""

    def __post_init__(self) -> None:
        if self.mapping_timeout <= 0:
            raise ValueError(f"mapping_timeout must be > 0, got {self.mapping_timeout}")
        if not self.translates and self.mapping is not Mapping.ENDPOINT_INDEPENDENT:
            raise ValueError("a box that does not translate maps endpoint-independently")
        if self.forwarded_ports and not self.translates:
            raise ValueError("a box that does not translate forwards no ports")
