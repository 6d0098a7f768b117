"""The node's state as one sans-io model: lifecycle, peers, connections, observations.

Theory of operation
-------------------
:class:`NodeModel` folds the events of :mod:`protocols.node._events`, and the
events Identify and AutoNAT report, into the node's single source of truth.
It never reads a clock and follows the one driving contract
(docs/architecture.md, "The sans-io contract"): every input is a
``handle_*(..., now)`` call (``now`` is wall-clock seconds, because peer
timestamps are persisted and shown to users) that returns what changed -
:class:`LifecycleChanged`, then :class:`StateChanged` - or nothing, so the
driving actor (``actors.StatusTracker``) publishes a new snapshot only when
there is something new. Nothing in the model changes by time alone:
``poll_timeout()`` is always None.

Lifecycle
    ``starting -> bootstrapping -> connected -> fully_connected``, driven by
    :class:`LifecycleTrigger` through the table :data:`LIFECYCLE_TRANSITIONS`,
    which holds every (state, trigger) pair (a missing one raises
    :class:`~protocols.LocalProtocolError`). Binding listeners
    (``ListenAddrsChanged`` with addresses) starts bootstrapping, the first
    live connection makes the node ``connected``, a probe from a peer learned
    from a bootstrap source (the seed's ``InboundProbe`` rule) makes it
    ``fully_connected``, and
    losing the last connection sends it back to ``bootstrapping`` - it must
    then be probed again. A node with no listener (a pure client) goes
    straight from ``starting`` to ``connected``.
    A bootstrap peer's probe that arrives before its connection's
    ``ConnectionUp`` (the two come from different actors) is not lost: the
    model remembers the peer and, when that peer's connection comes up, goes
    ``connected`` and then ``fully_connected`` (see
    :mod:`protocols.node._lifecycle`). Remembered probes are forgotten once
    the node is fully connected; at most ``max_peers`` are kept.

Peers
    :class:`PeerRecord` per peer id: addresses (each carrying the peer's
    ``/p2p/`` id, newest first), agent, protocols, first/last seen, the
    sources that named it and whether a bootstrap source did. Any event that
    names a peer refreshes ``last_seen``. Addresses come from ``PeersFound``,
    Identify listen addresses and the remote address of outbound connections
    (we dialed it, so it is dialable).

Bounds
    Everything is capped: at most ``max_peers`` records (the least recently
    seen peer without a live connection is evicted first - among those
    without an address this node could dial before any with one, so peers
    that only dialed in cannot flush dialable ones; connected peers are
    never evicted), ``max_connections`` connections, one observation per
    observer and at most ``max_peers`` observers (oldest dropped), and per
    record the ``MAX_*`` constants of :mod:`protocols.node._snapshot` (longer
    input is truncated, never rejected, because it already passed the
    producers' validation). Eviction costs O(1) per new peer: idle peers are
    kept in least-recently-seen order (:class:`_IdlePeers`).

Snapshots
    :meth:`NodeModel.snapshot` returns a :class:`NodeSnapshot`: frozen, only
    tuples, sorted, so it can be shared with any number of readers and
    compared. ``nat_status``, ``nat_mapping``, ``reachable_addrs`` and
    ``unreachable_addrs`` are ``"unknown"`` / empty until the first
    :class:`~protocols.ReachabilityUpdate`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeGuard

from ..autonat import (
    DialStatus,
    HairpinningMeasured,
    InboundProbe,
    ReachabilityUpdate,
    ResponseStatus,
)
from ..core import LocalProtocolError, PeerId, WsAddress
from ..identify import PeerIdentified
from ..relay import RelayPathsChanged
from ..stun import (
    UNKNOWN_UDP_PROFILE,
    StunAddresses,
    StunServerBound,
    UdpProfile,
    UdpProfileMeasured,
)
from ._events import (
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    Direction,
    ListenAddrsChanged,
    PeersFound,
)
from ._lifecycle import LIFECYCLE_TRANSITIONS, Lifecycle, LifecycleTrigger, next_lifecycle
from ._snapshot import (
    MAX_ADDRS_PER_PEER,
    MAX_AGENT_LENGTH,
    MAX_LISTEN_ADDRS,
    MAX_PROTOCOL_LENGTH,
    MAX_PROTOCOLS_PER_PEER,
    MAX_SOURCE_LENGTH,
    MAX_SOURCES_PER_PEER,
    MAX_VERIFIED_PER_PEER,
    NodeSnapshot,
    ObservedAddr,
    PeerRecord,
    ip_only,
)
from ._sorted_table import SortedTable

__all__ = [
    "LIFECYCLE_TRANSITIONS",
    "Lifecycle",
    "LifecycleChanged",
    "LifecycleTrigger",
    "NodeEvent",
    "NodeModel",
    "NodeModelEvent",
    "NodeModelStatistics",
    "StateChanged",
    "StoredPeersLoaded",
    "next_lifecycle",
]

NodeEvent = (PeersFound | ConnectionUp | ConnectionDown | PeerIdentified | ListenAddrsChanged
             | ReachabilityUpdate | InboundProbe | StunServerBound | UdpProfileMeasured
             | HairpinningMeasured | RelayPathsChanged)


def _merge_addrs(
    peer_id: PeerId, new: Iterable[WsAddress], old: Iterable[WsAddress]
) -> tuple[WsAddress, ...]:
    """Newest first, each with ``/p2p/<peer_id>``, no duplicates, capped."""
    merged: dict[WsAddress, None] = {}
    for addr in (*new, *old):
        if addr.peer_id not in (None, peer_id):
            continue
        merged.setdefault(addr.with_peer_id(peer_id), None)
        if len(merged) == MAX_ADDRS_PER_PEER:
            break
    return tuple(merged)


def _clean_protocols(protocols: Iterable[str]) -> tuple[str, ...]:
    kept = dict.fromkeys(p for p in protocols if 0 < len(p) <= MAX_PROTOCOL_LENGTH)
    return tuple(kept)[:MAX_PROTOCOLS_PER_PEER]


@dataclass(frozen=True)
class StateChanged:
    """The model changed: its snapshot now has ``revision`` (publish it)."""

    revision: int


@dataclass(frozen=True)
class LifecycleChanged:
    """The lifecycle moved from ``previous`` to ``current`` at ``at``."""

    previous: Lifecycle
    current: Lifecycle
    at: float


@dataclass(frozen=True)
class StoredPeersLoaded:
    """Records from the peer store were merged in; ``added`` of them were new."""

    added: int


@dataclass(frozen=True)
class NodeModelStatistics:
    """The model's size and what it refused, read now."""

    lifecycle: Lifecycle
    revision: int
    peers: int
    connections: int
    connected_peers: int
    observations: int
    early_probes: int
    dropped_connections: int
    """``ConnectionUp`` events refused because ``max_connections`` were on record."""


