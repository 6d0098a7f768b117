"""What ``autonat probe`` knows while it waits, and what it says about it.

Theory of operation
-------------------
``probe`` runs a temporary node and follows it until a verdict, a dead end or
``--timeout``. It reads only the node's snapshots and ``node.statistics()``
(per-URL fetch outcomes from the BootstrapFetcher, per-peer dial failures
from the Dialer, servers contacted and the small-network wait from the
AutonatProbe). :func:`probe_facts` distils them into one immutable
:class:`ProbeFacts`; every decision and every line the probe prints is a pure
function of those facts, tested without a network or a terminal:

* :func:`give_up_reason` - **nothing is left to try**, so the probe exits at
  once (``unknown``) instead of waiting out ``--timeout``. That is the case
  when no peer is connected, no dial and no fetch is in flight, every
  ``--boot-url`` has failed *definitively* and every ``--peer`` has failed
  *definitively*. A URL has failed
  definitively when its first fetch has ended without a usable address
  (connection refused, timeout, non-200, not a ``/status`` document, nothing
  usable in it) and no later fetch succeeded; a ``--peer`` when a dial to it
  has failed (refused, timeout, handshake failure, peer id mismatch) and it
  has not connected since. A long-running node retries both with backoff; a
  one-shot probe does not wait for that. A URL that worked once is never a
  dead end (its peers may be slow, and a refetch returns other peers).
* :func:`no_verdict_reason` - why the verdict is still ``unknown`` when the
  probe ends (no peer connected, no AutoNAT server among them, no candidate
  address, servers asked but silent, answers that do not make a verdict),
  followed by what failed on the way.
* :func:`mapping_grace_useful` - after a verdict the probe waits up to
  ``MAPPING_GRACE`` seconds for the NAT mapping, which needs two independent
  observers (distinct IPs, :mod:`protocols.autonat._nat_mapping`). The wait is spent
  only while another observation can still come: a connected peer has not
  finished Identify yet and the observers plus those peers span at least two
  distinct IPs, or a dial or bootstrap fetch is still in flight (it may bring
  a new peer). Otherwise no further observer can come and the wait is skipped.
* :func:`udp_grace_useful` - after that the probe waits up to ``UDP_GRACE``
  seconds for the UDP profile (``udp``), but only while a STUN server is
  known and a discovery run is in flight or about to start; a node that
  knows no STUN server reports ``unknown`` without waiting, so the TCP
  verdict never waits for UDP.
* :func:`hairpin_grace_useful` - last, the probe waits up to ``HAIRPIN_GRACE``
  seconds for ``hairpinning``, but only while a test of a confirmed external
  address is running or due and its result has not reached the snapshot.
  The test starts by itself as soon as AutoNAT confirms an external address
  that is not ours (``actors.node._hairpin``), so it runs concurrently with
  the mapping and UDP graces and is usually done by then; a NAT that drops
  the looped-back connection takes the test's whole timeout (5 s), longer
  than the grace, and the probe then reports ``null`` (unknown) rather than
  wait. Without a confirmed external address (no NAT, private, no verdict)
  there is nothing to wait for and ``hairpinning`` is ``null``.
* :func:`progress_lines` - on a terminal, one line per phase on stderr:
  fetching (which URLs / how many ``--peer``), connected N peers, probing N
  servers, waiting for more servers (the small-network wait and its length),
  verdict.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from protocols import (
    BootUrlStatus,
    HairpinStatistics,
    NodeConfig,
    NodeSnapshot,
    WsAddress,
    hairpin_target,
    own_hosts,
)
from protocols.stun import NatBehaviour, UdpDiscoveryStatistics

from ..node import DialFailure, Node, NodeStatistics, SmallNetworkWait

__all__ = [
    "MIN_OBSERVERS",
    "ProbeFacts",
    "ProgressPrinter",
    "ProgressState",
    "give_up_reason",
    "hairpin_grace_useful",
    "mapping_grace_useful",
    "no_verdict_reason",
    "probe_facts",
    "progress_lines",
    "progress_stream",
    "udp_grace_useful",
    "wait_for_hairpin",
    "wait_for_mapping",
    "wait_for_udp",
    "wait_for_verdict",
]

MIN_OBSERVERS: Final = 2
"""Independent observers the NAT mapping classification needs (its default)."""
UDP_NEXT_RUN_SLACK: Final = 2.0
"""A discovery run due within this many seconds counts as about to start."""
MAX_DETAILS: Final = 4
"""Failures named in a reason, per kind (URLs, dials)."""


@dataclass(frozen=True)
class ProbeFacts:
    """Everything the probe decides on, from one snapshot and one statistics reading."""

    boot_urls: tuple[BootUrlStatus, ...] = ()
    given_peers: tuple[WsAddress, ...] = ()
    """The ``--peer`` addresses (each ending in ``/p2p/<id>``)."""
    dial_failures: tuple[DialFailure, ...] = ()
    """Peers whose latest dial failed and that have not connected since."""
    connected: int = 0
    dialing: int = 0
    fetching: int = 0
    servers_available: int = 0
    servers_contacted: int = 0
    servers_answered: int = 0
    candidates: int = 0
    small_network_wait: SmallNetworkWait | None = None
    nat_status: str = "unknown"
    nat_mapping: str = "unknown"
    probe_outcomes: tuple[tuple[str, int], ...] = ()
    observers: frozenset[str] = frozenset()
    """Independence keys (IP, else peer id) of the peers that reported our address."""
    pending_observers: frozenset[str] = frozenset()
    """Independence keys of connected peers that have not finished Identify yet."""


def _independence_key(addr: WsAddress, peer: object) -> str:
    ip = addr.ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip) if ip is not None else f"peer {peer}"


def probe_facts(config: NodeConfig, snap: NodeSnapshot, stats: NodeStatistics) -> ProbeFacts:
    """Distil what the probe needs from the node's snapshot and statistics."""
    observed_by = {obs.observer for obs in snap.observed_addrs}
    pending = set()
    for conn in snap.connections:
        record = snap.peer(conn.peer_id)
        identified = record is not None and bool(record.agent_version or record.protocols)
        if conn.peer_id not in observed_by and not identified:
            pending.add(_independence_key(conn.remote_addr, conn.peer_id))
    return ProbeFacts(
        boot_urls=stats.bootstrap.urls,
        given_peers=config.peer_addrs,
        dial_failures=stats.dialer.failing,
        connected=len(snap.connected_peers),
        dialing=stats.dialer.dialing,
        fetching=stats.bootstrap.in_flight,
        servers_available=stats.servers_available,
        servers_contacted=len(stats.servers_contacted),
        servers_answered=len(stats.servers_answered),
        candidates=stats.probe_candidates,
        small_network_wait=stats.small_network_wait,
        nat_status=snap.nat_status,
        nat_mapping=snap.nat_mapping,
        probe_outcomes=tuple(sorted(stats.probes.items())),
        observers=frozenset(_independence_key(obs.observer_addr, obs.observer)
                            for obs in snap.observed_addrs),
        pending_observers=frozenset(pending),
    )


