"""Peer exchange, sans-io: what a server hands out, what a client believes, when it asks.

The rules: (docs/architecture.md, "Peer exchange"); the messages:
:mod:`._peer_exchange_msg`.

Theory of operation
-------------------
A boot URL whose document lists only the boot node itself (what a Pyrsia
boot node serves: ``{peers_count, peer_id, peer_addrs}`` with its own
address) gives a newcomer one AutoNAT server, and one server may decide
alone only after the small-network wait. Peer exchange lets the newcomer ask
the peers it is connected to for more, *before* that wait runs out.

Server (:func:`sample_peers`, :func:`peer_exchange_limiter`)
    The candidates are exactly what ``/status`` may list
    (:func:`~protocols.bootstrap.verified_peers`: connected, identified
    peers at an address whose IP is their connection's or that our AutoNAT
    server dialed back) - never a self-announced address at a third party's
    IP. A response is a uniform random sample (the server's rng) of at most
    ``min(request.max, MAX_EXCHANGE_PEERS)`` of them, never the requester
    itself, one address each. Requests are rate-limited with the AutoNAT
    server's :class:`~protocols.RateLimiter` (per peer, per IP, per subnet,
    global, concurrent) at lower rates, so a scanner cannot enumerate the
    network through one node: at 2 requests per peer-minute and 16 peers a
    request, a node reveals at most 32 peers a minute to one peer id, 128 to
    one IP (8 requests: a few nodes behind one NAT still get answers) and 256
    to one subnet.

Client (:func:`interpret_peers_response`)
    Every entry is checked on its own: a valid peer id that is neither ours
    nor the answering peer's, addresses that parse, carry no other
    ``/p2p/`` id and pass our :class:`~protocols.AddressPolicy`. The rest go
    to the Dialer as ``PeersFound`` (not ``from_bootstrap``): its usual
    admission limits (per IP and subnet) apply, and a peer id counts for
    nothing until the handshake at that address proves it.

Trigger (:class:`PeerExchangePlan`)
    Fed the connected peers that list the protocol in Identify and the
    number of AutoNAT servers available, it asks a peer (:class:`AskForPeers`)
    while that number is below the confidence threshold: again at the earliest
    ``reask_after`` seconds after its last request ended, at most
    ``max_in_flight`` at once, in the order peers became askable. Each input
    costs O(1) amortised (a ready queue and a cooling queue, never a scan
    of the peers). Nothing
    waits for the small-network wait: the first Identify of a peer that
    serves the protocol is enough. Driving contract as everywhere:
    ``handle_*(..., now)`` return commands, ``poll_timeout()`` /
    ``handle_timeout(now)``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..autonat import RateLimiter
from ..core import (
    AddressError,
    AddressPolicy,
    LocalProtocolError,
    PeerId,
    ValidationError,
    WsAddress,
)
from ._peer_exchange_msg import (
    MAX_EXCHANGE_PEERS,
    PEER_EXCHANGE_PROTOCOL_ID,
    PeerEntry,
    PeersResponse,
)

__all__ = [
    "AskForPeers",
    "ExchangedPeers",
    "PeerExchangePlan",
    "PeerExchangeStatistics",
    "interpret_peers_response",
    "peer_exchange_limiter",
    "sample_peers",
]

REASK_AFTER: Final = 60.0
"""A peer is asked again at most this often (while servers are still too few)."""


def peer_exchange_limiter() -> RateLimiter:
    """The server's request limits (see "Server" in the module docstring)."""
    return RateLimiter(global_per_minute=120, per_peer_per_minute=2, concurrent_per_peer=1,
                       per_ip_per_minute=8, per_subnet_per_minute=16, concurrent_per_ip=2)