NodeModelEvent = StateChanged | LifecycleChanged | StoredPeersLoaded
"""What :class:`NodeModel` answers: ``LifecycleChanged`` comes before the
``StateChanged`` of the same step."""


def _dialable(record: PeerRecord) -> bool:
    """Does the record hold an address this node could dial the peer at?"""
    return bool(record.addrs or record.verified_addrs)


class _IdlePeers:
    """Peers with a record and no live connection: the only ones eviction may choose.

    Two queues, each in least-recently-seen order (a peer seen again moves to
    the back; time never goes back, so no sorting): peers without an
    address - nobody can dial them; they only ever dialed in - and peers
    with one. Eviction takes the bare ones first, so a host churning fresh
    peer ids into a boot node pushes out its own kind before any peer the
    node could dial again.
    """

    def __init__(self) -> None:
        self._bare: dict[PeerId, None] = {}
        self._addressed: dict[PeerId, None] = {}

    def __len__(self) -> int:
        return len(self._bare) + len(self._addressed)

    def __contains__(self, peer_id: PeerId) -> bool:
        return peer_id in self._bare or peer_id in self._addressed

    def __iter__(self) -> Iterator[PeerId]:
        """In eviction order."""
        return itertools.chain(self._bare, self._addressed)

    def add(self, peer_id: PeerId, addressed: bool) -> None:
        """``peer_id`` is idle (again) and was just seen: to the back of its queue."""
        self.discard(peer_id)
        (self._addressed if addressed else self._bare)[peer_id] = None

    def seen(self, peer_id: PeerId, addressed: bool) -> None:
        """``peer_id`` was seen again: if idle, it moves to the back (of the right queue)."""
        if peer_id in self:
            self.add(peer_id, addressed)

    def discard(self, peer_id: PeerId) -> None:
        self._bare.pop(peer_id, None)
        self._addressed.pop(peer_id, None)

    def oldest(self, count: int) -> list[PeerId]:
        """The ``count`` peers to evict first: bare ones, then addressed ones."""
        chosen = list(itertools.islice(self._bare, count))
        return chosen + list(itertools.islice(self._addressed, count - len(chosen)))

    def sort(self, last_seen: dict[PeerId, float]) -> None:
        """Re-establish the order from ``last_seen`` (after loading stored peers)."""
        for queue in (self._bare, self._addressed):
            ordered = sorted(queue, key=last_seen.__getitem__)
            queue.clear()
            queue.update(dict.fromkeys(ordered))


