"""ObservationIndex: candidate addresses and NAT mapping, kept up to date incrementally.

The rules: (docs/architecture.md, "AutoNAT client rules"); the specification
is the pair of batch functions :func:`~protocols.autonat.candidate_addresses`
and :func:`~protocols.autonat.analyse_nat_mapping`.

Theory of operation
-------------------
A node with N connections holds up to N observations of our address (one per
observer peer, from Identify). Recomputing candidates and NAT mapping from all
of them on every Identify costs O(N) per connection event, O(N^2) for N
connections. The index is fed one change at a time instead - an observation
(:meth:`~ObservationIndex.observe`; an observer's newer observation replaces
its older one), a removal (:meth:`~ObservationIndex.remove`) or our listen
addresses (:meth:`~ObservationIndex.set_listen_addrs`) - and after each one
:attr:`~ObservationIndex.candidates` and :attr:`~ObservationIndex.nat_mapping`
equal what the batch functions compute over the current observations, oldest
first (the order they were fed: re-feeding an observer makes it the latest).

At most ``max_observers`` observers are kept; a new one beyond that drops the
observer fed least recently (as the node model's ``_observe`` does with
``max_peers``).

Candidates
    Each observer's observation translates (with the listen addresses, as in
    :func:`candidate_addresses`) into a small set of routable addresses; the
    index keeps that set per observer and, per address, the number of
    observers whose set contains it. A change touches only the addresses
    that entered or left the changed observer's set. The ranking key of an
    address is ``(-observers, not a listen address, text)``. The best
    ``limit`` addresses are a sorted list; every other address of the
    universe (routable listen addresses and addresses with observers) has an
    entry in a min-heap with lazy deletion (an entry is valid while its key
    is the address's current key and the address is outside the top). After
    a change the top is re-sorted and exchanged with the heap's minimum while
    that is better than the top's last address, so a changed address enters
    or leaves the top exactly when it should.

Mapping
    Each observation that passes rules 1-2 of :mod:`._nat_mapping` belongs to
    one *path*. Per path the index keeps its members in recency order, per
    independence key the members sharing it (recency order: the view of a
    key is its latest member's endpoint), a counter of distinct view
    endpoints over the keys, and the number of keys. The verdict of a path is
    then O(1): one endpoint, ours -> ``none``; one other ->
    ``endpoint-independent``; more -> ``endpoint-dependent``. Paths with at
    least ``min_observers`` keys are in a max-heap (lazy deletion again)
    ordered as rule 4 and :func:`max` order them: scope rank, number of keys,
    then the path whose oldest member is oldest (the first group the batch
    function meets). The full :class:`NatMappingReport` (with the sorted
    external endpoints) is built on demand only.

Cost
    With L listen addresses, ``limit`` k, U addresses in the universe and P
    paths: an observation or a removal costs O(L) to translate, O(log U + k)
    per address whose observer count changed (at most 4L of them), O(1) for
    its path and O(log P) for the path heap - independent of N. Stale heap
    entries are popped when met and both heaps are rebuilt when they hold
    more than twice their live entries (amortised O(1) per push). The worst
    case is a change of the listen addresses: every observer is translated
    again and the ranking rebuilt, O(N L + U log U); listen addresses change
    rarely (start, interface changes). :meth:`~ObservationIndex.statistics`
    counts the elementary operations (``operations``) and those rebuilds, so
    tests can check the cost without timing it.

Sans-io: no Trio, no I/O, no clock (nothing here depends on time).
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..core import AddressPolicy, PeerId, WsAddress
from ._autonat_candidates import _translations, corroborated
from ._autonat_events import NatMapping
from ._nat_mapping import (
    SCOPE_RANK,
    AddressObservation,
    Endpoint,
    NatMappingReport,
    _classify_one,
    _Path,
    _report,
    _unknown,
    _verdict,
)

__all__ = ["ObservationIndex", "ObservationIndexStatistics"]

_Rank = tuple[int, bool, str]
"""Candidate ranking key: most observers first, listen addresses first, then by text."""
_SLACK = 32
"""A heap is rebuilt when it holds more than twice its live entries plus this."""


@dataclass(frozen=True)
class ObservationIndexStatistics:
    """Counters since creation and the current sizes."""

    observers: int
    """Observers held (at most ``max_observers``)."""
    addresses: int
    """Addresses ranked: routable listen addresses and translated observed ones."""
    paths: int
    """NAT mapping groups (local endpoint, IP family, scope)."""
    operations: int
    """Elementary steps: address re-rankings, heap pushes and pops, path updates."""
    rebuilds: int
    """Full rebuilds of the ranking (listen address changes)."""
    dropped: int
    """Observers dropped to stay within ``max_observers``."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one observer's current observation contributes."""

    observation: AddressObservation
    seq: int
    translated: frozenset[WsAddress]
    mapping: tuple[_Path, object, Endpoint] | None


