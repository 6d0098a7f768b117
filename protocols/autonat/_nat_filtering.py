"""NAT filtering (TCP): what our NAT lets in, from AutoNAT double dial-backs.

The rules: (docs/architecture.md, "AutoNAT client rules").

Theory of operation
-------------------
A server with a second address answers one dial request with two dial-backs
to the requester's own observed IP, both carrying the request's nonce
(``DialResponse.dial_backs``): one from the IP the client contacted on a
fresh ephemeral port (``CONTACTED_IP``), one from its second address, an IP
the client never contacted (``OTHER_IP``). A server without one makes only
the ``CONTACTED_IP`` dial-back. The client's dial-back receiver records the
source IP of every inbound connection that carried the nonce, so per probe
we know which of the two arrived (:class:`FilteringEvidence`). The filtering
names are RFC 4787's.

One probe's vote (:func:`filtering_vote`), first rule that applies:

1. the server says a dial-back went through (``OK``) and it did not arrive:
   a lie, no vote (the reachability machine distrusts the server);
2. the dial-back from ``OTHER_IP`` arrived -> ``endpoint-independent``: a
   host we never sent anything to got in (our own observation);
3. the ``CONTACTED_IP`` one arrived and the server says the ``OTHER_IP``
   one failed to connect (``E_DIAL_ERROR``) -> ``address-dependent``;
4. the ``CONTACTED_IP`` one did not arrive, the server says it failed to
   connect, and the server itself observed us at exactly the probed address
   (``mapped``, :func:`seen_at`: the server's own Identify observation of
   us is that IP and port, so our NAT holds a live mapping from that
   address to the server) ->
   ``address-and-port-dependent``: a packet from the very IP that mapping
   talks to, to the mapped port, was dropped because it came from another
   port;
5. anything else: no vote. In particular ``CONTACTED_IP`` arriving from a
   server without a second address tells ``endpoint-independent`` from
   ``address-dependent`` not apart; refusals, timeouts, ``E_DIAL_BACK_ERROR``
   (a connection got through) and ``E_INTERNAL_ERROR`` say nothing about the
   filter.

Rule 4 is the honest form of "neither arrived". A NAT without a mapping for
the probed port (the common masquerade with random ports, or a probed
address nobody observed) drops both dial-backs too, and so does a host that
is simply not listening there: that is unreachability, not filtering. Only
when the server vouches for a mapping to itself at the probed address (its
Identify observation) does a dropped same-IP dial-back measure the filter.
Without a NAT (``nat_mapping`` ``none``) the same rule describes a stateful
firewall, which filters address-and-port-dependently.

Observation beats a claim: ``threshold`` rule-2 votes (a dial-back from an
IP we never contacted arrived - no address-dependent filter lets that in)
make the address ``endpoint-independent`` however many servers' words say
otherwise, as for reachability (:mod:`._reachability`, "Evidence beats a
claim"); found with the simulator's lying servers, whose claimed failures
tied honest observations and kept a first, wrong filtering. Otherwise:

Votes count like reachability's (:class:`NatFilteringVotes` reuses its
threshold in force, evidence lifetime, distrusted servers and
:func:`~protocols.autonat._votes.vote_verdict`): per candidate
address the latest vote of each distinct server, a verdict once
``threshold`` servers agree and outnumber every other value, hysteresis
otherwise, ``unknown`` once all votes expired. Votes from distrusted servers
are ignored, and a server found lying loses its votes that rest on its word
(rules 3 and 4; a rule-2 vote is our own observation and stays). The overall
``nat_filtering`` is the verdict the candidate addresses with one agree on,
``unknown`` when none has one or they disagree.

Which arrival is reachability evidence (:func:`dial_back_proves_reachable`):
the dial-back the server's ``dial_status`` stands for - from ``OTHER_IP``
when the server reports such an attempt, else any (the single dial-back of a
server without a second address, or an older server that reports nothing).
So a client behind an address-dependent NAT, which lets the same-IP
dial-back in, is still judged by the second address: not reachable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..core import LocalProtocolError, PeerId, WsAddress, plain_ip
from ._autonat_events import NatFiltering, ProbeOutcome, ProbeResult
from ._autonat_msg import DialBackSource, DialResponse, DialStatus
from ._reachability import Reachability
from ._votes import vote_verdict

__all__ = [
    "FilteringEvidence",
    "NatFiltering",
    "NatFilteringChanged",
    "NatFilteringVotes",
    "dial_back_proves_reachable",
    "filtering_vote",
    "seen_at",
]

_CLAIM_BASED: tuple[NatFiltering, ...] = ("address-dependent", "address-and-port-dependent")


@dataclass(frozen=True)
class FilteringEvidence:
    """What one probe showed about filtering: arrivals we saw, attempts the server reported.

    ``arrived_contacted``: our nonce arrived on an inbound connection from the
    IP our request went to; ``arrived_other``: from another IP.
    ``contacted_attempt`` / ``other_attempt``: the server's report of its
    ``CONTACTED_IP`` / ``OTHER_IP`` dial-back (``None``: not reported).
    """

    arrived_contacted: bool = False
    arrived_other: bool = False
    contacted_attempt: DialStatus | None = None
    other_attempt: DialStatus | None = None

    def __post_init__(self) -> None:
        for name in ("arrived_contacted", "arrived_other"):
            if not isinstance(getattr(self, name), bool):
                raise LocalProtocolError(f"{name} must be a bool")
        for name in ("contacted_attempt", "other_attempt"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, DialStatus(value))

    @classmethod
    def from_probe(cls, response: DialResponse | None, *, arrived_contacted: bool,
                   arrived_other: bool) -> FilteringEvidence:
        """The evidence of one probe: our arrivals and the server's ``dial_backs``."""
        return cls(arrived_contacted, arrived_other,
                   None if response is None else response.attempt(DialBackSource.CONTACTED_IP),
                   None if response is None else response.attempt(DialBackSource.OTHER_IP))

    @property
    def lied(self) -> bool:
        """The server reported a dial-back as ``OK`` that never arrived."""
        return ((self.contacted_attempt == DialStatus.OK and not self.arrived_contacted)
                or (self.other_attempt == DialStatus.OK and not self.arrived_other))


