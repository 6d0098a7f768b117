"""The relay service's settings, and how many relays a private node uses: :class:`RelayConfig`.

Theory of operation
-------------------
A component of :class:`~protocols.NodeConfig` (``relay``), one flat setting
key per field, validated here. Whether the service runs at all is the
node-wide ``relay_service`` switch (on in ``config/boot.toml``, off
otherwise). The defaults are go-libp2p's relay v2 defaults:

=================================  ============  ==================================
setting                            default       go-libp2p
=================================  ============  ==================================
``relay_max_reservations``         128           ``MaxReservations``
``relay_max_reservations_per_ip``  8             ``MaxReservationsPerIP``
``relay_max_reservations_per_subnet``  32        ``MaxReservationsPerASN`` (we count
                                                 the IPv4 /24 or IPv6 /56: no ASN
                                                 database here)
``relay_reservation_ttl``          3600 s        ``ReservationTTL``
``relay_max_circuits_per_peer``    16            ``MaxCircuits``
``relay_max_circuits``             256           (none: a bound of ours)
``relay_circuit_duration``         120 s         ``Limit.Duration``
``relay_circuit_data``             131072 B      ``Limit.Data`` (each direction)
``relay_connect_timeout``          10 s          (the stop exchange)
``relay_reservations``             2             (client: relays reserved on while
                                                 private; 0 = never)
=================================  ============  ==================================

A peer holds at most one reservation (a second RESERVE renews it), as in
libp2p; circuits per peer count both ends (a peer as initiator and as
target).

Memory: a circuit is two ordinary streams, so the relay buffers for it what
it may for any stream - at most a stream window of messages each way
(flow control), counted against each connection's ``max_streams`` like every
protocol; the data limit is checked as each message is forwarded.
(go-libp2p copies through a 2 KiB buffer per direction instead.)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..core import check_positive_setting

__all__ = ["RelayConfig"]


@dataclass(frozen=True)
class RelayConfig:
    """Limits of the relay service (see the module docstring). Times are seconds."""

    relay_max_reservations: int = 128
    """Reservations held at once, in all."""
    relay_max_reservations_per_ip: int = 8
    """Reservations held at once by peers connected from one IP."""
    relay_max_reservations_per_subnet: int = 32
    """... from one subnet (IPv4 /24, IPv6 /56)."""
    relay_reservation_ttl: float = 3600.0
    """How long a reservation lasts unless renewed."""
    relay_max_circuits_per_peer: int = 16
    """Circuits open at once to or from one peer."""
    relay_max_circuits: int = 256
    """Circuits open at once, in all."""
    relay_circuit_duration: float = 120.0
    """A circuit is closed this long after it was established."""
    relay_circuit_data: int = 128 * 1024
    """A circuit is closed once this many bytes went one way through it."""
    relay_connect_timeout: float = 10.0
    """The relay's stop exchange with the target of a circuit (and a client's hop requests)."""
    relay_reservations: int = 2
    """Relays a node reserves on while AutoNAT finds it private (0: none)."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{spec.name} must be a number, got {value!r}")
            if spec.type == "int" and not isinstance(value, int):
                raise ValueError(f"{spec.name} must be an integer, got {value!r}")
            if spec.name != "relay_reservations":
                check_positive_setting(spec.name, value)
        if self.relay_reservations < 0:
            raise ValueError(f"relay_reservations must be >= 0, got {self.relay_reservations!r}")
        if self.relay_circuit_duration < 1:
            raise ValueError("relay_circuit_duration must be >= 1 (circuits are limited in "
                             f"whole seconds), got {self.relay_circuit_duration!r}")
