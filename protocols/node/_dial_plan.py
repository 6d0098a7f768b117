"""Which peers to dial, and when: the Dialer's decisions without the I/O.

Theory of operation
-------------------
The planner knows every candidate peer (from bootstrap documents, config,
the peer store, Identify) with up to ``max_addrs_per_peer`` addresses each,
and the state of each peer: idle, dialing, connected, or waiting out a
backoff. The Dialer asks :meth:`DialPlanner.due` for work whenever something
changes or the time from :meth:`next_wakeup` arrives, performs the dials, and
reports back with :meth:`connected`, :meth:`dial_failed` and
:meth:`disconnected`.

Rules:

* never more than ``concurrency`` dials in flight, and never more dials than
  are needed to reach ``target`` connections (``connected + in flight``);
* one dial per peer at a time, never to ourselves, never to a connected peer
  (deduplication by peer id);
* a failed dial moves that peer to its next address and waits a jittered
  exponential backoff (``Backoff``) that grows with consecutive failures;
* a lost connection is retried after the initial backoff delay, so a peer
  that disappears is reconnected, but a peer that keeps failing is tried
  less and less often;
* peers never dialed come before peers that failed, and the planner is
  bounded (``max_peers``): the least useful idle peer is forgotten first.

Time is an argument everywhere and randomness comes from an injected
``random.Random``, so the behaviour is exact under a mock clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..core import Backoff, PeerId, WsAddress

DEFAULT_RECONNECT = Backoff(initial=1.0, multiplier=2.0, maximum=60.0, jitter=0.2)


@dataclass
class _Peer:
    addrs: list[WsAddress]
    next_addr: int = 0
    failures: int = 0
    not_before: float = 0.0
    dialing: bool = False
    connected: bool = False
    added_at: float = 0.0


@dataclass(frozen=True)
class DialPlanStatistics:
    known_peers: int
    connected: int
    in_flight: int
    backing_off: int


@dataclass
class DialPlanner:
    """Dial scheduling for one node; see the module docstring."""

    local_peer: PeerId
    target: int
    concurrency: int
    backoff: Backoff = DEFAULT_RECONNECT
    rng: random.Random = field(default_factory=random.Random)
    max_peers: int = 1000
    max_addrs_per_peer: int = 8
    _peers: dict[PeerId, _Peer] = field(default_factory=dict)

    def add(self, addrs: tuple[WsAddress, ...] | list[WsAddress], now: float) -> int:
        """Learn candidate addresses (each must carry a peer id); returns new peers added."""
        added = 0
        for addr in addrs:
            peer = addr.peer_id
            if peer is None or peer == self.local_peer:
                continue
            state = self._peers.get(peer)
            if state is None:
                if len(self._peers) >= self.max_peers and not self._evict_one():
                    continue
                state = self._peers[peer] = _Peer(addrs=[], added_at=now)
                added += 1
            if addr not in state.addrs and len(state.addrs) < self.max_addrs_per_peer:
                state.addrs.append(addr)
        return added

    def _evict_one(self) -> bool:
        idle = [(p.failures, -p.added_at, pid) for pid, p in self._peers.items()
                if not (p.connected or p.dialing)]
        if not idle:
            return False
        worst = max(idle, key=lambda item: (item[0], item[1]))
        del self._peers[worst[2]]
        return True

    @property
    def in_flight(self) -> int:
        return sum(1 for p in self._peers.values() if p.dialing)

    @property
    def connected_count(self) -> int:
        return sum(1 for p in self._peers.values() if p.connected)

    def due(self, now: float, *, connected: int | None = None) -> list[WsAddress]:
        """Addresses to dial now; each returned peer is marked as dialing."""
        have = self.connected_count if connected is None else connected
        in_flight = self.in_flight
        budget = min(self.concurrency - in_flight, self.target - have - in_flight)
        if budget <= 0:
            return []
        ready = [(p.failures, p.not_before, p.added_at, pid) for pid, p in self._peers.items()
                 if not (p.connected or p.dialing) and p.not_before <= now and p.addrs]
        ready.sort(key=lambda item: (item[0], item[1], item[2]))
        chosen: list[WsAddress] = []
        for *_, pid in ready[:budget]:
            state = self._peers[pid]
            state.dialing = True
            chosen.append(state.addrs[state.next_addr % len(state.addrs)])
        return chosen

    def next_wakeup(self, now: float) -> float | None:
        """Earliest time a waiting peer becomes due, or None when nothing waits."""
        waiting = [p.not_before for p in self._peers.values()
                   if not (p.connected or p.dialing) and p.not_before > now and p.addrs]
        return min(waiting, default=None)

    def dialing(self, peer: PeerId) -> None:
        """Mark an externally requested dial (e.g. ``node.connect``) as in flight."""
        state = self._peers.get(peer)
        if state is not None:
            state.dialing = True

    def connected(self, peer: PeerId, now: float) -> None:
        state = self._peers.setdefault(peer, _Peer(addrs=[], added_at=now))
        state.connected, state.dialing, state.failures = True, False, 0

    def dial_failed(self, peer: PeerId, now: float) -> float:
        """Record a failed dial; returns the backoff delay before the next attempt."""
        state = self._peers.get(peer)
        if state is None:
            return 0.0
        delay = self.backoff.delay(state.failures, self.rng)
        state.dialing = False
        state.failures += 1
        state.next_addr += 1
        state.not_before = now + delay
        return delay

    def disconnected(self, peer: PeerId, now: float) -> float:
        """Record a lost connection; the peer is redialed after the initial backoff."""
        state = self._peers.get(peer)
        if state is None:
            return 0.0
        state.connected = False
        delay = self.backoff.delay(0, self.rng)
        state.not_before = now + delay
        return delay

    def forget(self, peer: PeerId) -> None:
        self._peers.pop(peer, None)

    def statistics(self, now: float) -> DialPlanStatistics:
        peers = self._peers.values()
        return DialPlanStatistics(
            known_peers=len(self._peers),
            connected=sum(1 for p in peers if p.connected),
            in_flight=sum(1 for p in peers if p.dialing),
            backing_off=sum(1 for p in peers if p.not_before > now
                            and not (p.connected or p.dialing)),
        )
