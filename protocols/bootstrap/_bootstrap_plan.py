"""When to fetch which bootstrap URL, and which of the returned addresses to use.

Theory of operation
-------------------
:class:`BootstrapPlan` is the BootstrapFetcher's decision logic without I/O
(docs/architecture.md, "Actors and messages"). It knows the configured
``/status`` URLs and, per URL, whether a fetch is *wanted* in the current
round, whether one is *in flight*, how many consecutive failures it had and
when it may be tried again. It follows the sans-io contract
(docs/architecture.md): the actor calls :meth:`BootstrapPlan.handle_timeout`
when :meth:`BootstrapPlan.poll_timeout` arrives (or after an input), performs
the returned :class:`FetchUrl` and :class:`FallBackToPersisted` commands and
reports with ``handle_fetch_finished``, ``handle_connected_count``,
``handle_fallback_sent``, ``handle_addresses_selected`` and
``handle_driver_restart``. Inputs only record facts and return no commands:
the work an input makes due is returned by the next ``handle_timeout``, which
``poll_timeout`` asks for at the input's ``now``. A finished fetch of a URL
that is not configured, or a fallback sent when none was due, raises
:class:`~protocols.core.LocalProtocolError`.

Rules:

* **Rounds.** The first round starts at once and wants every URL. A URL
  leaves the round when a fetch gave at least one usable address
  (:attr:`FetchOutcome.OK`); any other outcome - including a valid document
  with nothing usable in it (``EMPTY``) - is a failure.
* **Per-URL backoff.** After ``n`` consecutive failures a URL waits
  ``backoff.delay(n - 1)`` (jittered exponential, :class:`Backoff`) and is
  retried for as long as it keeps failing; a success resets it. One URL's
  failures never delay another URL.
* **Refetch.** While fewer than ``target_peers`` peers are connected
  (:meth:`BootstrapPlan.set_connected`), a new round that wants every URL
  again starts once the refetch interval has passed since the previous round
  started. The interval is ``refetch.delay(k)`` where ``k`` counts the
  refetch rounds since the node last had its target, so a node in a network
  too small for its target asks less and less often (a boot server serving
  thousands of nodes would otherwise be hammered); reaching the target
  resets ``k``. A refetch respects each URL's own backoff.
* **Per-URL status.** :meth:`BootstrapPlan.statistics` lists every URL with
  its finished fetches, whether one ever succeeded, the latest outcome and
  the reason the actor gave for the latest failure (:class:`BootUrlStatus`),
  which is how a one-shot probe tells that every URL has failed, and why.
* **Fallback once per outage.** An *outage* begins when every URL's latest
  fetch failed (each tried at least once; with no URLs at all the node is in
  an outage from the start) and ends with the next ``OK``. During an outage
  ``handle_timeout`` returns :class:`FallBackToPersisted` (and
  :meth:`BootstrapPlan.fallback_due` is true) exactly until
  :meth:`BootstrapPlan.handle_fallback_sent` is called, so the actor falls
  back to the persisted peers once per outage, not once per failed retry.

:func:`select_addresses` decides which addresses of a parsed document are
used: every address that is routable under the :class:`AddressPolicy` and
does not carry our own peer id, shuffled (so that many nodes reading the same
document spread over its peers). Each skipped entry keeps a reason and a
:class:`SkipKind`, together with the entries the ``/status`` parser already
rejected, so the actor can log why each one was dropped and aggregate them
when there are many. :func:`fallback_addresses` does the same for the peer
store's records, most recently seen first.

Time is an argument everywhere and randomness an injected
:class:`random.Random`, so everything here is exact under a mock clock.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..core import AddressPolicy, Backoff, LocalProtocolError, PeerId, WsAddress
from ..node import PeerRecord

__all__ = [
    "DEFAULT_FETCH_BACKOFF",
    "AddressSelection",
    "BootUrlStatus",
    "BootstrapCommand",
    "BootstrapPlan",
    "BootstrapStatistics",
    "FallBackToPersisted",
    "FetchOutcome",
    "FetchUrl",
    "SkipKind",
    "SkippedEntry",
    "fallback_addresses",
    "refetch_backoff",
    "select_addresses",
]

DEFAULT_FETCH_BACKOFF: Final = Backoff(initial=2.0, multiplier=2.0, maximum=300.0, jitter=0.2)
REFETCH_GROWTH_CAP: Final = 16
"""The refetch interval grows up to this multiple of the configured minimum."""


def refetch_backoff(interval: float, *, jitter: float = 0.1) -> Backoff:
    """The refetch pacing for a minimum interval of ``interval`` seconds."""
    return Backoff(initial=interval, multiplier=2.0, maximum=interval * REFETCH_GROWTH_CAP,
                   jitter=jitter)


class FetchOutcome(enum.Enum):
    """How one fetch of one bootstrap URL ended (the metrics label values)."""

    OK = "ok"
    EMPTY = "empty"  # a valid document, but no address we could use
    HTTP_ERROR = "http_error"  # status != 200, too many redirects, compressed body
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    BAD_DOCUMENT = "bad_document"
    NETWORK_ERROR = "network_error"

    @property
    def useful(self) -> bool:
        """Only ``OK`` ends a URL's round and an outage."""
        return self is FetchOutcome.OK


