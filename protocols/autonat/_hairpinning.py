"""Hairpinning: can the node reach itself at its own confirmed external address? Sans-io.

Theory of operation
-------------------
A NAT *hairpins* (RFC 4787 section 6, "hairpinning") when a packet from
inside, sent to one of the NAT's own external mappings, is translated and
looped back inside, to the host the mapping belongs to. It matters to peers
on the node's own LAN: the node advertises its external address, and without
hairpinning a neighbour that dials that address reaches nothing (it must use
the LAN address instead). Many home routers do not hairpin; port forwards
often work only from the WAN side.

**The test.** The node dials its own confirmed external address once, from a
fresh ephemeral port (not the listen port: a connection from the listen port
to the mapping of the listen port could not be told from the mapping
itself). The connection's handshake proves who answered
(:class:`~protocols.SelfConnection`: the far end signed our nonce with our own
key, so it is our own listener), and the connection is closed at once - a
connection to ourselves is never a peer connection. Outcomes
(:class:`HairpinOutcome`):

* ``SELF`` - our own listener answered: ``hairpinning`` is **true**;
* ``FAILED`` - refused, reset, no answer within the timeout, or a handshake
  that failed: **false** (a NAT without hairpinning drops the packet, or
  delivers it to the router itself, which refuses it);
* ``OTHER_PEER`` - someone else answered at our confirmed address (another
  peer id): **false**, and the actor warns (a second NAT in the way, or an
  address that moved to another host);
* ``LOCAL_ERROR`` - the dial failed here (no file descriptors, no route):
  not evidence; retried after the backoff, at most :data:`MAX_LOCAL_RETRIES`
  times per address, ``hairpinning`` stays **null** meanwhile.

**When.** The target is the first (by string order) of the snapshot's
``reachable_addrs`` - addresses AutoNAT *confirmed* with dial-backs - whose
IP is not one of our own: neither a listen address's IP nor a local IP of
one of our live connections (``local_ips``). Such an address exists only
behind a NAT that forwards or maps the listen port (a port forward, a full
cone NAT). Without one the answer is **null**: no confirmed address (a
private node, or no verdict yet - an unconfirmed observed address is never
dialed, whatever the mapping), or only addresses of our own (no NAT on the
path: the question does not apply). While the node has no live connection
its local IPs are unknown, so nothing is decided then (what was decided
stays).

**Bounded.** One test at a time, one per target: a new test only when the
target changes (the published value goes back to null until then - a
result for another address does not carry over), and never sooner than a
gap after the previous test started. The gap starts at :data:`MIN_GAP` and
doubles up to :data:`MAX_GAP` while tests follow each other within
``MAX_GAP`` (a flapping address costs one test per ``MAX_GAP`` at most); a
quiet ``MAX_GAP`` resets it. The first test runs at once, so ``autonat
probe`` can include its result (it waits a short grace for it, see
``actors.surfaces._cli_probe``). A result for a target that is no longer
current is dropped.

The plan follows the sans-io contract: inputs
:meth:`HairpinPlan.handle_addresses`, :meth:`HairpinPlan.handle_test_finished`,
:meth:`HairpinPlan.handle_driver_restart`; commands from
:meth:`HairpinPlan.handle_timeout`: :class:`RunHairpinTest` and
:class:`PublishHairpinning`. The node model takes
:class:`HairpinningMeasured` and shows ``hairpinning`` in the snapshot.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..core import LocalProtocolError, WsAddress

__all__ = [
    "HAIRPIN_TIMEOUT",
    "HairpinOutcome",
    "HairpinPlan",
    "HairpinStatistics",
    "HairpinningMeasured",
    "PublishHairpinning",
    "RunHairpinTest",
    "hairpin_target",
    "own_hosts",
]

HAIRPIN_TIMEOUT: Final = 5.0
"""Seconds one test may take (TCP connect, WebSocket upgrade, handshake)."""
MIN_GAP: Final = 5.0
"""Seconds between the starts of two tests, at least."""
MAX_GAP: Final = 600.0
"""The gap's cap, and the quiet period that resets it."""
MAX_LOCAL_RETRIES: Final = 3
"""Tests of one target that failed here (not evidence) before the plan gives up on it."""


