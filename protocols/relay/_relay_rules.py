"""The relay's decisions: which reservations and circuits to admit, and when they end.

Theory of operation
-------------------
:class:`RelayRules` is the sans-io half of the relay service
(docs/architecture.md, "Circuit relay": private nodes participate through
Circuit Relay v2 reservations on public nodes). The actor reports
what peers ask and what happened; the rules answer with decisions and keep
every count. Time is an argument (``now``); nothing here sleeps.

**Reservations.** A peer holds at most one; :meth:`~RelayRules.handle_reserve`
grants a new one within the limits (in all, per IP, per subnet) or renews
the peer's current one for another ``relay_reservation_ttl``. It is refused
with ``PERMISSION_DENIED`` when the peer's connection comes from an address
the node's :class:`~protocols.AddressPolicy` rejects, or over a relayed
connection (``ip=None``: no relaying over relays), and with
``RESOURCE_LIMIT_EXCEEDED`` past a limit. A reservation ends when it expires
or when the actor reports its connection gone
(:meth:`~RelayRules.handle_unreserve`). Expired reservations are also
dropped lazily at every ``handle_*`` call, so a relay nobody drives with
:meth:`~RelayRules.handle_timeout` never admits on stale state.

**Circuits.** :meth:`~RelayRules.handle_connect` admits a circuit from
``src`` to ``dst`` only when ``dst`` holds a live reservation
(``NO_RESERVATION``), ``src`` is not ``dst`` and comes from an address the
policy accepts (``PERMISSION_DENIED``), and neither end already has
``relay_max_circuits_per_peer`` circuits, nor the relay ``relay_max_circuits``
(``RESOURCE_LIMIT_EXCEEDED``). Each circuit follows the table
``_TRANSITIONS``::

    CONNECTING --established--> ACTIVE --closed--> CLOSED
    CONNECTING --closed-------------------------> CLOSED

A CONNECTING circuit must be established within ``relay_connect_timeout``
(the relay's stop exchange with ``dst``); an ACTIVE one lives
``relay_circuit_duration`` and may carry ``relay_circuit_data`` bytes *each
way*. :meth:`~RelayRules.handle_data` is asked before each message is
forwarded and answers False once the message would cross the data limit (it
is then not forwarded, and the actor closes the circuit);
:meth:`~RelayRules.circuit_deadline` is when the actor must close it.
:meth:`~RelayRules.handle_closed` records how it ended
(:class:`CircuitEnd`) and is idempotent; any other transition from a state
that does not allow it - establishing an unknown, closed or already active
circuit - raises :class:`~protocols.LocalProtocolError`.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ..core import (
    AddressPolicy,
    IPAddress,
    IPNetwork,
    LocalProtocolError,
    PeerId,
    count_down,
    plain_ip,
    subnet_of,
)
from ._relay_config import RelayConfig
from ._relay_msg import CircuitLimit, RelayStatus


class CircuitState(enum.Enum):
    CONNECTING = "connecting"
    """Admitted; the relay is asking the target over the stop protocol."""
    ACTIVE = "active"
    """Both ends accepted; the relay splices their messages."""
    CLOSED = "closed"


class CircuitEnd(enum.Enum):
    """How a circuit ended (counted in :class:`RelayStatistics`)."""

    FINISHED = "finished"
    """Both ends finished, or one end closed or reset it."""
    DATA_LIMIT = "data-limit"
    DURATION_LIMIT = "duration-limit"
    CONNECT_FAILED = "connect-failed"
    """The target refused, could not be asked, or did not answer in time."""
    RELAY_STOPPED = "relay-stopped"


class CircuitDirection(enum.Enum):
    TO_TARGET = "to-target"
    """From the initiator (the hop stream) to the target (the stop stream)."""
    TO_INITIATOR = "to-initiator"


_TRANSITIONS: Final[dict[tuple[CircuitState, str], CircuitState]] = {
    (CircuitState.CONNECTING, "established"): CircuitState.ACTIVE,
    (CircuitState.CONNECTING, "closed"): CircuitState.CLOSED,
    (CircuitState.ACTIVE, "closed"): CircuitState.CLOSED,
}


@dataclass(frozen=True)
class ReservationGranted:
    peer: PeerId
    ttl: int
    """Whole seconds the reservation lasts (what the answer carries)."""
    expires_at: float
    renewed: bool


@dataclass(frozen=True)
class ReservationRefused:
    peer: PeerId
    status: RelayStatus
    reason: str


@dataclass(frozen=True)
class CircuitAdmitted:
    circuit_id: int
    src: PeerId
    dst: PeerId
    limit: CircuitLimit


@dataclass(frozen=True)
class CircuitRefused:
    src: PeerId
    dst: PeerId
    status: RelayStatus
    reason: str


@dataclass(frozen=True)
class ReservationExpired:
    peer: PeerId


@dataclass(frozen=True)
class CircuitExpired:
    """A circuit reached its deadline (:meth:`RelayRules.handle_timeout`); it is closed."""

    circuit_id: int
    end: CircuitEnd


RelayTimeoutEvent: TypeAlias = ReservationExpired | CircuitExpired


@dataclass(frozen=True)
class RelayStatistics:
    """The relay's state and monotonic counters."""

    reservations: int
    circuits: int
    reservations_granted: int
    reservations_renewed: int
    reservations_expired: int
    reservations_refused: tuple[tuple[str, int], ...]
    """``(status name, count)``, sorted."""
    circuits_admitted: int
    circuits_established: int
    circuits_refused: tuple[tuple[str, int], ...]
    """``(status name, count)``, sorted."""
    circuits_ended: tuple[tuple[str, int], ...]
    """``(CircuitEnd value, count)``, sorted."""
    bytes_relayed: int

    @property
    def total_refused(self) -> int:
        return sum(n for _, n in self.reservations_refused) + sum(
            n for _, n in self.circuits_refused)