@dataclass(frozen=True)
class FetchUrl:
    """Fetch ``url`` (it is marked in flight until :meth:`BootstrapPlan.handle_fetch_finished`)."""

    url: str


@dataclass(frozen=True)
class FallBackToPersisted:
    """Every URL's latest fetch failed: hand the persisted peers to the Dialer, then
    report it with :meth:`BootstrapPlan.handle_fallback_sent`."""


BootstrapCommand = FetchUrl | FallBackToPersisted
"""Every command a :class:`BootstrapPlan` returns."""


@dataclass(frozen=True)
class BootUrlStatus:
    """One bootstrap URL as the plan last saw it (what a one-shot probe reports)."""

    url: str
    fetches: int
    """Finished fetches of this URL (in-flight ones not counted)."""
    succeeded: bool
    """At least one fetch gave a usable address (:attr:`FetchOutcome.OK`)."""
    last_outcome: FetchOutcome | None
    """How the latest finished fetch ended (``None`` before the first one)."""
    last_error: str
    """Why the latest fetch failed, as the actor reported it ("" after a success)."""
    in_flight: bool


@dataclass(frozen=True)
class BootstrapStatistics:
    """Counters of one BootstrapFetcher (monotonic, for metrics)."""

    fetches: tuple[tuple[str, int], ...]
    """``(outcome value, count)`` for every :class:`FetchOutcome`, in declaration order."""
    addresses_found: int
    addresses_skipped: int
    fallbacks: int
    refetch_rounds: int
    in_flight: int
    failing_urls: int
    urls: tuple[BootUrlStatus, ...] = ()
    """Every configured URL, in configuration order."""

    def by_outcome(self) -> dict[str, int]:
        return dict(self.fetches)

    @property
    def total_fetches(self) -> int:
        return sum(count for _, count in self.fetches)


@dataclass
class _Url:
    wanted: bool = True
    in_flight: bool = False
    failures: int = 0
    not_before: float = 0.0
    last: FetchOutcome | None = None
    fetches: int = 0
    succeeded: bool = False
    error: str = ""


@dataclass
class _Counters:
    outcomes: Counter[FetchOutcome] = field(default_factory=Counter)
    found: int = 0
    skipped: int = 0
    fallbacks: int = 0
    refetch_rounds: int = 0