# --- reasons ------------------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe_dial_failure(failure: DialFailure) -> str:
    if failure.peer_id_mismatch:
        detail = failure.reason.removeprefix("handshake failed: ")
        return f"peer id mismatch at {failure.addr}: {detail}"
    return f"{failure.addr}: {failure.reason}"


def _url_failure(url: BootUrlStatus) -> str:
    return f"{url.url}: {url.last_error or 'failed'}"


def _given_failures(facts: ProbeFacts) -> list[DialFailure] | None:
    """The failure of every ``--peer`` (one per peer id), or None if one has not failed."""
    failing = {failure.peer: failure for failure in facts.dial_failures}
    result: dict[object, DialFailure] = {}
    for addr in facts.given_peers:
        failure = failing.get(addr.peer_id) if addr.peer_id is not None else None
        if failure is None:
            return None
        result[failure.peer] = failure
    return list(result.values())


def _ordered(failures: Iterable[DialFailure]) -> list[DialFailure]:
    """Peer id mismatches first (they point at a configuration error), then the rest."""
    return sorted(failures, key=lambda f: not f.peer_id_mismatch)


def give_up_reason(facts: ProbeFacts) -> str | None:
    """Why nothing is left to try (exit now), or None; see the module docstring."""
    if facts.connected or facts.dialing or facts.fetching:
        return None
    if not (facts.boot_urls or facts.given_peers):
        return None
    if not all(url.fetches and not url.succeeded for url in facts.boot_urls):
        return None
    given = _given_failures(facts)
    if given is None:
        return None
    parts = []
    if facts.boot_urls:
        parts.append("every boot URL failed: "
                     + "; ".join(_url_failure(url) for url in facts.boot_urls))
    if given:
        parts.append(("every --peer dial failed: " if len(given) > 1 else "--peer dial failed: ")
                     + "; ".join(describe_dial_failure(f) for f in _ordered(given)))
    return "; ".join(parts)


