"""NAT filtering: one probe's vote, which arrival is reachability evidence, the vote machine.

Sans-io, no Trio: the rules of :mod:`protocols.autonat._nat_filtering`.
"""

from __future__ import annotations

import random

import pytest

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    AddressPolicy,
    DialBackAttempt,
    DialBackSource,
    DialResponse,
    DialStatus,
    FilteringEvidence,
    Keypair,
    NatFilteringChanged,
    NatFilteringVotes,
    ObservedAddr,
    PeerId,
    ProbeOutcome,
    ProbeResult,
    ProbeScheduler,
    PublishReachability,
    Reachability,
    ReachabilityConfig,
    ResponseStatus,
    StartProbe,
    WsAddress,
    dial_back_proves_reachable,
    filtering_vote,
    seen_at,
)

SERVERS = sorted(Keypair.generate().peer_id for _ in range(6))
A = WsAddress.parse("/ip4/198.51.100.7/tcp/44000/ws")
B = WsAddress.parse("/ip4/198.51.100.7/tcp/51000/ws")
OK, ERR, BACK_ERR = DialStatus.OK, DialStatus.E_DIAL_ERROR, DialStatus.E_DIAL_BACK_ERROR
EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"


def _ev(contacted: bool = False, other: bool = False, c: DialStatus | None = None,
        o: DialStatus | None = None) -> FilteringEvidence:
    return FilteringEvidence(arrived_contacted=contacted, arrived_other=other,
                             contacted_attempt=c, other_attempt=o)


# --- one probe's vote: the table of the module docstring -------------------------------------

VOTES = [
    # (what arrived, what the server reported, mapped) -> vote
    ("full cone: both arrive", _ev(True, True, OK, OK), True, EI),
    ("other IP arrives, contacted failed", _ev(False, True, ERR, OK), True, EI),
    ("other IP arrives, not reported (old server)", _ev(False, True), False, EI),
    ("address-restricted", _ev(True, False, OK, ERR), True, AD),
    ("address-restricted, unmapped still", _ev(True, False, OK, ERR), False, AD),
    ("port-restricted on a live mapping", _ev(False, False, ERR, ERR), True, APD),
    ("single-address server, same-IP dial-back dropped", _ev(False, False, ERR, None), True, APD),
    ("no mapping for the port: both dropped", _ev(False, False, ERR, ERR), False, None),
    ("single-address server, arrived", _ev(True, False, OK, None), True, None),
    ("old server, arrived", _ev(True, False), True, None),
    ("old server, nothing arrived", _ev(), True, None),
    ("other attempt connected, exchange failed", _ev(True, False, OK, BACK_ERR), True, None),
    ("contacted attempt connected, exchange failed", _ev(False, False, BACK_ERR, ERR), True, None),
    ("liar: claims other OK, nothing from there", _ev(True, False, OK, OK), True, None),
    ("liar: claims contacted OK, nothing arrived", _ev(False, False, OK, ERR), True, None),
    ("liar: claims both OK, nothing arrived", _ev(False, False, OK, OK), True, None),
]


@pytest.mark.parametrize(("case", "evidence", "mapped", "vote"), VOTES,
                         ids=[case for case, *_ in VOTES])
def test_one_probes_vote(case: str, evidence: FilteringEvidence, mapped: bool,
                         vote: str | None) -> None:
    assert filtering_vote(evidence, mapped=mapped) == vote


def test_lies_are_named() -> None:
    assert _ev(False, False, OK, None).lied and _ev(True, False, OK, OK).lied
    assert not _ev(True, True, OK, OK).lied and not _ev(False, False, ERR, ERR).lied


def _response(*attempts: tuple[DialBackSource, DialStatus],
              status: DialStatus = DialStatus.OK) -> DialResponse:
    return DialResponse(ResponseStatus.OK, 0, status,
                        tuple(DialBackAttempt(s, d) for s, d in attempts))


def test_evidence_from_a_probe_reads_the_reported_attempts() -> None:
    response = _response((DialBackSource.CONTACTED_IP, OK), (DialBackSource.OTHER_IP, ERR),
                         status=ERR)
    assert FilteringEvidence.from_probe(response, arrived_contacted=True,
                                        arrived_other=False) == _ev(True, False, OK, ERR)
    assert FilteringEvidence.from_probe(None, arrived_contacted=False,
                                        arrived_other=True) == _ev(False, True)


