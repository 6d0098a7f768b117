"""BehaviourDiscovery: RFC 5780 NAT behaviour discovery over UDP, as a client machine, sans-io.

Theory of operation
-------------------
One UDP socket (local address ``local``) talks to one STUN server whose
answers carry ``OTHER-ADDRESS`` (call the server's addresses P = primary and
O = other). The tests, in the order this machine runs them:

1. **Test I** - a Binding request to P. Its ``XOR-MAPPED-ADDRESS`` X1 is our
   address as the server sees it, and ``OTHER-ADDRESS`` gives O. X1 equal to
   ``local`` means no NAT: mapping ``none`` and no mapping tests. No answer,
   or no usable ``OTHER-ADDRESS`` (missing, or not differing from P in both
   IP and port), ends the run with what is known.
2. **Filtering tests II and III**, at once: to P with ``CHANGE-REQUEST``
   (change IP and port), expecting the answer from (O.ip, O.port), and to P
   with ``CHANGE-REQUEST`` (change port), expecting it from (P.ip, O.port).
   An answer to II: ``endpoint-independent``. Else an answer to III:
   ``address-dependent``. Neither: ``address-and-port-dependent``. They run
   *before* any datagram goes to O, since a datagram to O would open the
   NAT's filter to O and make the test lie.
3. **Mapping tests II and III**, at once (only behind a NAT): to (O.ip,
   P.port), giving X2, and to O, giving X3. X2 = X1: ``endpoint-independent``;
   else X3 = X2: ``address-dependent``; else ``address-and-port-dependent``.

A test that the server answers with an error, or from an address other than
the one expected (a server that ignores ``CHANGE-REQUEST``), makes its result
``unknown``; so does a lost Test I or mapping test. A lost filtering test is
the evidence itself: the NAT dropped the answer.

**Retransmission** follows RFC 8489 for UDP: a request is sent at 0, RTO,
3 RTO, 7 RTO, ... (the interval doubling), ``rc`` times in all, and fails
``rm`` x RTO after the last send (defaults 0.5 s, 7, 16: 39.5 s). The
values are configurable (:class:`Retransmission`) so that tests and impatient
callers can shorten them; every transaction ends, so a run always ends.

**The path's own timing.** Test I's RTO is a guess; its answer measures the
round trip (only when the first send was answered: a retransmitted request's
answer cannot say which send it answers). The filtering and mapping tests then
use ``rto = clamp(PATH_RTOS x rtt, MIN_PATH_RTO, configured rto)`` with the
configured number of sends: a lost filtering test is the *expected* outcome
behind most NATs, and waiting out a 0.5 s guess (5.5 s with 4 sends) for
answers a 1 ms path would have brought in 3 ms only delays the profile. The
answers of the later tests come from the same server machine (another of its
addresses), so its round trip is theirs.

**Result.** :class:`UdpProfile` ``(mapping, filtering, mapped)``; mapping is
one of :class:`NatBehaviour` including ``none`` (not behind a NAT: the
server saw our own address), filtering never ``none`` (a host without NAT
can still sit behind a filtering firewall, so its filtering is measured the
same way; ``endpoint-independent`` then means open). ``mapped`` is X1.

The driving contract: :meth:`~BehaviourDiscovery.handle_start` once, then
``handle_datagram(data, source, now)`` for every datagram the socket
receives, :meth:`~BehaviourDiscovery.poll_transmit` until ``None`` after
every input, :meth:`~BehaviourDiscovery.poll_timeout` /
:meth:`~BehaviourDiscovery.handle_timeout`. Inputs return
:class:`DiscoveryFinished` once, when the profile is known. Datagrams that
do not answer a transaction in flight (stray, late or duplicate answers)
are ignored and counted; calling an input the state does not accept
(``handle_start`` twice, a datagram before the start) raises
:class:`LocalProtocolError`.
"""

from __future__ import annotations

import enum
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ..core import LocalProtocolError
from ._datagram import Datagram
from ._stun_codec import (
    BINDING,
    ChangeRequest,
    Endpoint,
    MappedAddress,
    OtherAddress,
    StunClass,
    StunDecodeError,
    StunMessage,
    XorMappedAddress,
    decode_message,
    encode_message,
)