def _failure_details(facts: ProbeFacts) -> list[str]:
    details = [_url_failure(url) for url in facts.boot_urls
               if url.fetches and not url.succeeded][:MAX_DETAILS]
    failures = _ordered(facts.dial_failures)
    details += [describe_dial_failure(f) for f in failures[:MAX_DETAILS]]
    if len(failures) > MAX_DETAILS:
        details.append(f"{len(failures) - MAX_DETAILS} more failed dials")
    return details


def no_verdict_reason(facts: ProbeFacts) -> str:
    """Why the verdict is still ``unknown`` (at the timeout), and what failed on the way."""
    if facts.servers_answered:
        outcomes = ", ".join(f"{name} {count}" for name, count in facts.probe_outcomes)
        reason = (f"no verdict: {_plural(facts.servers_answered, 'AutoNAT server')} answered"
                  + (f" ({outcomes})" if outcomes else ""))
        wait = facts.small_network_wait
        if wait is not None:
            reason += (f"; still waiting for more servers (a verdict needs {wait.threshold}, "
                       f"or {wait.wait_s:g} s without more)")
    elif facts.servers_contacted:
        reason = (f"no AutoNAT server answered ({_plural(facts.servers_contacted, 'server')} "
                  "asked)")
    elif facts.servers_available and not facts.candidates:
        reason = ("no AutoNAT server asked: no candidate address of ours to probe (no routable "
                  "listen or observed address; see --public-network, --allow-loopback)")
    elif facts.servers_available:
        reason = "no AutoNAT server asked yet"
    elif facts.connected:
        reason = (f"no AutoNAT server reached: {_plural(facts.connected, 'peer')} connected, "
                  "none serves AutoNAT dial requests")
    else:
        reason = "no AutoNAT server reached: no peer connected"
    details = _failure_details(facts)
    return "; ".join([reason, *details])


# --- the NAT mapping grace ------------------------------------------------------------


def mapping_grace_useful(facts: ProbeFacts) -> bool:
    """Whether waiting longer can still make ``nat_mapping`` known (module docstring)."""
    if facts.nat_mapping != "unknown":
        return False
    if facts.dialing or facts.fetching:
        return True
    keys = facts.observers | facts.pending_observers
    return bool(facts.pending_observers) and len(keys) >= MIN_OBSERVERS


# --- progress lines -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressState:
    """What the progress lines have said so far."""

    connected: int = 0
    contacted: int = 0
    waiting_until: float | None = None
    nat_status: str = "unknown"


def _start_line(facts: ProbeFacts) -> str:
    parts = []
    if facts.boot_urls:
        parts.append("fetching peers from " + ", ".join(url.url for url in facts.boot_urls))
    if facts.given_peers:
        parts.append(f"dialing {_plural(len(facts.given_peers), 'peer')} given with --peer")
    return "probe: " + ("; ".join(parts) or "starting")


def progress_lines(previous: ProgressState | None,
                   facts: ProbeFacts) -> tuple[ProgressState, list[str]]:
    """The lines to print for what changed since ``previous`` (None: nothing printed yet)."""
    lines = [] if previous is not None else [_start_line(facts)]
    before = previous if previous is not None else ProgressState()
    if facts.connected and facts.connected != before.connected:
        lines.append(f"probe: connected to {_plural(facts.connected, 'peer')}")
    if facts.servers_contacted and facts.servers_contacted != before.contacted:
        lines.append(f"probe: probing: asked {_plural(facts.servers_contacted, 'AutoNAT server')}"
                     " to dial us back")
    wait = facts.small_network_wait
    if wait is not None and wait.until != before.waiting_until:
        lines.append(f"probe: only {_plural(wait.servers, 'AutoNAT server')} of the "
                     f"{wait.threshold} a verdict needs: waiting {wait.wait_s:g} s for more")
    if facts.nat_status != "unknown" and facts.nat_status != before.nat_status:
        lines.append(f"probe: verdict {facts.nat_status}")
    state = ProgressState(connected=facts.connected, contacted=facts.servers_contacted,
                          waiting_until=None if wait is None else wait.until,
                          nat_status=facts.nat_status)
    return state, lines


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


class TtyStream(TextSink, Protocol):
    def isatty(self) -> bool: ...


def progress_stream(stream: TtyStream) -> TextSink | None:
    """Where progress goes: ``stream`` when it is a terminal, else nowhere."""
    try:
        return stream if stream.isatty() else None
    except (OSError, ValueError):  # closed or detached
        return None


class ProgressPrinter:
    """Prints :func:`progress_lines` (and notes) to a stream; a no-op without one."""

    def __init__(self, stream: TextSink | None) -> None:
        self._stream = stream
        self._state: ProgressState | None = None

    def update(self, facts: ProbeFacts) -> None:
        self._state, lines = progress_lines(self._state, facts)
        for line in lines:
            self.note(line)

    def note(self, line: str) -> None:
        if self._stream is not None:
            self._stream.write(line + "\n")
            self._stream.flush()


