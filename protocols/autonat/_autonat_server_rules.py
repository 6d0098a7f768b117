"""AutoNAT server decisions: what to dial, how much dial data, rate limits.

The rules: (docs/architecture.md, "AutoNAT server rules").

Theory of operation
-------------------
A server that dials whatever it is asked becomes an amplifier for whoever
asks. These rules keep it harmless; the actor only performs what they allow.

Which address (:func:`choose_dial_address`)
    The request's addresses are examined in order and exactly one is dialed:
    the first acceptable one. An address is skipped, with a
    :class:`RefusalReason`, when it

    * does not parse as a WebSocket multiaddr (``unparseable``) or is a relay
      (``relay``, ``/p2p-circuit``);
    * is a DNS name (``dns``): dialing it would need a resolution whose result
      could point anywhere, and the amplification check below needs an IP.
      Clients learn their addresses as IPs anyway;
    * carries a ``/p2p/`` id other than the requester's (``peer-id``);
    * is rejected by the :class:`~protocols.AddressPolicy` (``policy``) -
      except on the requester's own observed IP: such a dial reaches only the
      host that asked (a client on the same LAN or on loopback), never a third
      party, and the client's own policy decides whether it is a candidate at
      all. This is what lets a boot node with the default policy serve a
      client on its own machine;
    * has an IP other than the one we observe the requester at, while the
      server is configured not to dial other IPs (``other-ip``).

    An address whose IP differs from the requester's observed IP (or any
    address when that IP is unknown) is dialed only after the client sent
    dial data: ``dial_data`` bytes, between :data:`MIN_DIAL_DATA` and
    :data:`MAX_DIAL_DATA` (30-100 KB), so that making us send a connection
    attempt to a third party costs the requester more than it costs us.
    When no address is acceptable the answer is ``E_DIAL_REFUSED``.

Dial data (:class:`DialDataBudget`, :func:`dial_data_chunks`)
    The server counts received ``DialDataResponse`` chunks (1..4096 bytes
    each) until the requested amount has arrived; a chunk after that, or an
    oversized or empty one, is a protocol violation. The client sends the
    requested amount in 4096-byte chunks, and refuses requests above its own
    limit (default 100 KB).

Rate limits (:class:`RateLimiter`)
    Sliding one-minute windows: at most ``global_per_minute`` admitted
    requests in total and ``per_peer_per_minute`` per peer, and at most
    ``concurrent_per_peer`` requests in progress per peer. Only admitted
    requests are counted, so a client hammering a full limiter cannot keep
    itself locked out for longer than the window. Over any limit the actor
    answers ``E_REQUEST_REJECTED``. Memory is bounded: a peer is forgotten once
    it has nothing in flight and no admission inside the window, so at most
    ``global_per_minute`` peers plus those with requests in flight are held.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final

from multiaddr import Multiaddr

from ..core import (
    AddressError,
    AddressPolicy,
    IPAddress,
    LocalProtocolError,
    PeerId,
    ValidationError,
    WsAddress,
)
from ._autonat_msg import MAX_DIAL_DATA_CHUNK, ResponseStatus

__all__ = [
    "MAX_DIAL_DATA",
    "MIN_DIAL_DATA",
    "AddressRejection",
    "DialChoice",
    "DialDataBudget",
    "RateLimitReason",
    "RateLimiter",
    "RateLimiterStatistics",
    "RefusalReason",
    "choose_dial_address",
    "dial_data_chunks",
]

MIN_DIAL_DATA: Final = 30_000
MAX_DIAL_DATA: Final = 100_000


class RefusalReason(enum.Enum):
    """Why the server will not dial one requested address."""

    UNPARSEABLE = "unparseable"
    RELAY = "relay"
    DNS = "dns"
    PEER_ID = "peer-id"
    POLICY = "policy"
    OTHER_IP = "other-ip"


@dataclass(frozen=True)
class AddressRejection:
    index: int
    reason: RefusalReason
    detail: str


@dataclass(frozen=True)
class DialChoice:
    """The one address to dial (``index`` into the request), or a refusal.

    ``dial_data`` is how many bytes the client must send first (0: none).
    ``rejected`` lists the addresses skipped before the choice (all of them
    when refused).
    """

    index: int | None
    addr: WsAddress | None
    dial_data: int = 0
    rejected: tuple[AddressRejection, ...] = ()

    def __post_init__(self) -> None:
        if (self.index is None) != (self.addr is None):
            raise LocalProtocolError("index and addr must both be set or both be None")
        if self.dial_data and not MIN_DIAL_DATA <= self.dial_data <= MAX_DIAL_DATA:
            raise LocalProtocolError(f"dial_data must be 0 or {MIN_DIAL_DATA}..{MAX_DIAL_DATA}")
        if self.addr is None and self.dial_data:
            raise LocalProtocolError("a refusal asks for no dial data")

    @property
    def accepted(self) -> bool:
        return self.addr is not None

    @property
    def status(self) -> ResponseStatus:
        return ResponseStatus.OK if self.accepted else ResponseStatus.E_DIAL_REFUSED

    @property
    def refusal(self) -> RefusalReason | None:
        """When refused, the reason the first address was skipped."""
        return None if self.accepted or not self.rejected else self.rejected[0].reason


def _plain(ip: IPAddress | None) -> IPAddress | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_relay(raw: bytes) -> bool:
    try:
        names = [proto.name for proto in Multiaddr(raw).protocols()]
    except Exception:  # the multiaddr package raises assorted errors on junk
        return False
    return "p2p-circuit" in names


def _parse(raw: bytes) -> WsAddress | RefusalReason:
    try:
        return WsAddress.parse(raw)
    except AddressError:
        return RefusalReason.RELAY if _is_relay(raw) else RefusalReason.UNPARSEABLE


def choose_dial_address(
    request_addrs: tuple[bytes, ...],
    *,
    observed_ip: IPAddress | None,
    policy: AddressPolicy,
    allow_other_ip: bool,
    requester: PeerId | None = None,
    rng: random.Random | None = None,
) -> DialChoice:
    """The first acceptable address of a dial request (see the module docstring).

    ``observed_ip`` is the requester's IP as our connection sees it. The
    dial-data amount is drawn from ``rng`` in 30-100 KB, or is
    :data:`MIN_DIAL_DATA` without one. The returned address has no ``/p2p/``.
    """
    rejected: list[AddressRejection] = []
    for index, raw in enumerate(request_addrs):
        judged = _examine(raw, observed_ip, policy, allow_other_ip, requester)
        if isinstance(judged, WsAddress):
            same_ip = observed_ip is not None and _plain(judged.ip) == _plain(observed_ip)
            dial_data = 0 if same_ip else _dial_data_amount(rng)
            return DialChoice(index, judged.with_peer_id(None), dial_data, tuple(rejected))
        rejected.append(AddressRejection(index, *judged))
    return DialChoice(None, None, 0, tuple(rejected))


def _examine(
    raw: bytes,
    observed_ip: IPAddress | None,
    policy: AddressPolicy,
    allow_other_ip: bool,
    requester: PeerId | None,
) -> WsAddress | tuple[RefusalReason, str]:
    """The address if it may be dialed, else why not."""
    addr = _parse(raw)
    if isinstance(addr, RefusalReason):
        return addr, f"cannot dial 0x{raw[:64].hex()}"
    if addr.ip is None:
        return RefusalReason.DNS, f"{addr}: DNS names are not dialed back"
    if addr.peer_id is not None and addr.peer_id != requester:
        return RefusalReason.PEER_ID, f"{addr}: names another peer"
    same_ip = observed_ip is not None and _plain(addr.ip) == _plain(observed_ip)
    why = policy.reason_rejected(addr)
    if why is not None and not (same_ip and addr.port):
        # The requester's own IP is dialable whatever its class: that dial can reach
        # only the host that asked (a LAN or loopback client), never a third party.
        return RefusalReason.POLICY, why
    if not (same_ip or allow_other_ip):
        return RefusalReason.OTHER_IP, f"{addr}: not the requester's IP {observed_ip}"
    return addr


def _dial_data_amount(rng: random.Random | None) -> int:
    return MIN_DIAL_DATA if rng is None else rng.randint(MIN_DIAL_DATA, MAX_DIAL_DATA)


# --- dial data ---------------------------------------------------------------


def dial_data_chunks(
    num_bytes: int, *, limit: int = MAX_DIAL_DATA, chunk: int = MAX_DIAL_DATA_CHUNK
) -> tuple[int, ...]:
    """Client side: chunk sizes to send for a ``DialDataRequest`` of ``num_bytes``.

    :class:`ValidationError` when the server asks for more than ``limit``.
    """
    if not 1 <= chunk <= MAX_DIAL_DATA_CHUNK:
        raise ValueError(f"chunk must be 1..{MAX_DIAL_DATA_CHUNK}, got {chunk}")
    if num_bytes < 0 or num_bytes > limit:
        raise ValidationError(f"server asks for {num_bytes} bytes of dial data, limit {limit}")
    full, rest = divmod(num_bytes, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


@dataclass
class DialDataBudget:
    """Server side: counts dial data until ``target`` bytes have arrived."""

    target: int
    received: int = 0
    chunks: int = 0

    def __post_init__(self) -> None:
        if not MIN_DIAL_DATA <= self.target <= MAX_DIAL_DATA:
            raise LocalProtocolError(
                f"target must be {MIN_DIAL_DATA}..{MAX_DIAL_DATA}, got {self.target}")

    @property
    def complete(self) -> bool:
        return self.received >= self.target

    @property
    def remaining(self) -> int:
        return max(0, self.target - self.received)

    def add(self, size: int) -> bool:
        """Count one chunk of ``size`` bytes; True once the target is reached."""
        if self.complete:
            raise ValidationError(f"dial data beyond the requested {self.target} bytes")
        if not 1 <= size <= MAX_DIAL_DATA_CHUNK:
            raise ValidationError(f"dial data chunk of {size} bytes (1..{MAX_DIAL_DATA_CHUNK})")
        self.received += size
        self.chunks += 1
        return self.complete


# --- rate limits -------------------------------------------------------------


class RateLimitReason(enum.Enum):
    """Which limit a request hit."""

    CONCURRENT = "concurrent-per-peer"
    PER_PEER = "per-peer-per-minute"
    GLOBAL = "global-per-minute"


@dataclass(frozen=True)
class RateLimiterStatistics:
    """What a :class:`RateLimiter` admitted and refused (monotonic), and whom it tracks now."""

    admitted: int
    rejected: tuple[tuple[RateLimitReason, int], ...]
    """Refusals by the limit hit, in :class:`RateLimitReason` order."""
    tracked_peers: int


@dataclass
class _PeerUsage:
    admitted: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class RateLimiter:
    """Sliding-window request limits for the AutoNAT server; see the module docstring."""

    def __init__(
        self,
        global_per_minute: int = 60,
        per_peer_per_minute: int = 12,
        concurrent_per_peer: int = 2,
        *,
        window: float = 60.0,
    ) -> None:
        for name, value in (("global_per_minute", global_per_minute),
                            ("per_peer_per_minute", per_peer_per_minute),
                            ("concurrent_per_peer", concurrent_per_peer)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not math.isfinite(window) or window <= 0:
            raise ValueError(f"window must be a finite number > 0, got {window!r}")
        self.global_per_minute = global_per_minute
        self.per_peer_per_minute = per_peer_per_minute
        self.concurrent_per_peer = concurrent_per_peer
        self.window = window
        self._admitted: deque[float] = deque()
        self._peers: dict[PeerId, _PeerUsage] = {}
        self._rejected: Counter[RateLimitReason] = Counter()
        self._admitted_total = 0

    def statistics(self) -> RateLimiterStatistics:
        return RateLimiterStatistics(
            admitted=self._admitted_total,
            rejected=tuple((reason, self._rejected[reason]) for reason in RateLimitReason
                           if self._rejected[reason]),
            tracked_peers=len(self._peers))

    def in_flight(self, peer: PeerId) -> int:
        usage = self._peers.get(peer)
        return 0 if usage is None else usage.in_flight

    def try_acquire(self, peer: PeerId, now: float) -> RateLimitReason | None:
        """Admit one request from ``peer`` at ``now`` (``None``) or say which limit it hit.

        An admitted request must be :meth:`release`\\ d when it ends.
        """
        self._expire(now)
        usage = self._peers.get(peer)
        reason = self._over_limit(usage)
        if reason is not None:
            self._rejected[reason] += 1
            return reason
        if usage is None:
            usage = self._peers[peer] = _PeerUsage()
        usage.admitted.append(now)
        usage.in_flight += 1
        self._admitted.append(now)
        self._admitted_total += 1
        return None

    def _over_limit(self, usage: _PeerUsage | None) -> RateLimitReason | None:
        in_flight = 0 if usage is None else usage.in_flight
        recent = 0 if usage is None else len(usage.admitted)
        if in_flight >= self.concurrent_per_peer:
            return RateLimitReason.CONCURRENT
        if recent >= self.per_peer_per_minute:
            return RateLimitReason.PER_PEER
        if len(self._admitted) >= self.global_per_minute:
            return RateLimitReason.GLOBAL
        return None

    def release(self, peer: PeerId) -> None:
        """One admitted request from ``peer`` ended (unknown peers are ignored)."""
        usage = self._peers.get(peer)
        if usage is None or usage.in_flight == 0:
            return
        usage.in_flight -= 1
        if not usage.in_flight and not usage.admitted:
            del self._peers[peer]

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._admitted and self._admitted[0] <= horizon:
            self._admitted.popleft()
        for peer in list(self._peers):
            usage = self._peers[peer]
            while usage.admitted and usage.admitted[0] <= horizon:
                usage.admitted.popleft()
            if not usage.admitted and not usage.in_flight:
                del self._peers[peer]