__all__ = [
    "BehaviourDiscovery",
    "DiscoveryFinished",
    "DiscoveryState",
    "DiscoveryStatistics",
    "NatBehaviour",
    "Retransmission",
    "UdpProfile",
]


class NatBehaviour(enum.StrEnum):
    NONE = "none"
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class UdpProfile:
    mapping: NatBehaviour
    filtering: NatBehaviour
    mapped: Endpoint | None = None
    """Our address as the server saw it (Test I), when it answered."""


@dataclass(frozen=True, slots=True)
class Retransmission:
    """RFC 8489 retransmission over UDP: initial ``rto`` (s), ``rc`` sends, ``rm``."""

    rto: float = 0.5
    rc: int = 7
    rm: int = 16

    def __post_init__(self) -> None:
        if not 0 < self.rto <= 60:
            raise ValueError("rto must be in (0, 60] seconds")
        if not 1 <= self.rc <= 10 or not 1 <= self.rm <= 64:
            raise ValueError("rc must be 1..10 and rm 1..64")

    def give_up_after(self) -> float:
        """Seconds from the first send until a transaction without answer fails."""
        return self.rto * float((1 << (self.rc - 1)) - 1 + self.rm)


PATH_RTOS: Final = 3.0
"""The later tests' RTO in measured round trips (the answer from the other address
may take a little longer than Test I's)."""
MIN_PATH_RTO: Final = 0.05
"""Never retransmit sooner than this, however short the round trip."""


class DiscoveryState(enum.Enum):
    IDLE = "idle"
    TEST_I = "test-i"
    FILTERING = "filtering"
    MAPPING = "mapping"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class DiscoveryFinished:
    profile: UdpProfile


@dataclass(frozen=True, slots=True)
class DiscoveryStatistics:
    state: DiscoveryState
    sent: int
    received: int
    ignored: int
    timed_out: int