def test_which_arrival_proves_reachability() -> None:
    two = _response((DialBackSource.CONTACTED_IP, OK), (DialBackSource.OTHER_IP, ERR),
                    status=ERR)
    one = _response((DialBackSource.CONTACTED_IP, OK))
    old = DialResponse(ResponseStatus.OK, 0, DialStatus.OK)
    # address-restricted NAT behind a two-address server: the same-IP arrival is no proof
    assert not dial_back_proves_reachable(_ev(True, False), two)
    assert dial_back_proves_reachable(_ev(False, True), two)
    assert dial_back_proves_reachable(_ev(True, True), two)
    # a single-address server or an older one: its one dial-back is the proof, as before
    assert dial_back_proves_reachable(_ev(True, False), one)
    assert dial_back_proves_reachable(_ev(True, False), old)
    assert dial_back_proves_reachable(_ev(True, False), None)
    assert not dial_back_proves_reachable(_ev(), one)


# --- the vote machine --------------------------------------------------------------------------


def _votes(*addrs: WsAddress, **config: object) -> tuple[Reachability, NatFilteringVotes]:
    reach = Reachability(ReachabilityConfig(**config))  # type: ignore[arg-type]
    reach.handle_candidates_added(addrs or (A,), now=0.0)
    return reach, NatFilteringVotes(reach)


def _feed(reach: Reachability, votes: NatFilteringVotes, server: PeerId,
          evidence: FilteringEvidence, now: float, *, addr: WsAddress = A, mapped: bool = True,
          outcome: ProbeOutcome | None = None) -> list[NatFilteringChanged]:
    if outcome is None:
        outcome = (ProbeOutcome.LIED if evidence.other_attempt == OK and not evidence.arrived_other
                   else ProbeOutcome.REACHABLE if evidence.arrived_other
                   else ProbeOutcome.UNREACHABLE)
    result = ProbeResult(addr, server, outcome, now)
    reach.handle_probe_result(result, now)  # as the scheduler does: reachability first
    return votes.handle_probe_result(result, evidence, mapped=mapped, now=now)


def test_a_verdict_needs_threshold_agreeing_servers() -> None:
    reach, votes = _votes()
    assert _feed(reach, votes, SERVERS[0], _ev(True, False, OK, ERR), 1.0) == []
    assert votes.nat_filtering == "unknown"
    assert _feed(reach, votes, SERVERS[1], _ev(True, False, OK, ERR), 2.0) == [
        NatFilteringChanged("unknown", AD, 2.0)]
    assert votes.verdict(A) == AD


def test_the_same_server_twice_is_one_vote() -> None:
    reach, votes = _votes()
    for now in (1.0, 2.0, 3.0):
        _feed(reach, votes, SERVERS[0], _ev(False, True, ERR, OK), now)
    assert votes.nat_filtering == "unknown" and votes.votes(A) == {SERVERS[0]: EI}


def test_hysteresis_a_flip_needs_the_same_weight() -> None:
    reach, votes = _votes()
    for i in range(2):
        _feed(reach, votes, SERVERS[i], _ev(False, False, ERR, ERR), 1.0)
    assert votes.nat_filtering == APD
    _feed(reach, votes, SERVERS[2], _ev(True, False, OK, ERR), 2.0)  # 2 APD : 1 AD
    assert votes.nat_filtering == APD
    _feed(reach, votes, SERVERS[3], _ev(True, False, OK, ERR), 3.0)  # 2 : 2, no majority
    assert votes.nat_filtering == APD
    _feed(reach, votes, SERVERS[4], _ev(True, False, OK, ERR), 4.0)  # 2 : 3
    assert votes.nat_filtering == AD


def test_observed_dial_backs_from_other_ips_beat_claims() -> None:
    """Two servers' word (their same-IP dial-back failed) against two dial-backs from
    IPs we never contacted, which arrived: what we saw wins at the threshold."""
    reach, votes = _votes()
    for i in range(2):
        _feed(reach, votes, SERVERS[i], _ev(False, False, ERR, ERR), 1.0)
    assert votes.nat_filtering == APD
    _feed(reach, votes, SERVERS[2], _ev(False, True, ERR, OK), 2.0)  # 2 APD : 1 EI
    assert votes.nat_filtering == APD
    assert _feed(reach, votes, SERVERS[3], _ev(False, True, ERR, OK), 3.0) == [
        NatFilteringChanged(APD, EI, 3.0)]


