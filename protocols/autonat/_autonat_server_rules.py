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
    requests in total, ``per_peer_per_minute`` per peer, ``per_ip_per_minute``
    per IP and ``per_subnet_per_minute`` per subnet (IPv4 /24, IPv6 /56; see
    :mod:`protocols.core._networks`), and at most ``concurrent_per_peer``
    requests in progress per peer and ``concurrent_per_ip`` per IP. Peer ids
    are free, so the per-peer limits alone would let one host with many ids
    use the whole global budget; the network limits stop that. Only admitted
    requests are counted, so a client hammering a full limiter cannot keep
    itself locked out for longer than the window. Over any limit the actor
    answers ``E_REQUEST_REJECTED``; :meth:`RateLimiter.check` lets it refuse
    before reading the request at all. Every operation costs O(1) amortised,
    and memory is bounded: a key is forgotten once it has nothing in flight
    and no admission inside the window, so at most ``global_per_minute``
    admissions plus the requests in flight are held.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
from collections import Counter, deque
from dataclasses import dataclass
from typing import Final

from multiaddr import Multiaddr

from ..core import (
    DEFAULT_IPV4_PREFIX,
    DEFAULT_IPV6_PREFIX,
    AddressError,
    AddressPolicy,
    IPAddress,
    LocalProtocolError,
    PeerId,
    ValidationError,
    WsAddress,
    plain_ip,
    subnet_of,
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
    """Which limit a request hit (checked in this order)."""

    CONCURRENT = "concurrent-per-peer"
    CONCURRENT_IP = "concurrent-per-ip"
    PER_PEER = "per-peer-per-minute"
    PER_IP = "per-ip-per-minute"
    PER_SUBNET = "per-subnet-per-minute"
    GLOBAL = "global-per-minute"


@dataclass(frozen=True)
class RateLimiterStatistics:
    """What a :class:`RateLimiter` admitted and refused (monotonic), and whom it tracks now."""

    admitted: int
    rejected: tuple[tuple[RateLimitReason, int], ...]
    """Refusals by the limit hit, in :class:`RateLimitReason` order."""
    tracked_peers: int
    tracked_networks: int = 0
    """IPs and subnets with an admission inside the window or a request in flight."""


_Key = tuple[str, object]
"""``("peer", PeerId)``, ``("ip", IPAddress)`` or ``("net", IPNetwork)``."""


class RateLimiter:
    """Sliding-window request limits for the AutoNAT server; see the module docstring."""

    def __init__(
        self,
        global_per_minute: int = 60,
        per_peer_per_minute: int = 12,
        concurrent_per_peer: int = 2,
        *,
        per_ip_per_minute: int = 24,
        per_subnet_per_minute: int = 48,
        concurrent_per_ip: int = 4,
        window: float = 60.0,
        ipv4_prefix: int = DEFAULT_IPV4_PREFIX,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        for name, value in (("global_per_minute", global_per_minute),
                            ("per_peer_per_minute", per_peer_per_minute),
                            ("concurrent_per_peer", concurrent_per_peer),
                            ("per_ip_per_minute", per_ip_per_minute),
                            ("per_subnet_per_minute", per_subnet_per_minute),
                            ("concurrent_per_ip", concurrent_per_ip)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not math.isfinite(window) or window <= 0:
            raise ValueError(f"window must be a finite number > 0, got {window!r}")
        self.global_per_minute = global_per_minute
        self.per_peer_per_minute = per_peer_per_minute
        self.concurrent_per_peer = concurrent_per_peer
        self.per_ip_per_minute = per_ip_per_minute
        self.per_subnet_per_minute = per_subnet_per_minute
        self.concurrent_per_ip = concurrent_per_ip
        self.window = window
        self._prefixes = (ipv4_prefix, ipv6_prefix)
        self._admitted: deque[tuple[float, tuple[_Key, ...]]] = deque()
        self._recent: Counter[_Key] = Counter()
        self._busy: Counter[_Key] = Counter()
        self._rejected: Counter[RateLimitReason] = Counter()
        self._admitted_total = 0

    def statistics(self) -> RateLimiterStatistics:
        keys = set(self._recent) | set(self._busy)
        peers = sum(1 for kind, _ in keys if kind == "peer")
        return RateLimiterStatistics(
            admitted=self._admitted_total,
            rejected=tuple((reason, self._rejected[reason]) for reason in RateLimitReason
                           if self._rejected[reason]),
            tracked_peers=peers, tracked_networks=len(keys) - peers)

    def in_flight(self, peer: PeerId) -> int:
        return self._busy[("peer", peer)]

    def check(self, peer: PeerId, now: float, *, ip: IPAddress | None = None
              ) -> RateLimitReason | None:
        """The limit a request from ``peer`` (on ``ip``) would hit at ``now``, or None.

        Cheap (a few dictionary reads) and without side effects beyond
        forgetting what left the window: the server calls it before reading
        the request, to refuse a flood without parsing it.
        """
        self._expire(now)
        peer_key, ip_key, net_key = self._keys(peer, ip)
        if self._busy[peer_key] >= self.concurrent_per_peer:
            return RateLimitReason.CONCURRENT
        if ip_key is not None and self._busy[ip_key] >= self.concurrent_per_ip:
            return RateLimitReason.CONCURRENT_IP
        if self._recent[peer_key] >= self.per_peer_per_minute:
            return RateLimitReason.PER_PEER
        if ip_key is not None and self._recent[ip_key] >= self.per_ip_per_minute:
            return RateLimitReason.PER_IP
        if net_key is not None and self._recent[net_key] >= self.per_subnet_per_minute:
            return RateLimitReason.PER_SUBNET
        if len(self._admitted) >= self.global_per_minute:
            return RateLimitReason.GLOBAL
        return None

    def try_acquire(self, peer: PeerId, now: float, *, ip: IPAddress | None = None
                    ) -> RateLimitReason | None:
        """Admit one request from ``peer`` on ``ip`` at ``now`` (``None``) or say which
        limit it hit. An admitted request must be :meth:`release`\\ d when it ends."""
        reason = self.check(peer, now, ip=ip)
        if reason is not None:
            self._rejected[reason] += 1
            return reason
        keys = tuple(key for key in self._keys(peer, ip) if key is not None)
        for key in keys:
            self._recent[key] += 1
        for key in keys[:2]:  # in flight: per peer and per IP
            self._busy[key] += 1
        self._admitted.append((now, keys))
        self._admitted_total += 1
        return None

    def release(self, peer: PeerId, *, ip: IPAddress | None = None) -> None:
        """One admitted request from ``peer`` (on ``ip``) ended; extra releases are ignored."""
        for key in self._keys(peer, ip)[:2]:
            if key is not None and self._busy[key] > 0:
                self._busy[key] -= 1
                if not self._busy[key]:
                    del self._busy[key]

    def _keys(self, peer: PeerId, ip: IPAddress | None
              ) -> tuple[_Key, _Key | None, _Key | None]:
        if ip is None:
            return ("peer", peer), None, None
        ip = plain_ip(ip)
        subnet = subnet_of(ip, ipv4_prefix=self._prefixes[0], ipv6_prefix=self._prefixes[1])
        return ("peer", peer), ("ip", ip), ("net", subnet)

    def _expire(self, now: float) -> None:
        """Forget admissions older than the window: O(1) per admission, over its lifetime."""
        horizon = now - self.window
        while self._admitted and self._admitted[0][0] <= horizon:
            _, keys = self._admitted.popleft()
            for key in keys:
                self._recent[key] -= 1
                if not self._recent[key]:
                    del self._recent[key]