class BootstrapPlan:
    """Fetch scheduling for one node; see the module docstring."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        target_peers: int,
        rng: random.Random,
        backoff: Backoff = DEFAULT_FETCH_BACKOFF,
        refetch: Backoff | None = None,
    ) -> None:
        if target_peers < 1:
            raise ValueError(f"target_peers must be >= 1, got {target_peers}")
        self._urls: dict[str, _Url] = {url: _Url() for url in urls}
        if len(self._urls) != len(urls):
            raise ValueError("bootstrap URLs must not repeat")
        self.target_peers = target_peers
        self.backoff = backoff
        self.refetch = refetch if refetch is not None else refetch_backoff(30.0)
        self._rng = rng
        self._round_started: float | None = None
        self._refetches_since_target = 0
        self._refetch_interval = self.refetch.delay(0, self._rng)
        self._connected: int | None = None
        self._fell_back = False
        self._due_at: float | None = None
        self._counters = _Counters()

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self._urls)

    # --- time ------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[BootstrapCommand]:
        """Fetches to start now (starting a refetch round if one is due), each marked in
        flight, then :class:`FallBackToPersisted` while a fallback is due.

        The first call starts the first round (every URL wanted) at ``now``.
        """
        self._due_at = None
        if self._round_started is None:
            self._round_started = now
        refetch_at = self._refetch_at()
        if refetch_at is not None and now >= refetch_at:
            self._start_round(now)
        chosen = [url for url, state in self._urls.items()
                  if state.wanted and not state.in_flight and state.not_before <= now]
        for url in chosen:
            self._urls[url].in_flight = True
        commands: list[BootstrapCommand] = [FetchUrl(url) for url in chosen]
        if self.fallback_due():
            commands.append(FallBackToPersisted())
        return commands

    def poll_timeout(self) -> float | None:
        """When the next fetch or refetch round becomes due, or an input's ``now``
        (``None``: only an input can create work)."""
        times = [state.not_before for state in self._urls.values()
                 if state.wanted and not state.in_flight]
        refetch_at = self._refetch_at()
        if refetch_at is not None:
            times.append(refetch_at)
        if self._due_at is not None:
            times.append(self._due_at)
        return min(times, default=None)

    def fallback_due(self) -> bool:
        """True while in an outage that has not been answered with the peer store yet."""
        return not self._fell_back and self._in_outage()

    def retry_at(self, url: str) -> float:
        """When ``url`` may be fetched again (after a failure: the end of its backoff)."""
        return self._url(url, "retry_at").not_before

    # --- inputs ----------------------------------------------------------------

    def handle_fetch_finished(self, url: str, outcome: FetchOutcome, now: float,
                              reason: str = "") -> list[BootstrapCommand]:
        """Record the end of a fetch; after a failure :meth:`retry_at` tells when it is
        retried. ``reason`` (why a failed fetch failed) is kept for :meth:`statistics`.
        """
        state = self._url(url, "fetch finished")
        state.in_flight = False
        state.last = outcome
        state.fetches += 1
        state.error = "" if outcome.useful else (reason or outcome.value)
        self._counters.outcomes[outcome] += 1
        if outcome.useful:
            state.succeeded = True
            state.wanted, state.failures, state.not_before = False, 0, now
            self._fell_back = False
        else:
            delay = self.backoff.delay(state.failures, self._rng)
            state.failures += 1
            state.not_before = now + delay
        return self._input_at(now)

    def handle_connected_count(self, connected: int, now: float) -> list[BootstrapCommand]:
        """The node's current number of connected peers (from its snapshots)."""
        self._connected = connected
        if connected >= self.target_peers and self._refetches_since_target:
            self._refetches_since_target = 0
            self._refetch_interval = self.refetch.delay(0, self._rng)
        return self._input_at(now)

    def handle_fallback_sent(self, now: float) -> list[BootstrapCommand]:
        """The actor sent the persisted peers for the current outage."""
        if not self.fallback_due():
            raise LocalProtocolError(
                "bootstrap plan: fallback sent in state "
                f"{'fell back already' if self._fell_back else 'not in an outage'}")
        self._fell_back = True
        self._counters.fallbacks += 1
        return []

    def handle_addresses_selected(self, found: int, skipped: int,
                                  now: float) -> list[BootstrapCommand]:
        """Count the addresses a fetched document gave (used and skipped)."""
        self._counters.found += found
        self._counters.skipped += skipped
        return []

    def handle_driver_restart(self, now: float) -> list[BootstrapCommand]:
        """Forget fetches that died with an actor incarnation (they were never reported)."""
        for state in self._urls.values():
            state.in_flight = False
        return self._input_at(now)

    def statistics(self) -> BootstrapStatistics:
        counters = self._counters
        return BootstrapStatistics(
            fetches=tuple((o.value, counters.outcomes[o]) for o in FetchOutcome),
            addresses_found=counters.found,
            addresses_skipped=counters.skipped,
            fallbacks=counters.fallbacks,
            refetch_rounds=counters.refetch_rounds,
            in_flight=sum(1 for s in self._urls.values() if s.in_flight),
            failing_urls=sum(1 for s in self._urls.values() if s.failures > 0),
            urls=tuple(BootUrlStatus(url, s.fetches, s.succeeded, s.last, s.error, s.in_flight)
                       for url, s in self._urls.items()),
        )

    # --- helpers -----------------------------------------------------------------

    def _url(self, url: str, what: str) -> _Url:
        state = self._urls.get(url)
        if state is None:
            raise LocalProtocolError(f"bootstrap plan: {what} for URL {url!r} in state "
                                     "not configured")
        return state

    def _input_at(self, now: float) -> list[BootstrapCommand]:
        self._due_at = now if self._due_at is None else min(self._due_at, now)
        return []

    def _in_outage(self) -> bool:
        return all(state.last is not None and not state.last.useful
                   for state in self._urls.values())

    def _refetch_at(self) -> float | None:
        if (not self._urls or self._round_started is None or self._connected is None
                or self._connected >= self.target_peers):
            return None
        return self._round_started + self._refetch_interval

    def _start_round(self, now: float) -> None:
        self._round_started = now
        self._refetches_since_target += 1
        self._refetch_interval = self.refetch.delay(self._refetches_since_target, self._rng)
        self._counters.refetch_rounds += 1
        for state in self._urls.values():
            state.wanted = True