def test_a_lying_server_is_no_evidence_and_loses_its_word() -> None:
    reach, votes = _votes()
    _feed(reach, votes, SERVERS[0], _ev(True, False, OK, ERR), 1.0)  # AD, on its word
    # the same server lies about another probe (claims the other-IP dial-back worked)
    _feed(reach, votes, SERVERS[0], _ev(True, False, OK, OK), 2.0)
    assert votes.votes(A) == {}
    assert SERVERS[0] in reach.distrusted_servers(2.0)
    # while distrusted, even its honest-looking reports are ignored
    _feed(reach, votes, SERVERS[0], _ev(True, False, OK, ERR), 3.0)
    _feed(reach, votes, SERVERS[1], _ev(True, False, OK, ERR), 3.0)
    assert votes.nat_filtering == "unknown" and votes.votes(A) == {SERVERS[1]: AD}


def test_a_liars_own_observed_arrival_stays() -> None:
    """An arrival from an uncontacted IP is our observation: distrust cannot erase it."""
    reach, votes = _votes()
    _feed(reach, votes, SERVERS[0], _ev(False, True, ERR, OK), 1.0)
    _feed(reach, votes, SERVERS[0], _ev(False, False, OK, OK), 2.0, addr=A,
          outcome=ProbeOutcome.LIED)
    assert votes.votes(A) == {SERVERS[0]: EI}


def test_failing_servers_say_nothing() -> None:
    """Refusals, timeouts, errors and failures without a mapping are no votes."""
    _reach, votes = _votes()
    for i, (evidence, mapped) in enumerate([(_ev(), True), (_ev(False, False, ERR, ERR), False),
                                            (_ev(False, False, BACK_ERR, ERR), True)]):
        result = ProbeResult(A, SERVERS[i], ProbeOutcome.ERROR, 1.0)
        votes.handle_probe_result(result, evidence, mapped=mapped, now=1.0)
    votes.handle_probe_result(ProbeResult(A, SERVERS[3], ProbeOutcome.TIMEOUT, 1.0), None,
                              mapped=True, now=1.0)
    assert votes.votes(A) == {} and votes.nat_filtering == "unknown"


def test_votes_only_for_candidates_and_forgotten_with_them() -> None:
    reach, votes = _votes(A)
    _feed(reach, votes, SERVERS[0], _ev(False, True, ERR, OK), 1.0, addr=B)
    assert votes.votes(B) == {}
    for i in range(2):
        _feed(reach, votes, SERVERS[i], _ev(False, True, ERR, OK), 1.0)
    assert votes.nat_filtering == EI
    reach.handle_candidates((B,), 2.0)
    assert votes.handle_candidates((B,), 2.0) == [NatFilteringChanged(EI, "unknown", 2.0)]


def test_addresses_that_disagree_give_unknown() -> None:
    reach, votes = _votes(A, B)
    for i in range(2):
        _feed(reach, votes, SERVERS[i], _ev(False, True, ERR, OK), 1.0, addr=A)
    assert votes.nat_filtering == EI
    for i in range(2):
        _feed(reach, votes, SERVERS[i], _ev(True, False, OK, ERR), 2.0, addr=B)
    assert (votes.verdict(A), votes.verdict(B)) == (EI, AD)
    assert votes.nat_filtering == "unknown"


def test_votes_expire_with_the_evidence_ttl() -> None:
    reach, votes = _votes(evidence_ttl=100.0)
    for i in range(2):
        _feed(reach, votes, SERVERS[i], _ev(True, False, OK, ERR), 10.0 + i)
    assert votes.poll_timeout() == 110.0 and votes.nat_filtering == AD
    assert not votes.needs_review(109.0) and votes.needs_review(110.0)
    assert votes.handle_timeout(110.0) == []  # one vote left: the verdict stays
    assert votes.handle_timeout(111.0) == [NatFilteringChanged(AD, "unknown", 111.0)]
    assert votes.poll_timeout() is None


def test_a_small_network_lowers_the_threshold_as_for_reachability() -> None:
    reach, votes = _votes()
    _feed(reach, votes, SERVERS[0], _ev(False, False, ERR, None), 1.0)
    assert votes.nat_filtering == "unknown"
    reach.handle_servers_available(1, 1.0)
    reach.handle_servers_available(1, 6.0)  # settled: a lone server decides
    assert votes.needs_review(6.0)
    assert votes.handle_timeout(6.0) == [NatFilteringChanged("unknown", APD, 6.0)]


