"""Reachability: per-address verdicts and ``nat_status`` from AutoNAT evidence.

Theory of operation
-------------------
The probing actor asks several servers to dial our candidate addresses and
reports each outcome as a :class:`~protocols.ProbeResult`. This machine turns
those reports into verdicts under the rules of (docs/architecture.md,
"AutoNAT client rules"), taking the time as an argument everywhere (``now``,
monotonic seconds) and returning every change as a time-stamped event.

Evidence
    Only two outcomes are evidence. ``REACHABLE``: a dial-back carrying our
    nonce arrived on an *inbound* connection - the only positive evidence,
    because we saw it ourselves. ``UNREACHABLE``: the server says it tried and
    failed to dial (``E_DIAL_ERROR``) and no dial-back arrived. ``REFUSED``,
    ``TIMEOUT`` and ``ERROR`` are not evidence either way; they are counted and
    otherwise change nothing (a timeout never erases a server's earlier word).

Lying servers
    ``LIED`` (the server said OK but no dial-back with our nonce arrived) is
    not evidence either: a server's word alone can never make us public. The
    server is *distrusted* for ``distrust_period`` seconds: its further
    results are ignored, and the ``UNREACHABLE`` claims it made earlier (its
    word only) are dropped. Its earlier ``REACHABLE`` evidence stays, because
    that was our own observation of a dial-back.

Votes
    Per candidate address we keep the latest evidence of each distinct server
    (at most ``max_servers_per_addr``; the least recently heard is dropped
    first, but evidence about another IP - see "Evidence beats a claim" - only
    when nothing else is left to drop).
    Evidence older than ``evidence_ttl`` no longer counts. With ``R`` live
    reachable and ``U`` live unreachable votes and threshold ``T`` (default 2):

    * ``R >= T and R > U`` -> ``reachable``;
    * ``U >= T and U > R`` -> ``unreachable``;
    * otherwise the address keeps its previous verdict (hysteresis), except
      that an address with no live evidence at all becomes ``unknown``.

    So a verdict needs ``T`` agreeing servers, and a confirmed verdict flips
    only when the contrary evidence reaches the same threshold *and*
    outnumbers the supporting evidence.

    Evidence beats a claim, and what we saw is weighed by what it shows
    (:attr:`ProbeResult.via`), before the votes:

    1. ``T`` dial-backs that arrived from an IP we never contacted make the
       address ``reachable``, however many servers claim the contrary: no
       flow of ours let them in, so lying servers, even a majority, cannot
       outvote what we saw (nor make a node flip back and forth);
    2. else ``T`` servers saying their dial-back from an IP we never
       contacted failed, more than rule 1's dial-backs, make it
       ``unreachable``: a dial-back from the IP we contacted does not
       contradict them - an address-dependent filter lets exactly that one
       in - so such arrivals cannot outvote them (a node behind such a NAT
       that hears from many servers without a second address stays private);
    3. else, while more servers say their dial-back from an IP we never
       contacted failed than such dial-backs arrived (even one), dial-backs
       from IPs we contacted prove nothing: together with that failure they
       are exactly what an address-dependent filter shows. They leave the
       vote (``REACHABLE`` counts only rule 1's arrivals), and a
       ``reachable`` that rested on them no longer holds by hysteresis -
       the address is judged afresh and stays ``unknown`` until the
       threshold is reached, so the node asks more servers instead of
       keeping a false ``public`` (a host that met servers without a
       second address first, before a boot node's answer came);
    4. else the votes decide, every ``REACHABLE`` and ``UNREACHABLE`` alike -
       except that an address is not made ``reachable`` by dial-backs from IPs
       we contacted alone while a server that dials back from a second IP is
       being asked about it (the driver says so:
       :meth:`~Reachability.handle_far_probe_started` / ``_ended``): its answer
       is the one that tells public from address-restricted, and it comes a
       moment later. Without the wait, an address-restricted host that heard
       ordinary servers first was ``public`` for that moment and then flipped.
       When the answer comes, or the probe ends without one, the address is
       judged again.

    Expiry alone never flips ``reachable`` to ``unreachable`` (or back); it
    only returns an address to ``unknown`` once all of its evidence has
    expired.

Small networks
    A network with fewer AutoNAT servers than ``threshold`` (one boot node and
    nothing else) could never reach a verdict. The actor reports how many
    distinct servers are available (:meth:`Reachability.handle_servers_available`);
    once that number has stayed below the threshold for
    ``small_network_settle`` seconds, the effective threshold becomes that
    number (at least 1): the verdict rests on *every* server there is. When
    more servers appear the full threshold applies again at once. Early in a
    bootstrap, while servers are still arriving, the count keeps changing, so
    a single early answer cannot decide for a well-connected node.

Overall status
    ``nat_status`` is ``public`` if any address is reachable, ``private`` if
    at least one is unreachable and none is reachable, ``unknown`` otherwise.

Driving (docs/architecture.md, "The sans-io contract")
    Inputs are ``handle_*(..., now)`` methods - a probe result, the number of
    servers available, the candidate set, a probe round started - and each
    returns the :class:`ReachabilityChanged` (one address's verdict) and
    :class:`NatStatusChanged` events it caused, in that order, stamped with
    ``now``. Time passing matters too: evidence expires, distrusted servers
    are forgiven and a small network settles. :meth:`~Reachability.poll_timeout`
    says when the next of those is due and :meth:`~Reachability.handle_timeout`
    applies them, so a driver never polls.

Candidates and probe schedule
    Results count only for known candidate addresses (``handle_candidates``,
    ``handle_candidates_added``; at most ``max_addrs``, the oldest
    ``unknown`` one evicted first). :meth:`~Reachability.addresses_needing_probe`
    lists the addresses due for a probe, ``unknown`` ones first; the driver
    calls :meth:`~Reachability.handle_probe_started` when it sends the
    requests, and :meth:`~Reachability.next_probe_at` says when the next
    address falls due. A new (or
    newly ``unknown``) address is due at once; while it stays ``unknown`` it is
    retried on the ``retry`` backoff (10 s doubling to 5 min). A confirmed
    address is re-probed on the ``reprobe`` backoff (60 s doubling to 30 min)
    while its verdict is stable; any verdict change starts that schedule over.
    To reach the threshold the actor should ask servers that have no live
    evidence for the address yet (:meth:`~Reachability.evidence_servers`) and
    skip distrusted ones (:meth:`~Reachability.distrusted_servers`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..core import Backoff, PeerId, WsAddress
from ._autonat_events import NatStatus, ProbeOutcome, ProbeResult
from ._autonat_msg import DialBackSource
from ._reachability_events import (
    AddressReachability,
    AddressVerdict,
    NatStatusChanged,
    ReachabilityChanged,
    ReachabilityEvent,
    ReachabilityStatistics,
    ReachabilityView,
)
from ._votes import vote_verdict

__all__ = ["Reachability", "ReachabilityConfig"]

DEFAULT_RETRY: Final = Backoff(initial=10.0, multiplier=2.0, maximum=300.0, jitter=0.0)
DEFAULT_REPROBE: Final = Backoff(initial=60.0, multiplier=2.0, maximum=1800.0, jitter=0.0)

def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if isinstance(value, bool) or not ok:
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0")


@dataclass(frozen=True)
class ReachabilityConfig:
    """Thresholds, lifetimes and bounds of :class:`Reachability` (see the module doc)."""

    threshold: int = 2
    evidence_ttl: float = 3600.0
    distrust_period: float = 3600.0
    max_servers_per_addr: int = 8
    max_addrs: int = 32
    max_distrusted: int = 256
    retry: Backoff = DEFAULT_RETRY
    reprobe: Backoff = DEFAULT_REPROBE
    small_network_settle: float = 5.0
    """Seconds the number of available servers must stay below ``threshold``
    before a verdict may rest on all of them (see "Small networks")."""

    def __post_init__(self) -> None:
        for name in ("threshold", "max_servers_per_addr", "max_addrs", "max_distrusted"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.max_servers_per_addr < self.threshold:
            raise ValueError("max_servers_per_addr must be >= threshold, or no verdict is possible")
        _positive("evidence_ttl", self.evidence_ttl)
        _positive("distrust_period", self.distrust_period, allow_zero=True)
        if not isinstance(self.retry, Backoff) or not isinstance(self.reprobe, Backoff):
            raise ValueError("retry and reprobe must be Backoff policies")


@dataclass
class _Evidence:
    outcome: ProbeOutcome
    at: float
    via: DialBackSource | None = None


@dataclass
class _Address:
    added_at: float
    since: float
    next_probe_at: float
    verdict: AddressVerdict = "unknown"
    evidence: dict[PeerId, _Evidence] = field(default_factory=dict)
    reachable_votes: int = 0
    unreachable_votes: int = 0
    attempt: int = 0
    far_pending: int = 0
    """Probes in flight to servers that dial back from a second IP (rule 4's wait)."""


def _least_weighty(evidence: Mapping[PeerId, _Evidence]) -> PeerId:
    """The server whose evidence goes first when an address keeps too many: the least
    recently heard of those whose evidence is not about another IP (rules 1 and 2 of
    "Evidence beats a claim" weigh those), else the least recently heard."""
    for peer, ev in evidence.items():  # in order of recency, oldest first
        if ev.via is not DialBackSource.OTHER_IP:
            return peer
    return next(iter(evidence))


def _key(addr: WsAddress) -> WsAddress:
    return addr if addr.peer_id is None else addr.with_peer_id(None)


class Reachability:
    """The evidence-based reachability state machine; see the module docstring."""

    def __init__(self, config: ReachabilityConfig | None = None) -> None:
        self.config = config if config is not None else ReachabilityConfig()
        self._addrs: dict[WsAddress, _Address] = {}
        self._distrusted: dict[PeerId, float] = {}  # server -> distrusted until
        self._nat_status: NatStatus = "unknown"
        self._nat_since: float | None = None
        self._ignored = 0
        self._servers = 0
        self._servers_since = -math.inf
        self._threshold = self.config.threshold

    # --- reading -------------------------------------------------------------

    @property
    def nat_status(self) -> NatStatus:
        return self._nat_status

    @property
    def reachable_addrs(self) -> tuple[WsAddress, ...]:
        return self._with_verdict("reachable")

    @property
    def unreachable_addrs(self) -> tuple[WsAddress, ...]:
        return self._with_verdict("unreachable")

    @property
    def candidates(self) -> tuple[WsAddress, ...]:
        return tuple(sorted(self._addrs, key=str))

    def verdict(self, addr: WsAddress) -> AddressVerdict:
        state = self._addrs.get(_key(addr))
        return "unknown" if state is None else state.verdict

    def evidence_servers(self, addr: WsAddress, now: float) -> frozenset[PeerId]:
        """Servers whose evidence on ``addr`` is still live (ask others to reach the threshold)."""
        state = self._addrs.get(_key(addr))
        if state is None:
            return frozenset()
        ttl = self.config.evidence_ttl
        return frozenset(peer for peer, ev in state.evidence.items() if ev.at + ttl > now)

    def far_evidence(self, addr: WsAddress, now: float) -> int:
        """How many servers' live evidence on ``addr`` is about a dial-back from an IP we
        never contacted (arrived, or reported failed): the only kind that tells a public
        address from one behind an address-dependent filter."""
        state = self._addrs.get(_key(addr))
        if state is None:
            return 0
        ttl = self.config.evidence_ttl
        return sum(ev.via is DialBackSource.OTHER_IP and ev.at + ttl > now
                   for ev in state.evidence.values())

    def contested(self, addr: WsAddress, now: float) -> bool:
        """Live evidence on ``addr`` disagrees (some servers reached it, some did not): a
        re-probe should hear servers that have not spoken about it yet, or a verdict that
        rests on a few liars is only ever re-confirmed by the same liars."""
        state = self._addrs.get(_key(addr))
        if state is None:
            return False
        ttl = self.config.evidence_ttl
        live = {ev.outcome for ev in state.evidence.values() if ev.at + ttl > now}
        return {ProbeOutcome.REACHABLE, ProbeOutcome.UNREACHABLE} <= live

    def distrusted_servers(self, now: float) -> frozenset[PeerId]:
        return frozenset(peer for peer, until in self._distrusted.items() if until > now)

    def statistics(self) -> ReachabilityStatistics:
        return ReachabilityStatistics(ignored=self._ignored,
                                      distrusted_servers=len(self._distrusted))

    def snapshot(self) -> ReachabilityView:
        ordered = sorted(self._addrs.items(), key=lambda item: str(item[0]))
        details = tuple(
            AddressReachability(addr, s.verdict, s.since, s.reachable_votes,
                                s.unreachable_votes, s.next_probe_at)
            for addr, s in ordered
        )
        stats = self.statistics()
        return ReachabilityView(
            nat_status=self._nat_status,
            nat_status_since=self._nat_since,
            reachable_addrs=self.reachable_addrs,
            unreachable_addrs=self.unreachable_addrs,
            unknown_addrs=self._with_verdict("unknown"),
            addresses=details,
            statistics=stats,
        )

    def _with_verdict(self, verdict: AddressVerdict) -> tuple[WsAddress, ...]:
        return tuple(sorted((a for a, s in self._addrs.items() if s.verdict == verdict), key=str))

    # --- candidates ----------------------------------------------------------

    def handle_candidates_added(self, addrs: Iterable[WsAddress],
                                now: float) -> list[ReachabilityEvent]:
        """Start tracking new candidate addresses (due for a probe at once)."""
        events: list[ReachabilityEvent] = []
        for addr in map(_key, addrs):
            if addr in self._addrs:
                continue
            if len(self._addrs) >= self.config.max_addrs:
                events.extend(self._remove(self._eviction_victim(), now))
            self._addrs[addr] = _Address(added_at=now, since=now, next_probe_at=now)
        return events + self._update_nat_status(now)

    def handle_candidates(self, addrs: Iterable[WsAddress], now: float) -> list[ReachabilityEvent]:
        """Make ``addrs`` the candidate set: new ones are added, vanished ones forgotten."""
        wanted = dict.fromkeys(map(_key, addrs))
        gone = [addr for addr in self._addrs if addr not in wanted]
        return (self.handle_candidates_removed(gone, now)
                + self.handle_candidates_added(wanted, now))

    def handle_candidates_removed(self, addrs: Iterable[WsAddress],
                                  now: float) -> list[ReachabilityEvent]:
        """Stop tracking ``addrs``; a verdict they had goes back to ``unknown``."""
        events: list[ReachabilityEvent] = []
        for addr in map(_key, addrs):
            events.extend(self._remove(addr, now))
        return events + self._update_nat_status(now)

    def _eviction_victim(self) -> WsAddress:
        unknown = [(s.added_at, a) for a, s in self._addrs.items() if s.verdict == "unknown"]
        pool = unknown or [(s.added_at, a) for a, s in self._addrs.items()]
        return min(pool, key=lambda item: item[0])[1]  # min() keeps the first of equal times

    def _remove(self, addr: WsAddress, now: float) -> list[ReachabilityEvent]:
        state = self._addrs.pop(addr, None)
        if state is None or state.verdict == "unknown":
            return []
        return [ReachabilityChanged(addr, state.verdict, "unknown", now, state.reachable_votes,
                                    state.unreachable_votes, "removed")]

    # --- evidence ------------------------------------------------------------

    def handle_probe_result(self, result: ProbeResult, now: float) -> list[ReachabilityEvent]:
        """Fold one probe result in; returns the transitions it caused."""
        events: list[ReachabilityEvent] = []
        if result.outcome is ProbeOutcome.LIED:
            events.extend(self._distrust(result.server, now))
        addr = _key(result.addr)
        state = self._addrs.get(addr)
        if state is None or not self._counts(result, now):
            if result.outcome.is_evidence:
                self._ignored += 1
            return events + self._update_nat_status(now)
        state.evidence.pop(result.server, None)  # re-insert: dict order is recency
        state.evidence[result.server] = _Evidence(result.outcome, min(result.at, now),
                                                  result.via)
        while len(state.evidence) > self.config.max_servers_per_addr:
            del state.evidence[_least_weighty(state.evidence)]
        change = self._evaluate(addr, state, now, "evidence")
        if change is not None:
            events.append(change)
        return events + self._update_nat_status(now)

    def handle_far_probe_started(self, addr: WsAddress, now: float) -> list[ReachabilityEvent]:
        """A server that dials back from a second IP is being asked about ``addr``: until
        it ends, dial-backs from IPs we contacted alone do not make ``addr`` reachable
        (rule 4). Nothing changes now, so the answer is always empty."""
        state = self._addrs.get(_key(addr))
        if state is not None:
            state.far_pending += 1
        return []

    def handle_far_probe_ended(self, addr: WsAddress, now: float) -> list[ReachabilityEvent]:
        """Such a probe ended (after its result, if any, was handled): ``addr`` is judged
        again once none is left in flight."""
        key = _key(addr)
        state = self._addrs.get(key)
        if state is None or state.far_pending == 0:
            return []  # the address was dropped and taken up again meanwhile
        state.far_pending -= 1
        if state.far_pending:
            return []
        change = self._evaluate(key, state, now, "second-IP probe ended")
        return ([change] if change is not None else []) + self._update_nat_status(now)

    def _counts(self, result: ProbeResult, now: float) -> bool:
        """Evidence, from a server not distrusted, not already expired."""
        trusted = self._distrusted.get(result.server, -math.inf) <= now
        fresh = now - result.at < self.config.evidence_ttl
        return result.outcome.is_evidence and trusted and fresh

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` next changes something, or None.

        That is the earliest of: the oldest live evidence expiring, a
        distrusted server being forgiven, a small network having settled.
        (When candidates are due for a probe is the driver's schedule,
        :meth:`next_probe_at`: nothing here changes then.)
        """
        ttl = self.config.evidence_ttl
        times = [ev.at + ttl for s in self._addrs.values() for ev in s.evidence.values()]
        times.extend(self._distrusted.values())
        review = self._threshold_review_at()
        if review is not None and math.isfinite(review):  # -inf: never told a server count
            times.append(review)
        return min(times, default=None)

    def handle_timeout(self, now: float) -> list[ReachabilityEvent]:
        """Expire old evidence, forgive distrusted servers, settle a small network."""
        events = self._expire(now)
        review = self._threshold_review_at()
        if review is not None and math.isfinite(review) and review <= now:
            events += self.handle_servers_available(self._servers, now)
        return events

    def _expire(self, now: float) -> list[ReachabilityEvent]:
        for peer in [p for p, until in self._distrusted.items() if until <= now]:
            del self._distrusted[peer]
        events: list[ReachabilityEvent] = []
        for addr, state in self._addrs.items():
            change = self._evaluate(addr, state, now, "expired")
            if change is not None:
                events.append(change)
        return events + self._update_nat_status(now)

    def _distrust(self, server: PeerId, now: float) -> list[ReachabilityEvent]:
        if self.config.distrust_period == 0:
            return []
        self._distrusted.pop(server, None)
        self._distrusted[server] = now + self.config.distrust_period
        while len(self._distrusted) > self.config.max_distrusted:
            del self._distrusted[next(iter(self._distrusted))]
        events: list[ReachabilityEvent] = []
        for addr, state in self._addrs.items():
            claim = state.evidence.get(server)
            if claim is None or claim.outcome is not ProbeOutcome.UNREACHABLE:
                continue
            del state.evidence[server]
            change = self._evaluate(addr, state, now, "distrusted")
            if change is not None:
                events.append(change)
        return events

    def _evaluate(
        self, addr: WsAddress, state: _Address, now: float, reason: str
    ) -> ReachabilityChanged | None:
        ttl = self.config.evidence_ttl
        for peer in [p for p, ev in state.evidence.items() if ev.at + ttl <= now]:
            del state.evidence[peer]
        votes = Counter(ev.outcome for ev in state.evidence.values())
        yes, no = votes[ProbeOutcome.REACHABLE], votes[ProbeOutcome.UNREACHABLE]
        state.reachable_votes, state.unreachable_votes = yes, no
        new = self._weigh(state) or self._vote(state, yes, no)
        if new == state.verdict:
            return None
        old, state.verdict, state.since, state.attempt = state.verdict, new, now, 0
        if new == "unknown":
            state.next_probe_at = now
        else:
            state.next_probe_at = now + self.config.reprobe.base_delay(0)
        return ReachabilityChanged(addr, old, new, now, yes, no, reason)

    @property
    def threshold(self) -> int:
        """The threshold in force (lower than configured only in a small network)."""
        return self._threshold

    def handle_servers_available(self, count: int, now: float) -> list[ReachabilityEvent]:
        """How many distinct AutoNAT servers we can ask; may change the effective threshold."""
        if count != self._servers:
            self._servers, self._servers_since = count, now
        full = self.config.threshold
        settled = now >= self._servers_since + self.config.small_network_settle  # as review_at
        effective = full if count >= full or not settled else max(1, count)
        if effective == self._threshold:
            return []
        self._threshold = effective
        events: list[ReachabilityEvent] = []
        for addr, state in self._addrs.items():
            change = self._evaluate(addr, state, now, f"threshold now {effective}")
            if change is not None:
                events.append(change)
        return events + self._update_nat_status(now)

    @property
    def small_network_until(self) -> float | None:
        """While a small network is settling: when it will have settled, else None."""
        return self._threshold_review_at()

    def _threshold_review_at(self) -> float | None:
        if self._servers >= self.config.threshold or self._threshold == max(1, self._servers):
            return None
        return self._servers_since + self.config.small_network_settle

    def _weigh(self, state: _Address) -> AddressVerdict | None:
        """Rules 1 and 2 of "Evidence beats a claim" (module docstring); None: vote."""
        far = Counter(ev.outcome for ev in state.evidence.values()
                      if ev.via is DialBackSource.OTHER_IP)
        seen, denied = far[ProbeOutcome.REACHABLE], far[ProbeOutcome.UNREACHABLE]
        if seen >= self._threshold:
            return "reachable"
        if denied >= self._threshold and denied > seen:
            return "unreachable"
        return None

    def _vote(self, state: _Address, yes: int, no: int) -> AddressVerdict:
        """Rules 3 and 4 of "Evidence beats a claim" (module docstring)."""
        far = Counter(ev.outcome for ev in state.evidence.values()
                      if ev.via is DialBackSource.OTHER_IP)
        seen, denied = far[ProbeOutcome.REACHABLE], far[ProbeOutcome.UNREACHABLE]
        if denied <= seen:
            verdict = self._decide(state.verdict, yes, no)
            if verdict == "reachable" != state.verdict and seen == 0 and state.far_pending:
                return state.verdict  # rule 4's wait for the second-IP answer
            return verdict
        current = "unknown" if state.verdict == "reachable" else state.verdict
        return self._decide(current, seen, no)

    def _decide(self, current: AddressVerdict, yes: int, no: int) -> AddressVerdict:
        votes: dict[AddressVerdict, int] = {"reachable": yes, "unreachable": no}
        return vote_verdict(current, votes, self._threshold)

    def _update_nat_status(self, now: float) -> list[ReachabilityEvent]:
        verdicts = {state.verdict for state in self._addrs.values()}
        new: NatStatus = (
            "public" if "reachable" in verdicts
            else "private" if "unreachable" in verdicts
            else "unknown"
        )
        if new == self._nat_status:
            return []
        old, self._nat_status, self._nat_since = self._nat_status, new, now
        return [NatStatusChanged(old, new, now)]

    # --- probe schedule ------------------------------------------------------

    def addresses_needing_probe(self, now: float) -> list[WsAddress]:
        """Candidates due for a probe at ``now``: ``unknown`` first, then the most overdue."""
        due = [(s.verdict != "unknown", s.next_probe_at, str(a), a)
               for a, s in self._addrs.items() if s.next_probe_at <= now]
        due.sort(key=lambda item: item[:3])
        return [item[3] for item in due]

    def handle_probe_started(self, addr: WsAddress, now: float) -> list[ReachabilityEvent]:
        """The driver sent probes for ``addr``: it is next due on its backoff schedule.

        Nothing about the verdicts changes, so the answer is always empty;
        :meth:`next_probe_at` tells when ``addr`` is due again.
        """
        state = self._addrs.get(_key(addr))
        if state is None:
            return []
        policy = self.config.retry if state.verdict == "unknown" else self.config.reprobe
        state.next_probe_at = now + policy.base_delay(state.attempt)
        state.attempt += 1
        return []

    def next_probe_at(self, *, after: float | None = None) -> float | None:
        """The earliest time any candidate is due (for the actor's sleep), or None.

        With ``after``, only times later than it count (addresses already due
        but waiting for a server are not a reason to wake up).
        """
        floor = -math.inf if after is None else after
        return min((s.next_probe_at for s in self._addrs.values() if s.next_probe_at > floor),
                   default=None)