class _Test(enum.Enum):
    TEST_I = "test-i"
    FILTERING_II = "filtering-ii"
    FILTERING_III = "filtering-iii"
    MAPPING_II = "mapping-ii"
    MAPPING_III = "mapping-iii"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How a transaction ended: ``mapped`` on success, ``ok`` False on error or lost."""

    ok: bool
    lost: bool = False
    mapped: Endpoint | None = None
    other: Endpoint | None = None


@dataclass(slots=True)
class _Transaction:
    test: _Test
    payload: bytes
    destination: Endpoint
    expected_source: Endpoint
    next_send: float
    interval: float
    sends_left: int
    rto: float
    first_sent: float
    fail_at: float = 0.0
    outcome: _Outcome | None = field(default=None)


_ACCEPTS: Final = {
    # state -> inputs it accepts
    DiscoveryState.IDLE: {"start", "timeout"},
    DiscoveryState.TEST_I: {"datagram", "timeout"},
    DiscoveryState.FILTERING: {"datagram", "timeout"},
    DiscoveryState.MAPPING: {"datagram", "timeout"},
    DiscoveryState.DONE: {"datagram", "timeout"},
}


class BehaviourDiscovery:
    """RFC 5780 mapping and filtering discovery against ``server``; see the module docstring."""

    def __init__(self, server: Endpoint, local: Endpoint, *,
                 retransmission: Retransmission | None = None,
                 token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        if server.ip.version != local.ip.version:
            raise LocalProtocolError("BehaviourDiscovery: server and local of different families")
        self._server = server
        self._local = local
        self._rtx = retransmission or Retransmission()
        self._token_bytes = token_bytes
        self._state = DiscoveryState.IDLE
        self._transactions: dict[bytes, _Transaction] = {}
        self._outcomes: dict[_Test, _Outcome] = {}
        self._outbox: deque[Datagram] = deque()
        self._mapped: Endpoint | None = None
        self._other: Endpoint | None = None
        self._mapping: NatBehaviour | None = None
        self._filtering: NatBehaviour | None = None
        self._profile: UdpProfile | None = None
        self._rtt: float | None = None
        self._sent = self._received = self._ignored = self._timed_out = 0

    @property
    def state(self) -> DiscoveryState:
        return self._state

    @property
    def rtt(self) -> float | None:
        """Test I's round trip, when its first send was answered."""
        return self._rtt

    @property
    def profile(self) -> UdpProfile | None:
        """The result, once :class:`DiscoveryFinished` was returned."""
        return self._profile

    def _accept(self, event: str) -> None:
        if event not in _ACCEPTS[self._state]:
            raise LocalProtocolError(
                f"BehaviourDiscovery: {event} not accepted in state {self._state.value}")

    # --- the driving contract ----------------------------------------------------------

    def handle_start(self, now: float) -> list[DiscoveryFinished]:
        self._accept("start")
        self._state = DiscoveryState.TEST_I
        self._begin(_Test.TEST_I, self._server, self._server, None, now)
        return []

    def handle_datagram(self, data: bytes, source: Endpoint,
                        now: float) -> list[DiscoveryFinished]:
        self._accept("datagram")
        self._received += 1
        try:
            decoded = decode_message(data)
        except StunDecodeError:
            self._ignored += 1
            return []
        message = decoded.message
        txn = self._transactions.get(message.transaction_id)
        if txn is None or txn.outcome is not None or message.method != BINDING \
                or message.cls not in (StunClass.SUCCESS, StunClass.ERROR):
            self._ignored += 1
            return []
        txn.outcome = self._outcome(message, source, txn)
        if txn.test is _Test.TEST_I and txn.outcome.ok and txn.sends_left == self._rtx.rc - 1:
            self._rtt = max(0.0, now - txn.first_sent)  # answered its only send (Karn)
        del self._transactions[message.transaction_id]
        self._outcomes[txn.test] = txn.outcome
        return self._step(now)

    def poll_transmit(self) -> Datagram | None:
        """The next datagram to send from ``local``, or None."""
        if self._outbox:
            self._sent += 1
            return self._outbox.popleft()
        return None

    def poll_timeout(self) -> float | None:
        deadlines = [t.next_send if t.sends_left else t.fail_at
                     for t in self._transactions.values()]
        return min(deadlines, default=None)

    def handle_timeout(self, now: float) -> list[DiscoveryFinished]:
        self._accept("timeout")
        for txid, txn in list(self._transactions.items()):
            while txn.sends_left and txn.next_send <= now:
                self._queue(txn)
            if not txn.sends_left and txn.fail_at <= now:
                del self._transactions[txid]
                self._timed_out += 1
                self._outcomes[txn.test] = _Outcome(ok=False, lost=True)
        return self._step(now)

    def statistics(self) -> DiscoveryStatistics:
        return DiscoveryStatistics(state=self._state, sent=self._sent, received=self._received,
                                   ignored=self._ignored, timed_out=self._timed_out)

    # --- transactions ------------------------------------------------------------------

    def _begin(self, test: _Test, destination: Endpoint, expected_source: Endpoint,
               change: ChangeRequest | None, now: float) -> None:
        txid = self._token_bytes(12)
        while txid in self._transactions:  # pragma: no cover - 96 random bits
            txid = self._token_bytes(12)
        attributes = () if change is None else (change,)
        payload = encode_message(StunMessage(BINDING, StunClass.REQUEST, txid, attributes),
                                 fingerprint=True)
        rto = self._path_rto()
        txn = _Transaction(test, payload, destination, expected_source, next_send=now,
                           interval=rto, sends_left=self._rtx.rc, rto=rto, first_sent=now)
        self._transactions[txid] = txn
        self._queue(txn)

    def _queue(self, txn: _Transaction) -> None:
        self._outbox.append(Datagram(txn.payload, self._local, txn.destination))
        txn.sends_left -= 1
        if txn.sends_left:
            txn.next_send += txn.interval
            txn.interval *= 2
        else:
            txn.fail_at = txn.next_send + self._rtx.rm * txn.rto

    def _path_rto(self) -> float:
        """The RTO for a new transaction: measured by Test I once it was (module docstring)."""
        if self._rtt is None:
            return self._rtx.rto
        return min(self._rtx.rto, max(MIN_PATH_RTO, PATH_RTOS * self._rtt))

    def _outcome(self, message: StunMessage, source: Endpoint, txn: _Transaction) -> _Outcome:
        if message.cls is StunClass.ERROR or source != txn.expected_source:
            return _Outcome(ok=False)
        xor = message.first(XorMappedAddress)
        plain = message.first(MappedAddress)
        mapped = xor.endpoint if xor is not None else plain.endpoint if plain else None
        if mapped is None:
            return _Outcome(ok=False)
        other = message.first(OtherAddress)
        return _Outcome(ok=True, mapped=mapped, other=other.endpoint if other else None)

    def _cancel(self, *tests: _Test) -> None:
        for txid, txn in list(self._transactions.items()):
            if txn.test in tests:
                del self._transactions[txid]

    # --- the decision procedure --------------------------------------------------------

    def _step(self, now: float) -> list[DiscoveryFinished]:
        if self._state is DiscoveryState.TEST_I:
            self._after_test_i(now)
        if self._state is DiscoveryState.FILTERING:
            self._after_filtering(now)
        if self._state is DiscoveryState.MAPPING:
            self._after_mapping()
        if self._state is DiscoveryState.DONE and self._profile is None:
            self._profile = UdpProfile(self._mapping or NatBehaviour.UNKNOWN,
                                       self._filtering or NatBehaviour.UNKNOWN, self._mapped)
            self._transactions.clear()
            return [DiscoveryFinished(self._profile)]
        return []

    def _after_test_i(self, now: float) -> None:
        first = self._outcomes.get(_Test.TEST_I)
        if first is None:
            return
        if not first.ok or first.mapped is None:
            self._state = DiscoveryState.DONE
            return
        self._mapped = first.mapped
        if first.mapped == self._local:
            self._mapping = NatBehaviour.NONE
        other = first.other
        server = self._server
        if other is None or other.ip == server.ip or other.port == server.port \
                or other.ip.version != server.ip.version:
            self._state = DiscoveryState.DONE
            return
        self._other = other
        self._state = DiscoveryState.FILTERING
        self._begin(_Test.FILTERING_II, server, other, ChangeRequest(True, True), now)
        self._begin(_Test.FILTERING_III, server, Endpoint(server.ip, other.port),
                    ChangeRequest(False, True), now)

    def _after_filtering(self, now: float) -> None:
        second = self._outcomes.get(_Test.FILTERING_II)
        third = self._outcomes.get(_Test.FILTERING_III)
        if second is not None and second.ok:
            self._filtering = NatBehaviour.ENDPOINT_INDEPENDENT
            self._cancel(_Test.FILTERING_III)
        elif second is not None and not second.lost:
            self._filtering = NatBehaviour.UNKNOWN
            self._cancel(_Test.FILTERING_III)
        elif second is None or third is None:
            return
        elif third.ok:
            self._filtering = NatBehaviour.ADDRESS_DEPENDENT
        elif third.lost:
            self._filtering = NatBehaviour.ADDRESS_AND_PORT_DEPENDENT
        else:
            self._filtering = NatBehaviour.UNKNOWN
        if self._mapping is not None:
            self._state = DiscoveryState.DONE
            return
        assert self._other is not None
        self._state = DiscoveryState.MAPPING
        self._begin(_Test.MAPPING_II, Endpoint(self._other.ip, self._server.port),
                    Endpoint(self._other.ip, self._server.port), None, now)
        self._begin(_Test.MAPPING_III, self._other, self._other, None, now)

    def _after_mapping(self) -> None:
        second = self._outcomes.get(_Test.MAPPING_II)
        third = self._outcomes.get(_Test.MAPPING_III)
        if second is None:
            return
        if not second.ok:
            self._mapping = NatBehaviour.UNKNOWN
        elif second.mapped == self._mapped:
            self._mapping = NatBehaviour.ENDPOINT_INDEPENDENT
        elif third is None:
            return
        elif not third.ok:
            self._mapping = NatBehaviour.UNKNOWN
        elif third.mapped == second.mapped:
            self._mapping = NatBehaviour.ADDRESS_DEPENDENT
        else:
            self._mapping = NatBehaviour.ADDRESS_AND_PORT_DEPENDENT
        self._cancel(_Test.MAPPING_III)
        self._state = DiscoveryState.DONE
