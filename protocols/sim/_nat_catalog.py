"""The NAT types a scenario names, each with its behaviour and its ground truth.

Theory of operation
-------------------
A scenario says ``full_cone = 8``; this table says what that box does
(:class:`~protocols.sim.NatBehaviour`, or ``None`` for a host with a public
address and no box) and what a correct node behind it must conclude - its
:class:`GroundTruth`: ``nat_status``, ``nat_mapping`` and ``nat_filtering`` as
the node's snapshot spells them. The truths are the NAT lab's expectations
for the kernel NAT built the same way (``lab`` names that lab scenario; a test
holds the two tables equal), so the simulator and the lab grade against one
standard.

Why the truths are what they are (the node's method, docs/architecture.md):
the mapping is read from the ports several observers see; the filtering from
two dial-backs to the requester's IP, one from the contacted server's IP on a
fresh port and one from the server's second address. A symmetric NAT lets
neither in and hands every observer a different port, so its filtering cannot
be told apart from a changed address: ``unknown``. A host firewall refuses
both dial-backs, which looks like address-and-port-dependent filtering. A
forwarded listen port admits both dial-backs: endpoint-independent.
``hairpinning`` is only asserted where the lab asserts it: ``null`` where the
node has no confirmed public address to test (or needs no NAT), ``false`` for
boxes without hairpin rules, ``true`` for the one with them.

The boxes' forwarded port is :data:`LISTEN_PORT`, the port every simulated
node listens on (and dials from).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._nat_behaviour import Filtering, Mapping, NatBehaviour, Unsolicited

__all__ = ["LISTEN_PORT", "NAT_TYPES", "GroundTruth", "NatType", "nat_type"]

LISTEN_PORT = 44000
"""Where every simulated node listens; the port a forwarding box forwards."""

EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"


@dataclass(frozen=True)
class GroundTruth:
    """What a node behind the box must report."""

    nat_status: str
    nat_mapping: str
    nat_filtering: str
    hairpinning: str | None = None
    """``"true"``, ``"false"`` or ``"null"`` as in the node's JSON; None: not asserted."""


@dataclass(frozen=True)
class NatType:
    """A named kind of host: the box in front of it (``None``: none) and the truth."""

    name: str
    behaviour: NatBehaviour | None
    truth: GroundTruth
    lab: str
    """The NAT lab scenario (tests/lab/topologies.py) built the same way."""


NAT_TYPES: tuple[NatType, ...] = (
    NatType("public", None, GroundTruth("public", "none", EI, "null"), "public"),
    NatType("full_cone",
            NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ENDPOINT_INDEPENDENT),
            GroundTruth("public", EI, EI, "false"), "full_cone"),
    NatType("port_forward",
            NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT,
                         forwarded_ports=(LISTEN_PORT,)),
            GroundTruth("public", EI, EI, "false"), "port_forward"),
    NatType("port_forward_hairpin",
            NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT,
                         forwarded_ports=(LISTEN_PORT,), hairpin=True),
            GroundTruth("public", EI, EI, "true"), "port_forward_hairpin"),
    NatType("address_restricted",
            NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_DEPENDENT),
            GroundTruth("private", EI, AD), "address_restricted"),
    NatType("port_restricted",
            NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT),
            GroundTruth("private", EI, APD, "null"), "masquerade"),
    NatType("symmetric",
            NatBehaviour(Mapping.ADDRESS_AND_PORT_DEPENDENT,
                         Filtering.ADDRESS_AND_PORT_DEPENDENT, port_preservation=False),
            GroundTruth("private", "endpoint-dependent", "unknown"), "symmetric"),
    NatType("firewall_drop",
            NatBehaviour(filtering=Filtering.CLOSED, unsolicited=Unsolicited.DROP,
                         translates=False),
            GroundTruth("private", "none", APD, "null"), "firewall_drop"),
    NatType("firewall_reject",
            NatBehaviour(filtering=Filtering.CLOSED, unsolicited=Unsolicited.REJECT,
                         translates=False),
            GroundTruth("private", "none", APD), "firewall_reject"),
)
_BY_NAME = {kind.name: kind for kind in NAT_TYPES}


def nat_type(name: str) -> NatType:
    """The catalog entry called ``name`` (``ValueError`` names the known ones)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown NAT type {name!r}; known: {', '.join(_BY_NAME)}") from None