class HairpinOutcome(enum.Enum):
    """What one dial to our own external address showed (see the module docstring)."""

    SELF = "self"
    FAILED = "failed"
    OTHER_PEER = "other-peer"
    LOCAL_ERROR = "local-error"

    @property
    def hairpinning(self) -> bool | None:
        """The answer this outcome gives (None: not evidence)."""
        if self is HairpinOutcome.SELF:
            return True
        if self is HairpinOutcome.LOCAL_ERROR:
            return None
        return False


@dataclass(frozen=True)
class RunHairpinTest:
    """Command: dial ``addr`` (ours, external) once, within ``timeout`` seconds."""

    addr: WsAddress
    timeout: float = HAIRPIN_TIMEOUT


@dataclass(frozen=True)
class PublishHairpinning:
    """Command: tell the node its hairpinning (None: unknown or not applicable)."""

    hairpinning: bool | None
    addr: WsAddress | None
    """The address tested (None with ``hairpinning`` None when there is nothing to test)."""
    outcome: HairpinOutcome | None = None
    detail: str = ""


@dataclass(frozen=True)
class HairpinningMeasured:
    """Node event: ``hairpinning`` (true, false, None) at our external address ``addr``."""

    hairpinning: bool | None
    addr: WsAddress | None = None

    def __post_init__(self) -> None:
        if not (self.hairpinning is None or isinstance(self.hairpinning, bool)):
            raise LocalProtocolError(f"hairpinning must be a bool or None, "
                                     f"got {self.hairpinning!r}")
        if self.hairpinning is not None and self.addr is None:
            raise LocalProtocolError("a hairpinning result needs the address tested")


@dataclass(frozen=True)
class HairpinStatistics:
    target: WsAddress | None
    """The confirmed external address to test (None: nothing to test)."""
    hairpinning: bool | None
    """The value published last."""
    running: bool
    tests: int
    """Tests finished (results for a stale target included)."""
    outcomes: tuple[tuple[str, int], ...] = ()
    next_test_at: float | None = None
    publishing: bool = False
    """A new value is about to be published."""

    @property
    def pending(self) -> bool:
        """A target has no result yet, and a test of it runs or will run, or its result is
        about to be published."""
        return self.target is not None and (self.publishing or (self.hairpinning is None and (
            self.running or self.next_test_at is not None)))


def _host_key(addr: WsAddress) -> str:
    """The host, compared as an IP where it is one (IPv4-mapped IPv6 as IPv4)."""
    ip = addr.ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip) if ip is not None else addr.host.lower()


def own_hosts(listen: Iterable[WsAddress], local_ips: Iterable[WsAddress]) -> frozenset[str]:
    """Our own hosts: the local IPs of our connections and our listen addresses' hosts
    (empty when there is no live connection: then they are not known)."""
    local = [_host_key(addr) for addr in local_ips]
    return frozenset((*local, *map(_host_key, listen))) if local else frozenset()


def hairpin_target(reachable: Iterable[WsAddress], own: frozenset[str]) -> WsAddress | None:
    """The confirmed external address to dial: the first of ``reachable`` (by string
    order) whose host is not one of ``own`` (:func:`own_hosts`; None: no NAT, or nothing
    confirmed)."""
    external = sorted((a.with_peer_id(None) for a in reachable if _host_key(a) not in own),
                      key=str)
    return external[0] if external else None