# --- address selection ---------------------------------------------------------------


class SkipKind(enum.Enum):
    """Why an entry of a ``/status`` document (or the peer store) was not used."""

    INVALID = "invalid"
    UNSUPPORTED_TRANSPORT = "unsupported transport"
    NOT_ROUTABLE = "not routable"
    OWN_PEER_ID = "own peer id"
    OVER_LIMIT = "over limit"


@dataclass(frozen=True)
class SkippedEntry:
    entry: str
    reason: str
    kind: SkipKind


@dataclass(frozen=True)
class AddressSelection:
    """The addresses to hand to the Dialer, and every entry that was skipped."""

    usable: tuple[WsAddress, ...]
    skipped: tuple[SkippedEntry, ...]

    def skipped_by_kind(self) -> dict[str, int]:
        """``{kind value: count}`` for the skipped entries (log aggregation)."""
        return dict(Counter(entry.kind.value for entry in self.skipped))


def _classify_rejection(reason: str) -> SkipKind:
    """Map a ``/status`` parser rejection reason to a :class:`SkipKind`."""
    lowered = reason.lower()
    if "over limit" in lowered:
        return SkipKind.OVER_LIMIT
    if "unsupported" in lowered or "not supported" in lowered:
        return SkipKind.UNSUPPORTED_TRANSPORT
    return SkipKind.INVALID


def select_addresses(
    addresses: Iterable[WsAddress],
    *,
    policy: AddressPolicy,
    local_peer: PeerId,
    rng: random.Random,
    rejected: Iterable[tuple[str, str]] = (),
) -> AddressSelection:
    """Every usable address, shuffled; ``rejected`` are the parser's ``(entry, reason)``."""
    skipped = [SkippedEntry(entry, reason, _classify_rejection(reason))
               for entry, reason in rejected]
    usable = _filter(addresses, policy, local_peer, skipped)
    rng.shuffle(usable)
    return AddressSelection(tuple(usable), tuple(skipped))


def fallback_addresses(
    records: Iterable[PeerRecord],
    *,
    policy: AddressPolicy,
    local_peer: PeerId,
    limit: int,
) -> AddressSelection:
    """Addresses of persisted peers, most recently seen first, at most ``limit``."""
    ordered = sorted(records, key=lambda rec: rec.last_seen, reverse=True)
    skipped: list[SkippedEntry] = []
    usable = _filter((a for rec in ordered for a in rec.addrs), policy, local_peer, skipped)
    if len(usable) > limit:
        skipped.append(SkippedEntry(f"{len(usable) - limit} more addresses",
                                    f"over limit of {limit} addresses", SkipKind.OVER_LIMIT))
    return AddressSelection(tuple(usable[:limit]), tuple(skipped))


def _filter(
    addresses: Iterable[WsAddress],
    policy: AddressPolicy,
    local_peer: PeerId,
    skipped: list[SkippedEntry],
) -> list[WsAddress]:
    usable: list[WsAddress] = []
    for addr in addresses:
        if addr.peer_id == local_peer:
            skipped.append(SkippedEntry(str(addr), "that is this node's own peer id",
                                        SkipKind.OWN_PEER_ID))
            continue
        reason = policy.reason_rejected(addr)
        if reason is not None:
            skipped.append(SkippedEntry(str(addr), reason, SkipKind.NOT_ROUTABLE))
            continue
        usable.append(addr)
    return usable