# --- through the scheduler: "mapped" comes from the server's own observation ---------------------

LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"])
LOCAL = WsAddress.parse("/ip4/10.0.0.2/tcp/44000/ws")
MAPPED = WsAddress.parse("/ip4/198.51.100.77/tcp/44000/ws")
RANDOM_PORT = WsAddress.parse("/ip4/198.51.100.77/tcp/61000/ws")


def _server(i: int) -> WsAddress:
    return WsAddress.parse(f"/ip4/10.{i}.0.1/tcp/4001/ws")


def test_scheduler_votes_apd_only_where_the_server_saw_the_mapping() -> None:
    s = ProbeScheduler(Reachability(ReachabilityConfig(threshold=2)), policy=LAB,
                       rng=random.Random(1))
    s.handle_listen_addrs((LOCAL,), 0.0)
    starts: list[StartProbe] = []
    for i in range(3):
        s.handle_observation(ObservedAddr(SERVERS[i], MAPPED, LOCAL, _server(i), at=0.0), 0.0)
        s.handle_peer_identified(SERVERS[i], (DIAL_REQUEST_PROTOCOL_ID,), 0.0)
        starts += [c for c in s.handle_connection_up(SERVERS[i], remote_addr=_server(i),
                                                     local_addr=LOCAL, inbound=False, now=0.0)
                   if isinstance(c, StartProbe)]
    assert {p.server for p in starts} == set(SERVERS[:3]) and {p.addr for p in starts} == {MAPPED}
    # server 1 now sees us at another port (as behind a symmetric NAT): no mapping to it
    # at the probed address, even though its observation translates to that candidate
    s.handle_observation(ObservedAddr(SERVERS[1], RANDOM_PORT, LOCAL, _server(1), at=0.5), 0.5)
    assert MAPPED in s.candidates
    s.handle_observation_removed(SERVERS[2], 0.5)  # server 2 no longer vouches for the mapping
    published: list[PublishReachability] = []
    for probe in starts:
        result = ProbeResult(probe.addr, probe.server, ProbeOutcome.UNREACHABLE, 1.0)
        published += [c for c in s.handle_probe_finished(
            probe.probe_id, result, 1.0, answered=True,
            filtering=_ev(False, False, ERR, ERR)) if isinstance(c, PublishReachability)]
    assert s.filtering.votes(MAPPED) == {SERVERS[0]: APD}
    assert s.nat_filtering == "unknown"
    assert published == [] or published[-1].update.nat_filtering == "unknown"


def test_scheduler_reaches_apd_with_two_servers_that_saw_the_mapping() -> None:
    s = ProbeScheduler(Reachability(ReachabilityConfig(threshold=2)), policy=LAB,
                       rng=random.Random(1))
    s.handle_listen_addrs((LOCAL,), 0.0)
    starts: list[StartProbe] = []
    for i in range(2):
        s.handle_observation(ObservedAddr(SERVERS[i], MAPPED, LOCAL, _server(i), at=0.0), 0.0)
        s.handle_peer_identified(SERVERS[i], (DIAL_REQUEST_PROTOCOL_ID,), 0.0)
        starts += [c for c in s.handle_connection_up(SERVERS[i], remote_addr=_server(i),
                                                     local_addr=LOCAL, inbound=False, now=0.0)
                   if isinstance(c, StartProbe)]
    published: list[PublishReachability] = []
    for probe in starts:
        result = ProbeResult(probe.addr, probe.server, ProbeOutcome.UNREACHABLE, 1.0)
        published += [c for c in s.handle_probe_finished(
            probe.probe_id, result, 1.0, answered=True,
            filtering=_ev(False, False, ERR, ERR)) if isinstance(c, PublishReachability)]
    assert s.nat_filtering == APD
    assert published[-1].update.nat_filtering == APD
    assert s.last_published is not None and s.last_published.nat_filtering == APD


def test_seen_at_is_the_observation_itself_not_a_translation() -> None:
    assert seen_at(MAPPED, MAPPED)
    assert seen_at(WsAddress.parse("/ip6/::ffff:198.51.100.77/tcp/44000/ws"), MAPPED)
    assert not seen_at(RANDOM_PORT, MAPPED)
    assert not seen_at(None, MAPPED)