def sample_peers(candidates: Sequence[tuple[PeerId, WsAddress]], *, requester: PeerId,
                 count: int, rng: random.Random) -> PeersResponse:
    """A random sample of ``candidates`` (never ``requester``), at most ``count`` and
    :data:`MAX_EXCHANGE_PEERS`; O(count), whatever the number of candidates."""
    want = max(0, min(count, MAX_EXCHANGE_PEERS))
    picked = rng.sample(range(len(candidates)), min(len(candidates), want + 1))
    entries: list[PeerEntry] = []
    for index in picked:
        peer, addr = candidates[index]
        if peer == requester or len(entries) == want:
            continue
        entries.append(PeerEntry(peer.to_bytes(), (addr.with_peer_id(None).to_bytes(),)))
    return PeersResponse(tuple(entries))


@dataclass(frozen=True)
class ExchangedPeers:
    """What a client takes from a response: addresses to dial (with ``/p2p/``), and
    the entries it skipped with the reason."""

    addrs: tuple[WsAddress, ...]
    skipped: tuple[tuple[str, str], ...]


def interpret_peers_response(response: PeersResponse, *, own: PeerId, asked: PeerId,
                             policy: AddressPolicy) -> ExchangedPeers:
    """Check each entry on its own (see "Client" in the module docstring)."""
    addrs: dict[WsAddress, None] = {}
    skipped: list[tuple[str, str]] = []
    for entry in response.peers:
        try:
            peer = PeerId.from_bytes(entry.peer_id)
        except ValidationError as exc:
            skipped.append((entry.peer_id.hex(), f"invalid peer id: {exc}"))
            continue
        if peer in (own, asked):
            skipped.append((str(peer), "our own or the answering peer's id"))
            continue
        for raw in entry.addrs:
            try:
                addr = WsAddress.parse(raw)
            except AddressError as exc:
                skipped.append((raw.hex(), str(exc)))
                continue
            if addr.peer_id is not None and addr.peer_id != peer:
                skipped.append((str(addr), f"names another peer id than {peer}"))
                continue
            reason = policy.reason_rejected(addr)
            if reason is not None:
                skipped.append((str(addr), reason))
                continue
            addrs[addr.with_peer_id(peer)] = None
    return ExchangedPeers(tuple(addrs), tuple(skipped))


# --- the trigger -----------------------------------------------------------------


@dataclass(frozen=True)
class AskForPeers:
    """Ask connected ``peer`` for up to ``max`` peers; report with ``handle_answer``."""

    peer: PeerId
    max: int


@dataclass(frozen=True)
class PeerExchangeStatistics:
    """What the plan asked and learned (monotonic counters) and its state."""

    asked: int
    answered: int
    failed: int
    peers_learned: int
    """Usable addresses handed to the Dialer (before its own admission)."""
    in_flight: int
    askable: int
    """Connected peers that serve peer exchange."""


@dataclass
class _Counters:
    asked: int = 0
    answered: int = 0
    failed: int = 0
    learned: int = 0