# --- following the node ---------------------------------------------------------------------


def _facts(node: Node, snap: NodeSnapshot | None = None) -> ProbeFacts:
    return probe_facts(node.config, snap if snap is not None else node.snapshot(),
                       node.statistics())


async def wait_for_verdict(node: Node, progress: ProgressPrinter) -> str | None:
    """Wait for a verdict (returns None) or a dead end (returns why); cancel for a timeout.

    Reads the node again whenever it reports activity (:attr:`Node.activity`), never on a
    timer.
    """
    while True:
        seen = node.activity.count
        snap = node.snapshot()
        facts = _facts(node, snap)
        progress.update(facts)
        if snap.nat_status != "unknown":
            return None
        reason = give_up_reason(facts)
        if reason is not None:
            return reason
        await node.activity.wait_past(seen)


async def wait_for_mapping(node: Node, progress: ProgressPrinter, grace: float) -> None:
    """Up to ``grace`` s for ``nat_mapping``, but only while an observer can still come."""
    announced = False
    with trio.move_on_after(grace):
        while True:
            seen = node.activity.count
            snap = node.snapshot()
            facts = _facts(node, snap)
            progress.update(facts)
            if not mapping_grace_useful(facts):
                return
            if not announced:
                progress.note(f"probe: waiting up to {grace:g} s for a second observer to "
                              "classify the NAT mapping")
                announced = True
            await node.activity.wait_past(seen)


# --- the UDP profile grace ---------------------------------------------------------------------


def udp_grace_useful(snap: NodeSnapshot, udp: UdpDiscoveryStatistics | None,
                     now: float) -> bool:
    """Whether waiting can still make ``udp`` known: a STUN server is known and a run is in
    flight, has not happened yet, or is due within :data:`UDP_NEXT_RUN_SLACK` s - and what
    is missing can be measured at all: once the mapping is known, only a server with an
    RFC 5780 alternate can tell the filtering, or the mapping behind a NAT, so once a run
    is done without one, more runs cannot add anything."""
    unknown = NatBehaviour.UNKNOWN
    if udp is None or unknown not in (snap.udp.mapping, snap.udp.filtering):
        return False
    if not udp.alternates and (udp.runs or snap.udp.mapping is not unknown):
        return False
    if udp.running:
        return True
    if not udp.servers:
        return False
    return udp.runs == 0 or (udp.next_run_at is not None
                             and udp.next_run_at <= now + UDP_NEXT_RUN_SLACK)


async def wait_for_udp(node: Node, progress: ProgressPrinter, grace: float) -> None:
    """Up to ``grace`` s for the UDP profile, but only while :func:`udp_grace_useful`."""
    announced = False
    with trio.move_on_after(grace):
        while True:
            seen = node.activity.count
            if not udp_grace_useful(node.snapshot(), node.statistics().udp_discovery,
                                    trio.current_time()):
                return
            if not announced:
                progress.note(f"probe: waiting up to {grace:g} s for the UDP profile (STUN)")
                announced = True
            with trio.move_on_after(UDP_NEXT_RUN_SLACK):  # a run due soon starts by time
                await node.activity.wait_past(seen)


# --- the hairpinning grace ---------------------------------------------------------------------


def hairpin_grace_useful(snap: NodeSnapshot, hairpin: HairpinStatistics | None) -> bool:
    """Whether waiting can still make ``hairpinning`` known: the snapshot has a confirmed
    external address that is under test, due for one, or not yet seen by the tester, or
    its result has not reached the snapshot yet."""
    if hairpin is None:
        return False
    own = own_hosts(snap.listen_addrs, snap.local_ips)
    target = hairpin_target(snap.reachable_addrs, own) if own else hairpin.target
    if target is None:
        return False
    if target != hairpin.target:
        return True  # the tester has not seen this snapshot yet: its test is about to start
    return hairpin.pending or snap.hairpinning is not hairpin.hairpinning


async def wait_for_hairpin(node: Node, progress: ProgressPrinter, grace: float) -> None:
    """Up to ``grace`` s for ``hairpinning``, but only while :func:`hairpin_grace_useful`."""
    announced = False
    with trio.move_on_after(grace):
        while True:
            seen = node.activity.count
            if not hairpin_grace_useful(node.snapshot(), node.statistics().hairpin):
                return
            if not announced:
                progress.note(f"probe: waiting up to {grace:g} s for the hairpinning test")
                announced = True
            await node.activity.wait_past(seen)