@dataclass
class _PathState:
    path: _Path
    members: OrderedDict[PeerId, int] = field(default_factory=OrderedDict)
    """Observer -> feeding sequence number, oldest first."""
    keys: dict[object, OrderedDict[PeerId, Endpoint]] = field(default_factory=dict)
    """Independence key -> its members' endpoints, oldest first (the last is the view)."""
    endpoints: Counter[Endpoint] = field(default_factory=Counter)
    """View endpoint -> number of independence keys with that view (no zero counts)."""
    sizes: Counter[int] = field(default_factory=Counter)
    """Count -> number of endpoints with that count (no zero counts): keeps ``top``."""
    top: int = 0
    """The largest count in ``endpoints`` (rule 5's majority, kept in O(1) per change)."""

    def bump(self, endpoint: Endpoint, by: int) -> None:
        """Add ``by`` (+1 or -1) to ``endpoint``'s count, keeping ``sizes`` and ``top``."""
        old = self.endpoints[endpoint]
        new = old + by
        for count, step in ((old, -1), (new, 1)):
            if count:
                left = self.sizes[count] + step
                if left:
                    self.sizes[count] = left
                else:
                    del self.sizes[count]
        if new:
            self.endpoints[endpoint] = new
        else:
            del self.endpoints[endpoint]
        if new > self.top:
            self.top = new
        elif old == self.top and not self.sizes.get(old):
            self.top = old - 1