def filtering_vote(evidence: FilteringEvidence, *, mapped: bool) -> NatFiltering | None:
    """One probe's vote (rules 1-5 of the module docstring), or None."""
    if evidence.lied:
        return None
    if evidence.arrived_other:
        return "endpoint-independent"
    if evidence.arrived_contacted:
        return "address-dependent" if evidence.other_attempt == DialStatus.E_DIAL_ERROR else None
    if evidence.contacted_attempt == DialStatus.E_DIAL_ERROR and mapped:
        return "address-and-port-dependent"
    return None


def seen_at(observed: WsAddress | None, addr: WsAddress) -> bool:
    """``mapped`` of rule 4: the server's own observation of us is exactly ``addr``'s IP
    and port - a live mapping to the server there, not a translation of it to our
    listen port (which a symmetric NAT does not map)."""
    if observed is None or observed.ip is None or addr.ip is None:
        return False
    return plain_ip(observed.ip) == plain_ip(addr.ip) and observed.port == addr.port


def dial_back_proves_reachable(evidence: FilteringEvidence, response: DialResponse | None) -> bool:
    """Does an arrival count as the reachability dial-back? (module docstring, last part)."""
    if evidence.arrived_other:
        return True
    if not evidence.arrived_contacted:
        return False
    return response is None or response.attempt(DialBackSource.OTHER_IP) is None


@dataclass(frozen=True)
class NatFilteringChanged:
    """The overall ``nat_filtering`` changed from ``old`` to ``new`` at ``at``."""

    old: NatFiltering
    new: NatFiltering
    at: float


@dataclass
class _Vote:
    value: NatFiltering
    at: float