class NodeModel:
    """Sans-io state of one node; see the module docstring."""

    def __init__(
        self,
        local_peer_id: PeerId,
        *,
        max_peers: int = 1000,
        max_connections: int = 4096,
        started_at: float | None = None,
        announce_addrs: tuple[WsAddress, ...] = (),
    ) -> None:
        if max_peers < 1 or max_connections < 1:
            raise ValueError("max_peers and max_connections must be >= 1")
        self.local_peer_id = local_peer_id
        self.max_peers = max_peers
        self.max_connections = max_connections
        self._started_at = started_at
        self._updated_at = started_at
        self._lifecycle = Lifecycle.STARTING
        self._lifecycle_since = started_at
        self._listen: tuple[WsAddress, ...] = ()
        self._announce = tuple(addr.with_peer_id(None) for addr in announce_addrs)
        """Configured public addresses (``announce``): fixed for the node's life."""
        self._peers: SortedTable[PeerId, PeerRecord] = SortedTable()
        self._connections: SortedTable[int, ConnectionInfo] = SortedTable()
        self._connected: SortedTable[PeerId, int] = SortedTable()  # peer -> live connections
        self._local_ips: Counter[WsAddress] = Counter()  # local IP -> live connections
        self._local_ips_cache: tuple[WsAddress, ...] | None = ()
        self._idle = _IdlePeers()
        """Peers with a record and no live connection, in eviction order (:class:`_IdlePeers`)."""
        self._observed: SortedTable[PeerId, ObservedAddr] = SortedTable()
        self._observed_order: dict[PeerId, None] = {}  # oldest observation first
        self._revision = 0
        self._peers_revision = 0
        self._reach: ReachabilityUpdate | None = None
        self._stun_server: StunAddresses | None = None
        self._udp: UdpProfile = UNKNOWN_UDP_PROFILE
        self._hairpinning: bool | None = None
        self._relay_paths = RelayPathsChanged()
        self._early_probes: dict[PeerId, None] = {}
        """Bootstrap peers whose probe arrived before their ConnectionUp (oldest first)."""
        self._dropped_connections = 0

    # --- reading -------------------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    @property
    def revision(self) -> int:
        """Incremented on every change; equal revisions mean equal snapshots."""
        return self._revision

    @property
    def peers_revision(self) -> int:
        """Incremented whenever a peer record changes (what the peer store holds)."""
        return self._peers_revision

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def peer(self, peer_id: PeerId) -> PeerRecord | None:
        return self._peers.get(peer_id)

    def is_connected(self, peer_id: PeerId) -> bool:
        return peer_id in self._connected

    def statistics(self) -> NodeModelStatistics:
        return NodeModelStatistics(
            lifecycle=self._lifecycle, revision=self._revision, peers=len(self._peers),
            connections=len(self._connections), connected_peers=len(self._connected),
            observations=len(self._observed), early_probes=len(self._early_probes),
            dropped_connections=self._dropped_connections)

    def store_records(self) -> list[PeerRecord]:
        """Records worth persisting (those with an address), most recently seen first."""
        records = [rec for _, rec in self._peers.items() if rec.addrs]
        records.sort(key=lambda rec: rec.last_seen, reverse=True)
        return records

    def snapshot(self, now: float) -> NodeSnapshot:
        started = self._start_clock(now)
        reach = self._reach
        return NodeSnapshot(
            peer_id=self.local_peer_id,
            lifecycle=self._lifecycle,
            lifecycle_since=self._lifecycle_since if self._lifecycle_since is not None else started,
            listen_addrs=self._listen,
            announce_addrs=self._announce,
            peers=self._peers.values(),
            connections=self._connections.values(),
            observed_addrs=self._observed.values(),
            started_at=started,
            updated_at=self._updated_at if self._updated_at is not None else started,
            revision=self._revision,
            nat_status=reach.nat_status if reach else "unknown",
            nat_mapping=reach.nat_mapping if reach else "unknown",
            reachable_addrs=reach.reachable_addrs if reach else (),
            unreachable_addrs=reach.unreachable_addrs if reach else (),
            connected_peers=self._connected.keys(),
            local_ips=self._local_ip_tuple(),
            nat_filtering=reach.nat_filtering if reach else "unknown",
            stun_server=self._stun_server,
            udp=self._udp,
            hairpinning=self._hairpinning,
            relay_addrs=self._relay_paths.relay_addrs,
            relayed_peers=self._relay_paths.relayed_peers,
        )

    # --- changing ------------------------------------------------------------

    @staticmethod
    def handles(event: object) -> TypeGuard[NodeEvent]:
        """True for the event types :meth:`handle_event` understands."""
        return isinstance(event, NodeEvent)

    def handle_event(self, event: NodeEvent, now: float) -> list[NodeModelEvent]:
        """Fold one event into the model; returns what changed (empty: nothing)."""
        self._start_clock(now)
        before = self._lifecycle
        if isinstance(event, PeersFound):
            changed = self._on_peers_found(event, now)
        elif isinstance(event, ConnectionUp):
            changed = self._on_connection_up(event.info, now)
        elif isinstance(event, ConnectionDown):
            changed = self._on_connection_down(event, now)
        elif isinstance(event, PeerIdentified):
            changed = self._on_identified(event, now)
        elif isinstance(event, ListenAddrsChanged):
            changed = self._on_listen_addrs(event, now)
        elif isinstance(event, ReachabilityUpdate):
            changed = self._on_reachability(event)
        elif isinstance(event, InboundProbe):
            changed = self._on_dialed_back(event, now)
            changed = self._on_inbound_probe(event.peer, now) or changed
        elif isinstance(event, StunServerBound):
            changed, self._stun_server = self._stun_server != event.addresses, event.addresses
        elif isinstance(event, UdpProfileMeasured):
            changed, self._udp = self._udp != event.profile, event.profile
        elif isinstance(event, HairpinningMeasured):
            changed = self._hairpinning is not event.hairpinning
            self._hairpinning = event.hairpinning
        elif isinstance(event, RelayPathsChanged):
            changed, self._relay_paths = self._relay_paths != event, event
        else:
            raise LocalProtocolError(f"NodeModel cannot handle {type(event).__name__}")
        return self._changes(changed, before, now)

    def handle_stored_peers(self, records: Iterable[PeerRecord],
                            now: float) -> list[NodeModelEvent]:
        """Seed from the peer store; records already in memory win."""
        self._start_clock(now)
        added = 0
        for record in records:
            if record.peer_id == self.local_peer_id or record.peer_id in self._peers:
                continue
            self._peers[record.peer_id] = record
            self._idle.add(record.peer_id, _dialable(record))  # not connected yet
            added += 1
        if added:  # once, at start: back into least-recently-seen order
            self._idle.sort({pid: rec.last_seen for pid, rec in self._peers.items()})
            self._evict()
            self._peers_changed()
        return [StoredPeersLoaded(added), *self._changes(bool(added), self._lifecycle, now)]

    def poll_timeout(self) -> float | None:
        """Always None: nothing in the model changes by time alone."""
        return None

    def handle_timeout(self, now: float) -> list[NodeModelEvent]:
        """Nothing to do (see :meth:`poll_timeout`); part of the one driving contract."""
        return []

    def _changes(self, changed: bool, before: Lifecycle, now: float) -> list[NodeModelEvent]:
        if not changed:
            return []
        self._touch(now)
        events: list[NodeModelEvent] = []
        if self._lifecycle is not before:
            events.append(LifecycleChanged(before, self._lifecycle, now))
        events.append(StateChanged(self._revision))
        return events

    def _on_reachability(self, event: ReachabilityUpdate) -> bool:
        old = self._reach
        self._reach = event
        return old is None or (old.nat_status, old.nat_mapping, old.reachable_addrs,
                               old.unreachable_addrs, old.nat_filtering) != (
            event.nat_status, event.nat_mapping, event.reachable_addrs, event.unreachable_addrs,
            event.nat_filtering)

    def _on_dialed_back(self, event: InboundProbe, now: float) -> bool:
        """Our server reached ``event.peer`` at ``event.dialed``: remember it as verified."""
        record = self._peers.get(event.peer)
        if (record is None or event.dialed is None or event.status is not ResponseStatus.OK
                or event.dial_status is not DialStatus.OK):
            return False
        addr = event.dialed.with_peer_id(event.peer)
        if record.verified_addrs[:1] == (addr,):
            return False
        verified = (addr, *(a for a in record.verified_addrs if a != addr))
        self._peers[event.peer] = replace(record, verified_addrs=verified[:MAX_VERIFIED_PER_PEER],
                                          last_seen=max(record.last_seen, now))
        self._idle.seen(event.peer, True)  # it has a verified address now
        self._peers_changed()
        return True

    def _on_inbound_probe(self, peer_id: PeerId, now: float) -> bool:
        """A probe from ``peer_id``: fully connected if it came from a bootstrap source.

        True when the lifecycle changed. A probe that arrives while the node
        has no connection on record (``starting``, ``bootstrapping``) raced
        ahead of its ``ConnectionUp``: it is remembered and takes effect when
        ``peer_id``'s connection comes up.
        """
        record = self._peers.get(peer_id)
        if record is None or not record.from_bootstrap:
            return False
        changed = self._trigger(LifecycleTrigger.BOOTSTRAP_PROBE, now)
        if not changed and self._lifecycle in (Lifecycle.STARTING, Lifecycle.BOOTSTRAPPING):
            self._early_probes.pop(peer_id, None)
            self._early_probes[peer_id] = None
            while len(self._early_probes) > self.max_peers:
                del self._early_probes[next(iter(self._early_probes))]
        return changed

    @property
    def early_probes(self) -> tuple[PeerId, ...]:
        """Bootstrap peers whose probe is waiting for their connection to come up."""
        return tuple(self._early_probes)

    # --- event handlers ------------------------------------------------------

    def _on_peers_found(self, event: PeersFound, now: float) -> bool:
        source = event.source[:MAX_SOURCE_LENGTH]
        by_peer: dict[PeerId, list[WsAddress]] = {}
        for addr in event.addrs:
            if addr.peer_id is not None and addr.peer_id != self.local_peer_id:
                by_peer.setdefault(addr.peer_id, []).append(addr)
        for peer_id, addrs in by_peer.items():
            self._update_peer(
                peer_id, now, addrs=addrs, source=source, from_bootstrap=event.from_bootstrap
            )
        return self._finish_peer_updates(bool(by_peer))

    def _on_connection_up(self, info: ConnectionInfo, now: float) -> bool:
        if info.connection_id in self._connections or info.peer_id == self.local_peer_id:
            return False
        if len(self._connections) >= self.max_connections:
            self._dropped_connections += 1
            return False
        self._connections[info.connection_id] = info
        self._connected[info.peer_id] = self._connected.get(info.peer_id, 0) + 1
        self._idle.discard(info.peer_id)
        self._count_local(info.local_addr, +1)
        dialed = [info.remote_addr] if info.direction is Direction.OUTBOUND else []
        self._update_peer(info.peer_id, now, addrs=dialed)
        self._finish_peer_updates(True)
        self._trigger(LifecycleTrigger.CONNECTION_UP, now)
        if info.peer_id in self._early_probes:  # its probe arrived first
            del self._early_probes[info.peer_id]
            self._trigger(LifecycleTrigger.BOOTSTRAP_PROBE, now)
        return True

    def _on_connection_down(self, event: ConnectionDown, now: float) -> bool:
        info = self._connections.pop(event.connection_id)
        if info is None:
            return False
        self._count_local(info.local_addr, -1)
        left = self._connected[info.peer_id] - 1
        if left:
            self._connected[info.peer_id] = left
        else:
            self._connected.pop(info.peer_id)
            if info.peer_id in self._peers:
                self._idle.add(info.peer_id, _dialable(self._peers[info.peer_id]))
        if info.peer_id in self._peers:
            self._update_peer(info.peer_id, now)
            self._finish_peer_updates(True)
        if not self._connections:
            self._trigger(LifecycleTrigger.ALL_CONNECTIONS_LOST, now)
        return True

    def _on_identified(self, event: PeerIdentified, now: float) -> bool:
        if event.peer_id == self.local_peer_id:
            return False
        self._update_peer(
            event.peer_id,
            now,
            addrs=event.listen_addrs,
            agent=event.agent_version[:MAX_AGENT_LENGTH],
            protocols=_clean_protocols(event.protocols),
        )
        if event.observed_addr is not None:
            self._observe(event, event.observed_addr, now)
        return self._finish_peer_updates(True)

    def _on_listen_addrs(self, event: ListenAddrsChanged, now: float) -> bool:
        addrs = tuple(dict.fromkeys(event.addrs))[:MAX_LISTEN_ADDRS]
        changed = addrs != self._listen
        self._listen = addrs
        if addrs:
            changed = self._trigger(LifecycleTrigger.LISTENING, now) or changed
        return changed

    # --- helpers -------------------------------------------------------------

    def _update_peer(
        self,
        peer_id: PeerId,
        now: float,
        *,
        addrs: Iterable[WsAddress] = (),
        source: str | None = None,
        from_bootstrap: bool = False,
        agent: str | None = None,
        protocols: tuple[str, ...] | None = None,
    ) -> None:
        old = self._peers.get(peer_id)
        if old is None:
            old = PeerRecord(peer_id, (), first_seen=now, last_seen=now)
            if peer_id not in self._connected:
                self._idle.add(peer_id, False)  # filed again below, with its addresses
        sources = old.sources
        if source and source not in sources:
            sources = (source, *sources)[:MAX_SOURCES_PER_PEER]
        self._peers[peer_id] = replace(
            old,
            addrs=_merge_addrs(peer_id, addrs, old.addrs),
            first_seen=min(old.first_seen, now),
            last_seen=max(old.last_seen, now),
            agent_version=old.agent_version if agent is None else agent,
            protocols=old.protocols if protocols is None else protocols,
            sources=sources,
            from_bootstrap=old.from_bootstrap or from_bootstrap,
        )
        self._idle.seen(peer_id, _dialable(self._peers[peer_id]))

    def _finish_peer_updates(self, changed: bool) -> bool:
        if changed:
            self._evict()
            self._peers_changed()
        return changed

    def _observe(self, event: PeerIdentified, observed: WsAddress, now: float) -> None:
        self._observed_order.pop(event.peer_id, None)  # re-insert: dict order is recency
        self._observed_order[event.peer_id] = None
        self._observed[event.peer_id] = ObservedAddr(
            observer=event.peer_id,
            observed=observed,
            local=event.local_addr,
            observer_addr=event.observer_addr,
            at=now,
            connection_id=event.connection_id,
        )
        while len(self._observed) > self.max_peers:
            oldest = next(iter(self._observed_order))
            del self._observed_order[oldest]
            self._observed.pop(oldest)

    def _evict(self) -> None:
        excess = len(self._peers) - self.max_peers
        if excess <= 0 or not self._idle:
            return  # within bounds, or every peer is connected (those are never evicted)
        for peer_id in self._idle.oldest(excess):
            self._idle.discard(peer_id)
            self._peers.pop(peer_id)

    def _count_local(self, addr: WsAddress, delta: int) -> None:
        key = ip_only(addr)
        before = self._local_ips[key]
        self._local_ips[key] = before + delta
        if not self._local_ips[key]:
            del self._local_ips[key]
        if (before == 0) != (before + delta == 0):
            self._local_ips_cache = None

    def _local_ip_tuple(self) -> tuple[WsAddress, ...]:
        if self._local_ips_cache is None:
            self._local_ips_cache = tuple(sorted(self._local_ips, key=str))
        return self._local_ips_cache

    def _trigger(self, trigger: LifecycleTrigger, now: float) -> bool:
        new = next_lifecycle(self._lifecycle, trigger)
        if new is self._lifecycle:
            return False
        self._lifecycle = new
        self._lifecycle_since = now
        if new is Lifecycle.FULLY_CONNECTED:
            self._early_probes.clear()
        return True

    def _peers_changed(self) -> None:
        self._peers_revision += 1

    def _touch(self, now: float) -> None:
        self._revision += 1
        self._updated_at = now

    def _start_clock(self, now: float) -> float:
        if self._started_at is None:
            self._started_at = now
        return self._started_at