@dataclass
class _Reservation:
    peer: PeerId
    ip: IPAddress
    subnet: IPNetwork
    expires_at: float


@dataclass
class _Circuit:
    circuit_id: int
    src: PeerId
    dst: PeerId
    deadline: float
    state: CircuitState = CircuitState.CONNECTING
    sent: dict[CircuitDirection, int] = field(
        default_factory=lambda: dict.fromkeys(CircuitDirection, 0))


class RelayRules:
    """See the module docstring."""

    def __init__(self, config: RelayConfig, policy: AddressPolicy) -> None:
        self.config = config
        self.policy = policy
        self.limit = CircuitLimit(duration=math.ceil(config.relay_circuit_duration),
                                  data=config.relay_circuit_data)
        self._reservations: dict[PeerId, _Reservation] = {}
        self._per_ip: Counter[IPAddress] = Counter()
        self._per_subnet: Counter[IPNetwork] = Counter()
        self._circuits: dict[int, _Circuit] = {}
        self._per_peer: Counter[PeerId] = Counter()
        self._next_id = 1
        self._counts: Counter[str] = Counter()
        self._refused_reservations: Counter[str] = Counter()
        self._refused_circuits: Counter[str] = Counter()
        self._ended: Counter[str] = Counter()

    # --- reservations -------------------------------------------------------

    def handle_reserve(self, peer: PeerId, ip: IPAddress | None,
                       now: float) -> ReservationGranted | ReservationRefused:
        """A RESERVE from ``peer`` connected from ``ip`` (None: over a relayed connection)."""
        self._expire_reservations(now)
        refusal = self._reservation_refusal(peer, ip)
        if refusal is not None:
            status, reason = refusal
            self._refused_reservations[status.name] += 1
            return ReservationRefused(peer, status, reason)
        assert ip is not None
        renewed = self._drop_reservation(peer)
        ttl = math.ceil(self.config.relay_reservation_ttl)
        reservation = _Reservation(peer, plain_ip(ip), subnet_of(ip), now + ttl)
        self._reservations[peer] = reservation
        self._per_ip[reservation.ip] += 1
        self._per_subnet[reservation.subnet] += 1
        self._counts["reservations_renewed" if renewed else "reservations_granted"] += 1
        return ReservationGranted(peer, ttl, reservation.expires_at, renewed)

    def _reservation_refusal(self, peer: PeerId,
                             ip: IPAddress | None) -> tuple[RelayStatus, str] | None:
        if ip is None:
            return RelayStatus.PERMISSION_DENIED, "reservations over a relayed connection"
        if not self.policy.is_routable_ip(ip):
            return RelayStatus.PERMISSION_DENIED, f"{ip} is not routable under the policy"
        current = self._reservations.get(peer)
        ip, subnet = plain_ip(ip), subnet_of(ip)
        same_ip = current is not None and current.ip == ip
        same_subnet = current is not None and current.subnet == subnet
        config = self.config
        if current is None and len(self._reservations) >= config.relay_max_reservations:
            return (RelayStatus.RESOURCE_LIMIT_EXCEEDED,
                    f"{config.relay_max_reservations} reservations held")
        if not same_ip and self._per_ip[ip] >= config.relay_max_reservations_per_ip:
            return (RelayStatus.RESOURCE_LIMIT_EXCEEDED,
                    f"{config.relay_max_reservations_per_ip} reservations from {ip}")
        if (not same_subnet
                and self._per_subnet[subnet] >= config.relay_max_reservations_per_subnet):
            return (RelayStatus.RESOURCE_LIMIT_EXCEEDED,
                    f"{config.relay_max_reservations_per_subnet} reservations from {subnet}")
        return None

    def handle_unreserve(self, peer: PeerId) -> bool:
        """``peer``'s connection is gone: its reservation ends (True if it had one)."""
        return self._drop_reservation(peer)

    def has_reservation(self, peer: PeerId, now: float) -> bool:
        self._expire_reservations(now)
        return peer in self._reservations

    def reservation_expiry(self, peer: PeerId) -> float | None:
        reservation = self._reservations.get(peer)
        return None if reservation is None else reservation.expires_at

    def _drop_reservation(self, peer: PeerId) -> bool:
        reservation = self._reservations.pop(peer, None)
        if reservation is None:
            return False
        count_down(self._per_ip, reservation.ip)
        count_down(self._per_subnet, reservation.subnet)
        return True

    def _expire_reservations(self, now: float) -> list[RelayTimeoutEvent]:
        expired = [r.peer for r in self._reservations.values() if r.expires_at <= now]
        for peer in expired:
            self._drop_reservation(peer)
        self._counts["reservations_expired"] += len(expired)
        return [ReservationExpired(peer) for peer in expired]

    # --- circuits -----------------------------------------------------------

    def handle_connect(self, src: PeerId, src_ip: IPAddress | None, dst: PeerId,
                       now: float) -> CircuitAdmitted | CircuitRefused:
        """A CONNECT from ``src`` (connected from ``src_ip``) to ``dst``."""
        self._expire_reservations(now)
        refusal = self._circuit_refusal(src, src_ip, dst)
        if refusal is not None:
            status, reason = refusal
            self._refused_circuits[status.name] += 1
            return CircuitRefused(src, dst, status, reason)
        circuit = _Circuit(self._next_id, src, dst,
                           deadline=now + self.config.relay_connect_timeout)
        self._circuits[circuit.circuit_id] = circuit
        self._next_id += 1
        self._per_peer[src] += 1
        self._per_peer[dst] += 1
        self._counts["circuits_admitted"] += 1
        return CircuitAdmitted(circuit.circuit_id, src, dst, self.limit)

    def _circuit_refusal(self, src: PeerId, src_ip: IPAddress | None,
                         dst: PeerId) -> tuple[RelayStatus, str] | None:
        if src_ip is None:
            return RelayStatus.PERMISSION_DENIED, "circuits over a relayed connection"
        if not self.policy.is_routable_ip(src_ip):
            return RelayStatus.PERMISSION_DENIED, f"{src_ip} is not routable under the policy"
        if src == dst:
            return RelayStatus.PERMISSION_DENIED, "a circuit to oneself"
        if dst not in self._reservations:
            return RelayStatus.NO_RESERVATION, f"{dst} holds no reservation here"
        config = self.config
        if len(self._circuits) >= config.relay_max_circuits:
            return (RelayStatus.RESOURCE_LIMIT_EXCEEDED,
                    f"{config.relay_max_circuits} circuits open")
        for peer in (src, dst):
            if self._per_peer[peer] >= config.relay_max_circuits_per_peer:
                return (RelayStatus.RESOURCE_LIMIT_EXCEEDED,
                        f"{config.relay_max_circuits_per_peer} circuits open for {peer}")
        return None

    def handle_established(self, circuit_id: int, now: float) -> float:
        """The target accepted: the circuit is ACTIVE; returns its deadline."""
        circuit = self._move(circuit_id, "established")
        circuit.deadline = now + self.config.relay_circuit_duration
        self._counts["circuits_established"] += 1
        return circuit.deadline

    def handle_data(self, circuit_id: int, direction: CircuitDirection, size: int) -> bool:
        """May a message of ``size`` bytes go ``direction``? False: over the data limit
        (the message must not be forwarded; close the circuit with ``DATA_LIMIT``)."""
        circuit = self._circuits.get(circuit_id)
        if circuit is None or circuit.state is not CircuitState.ACTIVE:
            raise LocalProtocolError(f"circuit {circuit_id} is not active: no data may pass")
        if circuit.sent[direction] + size > self.config.relay_circuit_data:
            return False
        circuit.sent[direction] += size
        self._counts["bytes_relayed"] += size
        return True

    def handle_closed(self, circuit_id: int, end: CircuitEnd) -> bool:
        """The circuit ended as ``end``; False (and nothing counted) if it already had."""
        circuit = self._circuits.get(circuit_id)
        if circuit is None:
            if not 1 <= circuit_id < self._next_id:
                raise LocalProtocolError(f"circuit {circuit_id} was never admitted")
            return False
        self._move(circuit_id, "closed")
        del self._circuits[circuit_id]
        count_down(self._per_peer, circuit.src)
        count_down(self._per_peer, circuit.dst)
        self._ended[end.value] += 1
        return True

    def circuit_state(self, circuit_id: int) -> CircuitState:
        circuit = self._circuits.get(circuit_id)
        return CircuitState.CLOSED if circuit is None else circuit.state

    def circuit_deadline(self, circuit_id: int) -> float:
        """When the circuit must be closed (connect timeout, then its duration)."""
        circuit = self._circuits.get(circuit_id)
        if circuit is None:
            raise LocalProtocolError(f"circuit {circuit_id} is not open")
        return circuit.deadline

    def circuits_of(self, peer: PeerId) -> int:
        return self._per_peer[peer]

    def _move(self, circuit_id: int, event: str) -> _Circuit:
        circuit = self._circuits.get(circuit_id)
        state = CircuitState.CLOSED if circuit is None else circuit.state
        following = _TRANSITIONS.get((state, event))
        if circuit is None or following is None:
            raise LocalProtocolError(f"circuit {circuit_id}: cannot be {event} when "
                                     f"{state.value}")
        circuit.state = following
        return circuit

    # --- time ---------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        """The next reservation expiry or circuit deadline; None when nothing is held."""
        deadlines = [r.expires_at for r in self._reservations.values()]
        deadlines += [c.deadline for c in self._circuits.values()]
        return min(deadlines, default=None)

    def handle_timeout(self, now: float) -> list[RelayTimeoutEvent]:
        """End what reached its time: expired reservations, circuits past their deadline."""
        events = self._expire_reservations(now)
        for circuit in [c for c in self._circuits.values() if c.deadline <= now]:
            end = (CircuitEnd.CONNECT_FAILED if circuit.state is CircuitState.CONNECTING
                   else CircuitEnd.DURATION_LIMIT)
            self.handle_closed(circuit.circuit_id, end)
            events.append(CircuitExpired(circuit.circuit_id, end))
        return events

    # --- inspection ---------------------------------------------------------

    def statistics(self) -> RelayStatistics:
        counts = self._counts
        return RelayStatistics(
            reservations=len(self._reservations), circuits=len(self._circuits),
            reservations_granted=counts["reservations_granted"],
            reservations_renewed=counts["reservations_renewed"],
            reservations_expired=counts["reservations_expired"],
            reservations_refused=tuple(sorted(self._refused_reservations.items())),
            circuits_admitted=counts["circuits_admitted"],
            circuits_established=counts["circuits_established"],
            circuits_refused=tuple(sorted(self._refused_circuits.items())),
            circuits_ended=tuple(sorted(self._ended.items())),
            bytes_relayed=counts["bytes_relayed"])
