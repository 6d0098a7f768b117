"""Which peers to dial, and when: the Dialer's decisions without the I/O.

Theory of operation
-------------------
The planner knows every candidate peer (from bootstrap documents, config,
the peer store, Identify) with up to ``max_addrs_per_peer`` addresses each,
and the state of each peer: idle, dialing, connected, or waiting out a
backoff. It follows the sans-io contract (docs/architecture.md): the Dialer
feeds what happened with ``handle_peers_found``, ``handle_dial_started``,
``handle_connected``, ``handle_dial_failed`` and ``handle_disconnected``, and
calls :meth:`DialPlanner.handle_timeout` when :meth:`DialPlanner.poll_timeout`
arrives (or right after an input); it returns the :class:`DialPeer` commands
to perform, each peer already marked as dialing. Inputs only record facts and
return no commands: the work an input makes due is returned by the next
``handle_timeout``, which ``poll_timeout`` asks for at the input's ``now``.
So a command is only ever produced by the driver's loop, and never lost
between a state change and a dying actor incarnation.

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
* peers never dialed come before peers that failed, boot nodes (the owners
  of the bootstrap documents) before other peers, and the planner is
  bounded (``max_peers``): the least useful idle peer is forgotten first.
* boot nodes are dialed even when the target is reached (within
  ``concurrency``): the first document's peers may fill the target before
  the other documents arrive, and the boot nodes are the servers a newcomer
  most needs - the AutoNAT servers that dial back from a second IP, without
  which an address-dependent filter looks like a public address. They are as
  many as the boot URLs, so the target is exceeded by at most that many.
* a peer we hold no address for (it dialed in: a newcomer, a probe client)
  is tracked only while it is connected and never redialed; it does not
  count against ``max_peers``, and live connections are bounded by the
  Dialer's ``max_connections``.

Cost: the in-flight and connected counts are kept, not counted, so an input
and ``poll_timeout`` cost O(1) while the dial budget is used up - the normal
state of a busy node - and a scan over the known peers happens only when a
dial may start.

Time is an argument everywhere and randomness comes from an injected
``random.Random``, so the behaviour is exact under a mock clock. Reporting a
lost connection of a peer that is not connected raises
:class:`~protocols.core.LocalProtocolError`. A failed dial is accepted for any
peer: an explicit dial (``node.connect``) may race a planned one to the same
peer, or target a peer the full planner could not admit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ..core import Backoff, LocalProtocolError, PeerId, WsAddress

__all__ = ["DEFAULT_RECONNECT", "DialCommand", "DialPeer", "DialPlanStatistics", "DialPlanner"]

DEFAULT_RECONNECT = Backoff(initial=1.0, multiplier=2.0, maximum=60.0, jitter=0.2)


@dataclass(slots=True)
class _Peer:
    addrs: list[WsAddress]
    next_addr: int = 0
    failures: int = 0
    not_before: float = 0.0
    dialing: bool = False
    connected: bool = False
    added_at: float = 0.0
    boot: bool = False


@dataclass(frozen=True)
class DialPeer:
    """Dial ``addr`` (its peer is marked as dialing until an outcome is reported)."""

    addr: WsAddress


DialCommand = DialPeer
"""Every command a :class:`DialPlanner` returns."""


@dataclass(frozen=True)
class DialPlanStatistics:
    known_peers: int
    connected: int
    in_flight: int
    backing_off: int
    """Peers waiting out a backoff, as of the latest ``now`` the planner was given."""
    peers_learned: int = 0
    """Peers added since the planner was created (monotonic)."""


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
    _now: float = field(default=-math.inf, repr=False)
    """The latest ``now`` given to :meth:`handle_timeout`."""
    _due_at: float | None = field(default=None, repr=False)
    """An input's ``now``: work may be due then (cleared by :meth:`handle_timeout`)."""
    _learned: int = field(default=0, repr=False)
    _dialing: int = field(default=0, repr=False)
    """Peers marked as dialing (kept equal to the count over ``_peers``)."""
    _connected: int = field(default=0, repr=False)
    """Peers marked as connected (kept equal to the count over ``_peers``)."""
    _addressless: int = field(default=0, repr=False)
    """Peers we hold no address for (they dialed in); not counted against ``max_peers``."""
    _boots: set[PeerId] = field(default_factory=set, repr=False)
    """Known peers marked ``boot`` (as many as the bootstrap documents' owners)."""

    # --- inputs -----------------------------------------------------------------

    def handle_peers_found(self, addrs: tuple[WsAddress, ...] | list[WsAddress],
                           now: float, *, boot: PeerId | None = None) -> list[DialCommand]:
        """Learn candidate addresses (each must carry a peer id); ``boot``: the peer whose
        bootstrap document listed them, dialed before peers that are not boot nodes."""
        self._learned += self._add(addrs, now)
        state = self._peers.get(boot) if boot is not None else None
        if state is not None and boot is not None:
            state.boot = True
            self._boots.add(boot)
        return self._input_at(now)

    def handle_dial_started(self, peer: PeerId, now: float) -> list[DialCommand]:
        """Mark an externally requested dial (e.g. ``node.connect``) as in flight."""
        state = self._peers.get(peer)
        if state is not None:
            self._set(state, dialing=True)
        return []

    def handle_connected(self, peer: PeerId, now: float) -> list[DialCommand]:
        """``peer`` is connected (dialed by us, or it dialed us).

        A peer we hold no address for - a client that dialed in - is tracked
        only while it is connected: it is forgotten when it leaves, never
        redialed, and does not count against ``max_peers``.
        """
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(addrs=[], added_at=now)
            self._addressless += 1
        self._set(state, connected=True, dialing=False)
        state.failures = 0
        return self._input_at(now)

    def handle_dial_failed(self, peer: PeerId, now: float) -> list[DialCommand]:
        """Record a failed dial; :meth:`retry_at` tells when the peer is tried again."""
        state = self._peers.get(peer)
        if state is None:
            return []
        delay = self.backoff.delay(state.failures, self.rng)
        self._set(state, dialing=False)
        state.failures += 1
        state.next_addr += 1
        state.not_before = now + delay
        return self._input_at(now)

    def handle_disconnected(self, peer: PeerId, now: float) -> list[DialCommand]:
        """Record a lost connection; the peer is redialed after the initial backoff."""
        state = self._peers.get(peer)
        if state is None or not state.connected:
            raise LocalProtocolError(
                f"dial planner: connection lost for peer {peer} in state "
                f"{'unknown' if state is None else 'not connected'}")
        self._set(state, connected=False)
        if not state.addrs and not state.dialing:  # it dialed in and left: nothing to redial
            del self._peers[peer]
            self._addressless -= 1
            return self._input_at(now)
        state.not_before = now + self.backoff.delay(0, self.rng)
        return self._input_at(now)

    def handle_forget(self, peer: PeerId, now: float) -> list[DialCommand]:
        state = self._peers.pop(peer, None)
        self._boots.discard(peer)
        if state is not None:
            self._dialing -= state.dialing
            self._connected -= state.connected
            self._addressless -= not state.addrs
        return []

    # --- time -------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[DialCommand]:
        """The dials to start now; each returned peer is marked as dialing."""
        self._now = max(self._now, now)
        self._due_at = None
        chosen: list[DialCommand] = []
        budget = self._budget()
        if budget > 0:
            ready = [(p.failures, not p.boot, p.not_before, p.added_at, pid)
                     for pid, p in self._peers.items() if self._idle(p, now)]
            ready.sort(key=lambda item: item[:4])
            chosen = [self._dial(pid) for *_, pid in ready[:budget]]
        spare = self.concurrency - self._dialing
        if spare > 0 and self._boots:  # boot nodes beyond the target (module docstring)
            boots = sorted((p.failures, p.added_at, str(pid), pid) for pid in self._boots
                           if self._idle(p := self._peers[pid], now))
            chosen += [self._dial(pid) for *_, pid in boots[:spare]]
        return chosen

    @staticmethod
    def _idle(state: _Peer, now: float) -> bool:
        """Neither connected nor dialing, due, and with an address to dial."""
        return not (state.connected or state.dialing) and state.not_before <= now \
            and bool(state.addrs)

    def _dial(self, peer: PeerId) -> DialPeer:
        state = self._peers[peer]
        self._set(state, dialing=True)
        return DialPeer(state.addrs[state.next_addr % len(state.addrs)])

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` may have work: right after an input, else the
        earliest time a waiting peer becomes due (never at or before the latest
        ``handle_timeout`` time); ``None`` when only an input can create work.

        With no dial budget (target reached, or concurrency used up) only an
        input or a boot node coming due can create work, so only the boot nodes
        are scanned: a node holding many connections pays O(boot nodes) here per
        event, not O(peers)."""
        if self._budget() <= 0:
            boots = [p.not_before for pid in self._boots
                     if not ((p := self._peers[pid]).connected or p.dialing)
                     and p.not_before > self._now and p.addrs]
            if self._dialing >= self.concurrency or not boots:
                return self._due_at
            return min([*boots, *([self._due_at] if self._due_at is not None else [])])
        waiting = [p.not_before for p in self._peers.values()
                   if not (p.connected or p.dialing) and p.not_before > self._now and p.addrs]
        if self._due_at is not None:
            waiting.append(self._due_at)
        return min(waiting, default=None)

    # --- queries ----------------------------------------------------------------

    def retry_at(self, peer: PeerId) -> float | None:
        """When a failed or lost peer may be dialed again (``None``: unknown peer)."""
        state = self._peers.get(peer)
        return None if state is None else state.not_before

    def _budget(self) -> int:
        return min(self.concurrency - self._dialing, self.target - self._connected - self._dialing)

    def _set(self, state: _Peer, *, dialing: bool | None = None,
             connected: bool | None = None) -> None:
        """Change a peer's flags, keeping the in-flight and connected counts right."""
        if dialing is not None and dialing != state.dialing:
            self._dialing += 1 if dialing else -1
            state.dialing = dialing
        if connected is not None and connected != state.connected:
            self._connected += 1 if connected else -1
            state.connected = connected

    def _input_at(self, now: float) -> list[DialCommand]:
        self._due_at = now if self._due_at is None else min(self._due_at, now)
        return []

    def _add(self, addrs: tuple[WsAddress, ...] | list[WsAddress], now: float) -> int:
        added = 0
        for addr in addrs:
            peer = addr.peer_id
            if peer is None or peer == self.local_peer:
                continue
            state = self._peers.get(peer)
            if state is None:
                if len(self._peers) - self._addressless >= self.max_peers \
                        and not self._evict_one():
                    continue
                state = self._peers[peer] = _Peer(addrs=[], added_at=now)
                added += 1
            elif not state.addrs:
                self._addressless -= 1  # it dialed in; now we know where to find it
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
        self._boots.discard(worst[2])
        return True

    @property
    def in_flight(self) -> int:
        return self._dialing

    @property
    def connected_count(self) -> int:
        return self._connected

    def statistics(self) -> DialPlanStatistics:
        peers, now = self._peers.values(), self._now
        return DialPlanStatistics(
            known_peers=len(self._peers),
            connected=self._connected,
            in_flight=self._dialing,
            backing_off=sum(1 for p in peers if p.not_before > now
                            and not (p.connected or p.dialing)),
            peers_learned=self._learned,
        )