class NatFilteringVotes:
    """Per-address filtering votes and the overall verdict; see the module docstring.

    Reads ``reachability`` (threshold in force, evidence lifetime, bounds,
    distrusted servers) and never changes it. Sans-io: every input takes ``now``.
    """

    def __init__(self, reachability: Reachability) -> None:
        self._reach = reachability
        self._votes: dict[WsAddress, dict[PeerId, _Vote]] = {}
        self._verdicts: dict[WsAddress, NatFiltering] = {}
        self._overall: NatFiltering = "unknown"
        self._threshold = reachability.threshold
        self._next_expiry: float | None = None

    @property
    def nat_filtering(self) -> NatFiltering:
        return self._overall

    def verdict(self, addr: WsAddress) -> NatFiltering:
        return self._verdicts.get(addr.with_peer_id(None), "unknown")

    def votes(self, addr: WsAddress) -> dict[PeerId, NatFiltering]:
        """The live votes on ``addr`` by server (for tests and diagnostics)."""
        return {peer: v.value for peer, v in self._votes.get(addr.with_peer_id(None), {}).items()}

    def handle_probe_result(self, result: ProbeResult, evidence: FilteringEvidence | None, *,
                            mapped: bool, now: float) -> list[NatFilteringChanged]:
        """Fold one probe in (``mapped``: the server observed us at ``result.addr``)."""
        addr, server = result.addr.with_peer_id(None), result.server
        if (evidence is not None and evidence.lied) or result.outcome is ProbeOutcome.LIED:
            for votes in self._votes.values():  # its word is worth nothing now
                if server in votes and votes[server].value in _CLAIM_BASED:
                    del votes[server]
        vote = None if evidence is None else filtering_vote(evidence, mapped=mapped)
        trusted = server not in self._reach.distrusted_servers(now)
        fresh = now - result.at < self._reach.config.evidence_ttl
        if vote is not None and trusted and fresh and addr in set(self._reach.candidates):
            votes = self._votes.setdefault(addr, {})
            votes.pop(server, None)  # re-insert: dict order is recency
            votes[server] = _Vote(vote, min(result.at, now))
            while len(votes) > self._reach.config.max_servers_per_addr:
                del votes[next(iter(votes))]
        return self._evaluate(now)

    def handle_candidates(self, addrs: Iterable[WsAddress], now: float
                          ) -> list[NatFilteringChanged]:
        """Forget addresses that are no longer candidates."""
        keep = {addr.with_peer_id(None) for addr in addrs}
        for addr in [a for a in self._votes if a not in keep]:
            del self._votes[addr]
        return self._evaluate(now)

    def poll_timeout(self) -> float | None:
        """When the oldest vote expires, or None (kept by every evaluation: O(1) here)."""
        return self._next_expiry

    def handle_timeout(self, now: float) -> list[NatFilteringChanged]:
        """Expire old votes; follow a change of the threshold in force."""
        return self._evaluate(now)

    def needs_review(self, now: float) -> bool:
        """Has time or the threshold moved something :meth:`handle_timeout` would change?"""
        due = self.poll_timeout()
        return self._reach.threshold != self._threshold or (due is not None and due <= now)

    def _evaluate(self, now: float) -> list[NatFilteringChanged]:
        self._threshold = threshold = self._reach.threshold
        ttl = self._reach.config.evidence_ttl
        for addr in list(self._votes):
            votes = self._votes[addr]
            for peer in [p for p, v in votes.items() if v.at + ttl <= now]:
                del votes[peer]
            counts = Counter(v.value for v in votes.values())
            verdict: NatFiltering = (
                "endpoint-independent" if counts["endpoint-independent"] >= threshold
                else vote_verdict(self._verdicts.get(addr, "unknown"), counts, threshold))
            if verdict == "unknown":
                self._verdicts.pop(addr, None)
            else:
                self._verdicts[addr] = verdict
            if not votes:
                del self._votes[addr]
        for addr in [a for a in self._verdicts if a not in self._votes]:
            del self._verdicts[addr]
        self._next_expiry = min((v.at + ttl for votes in self._votes.values()
                                 for v in votes.values()), default=None)
        decided = set(self._verdicts.values())
        new: NatFiltering = decided.pop() if len(decided) == 1 else "unknown"
        if new == self._overall:
            return []
        old, self._overall = self._overall, new
        return [NatFilteringChanged(old, new, now)]