@dataclass
class PeerExchangePlan:
    """When to ask whom (see "Trigger" in the module docstring)."""

    threshold: int
    request_size: int = MAX_EXCHANGE_PEERS
    max_in_flight: int = 2
    reask_after: float = REASK_AFTER
    _servers: int = field(default=0, init=False, repr=False)
    # connected peers serving the protocol
    _askable: set[PeerId] = field(default_factory=set, init=False, repr=False)
    # askable, not in flight, not cooling: asked next, in the order they became ready
    _ready: dict[PeerId, None] = field(default_factory=dict, init=False, repr=False)
    # asked (landed or lost) peers and when they may be asked again; the queue in that order
    _cool_until: dict[PeerId, float] = field(default_factory=dict, init=False, repr=False)
    _cooling: deque[tuple[float, PeerId]] = field(default_factory=deque, init=False,
                                                  repr=False)
    _in_flight: set[PeerId] = field(default_factory=set, init=False, repr=False)
    _now: float = field(default=-math.inf, init=False, repr=False)
    _counters: _Counters = field(default_factory=_Counters, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) \
                or self.threshold < 1:
            raise ValueError(f"threshold must be an int >= 1, got {self.threshold!r}")
        if not 1 <= self.request_size <= MAX_EXCHANGE_PEERS:
            raise ValueError(f"request_size must be 1..{MAX_EXCHANGE_PEERS}")
        if self.max_in_flight < 1 or not math.isfinite(self.reask_after) \
                or self.reask_after < 0:
            raise ValueError("max_in_flight must be >= 1 and reask_after finite and >= 0")

    def statistics(self) -> PeerExchangeStatistics:
        c = self._counters
        return PeerExchangeStatistics(asked=c.asked, answered=c.answered, failed=c.failed,
                                      peers_learned=c.learned, in_flight=len(self._in_flight),
                                      askable=len(self._askable))

    # --- inputs ----------------------------------------------------------------

    def handle_peer_identified(self, peer: PeerId, protocols: Iterable[str],
                               now: float) -> list[AskForPeers]:
        """Connected ``peer``'s Identify listed ``protocols``."""
        if PEER_EXCHANGE_PROTOCOL_ID in protocols:
            self._askable.add(peer)
            if peer not in self._in_flight and peer not in self._cool_until:
                self._ready.setdefault(peer, None)
        else:
            self._askable.discard(peer)
            self._ready.pop(peer, None)
        return self._step(now)

    def handle_connection_down(self, peer: PeerId, now: float) -> list[AskForPeers]:
        """``peer`` left (if it comes back within ``reask_after`` of its last ask, it waits)."""
        self._askable.discard(peer)
        self._ready.pop(peer, None)
        return self._step(now)

    def handle_servers_available(self, servers: int, now: float) -> list[AskForPeers]:
        """The number of connected AutoNAT servers (the probe scheduler's count)."""
        self._servers = servers
        return self._step(now)

    def handle_answer(self, peer: PeerId, learned: int, now: float) -> list[AskForPeers]:
        """``peer`` answered; ``learned`` usable addresses went to the Dialer."""
        self._land(peer, now)
        self._counters.answered += 1
        self._counters.learned += learned
        return self._step(now)

    def handle_failed(self, peer: PeerId, now: float) -> list[AskForPeers]:
        """Asking ``peer`` failed (refused, reset, timed out, invalid answer)."""
        self._land(peer, now)
        self._counters.failed += 1
        return self._step(now)

    def handle_driver_restart(self, now: float) -> list[AskForPeers]:
        """Every request in flight is gone without an answer (asked again after the interval)."""
        for peer in sorted(self._in_flight):
            self._land(peer, now)
        return self._step(now)

    def handle_timeout(self, now: float) -> list[AskForPeers]:
        return self._step(now)

    def poll_timeout(self) -> float | None:
        """When a peer asked before may be asked again (only while servers are few)."""
        if self._servers >= self.threshold or not self._cooling:
            return None
        due = self._cooling[0][0]
        return due if due > self._now else None

    # --- one step ----------------------------------------------------------------

    def _land(self, peer: PeerId, now: float) -> None:
        """``peer``'s request ended: it cools for ``reask_after`` (lands come in time
        order, so the queue stays sorted)."""
        if peer not in self._in_flight:
            raise LocalProtocolError(f"peer exchange: an answer from {peer}, never asked")
        self._in_flight.discard(peer)
        due = max(now, self._now) + self.reask_after
        self._cool_until[peer] = due
        self._cooling.append((due, peer))

    def _step(self, now: float) -> list[AskForPeers]:
        """O(1) amortised: each ask, land and cooling entry is handled once."""
        self._now = now
        if self._servers >= self.threshold:
            return []
        while self._cooling and self._cooling[0][0] <= now:
            due, peer = self._cooling.popleft()
            if self._cool_until.get(peer) == due:
                del self._cool_until[peer]
                if peer in self._askable and peer not in self._in_flight:
                    self._ready.setdefault(peer, None)
        commands: list[AskForPeers] = []
        while self._ready and len(self._in_flight) < self.max_in_flight:
            peer = next(iter(self._ready))
            del self._ready[peer]
            self._in_flight.add(peer)
            self._counters.asked += 1
            commands.append(AskForPeers(peer, self.request_size))
        return commands