class HairpinPlan:
    """See the module docstring."""

    def __init__(self, *, timeout: float = HAIRPIN_TIMEOUT, min_gap: float = MIN_GAP,
                 max_gap: float = MAX_GAP) -> None:
        if not (timeout > 0 and min_gap > 0 and max_gap >= min_gap):
            raise LocalProtocolError("HairpinPlan: timeout and min_gap must be > 0, "
                                     "max_gap >= min_gap")
        self._timeout = timeout
        self._min_gap = min_gap
        self._max_gap = max_gap
        self._gap = min_gap
        self._target: WsAddress | None = None
        self._tested: WsAddress | None = None
        """The target a test was started for (or given up on); None: not tested yet."""
        self._local_failures = 0
        self._running: WsAddress | None = None
        self._last_start: float | None = None
        self._earliest = 0.0  # no test starts before this time
        self._published: bool | None = None
        self._published_for: WsAddress | None = None
        self._pending: PublishHairpinning | None = None
        self._tests = 0
        self._outcomes: dict[str, int] = {}

    @property
    def hairpinning(self) -> bool | None:
        return self._published

    # --- inputs ------------------------------------------------------------------------

    def handle_addresses(self, reachable: Iterable[WsAddress], listen: Iterable[WsAddress],
                         local_ips: Iterable[WsAddress], now: float) -> None:
        """The snapshot's ``reachable_addrs``, ``listen_addrs`` and ``local_ips``."""
        own = own_hosts(listen, local_ips)
        if not own:
            return  # our own IPs are unknown without a live connection: decide nothing
        target = hairpin_target(reachable, own)
        if target == self._target:
            return
        self._target = target
        self._tested = None
        self._local_failures = 0
        if self._published is not None or self._published_for is not None:
            self._queue(PublishHairpinning(None, None))

    def handle_test_finished(self, test: RunHairpinTest, outcome: HairpinOutcome, now: float,
                             detail: str = "") -> None:
        if self._running != test.addr:
            raise LocalProtocolError(f"HairpinPlan: a result for {test.addr}, but the test "
                                     f"in flight is of {self._running}")
        self._running = None
        self._tests += 1
        self._outcomes[outcome.value] = self._outcomes.get(outcome.value, 0) + 1
        if test.addr != self._target:
            return  # the address changed meanwhile: its test is due anew
        if outcome is HairpinOutcome.LOCAL_ERROR:
            self._local_failures += 1
            if self._local_failures < MAX_LOCAL_RETRIES:
                self._tested = None  # not evidence: try again after the gap
            return
        self._queue(PublishHairpinning(outcome.hairpinning, test.addr, outcome, detail))

    def handle_driver_restart(self) -> None:
        """The incarnation that ran the test is gone: its target is due again (after the gap)."""
        if self._running is not None and self._running == self._target:
            self._tested = None
        self._running = None

    # --- the contract ------------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        if self._pending is not None:
            return 0.0
        if not self._due():
            return None
        return self._earliest

    def handle_timeout(self, now: float) -> list[RunHairpinTest | PublishHairpinning]:
        commands: list[RunHairpinTest | PublishHairpinning] = []
        if self._pending is not None:
            commands.append(self._pending)
            self._published = self._pending.hairpinning
            self._published_for = self._pending.addr
            self._pending = None
        if self._due() and self._earliest <= now:
            assert self._target is not None
            self._start(self._target, now)
            commands.append(RunHairpinTest(self._target, self._timeout))
        return commands

    def statistics(self) -> HairpinStatistics:
        return HairpinStatistics(
            target=self._target, hairpinning=self._published, running=self._running is not None,
            tests=self._tests, outcomes=tuple(sorted(self._outcomes.items())),
            next_test_at=self._earliest if self._due() else None,
            publishing=self._pending is not None)

    # --- helpers ------------------------------------------------------------------------

    def _due(self) -> bool:
        return self._target is not None and self._tested is None and self._running is None

    def _start(self, target: WsAddress, now: float) -> None:
        if self._last_start is not None and now - self._last_start < self._max_gap:
            self._gap = min(self._gap * 2, self._max_gap)
        else:
            self._gap = self._min_gap
        self._last_start = now
        self._earliest = now + self._gap
        self._running = self._tested = target

    def _queue(self, publish: PublishHairpinning) -> None:
        self._pending = publish