class ObservationIndex:
    """Candidates and NAT mapping over observations fed one at a time; see the module doc."""

    def __init__(self, policy: AddressPolicy, *, limit: int = 16, max_observers: int = 1000,
                 min_observers: int = 2) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        if isinstance(max_observers, bool) or not isinstance(max_observers, int) \
                or max_observers < 1:
            raise ValueError(f"max_observers must be an int >= 1, got {max_observers!r}")
        if isinstance(min_observers, bool) or not isinstance(min_observers, int) \
                or min_observers < 2:
            raise ValueError(f"min_observers must be an int >= 2, got {min_observers!r}")
        self._policy = policy
        self._limit = limit
        self._max = max_observers
        self._min = min_observers
        self._seq = 0
        self._entries: OrderedDict[PeerId, _Entry] = OrderedDict()  # oldest first
        # candidates
        self._listens: tuple[WsAddress, ...] = ()
        self._listed: frozenset[WsAddress] = frozenset()
        self._base: frozenset[WsAddress] = frozenset()
        self._count: dict[WsAddress, int] = {}  # observers per address (> 0 only)
        self._top: list[WsAddress] = []  # sorted by _rank
        self._in_top: set[WsAddress] = set()
        self._top_dirty = False
        self._outside: list[tuple[_Rank, int, WsAddress]] = []
        self._tie = 0
        self._candidates: tuple[WsAddress, ...] = ()
        # mapping
        self._paths: dict[_Path, _PathState] = {}
        self._sizes: Counter[int] = Counter()  # number of keys -> paths with that many
        self._eligible: list[tuple[int, int, int, int, _Path]] = []
        self._mapping: NatMapping = "unknown"
        # counters
        self._ops = 0
        self._rebuilds = 0
        self._dropped = 0

    # --- reading -------------------------------------------------------------

    @property
    def candidates(self) -> tuple[WsAddress, ...]:
        """``candidate_addresses(listen, observations, policy, limit=limit)``: best first."""
        return self._candidates

    @property
    def nat_mapping(self) -> NatMapping:
        """``classify_nat_mapping(observations, policy=policy, min_observers=...)``."""
        return self._mapping

    @property
    def listen_addrs(self) -> tuple[WsAddress, ...]:
        """The listen addresses last set, peer ids stripped."""
        return self._listens

    def observations(self) -> tuple[AddressObservation, ...]:
        """The current observations, oldest first (O(N): for tests and diagnostics)."""
        return tuple(entry.observation for entry in self._entries.values())

    def observed_by(self, observer: PeerId) -> WsAddress | None:
        """The address ``observer`` currently sees us at (its observation), or None (O(1))."""
        entry = self._entries.get(observer)
        return None if entry is None else entry.observation.observed

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, observer: object) -> bool:
        return observer in self._entries

    def nat_mapping_report(self) -> NatMappingReport:
        """``analyse_nat_mapping(observations, ...)``, built now (sorts the judged endpoints)."""
        best = self._best_path()
        if best is None:
            return _unknown(max(self._sizes, default=0), self._min)
        return _report(best.path, best.endpoints.copy(), len(best.keys))

    def statistics(self) -> ObservationIndexStatistics:
        return ObservationIndexStatistics(
            observers=len(self._entries), addresses=len(self._base | self._count.keys()),
            paths=len(self._paths), operations=self._ops, rebuilds=self._rebuilds,
            dropped=self._dropped)

    # --- inputs --------------------------------------------------------------

    def set_listen_addrs(self, listen_addrs: Iterable[WsAddress]) -> bool:
        """Our listen addresses; True when candidates changed. O(N L) when they differ."""
        listens = tuple(addr.with_peer_id(None) for addr in listen_addrs)
        if listens == self._listens:
            return False
        self._rebuilds += 1
        self._listens = listens
        self._listed = frozenset(listens)
        self._base = frozenset(addr for addr in listens
                               if addr.ip is not None and self._policy.is_routable(addr))
        self._count = {}
        for peer, entry in self._entries.items():
            translated = self._translate(entry.observation)
            self._entries[peer] = _Entry(entry.observation, entry.seq, translated, entry.mapping)
            for addr in translated:
                self._count[addr] = self._count.get(addr, 0) + 1
            self._ops += 1
        self._rank_all()
        return self._refresh()

    def observe(self, observation: AddressObservation) -> bool:
        """``observation`` is its observer's latest; True when candidates or mapping changed."""
        peer = observation.observer
        old = self._entries.pop(peer, None)
        self._seq += 1
        entry = _Entry(observation, self._seq, self._translate(observation),
                       _classify_one(observation, self._policy))
        self._entries[peer] = entry
        touched: set[WsAddress] = set()
        before = old.translated if old is not None else frozenset()
        for addr in before - entry.translated:
            self._uncount(addr, touched)
        for addr in entry.translated - before:
            self._count[addr] = self._count.get(addr, 0) + 1
            touched.add(addr)
        if old is not None:
            self._map_remove(peer, old)
        self._map_add(peer, entry)
        while len(self._entries) > self._max:
            oldest, dropped = self._entries.popitem(last=False)
            self._dropped += 1
            self._forget(oldest, dropped, touched)
        for addr in touched:
            self._touch(addr)
        return self._refresh()

    def remove(self, observer: PeerId) -> bool:
        """Forget ``observer``'s observation (if any); True when candidates or mapping changed."""
        entry = self._entries.pop(observer, None)
        if entry is None:
            return False
        touched: set[WsAddress] = set()
        self._forget(observer, entry, touched)
        for addr in touched:
            self._touch(addr)
        return self._refresh()

    # --- candidates ------------------------------------------------------------

    def _translate(self, observation: AddressObservation) -> frozenset[WsAddress]:
        return frozenset(addr for addr in _translations(observation, self._listens)
                         if self._policy.is_routable(addr))

    def _uncount(self, addr: WsAddress, touched: set[WsAddress]) -> None:
        left = self._count[addr] - 1
        if left:
            self._count[addr] = left
        else:
            del self._count[addr]
        touched.add(addr)

    def _forget(self, peer: PeerId, entry: _Entry, touched: set[WsAddress]) -> None:
        for addr in entry.translated:
            self._uncount(addr, touched)
        self._map_remove(peer, entry)

    def _rank(self, addr: WsAddress) -> _Rank:
        return (-self._count.get(addr, 0), addr not in self._listed, str(addr))

    def _live(self, addr: WsAddress) -> bool:
        return addr in self._count or addr in self._base

    def _push_outside(self, addr: WsAddress) -> None:
        self._ops += 1
        self._tie += 1
        heapq.heappush(self._outside, (self._rank(addr), self._tie, addr))

    def _touch(self, addr: WsAddress) -> None:
        """``addr``'s observer count (or membership of the universe) changed."""
        self._ops += 1
        if addr in self._in_top:
            if not self._live(addr):
                self._in_top.discard(addr)
                self._top.remove(addr)
            self._top_dirty = True
        elif self._live(addr):
            self._push_outside(addr)

    def _peek_outside(self) -> tuple[_Rank, WsAddress] | None:
        heap = self._outside
        while heap:
            rank, _, addr = heap[0]
            if addr not in self._in_top and self._live(addr) and rank == self._rank(addr):
                return rank, addr
            heapq.heappop(heap)
            self._ops += 1
        return None

    def _rank_all(self) -> None:
        ranked = sorted(self._base | self._count.keys(), key=self._rank)
        self._ops += len(ranked)
        self._top = ranked[:self._limit]
        self._in_top = set(self._top)
        self._top_dirty = False
        self._outside = []
        for addr in ranked[self._limit:]:
            self._tie += 1
            self._outside.append((self._rank(addr), self._tie, addr))  # sorted: a heap

    def _rebalance(self) -> None:
        top, in_top = self._top, self._in_top
        if self._top_dirty:
            top.sort(key=self._rank)
            self._top_dirty = False
            self._ops += 1
        while (best := self._peek_outside()) is not None:
            rank, addr = best
            if len(top) >= self._limit:
                if rank >= self._rank(top[-1]):
                    break
                out = top.pop()
                in_top.discard(out)
                self._push_outside(out)
            heapq.heappop(self._outside)
            insort(top, addr, key=self._rank)
            in_top.add(addr)
            self._ops += 1
        live_outside = len(self._count) + len(self._base) - len(top)
        if len(self._outside) > 2 * live_outside + _SLACK:
            self._outside = [item for item in self._outside
                             if item[2] not in in_top and self._live(item[2])
                             and item[0] == self._rank(item[2])]
            heapq.heapify(self._outside)
            self._ops += len(self._outside)

    # --- mapping ---------------------------------------------------------------

    def _map_add(self, peer: PeerId, entry: _Entry) -> None:
        if entry.mapping is None:
            return
        path, key, endpoint = entry.mapping
        state = self._paths.get(path)
        if state is None:
            state = self._paths[path] = _PathState(path)
        size = len(state.keys)
        state.members[peer] = entry.seq
        views = state.keys.get(key)
        if views is None:
            views = state.keys[key] = OrderedDict()
            old_view: Endpoint | None = None
        else:
            old_view = next(reversed(views.values()))
        views[peer] = endpoint  # absent before: appended, so the latest
        self._move_view(state, old_view, endpoint)
        self._path_changed(state, size)

    def _map_remove(self, peer: PeerId, entry: _Entry) -> None:
        if entry.mapping is None:
            return
        path, key, _ = entry.mapping
        state = self._paths[path]
        size = len(state.keys)
        del state.members[peer]
        views = state.keys[key]
        old_view = next(reversed(views.values()))
        del views[peer]
        new_view: Endpoint | None = None
        if views:
            new_view = next(reversed(views.values()))
        else:
            del state.keys[key]
        self._move_view(state, old_view, new_view)
        self._path_changed(state, size)

    def _move_view(self, state: _PathState, old: Endpoint | None, new: Endpoint | None) -> None:
        self._ops += 1
        if old == new:
            return
        if old is not None:
            state.bump(old, -1)
        if new is not None:
            state.bump(new, 1)

    def _path_changed(self, state: _PathState, old_size: int) -> None:
        size = len(state.keys)
        if old_size:
            left = self._sizes[old_size] - 1
            if left:
                self._sizes[old_size] = left
            else:
                del self._sizes[old_size]
        if not state.members:
            del self._paths[state.path]
            return
        self._sizes[size] += 1
        if size >= self._min:
            self._tie += 1
            self._ops += 1
            heapq.heappush(self._eligible, (-SCOPE_RANK[state.path.scope], -size,
                                            _first_seq(state), self._tie, state.path))
            if len(self._eligible) > 2 * len(self._paths) + _SLACK:
                self._eligible = [item for item in self._eligible if self._valid(item)]
                heapq.heapify(self._eligible)
                self._ops += len(self._eligible)

    def _valid(self, item: tuple[int, int, int, int, _Path]) -> bool:
        state = self._paths.get(item[4])
        return (state is not None and len(state.keys) == -item[1]
                and _first_seq(state) == item[2])

    def _best_path(self) -> _PathState | None:
        heap = self._eligible
        while heap:
            if self._valid(heap[0]):
                return self._paths[heap[0][4]]
            heapq.heappop(heap)
            self._ops += 1
        return None

    # --- results -------------------------------------------------------------

    def _refresh(self) -> bool:
        self._rebalance()
        candidates = corroborated(self._top, lambda a: self._count.get(a, 0), self._listed)
        best = self._best_path()
        mapping: NatMapping = "unknown" if best is None else _verdict(
            len(best.keys), best.top, best.endpoints.get(best.path.local, 0))
        changed = candidates != self._candidates or mapping != self._mapping
        if candidates != self._candidates:
            self._candidates = candidates
        self._mapping = mapping
        return changed


def _first_seq(state: _PathState) -> int:
    """When the path's oldest member was fed (the batch function meets that path first)."""
    return next(iter(state.members.values()))
