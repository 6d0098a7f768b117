"""The AutoNAT client's probing policy, sans-io (no Trio): ProbeScheduler."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    DIAL_BACK_OTHER_IP_PROTOCOL_ID,
    DIAL_REQUEST_PROTOCOL_ID,
    RECENT_PROBES,
    SAMPLE_SERVERS,
    AddressPolicy,
    DialBackSource,
    DialResponse,
    DialStatus,
    Keypair,
    ObservedAddr,
    PeerId,
    ProbeCommand,
    ProbeOutcome,
    ProbeResult,
    ProbeScheduler,
    ProbeSchedulerError,
    PublishReachability,
    Reachability,
    ReachabilityConfig,
    ResponseStatus,
    SmallNetworkWaitEnded,
    SmallNetworkWaitStarted,
    StartProbe,
    WsAddress,
    choose_servers,
    claims_dial_back,
    probe_outcome,
)

PEERS = sorted(Keypair.generate().peer_id for _ in range(8))
LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24"])
LISTEN = (WsAddress.parse("/ip4/198.51.100.5/tcp/44000/ws"),)
ME = LISTEN[0]


def _remote(i: int) -> WsAddress:
    """Server i's address: servers 0 and 1 share a /24, every other one has its own."""
    return WsAddress.parse(f"/ip4/10.{max(i - 1, 0)}.0.{i + 1}/tcp/4001/ws")


def _sched(*, threshold: int = 2, welcome: bool = False, policy: AddressPolicy = LAB,
           probe_servers: int = 3, seed: int = 1) -> ProbeScheduler:
    return ProbeScheduler(Reachability(ReachabilityConfig(threshold=threshold)), policy=policy,
                          rng=random.Random(seed), probe_servers=probe_servers,
                          welcome_probes=welcome)


def _up(s: ProbeScheduler, i: int, now: float, *, inbound: bool = False,
        serves: bool = True, local: WsAddress = ME) -> list[ProbeCommand]:
    protocols = (DIAL_REQUEST_PROTOCOL_ID,) if serves else ("/ipfs/id/1.0.0",)
    commands = s.handle_peer_identified(PEERS[i], protocols, now)
    return commands + s.handle_connection_up(PEERS[i], remote_addr=_remote(i), local_addr=local,
                                             inbound=inbound, now=now)


def _starts(commands: list[ProbeCommand]) -> list[StartProbe]:
    return [c for c in commands if isinstance(c, StartProbe)]


def _publishes(commands: list[ProbeCommand]) -> list[PublishReachability]:
    return [c for c in commands if isinstance(c, PublishReachability)]


def _finish(s: ProbeScheduler, probe: StartProbe, outcome: ProbeOutcome,
            now: float) -> list[ProbeCommand]:
    result = ProbeResult(probe.addr, probe.server, outcome, at=now)
    return s.handle_probe_finished(probe.probe_id, result, now, answered=True)


# --- rounds, top-ups, retries, liars -----------------------------------------------


def test_first_probes_go_out_in_parallel_to_distinct_subnets_at_once() -> None:
    s = _sched()
    for i in range(4):  # servers 0 and 1 share a subnet
        assert _starts(_up(s, i, 0.0)) == []  # no candidate yet
    starts = _starts(s.handle_listen_addrs(LISTEN, 0.0))
    assert len(starts) == 3 and {p.addr for p in starts} == {ME}
    subnets = {str(_remote(PEERS.index(p.server))).split(".")[1] for p in starts}
    assert len(subnets) == 3  # one of servers 0/1, and servers 2 and 3
    assert s.statistics().in_flight == 3 and s.statistics().probes_started == 3


def test_one_server_and_a_candidate_are_enough_to_start() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    assert [(p.addr, p.server) for p in _starts(_up(s, 0, 0.5))] == [(ME, PEERS[0])]


def test_server_appearing_mid_round_tops_it_up_at_once() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    first = _starts(_up(s, 0, 0.0))
    assert [p.server for p in first] == [PEERS[0]]
    assert [p.server for p in _starts(_up(s, 2, 1.0))] == [PEERS[2]]
    assert [p.server for p in _starts(_up(s, 3, 2.0))] == [PEERS[3]]
    assert _starts(_up(s, 4, 3.0)) == []  # probe_servers (3) in flight for the address


def test_unknown_address_is_not_topped_up_with_a_server_asked_within_retry_server() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    assert _starts(_finish(s, probe, ProbeOutcome.REFUSED, 1.0)) == []  # not evidence
    assert _starts(s.handle_timeout(5.0)) == []
    # a new server tops the address up; the one asked at t=0 is not asked again
    assert [p.server for p in _starts(_up(s, 2, 6.0))] == [PEERS[2]]
    assert s.poll_timeout() == 10.0  # the address's retry is due (10 s backoff)
    # a due round may ask anyone not busy: server 0 again
    assert [p.server for p in _starts(s.handle_timeout(10.0))] == [PEERS[0]]


def test_liars_are_not_asked_again() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    for i in (0, 2, 3):
        _up(s, i, 0.0)
    (p0, p2, p3) = sorted(s.in_flight(), key=lambda p: p.server)
    liar = p0
    _finish(s, liar, ProbeOutcome.LIED, 1.0)
    _finish(s, p2, ProbeOutcome.REFUSED, 1.0)
    _finish(s, p3, ProbeOutcome.REFUSED, 1.0)
    assert s.reachability.distrusted_servers(1.0) == {liar.server}
    starts = _starts(s.handle_timeout(10.0))  # the retry round
    assert starts and liar.server not in {p.server for p in starts}
    assert s.statistics().outcomes == (("lied", 1), ("refused", 2))


# --- welcome probes ------------------------------------------------------------------


def test_welcome_probe_once_per_peer_about_the_inbound_local_address() -> None:
    s = _sched(welcome=True, policy=AddressPolicy())  # loopback: no candidate of ours
    s.handle_listen_addrs((WsAddress.parse("/ip4/127.0.0.1/tcp/44000/ws"),), 0.0)
    assert s.candidates == ()
    local = WsAddress.parse(f"/ip4/127.0.0.1/tcp/44000/ws/p2p/{PEERS[7]}")
    (welcome,) = _starts(_up(s, 0, 0.0, inbound=True, local=local))
    assert welcome.welcome and welcome.addr == local.with_peer_id(None)
    assert _starts(_up(s, 1, 0.0, inbound=False)) == []  # outbound, nothing to ask about
    _finish(s, welcome, ProbeOutcome.REACHABLE, 1.0)  # not a candidate: not evidence
    s.handle_connection_down(PEERS[0], 2.0)
    assert _starts(_up(s, 0, 3.0, inbound=True, local=local)) == []  # once per peer
    assert s.statistics().welcome_probes == 1


def test_welcome_probe_asks_about_the_best_candidate() -> None:
    s = _sched(welcome=True, probe_servers=1)
    observed = tuple(
        ObservedAddr(PEERS[i], WsAddress.parse("/ip4/198.51.100.77/tcp/61000/ws"),
                     WsAddress.parse("/ip4/10.0.0.2/tcp/51000/ws"), _remote(i), at=0.0)
        for i in (5, 6))
    listen = (WsAddress.parse("/ip4/198.51.100.5/tcp/44000/ws"),
              WsAddress.parse("/ip4/0.0.0.0/tcp/44000/ws"))
    s.handle_listen_addrs(listen, 0.0)
    s.handle_observations(observed, 0.0)
    best = s.candidates[0]
    assert best == WsAddress.parse("/ip4/198.51.100.77/tcp/44000/ws")  # two observers
    assert best != min(s.candidates, key=str)
    _up(s, 0, 1.0)  # the regular round takes this one
    starts = _starts(_up(s, 2, 2.0))
    assert next((p.addr, p.welcome) for p in starts if p.server == PEERS[2]) == (best, True)


# --- results and impossible inputs --------------------------------------------------------


def test_result_after_the_servers_connection_went_down_still_counts() -> None:
    s = _sched(threshold=1)
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    assert _starts(s.handle_connection_down(PEERS[0], 0.5)) == []
    assert s.statistics().in_flight == 1
    commands = _finish(s, probe, ProbeOutcome.UNREACHABLE, 1.0)
    assert s.statistics().in_flight == 0
    assert s.reachability.evidence_servers(ME, 1.0) == {PEERS[0]}
    assert _starts(commands) == []  # the server is gone: nobody to ask


def test_a_result_for_a_probe_not_in_flight_is_refused() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    result = ProbeResult(ME, PEERS[0], ProbeOutcome.REFUSED, at=1.0)
    with pytest.raises(ProbeSchedulerError, match="probe 99, which is not in flight"):
        s.handle_probe_finished(99, result, 1.0, answered=True)
    with pytest.raises(ProbeSchedulerError, match="which asked"):
        s.handle_probe_finished(probe.probe_id, ProbeResult(ME, PEERS[1], ProbeOutcome.REFUSED,
                                                            at=1.0), 1.0, answered=True)
    s.handle_probe_finished(probe.probe_id, result, 1.0, answered=True)
    with pytest.raises(ProbeSchedulerError, match="not in flight"):
        s.handle_probe_finished(probe.probe_id, result, 1.0, answered=True)  # twice
    with pytest.raises(ProbeSchedulerError, match="not connected"):
        s.handle_connection_down(PEERS[5], 1.0)
    with pytest.raises(ProbeSchedulerError, match="request sent"):
        s.handle_request_sent(probe.probe_id, 1.0)
    assert s.statistics().outcomes == (("refused", 1),)


def test_contacted_and_answered_servers() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    s.handle_request_sent(probe.probe_id, 0.1)
    assert s.statistics().servers_contacted == (PEERS[0],)
    assert s.statistics().servers_answered == ()
    s.handle_probe_finished(probe.probe_id, ProbeResult(ME, PEERS[0], ProbeOutcome.TIMEOUT,
                                                        at=1.0), 1.0, answered=False)
    assert s.statistics().servers_answered == ()


def test_identify_racing_ahead_of_connection_up() -> None:
    """Identify (or a reconnect) can reach the scheduler before ConnectionUp: no early probe."""
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    assert _starts(s.handle_peer_identified(PEERS[0], (DIAL_REQUEST_PROTOCOL_ID,), 0.0)) == []
    (probe,) = _starts(s.handle_connection_up(PEERS[0], remote_addr=_remote(0), local_addr=ME,
                                              inbound=False, now=0.1))
    # a newer connection to the same server while its probe runs: no second probe
    assert _starts(s.handle_connection_up(PEERS[0], remote_addr=_remote(0), local_addr=ME,
                                          inbound=True, now=0.2)) == []
    # the result (of the old connection's probe) still counts
    _finish(s, probe, ProbeOutcome.REACHABLE, 0.5)
    assert s.reachability.evidence_servers(ME, 0.5) == {PEERS[0]}
    # a peer that stops serving AutoNAT is no server any more
    s.handle_peer_identified(PEERS[0], (), 0.6)
    assert not s.is_autonat_server(PEERS[0]) and s.statistics().servers_available == 0


def test_cancelled_and_restarted_probes_leave_flight_without_an_outcome() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    s.handle_probe_cancelled(probe.probe_id, 0.1)
    assert s.statistics().in_flight == 0 and s.statistics().outcomes == ()
    _up(s, 2, 0.2)
    assert s.statistics().in_flight == 1
    s.handle_driver_restart(0.3)
    stats = s.statistics()
    assert stats.cancelled == 2


# --- incremental candidates ---------------------------------------------------------------


def test_candidates_and_mapping_are_recomputed_only_when_addresses_change() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    s.handle_listen_addrs(tuple(LISTEN), 1.0)  # equal, not identical: no recomputation
    _up(s, 0, 2.0)
    s.handle_timeout(3.0)
    assert s.statistics().candidate_recomputations == 1
    observed = tuple(
        ObservedAddr(PEERS[i], WsAddress.parse(f"/ip4/198.51.100.{50 + i}/tcp/44000/ws"),
                     WsAddress.parse("/ip4/10.0.0.2/tcp/44000/ws"), _remote(i), at=0.0)
        for i in (5, 6))
    commands = s.handle_observations(observed, 4.0)  # two observations, one input
    stats = s.statistics()
    assert stats.candidate_recomputations == 2 and stats.nat_mapping == "endpoint-dependent"
    assert [c.update.nat_mapping for c in _publishes(commands)] == ["endpoint-dependent"]
    assert _publishes(s.handle_timeout(5.0)) == []  # the mapping is published once


# --- time: expiry and the small-network wait ----------------------------------------------


def test_evidence_expiry_returns_the_verdict_to_unknown_without_other_input() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    _up(s, 0, 0.0)
    _up(s, 2, 0.0)
    commands: list[ProbeCommand] = []
    for probe in s.in_flight():
        commands += _finish(s, probe, ProbeOutcome.REACHABLE, 1.0)
    assert _publishes(commands)[-1].update.nat_status == "public"
    s.handle_connection_down(PEERS[0], 2.0)
    s.handle_connection_down(PEERS[2], 2.0)  # nobody left to re-probe
    now, wakes, status = 2.0, 0, "public"
    while status == "public":
        deadline = s.poll_timeout()
        assert deadline is not None and deadline > now
        now, wakes = deadline, wakes + 1
        for command in s.handle_timeout(now):
            assert not isinstance(command, StartProbe)
            if isinstance(command, PublishReachability):
                status = command.update.nat_status
    assert status == "unknown" and now == 1.0 + 3600.0
    assert wakes <= 3  # the re-probe falling due, then expiry: no polling
    assert s.poll_timeout() is None


def test_small_network_wait_is_a_poll_timeout() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    commands = _up(s, 0, 0.0)
    (started,) = [c for c in commands if isinstance(c, SmallNetworkWaitStarted)]
    assert (started.wait.servers, started.wait.threshold, started.wait.until) == (1, 2, 5.0)
    (probe,) = _starts(commands)
    assert _publishes(_finish(s, probe, ProbeOutcome.REACHABLE, 1.0)) == []  # 1 < threshold
    assert s.small_network_wait is not None and s.poll_timeout() == 5.0
    commands = s.handle_timeout(5.0)
    assert [c for c in commands if isinstance(c, SmallNetworkWaitEnded)] == [
        SmallNetworkWaitEnded(servers=1, threshold_in_force=1)]
    assert _publishes(commands)[-1].update.nat_status == "public"
    assert s.small_network_wait is None


def test_nothing_to_do_means_no_timeout() -> None:
    s = _sched()
    assert s.poll_timeout() is None
    s.handle_listen_addrs(LISTEN, 0.0)  # due at once, but no server: wait for input
    assert s.poll_timeout() is None


# --- properties -----------------------------------------------------------------------------

_OUTCOMES = list(ProbeOutcome)
_LISTENS = [LISTEN, (WsAddress.parse("/ip4/198.51.100.6/tcp/44000/ws"), *LISTEN), ()]

_op = st.one_of(
    st.tuples(st.just("up"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("down"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("identify"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("finish"), st.integers(0, 50), st.sampled_from(_OUTCOMES)),
    st.tuples(st.just("time"), st.floats(0.0, 400.0), st.booleans()),
    st.tuples(st.just("addrs"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("observe"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("unobserve"), st.integers(0, 5), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_op, max_size=60), welcome=st.booleans(), seed=st.integers(0, 3))
def test_random_event_sequences_keep_the_probing_invariants(
        ops: list[tuple[str, object, object]], welcome: bool, seed: int) -> None:
    s = _sched(welcome=welcome, seed=seed)
    now = 0.0
    connected: set[PeerId] = set()
    serving: set[PeerId] = set()
    for kind, a, b in ops:
        if kind == "up":
            assert isinstance(a, int) and isinstance(b, bool)
            commands = s.handle_connection_up(PEERS[a], remote_addr=_remote(a), local_addr=ME,
                                              inbound=b, now=now)
            connected.add(PEERS[a])
        elif kind == "down":
            assert isinstance(a, int)
            if PEERS[a] not in connected:
                continue
            commands = s.handle_connection_down(PEERS[a], now)
            connected.discard(PEERS[a])
        elif kind == "identify":
            assert isinstance(a, int) and isinstance(b, bool)
            protocols = (DIAL_REQUEST_PROTOCOL_ID,) if b else ()
            commands = s.handle_peer_identified(PEERS[a], protocols, now)
            (serving.add if b else serving.discard)(PEERS[a])
        elif kind == "finish":
            flying = s.in_flight()
            if not flying:
                continue
            assert isinstance(a, int) and isinstance(b, ProbeOutcome)
            probe = flying[a % len(flying)]
            commands = _finish(s, probe, b, now)
        elif kind == "time":
            assert isinstance(a, float) and isinstance(b, bool)
            deadline = s.poll_timeout()
            assert deadline is None or deadline > now
            if b and deadline is not None:
                now = deadline
            else:
                now += a
            commands = s.handle_timeout(now)
        elif kind == "addrs":
            assert isinstance(a, int)
            commands = s.handle_listen_addrs(_LISTENS[a], now)
        elif kind == "observe":
            assert isinstance(a, int) and isinstance(b, bool)
            port = 44000 if b else 61000 + a
            commands = s.handle_observation(ObservedAddr(
                PEERS[a], WsAddress.parse(f"/ip4/198.51.100.77/tcp/{port}/ws"), ME, _remote(a),
                at=now), now)
        else:
            assert isinstance(a, int)
            commands = s.handle_observation_removed(PEERS[a], now)
        for start in _starts(commands):  # only connected AutoNAT servers are asked
            assert start.server in connected and start.server in serving
        flying = s.in_flight()
        pairs = Counter((p.addr, p.server) for p in flying)
        assert all(n == 1 for n in pairs.values())  # never the same (addr, server) twice
        rounds = Counter(p.addr for p in flying if not p.welcome)
        assert all(n <= 3 for n in rounds.values())  # never more than probe_servers
        deadline = s.poll_timeout()
        assert deadline is None or deadline > now


def test_peers_identified_together_get_one_diverse_round() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    for i in range(4):
        s.handle_connection_up(PEERS[i], remote_addr=_remote(i), local_addr=ME, inbound=False,
                               now=0.0)
    starts = _starts(s.handle_peers_identified(
        [(PEERS[i], (DIAL_REQUEST_PROTOCOL_ID,)) for i in range(4)], 0.1))
    assert len(starts) == 3 and not {PEERS[0], PEERS[1]} <= {p.server for p in starts}


def test_the_last_published_view_is_the_schedulers_own() -> None:
    s = _sched(threshold=1)
    assert s.last_published is None
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    (publish,) = _publishes(_finish(s, probe, ProbeOutcome.REACHABLE, 1.0))
    assert s.last_published == publish.update
    assert (publish.update.nat_status, publish.update.reachable_addrs) == ("public", (ME,))
    assert [type(e).__name__ for e in publish.events] == ["ReachabilityChanged",
                                                           "NatStatusChanged"]


def test_reachability_wake_up_times_and_the_one_lied_rule() -> None:
    reach = Reachability(ReachabilityConfig(evidence_ttl=100.0, distrust_period=50.0))
    reach.handle_candidates_added([ME], 0.0)
    assert reach.next_probe_at() == 0.0 and reach.next_probe_at(after=0.0) is None
    reach.handle_probe_result(ProbeResult(ME, PEERS[0], ProbeOutcome.REACHABLE, at=3.0), 3.0)
    reach.handle_probe_result(ProbeResult(ME, PEERS[1], ProbeOutcome.LIED, at=4.0), 4.0)
    assert reach.poll_timeout() == 54.0  # the liar is forgiven before the evidence expires
    reach.handle_timeout(54.0)
    assert reach.poll_timeout() == 103.0
    reach.handle_timeout(103.0)
    assert reach.poll_timeout() is None and reach.evidence_servers(ME, 103.0) == set()
    ok = DialResponse(status=ResponseStatus.OK, addr_idx=0, dial_status=DialStatus.OK)
    assert claims_dial_back(ok) and not claims_dial_back(None)
    assert probe_outcome(ok, dial_back_verified=False) is ProbeOutcome.LIED
    assert probe_outcome(ok, dial_back_verified=True) is ProbeOutcome.REACHABLE


# --- observations, races, cost ----------------------------------------------------------------


def _observed(i: int, observed: str = "/ip4/198.51.100.77/tcp/61000/ws") -> ObservedAddr:
    return ObservedAddr(PEERS[i], WsAddress.parse(observed),
                        WsAddress.parse("/ip4/10.0.0.2/tcp/51000/ws"), _remote(i), at=0.0)


@pytest.mark.parametrize("order", ["identify first", "connection first"])
def test_identify_with_observation_before_or_after_connection_up(order: str) -> None:
    """The probe actor may see a peer's PeerIdentified before or after its ConnectionOpened."""
    s = _sched(threshold=1)
    s.handle_listen_addrs((WsAddress.parse("/ip4/0.0.0.0/tcp/44000/ws"),), 0.0)

    def identify() -> list[ProbeCommand]:
        return (s.handle_observation(_observed(0, "/ip4/198.51.100.77/tcp/44000/ws"), 0.1)
                + s.handle_peer_identified(PEERS[0], (DIAL_REQUEST_PROTOCOL_ID,), 0.1))

    def connect() -> list[ProbeCommand]:
        return s.handle_connection_up(PEERS[0], remote_addr=_remote(0), local_addr=ME,
                                      inbound=False, now=0.1)

    first, second = (identify, connect) if order == "identify first" else (connect, identify)
    assert _starts(first()) == []  # a candidate without a server, or a server without one
    (probe,) = _starts(second())
    assert (probe.addr, probe.server) == (WsAddress.parse("/ip4/198.51.100.77/tcp/44000/ws"),
                                          PEERS[0])
    assert s.is_autonat_server(PEERS[0]) and s.statistics().observers == 1


def test_observations_replace_and_removal() -> None:
    s = _sched()
    s.handle_listen_addrs((WsAddress.parse("/ip4/0.0.0.0/tcp/44000/ws"),), 0.0)
    s.handle_observation(_observed(0, "/ip4/198.51.100.77/tcp/44000/ws"), 0.0)
    s.handle_observation(_observed(1, "/ip4/198.51.100.77/tcp/44000/ws"), 0.0)
    assert s.nat_mapping == "endpoint-independent"
    assert s.candidates == (WsAddress.parse("/ip4/198.51.100.77/tcp/44000/ws"),)
    s.handle_observation(_observed(1, "/ip4/198.51.100.78/tcp/44000/ws"), 1.0)  # replaces
    assert s.nat_mapping == "endpoint-dependent" and len(s.candidates) == 2
    s.handle_observation_removed(PEERS[1], 2.0)
    assert s.nat_mapping == "unknown"
    assert s.candidates == (WsAddress.parse("/ip4/198.51.100.77/tcp/44000/ws"),)
    recomputations = s.statistics().candidate_recomputations
    s.handle_observation_removed(PEERS[1], 3.0)  # not held: nothing changes
    assert s.statistics().candidate_recomputations == recomputations == 4
    assert s.statistics().observers == 1


def test_identified_peers_not_connected_are_remembered_within_max_observers() -> None:
    s = ProbeScheduler(policy=LAB, rng=random.Random(1), max_observers=2)
    for i in range(3):
        s.handle_peer_identified(PEERS[i], (DIAL_REQUEST_PROTOCOL_ID,), 0.0)
    assert [s.is_autonat_server(PEERS[i]) for i in range(3)] == [False, True, True]
    s.handle_connection_up(PEERS[1], remote_addr=_remote(1), local_addr=ME, inbound=False,
                           now=1.0)
    s.handle_connection_down(PEERS[1], 2.0)  # remembered again, as the most recent
    s.handle_peer_identified(PEERS[3], (DIAL_REQUEST_PROTOCOL_ID,), 3.0)
    assert [s.is_autonat_server(PEERS[i]) for i in range(4)] == [False, True, False, True]


def _many(n: int) -> list[PeerId]:
    return [Keypair.generate().peer_id for _ in range(n)]


def test_with_many_servers_a_step_chooses_among_a_bounded_sample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the servers handed to choose_servers per step: never all 300 of them."""
    import protocols.autonat._server_choice as module

    pools: list[int] = []

    def counting(peers: list[object], *args: object, **kwargs: object) -> object:
        peers = list(peers)
        pools.append(len(peers))
        return choose_servers(peers, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "choose_servers", counting)
    s = _sched(probe_servers=3)
    s.handle_listen_addrs(LISTEN, 0.0)
    servers = _many(300)
    for j, peer in enumerate(servers):
        s.handle_peer_identified(peer, (DIAL_REQUEST_PROTOCOL_ID,), 0.0)
        s.handle_connection_up(peer, remote_addr=WsAddress.parse(
            f"/ip4/10.{j // 200}.{j % 200}.1/tcp/4001/ws"), local_addr=ME, inbound=False,
            now=0.0)
    assert s.statistics().servers_available == 300 and s.statistics().in_flight == 3
    assert max(pools) <= SAMPLE_SERVERS  # the first round: 1..64 servers, then samples
    for probe in s.in_flight():
        _finish(s, probe, ProbeOutcome.REFUSED, 1.0)
    assert len(s.in_flight()) == 3  # the unknown address is topped up from the sample
    # every server asked recently or busy: the address parks, later steps ask no one
    pools.clear()
    for _ in range(100):
        s.handle_timeout(2.0)
    assert len(pools) <= 1


def test_parked_address_is_replanned_when_a_server_appears() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    (probe,) = _starts(_up(s, 0, 0.0))
    _finish(s, probe, ProbeOutcome.REFUSED, 1.0)  # asked within retry_server: parked
    assert _starts(s.handle_timeout(2.0)) == []
    assert [p.server for p in _starts(_up(s, 2, 3.0))] == [PEERS[2]]
    assert s.poll_timeout() == 10.0  # the retry round (and server 0 again at 30.0)


def test_an_endpoint_dependent_mapping_drops_the_ports_each_server_saw() -> None:
    """Behind a symmetric NAT every server sees another port of ours: before the mapping
    is known each is a candidate; once it is endpoint-dependent only the listen port
    stays (a port one server saw reaches no one else: probing it is a wasted request)."""
    s = _sched()
    s.handle_listen_addrs((WsAddress.parse("/ip4/0.0.0.0/tcp/44000/ws"),), 0.0)
    local = WsAddress.parse("/ip4/10.0.0.2/tcp/44000/ws")  # left from the listen port
    s.handle_observation(ObservedAddr(
        PEERS[0], WsAddress.parse("/ip4/198.51.100.77/tcp/61001/ws"), local, _remote(0),
        at=0.0), 0.0)
    assert s.nat_mapping == "unknown"
    assert WsAddress.parse("/ip4/198.51.100.77/tcp/61001/ws") in s.candidates  # maybe EIM
    s.handle_observation(ObservedAddr(
        PEERS[1], WsAddress.parse("/ip4/198.51.100.77/tcp/61002/ws"), local, _remote(1),
        at=0.0), 1.0)
    assert s.nat_mapping == "endpoint-dependent"
    assert s.candidates == (WsAddress.parse("/ip4/198.51.100.77/tcp/44000/ws"),)


def test_recent_keeps_the_last_results_oldest_first_and_is_bounded() -> None:
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    pending = _starts([c for i in range(len(PEERS)) for c in _up(s, i, 0.0)])
    finished: list[ProbeResult] = []
    now = 0.0
    # outcomes that decide nothing: the address stays unknown and servers keep being asked
    outcomes = (ProbeOutcome.ERROR, ProbeOutcome.REFUSED, ProbeOutcome.TIMEOUT)
    while pending and len(finished) <= RECENT_PROBES + 5:
        probe = pending.pop(0)
        now += 1.0
        result = ProbeResult(probe.addr, probe.server, outcomes[len(finished) % 3], at=now)
        pending += _starts(s.handle_probe_finished(probe.probe_id, result, now, answered=True))
        finished.append(result)
        assert s.statistics().recent == tuple(finished[-RECENT_PROBES:])
        deadline = s.poll_timeout()
        if not pending and deadline is not None:
            now = max(now, deadline)
            pending += _starts(s.handle_timeout(now))
    assert len(finished) > RECENT_PROBES  # the bound was reached and held
    assert len(s.statistics().recent) == RECENT_PROBES


def _settle(s: ProbeScheduler, outcomes: dict[PeerId, ProbeOutcome], now: float) -> None:
    for probe in s.in_flight():
        _finish(s, probe, outcomes[probe.server], now)


@pytest.mark.parametrize("agree", [False, True])
def test_a_contested_address_is_reprobed_by_servers_not_yet_heard(agree: bool) -> None:
    """Found by the simulator's ``liars`` scenario: a verdict resting on two servers that
    say "unreachable" and one that reached us was re-probed by the same three every
    round, so the honest servers the node also knew were never heard. A contested
    round asks servers without live evidence first; an agreed one may ask anyone."""
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    for i in (2, 3, 4):
        _up(s, i, 0.0)
    first = {p.server for p in s.in_flight()}
    assert first == {PEERS[2], PEERS[3], PEERS[4]}
    no = ProbeOutcome.REACHABLE if agree else ProbeOutcome.UNREACHABLE
    _settle(s, {PEERS[2]: no, PEERS[3]: no, PEERS[4]: ProbeOutcome.REACHABLE}, 1.0)
    assert s.reachability.contested(ME, 1.0) is not agree
    for i in (5, 6, 7):
        _up(s, i, 2.0)  # servers arriving after the verdict: not topped up
    assert not s.in_flight()
    deadline = s.poll_timeout()
    assert deadline is not None
    _starts(s.handle_timeout(deadline))
    again = {p.server for p in s.in_flight()}
    assert len(again) == 3
    if not agree:
        assert again == {PEERS[5], PEERS[6], PEERS[7]}


def _up_far(s: ProbeScheduler, i: int, now: float) -> list[ProbeCommand]:
    """Server i, whose Identify says it dials back from a second IP."""
    commands = s.handle_peer_identified(
        PEERS[i], (DIAL_REQUEST_PROTOCOL_ID, DIAL_BACK_OTHER_IP_PROTOCOL_ID), now)
    return commands + s.handle_connection_up(PEERS[i], remote_addr=_remote(i), local_addr=ME,
                                             inbound=False, now=now)


def _result(s: ProbeScheduler, probe: StartProbe, outcome: ProbeOutcome, now: float,
            via: DialBackSource | None) -> list[ProbeCommand]:
    result = ProbeResult(probe.addr, probe.server, outcome, at=now, via=via)
    return s.handle_probe_finished(probe.probe_id, result, now, answered=True)


def test_a_server_with_a_second_ip_is_in_the_first_round() -> None:
    """Found by the simulator once hosts bootstrapped through ``/status``: a host met
    many ordinary servers (one IP each) and few boot nodes, asked three ordinary ones,
    and behind an address-restricted NAT their dial-backs - from the IPs it had
    contacted - made it ``public``. A round now includes one server that dials back
    from a second IP while none has spoken about the address."""
    for seed in range(20):
        s = _sched(seed=seed)
        for i in (2, 3, 4, 5, 6):
            _up(s, i, 0.0)
        _up_far(s, 7, 0.0)
        starts = _starts(s.handle_listen_addrs(LISTEN, 0.0))
        assert len(starts) == 3 and PEERS[7] in {p.server for p in starts}, seed


def test_a_public_verdict_from_contacted_ips_only_is_checked_by_a_second_ip() -> None:
    """Three dial-backs from contacted IPs made the address reachable before any server
    with a second IP was connected; when one connects it is asked at once (not at the
    next re-probe), and its failure voids the verdict (Reachability rule 3)."""
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    for i in (2, 3, 4):
        _up(s, i, 0.0)
    for probe in s.in_flight():
        _result(s, probe, ProbeOutcome.REACHABLE, 1.0, DialBackSource.CONTACTED_IP)
    assert s.reachability.verdict(ME) == "reachable"
    (check,) = _starts(_up_far(s, 7, 2.0))
    assert check.server == PEERS[7] and check.addr == ME
    _result(s, check, ProbeOutcome.UNREACHABLE, 3.0, DialBackSource.OTHER_IP)
    assert s.reachability.verdict(ME) == "unknown"
    (again,) = _starts(_up_far(s, 6, 4.0))  # unknown again: topped up at once
    _result(s, again, ProbeOutcome.UNREACHABLE, 5.0, DialBackSource.OTHER_IP)
    assert s.reachability.verdict(ME) == "unreachable"
    assert _starts(_up_far(s, 5, 6.0)) == []  # a verdict that heard from another IP


@pytest.mark.parametrize("end", ["answer", "timeout", "cancelled", "restart"])
def test_contacted_ip_arrivals_wait_while_a_second_ip_server_is_asked(end: str) -> None:
    """The scheduler tells the reachability machine which probes go to servers that
    dial back from a second IP: while one is in flight, two contacted-IP arrivals do
    not make the address reachable; however that probe ends, the wait ends with it."""
    s = _sched()
    for i in (2, 3):
        _up(s, i, 0.0)
    _up_far(s, 7, 0.0)
    starts = _starts(s.handle_listen_addrs(LISTEN, 0.0))
    far = next(p for p in starts if p.server == PEERS[7])
    for probe in (p for p in starts if p.server != PEERS[7]):
        _result(s, probe, ProbeOutcome.REACHABLE, 0.5, DialBackSource.CONTACTED_IP)
    assert s.reachability.verdict(ME) == "unknown"  # waiting for PEERS[7]
    if end == "answer":
        _result(s, far, ProbeOutcome.UNREACHABLE, 1.0, DialBackSource.OTHER_IP)
    elif end == "timeout":
        _result(s, far, ProbeOutcome.TIMEOUT, 15.0, None)
    elif end == "cancelled":
        s.handle_probe_cancelled(far.probe_id, 15.0)
    else:
        s.handle_driver_restart(15.0)
    expected = "unknown" if end == "answer" else "reachable"
    assert s.reachability.verdict(ME) == expected


def test_a_verdict_hears_second_ip_servers_up_to_the_threshold_each_once() -> None:
    """Public hosts' ``nat_filtering`` stayed ``unknown`` in the simulator (8-9 of 34 at
    300 hosts): one second-IP server spoke, and the filtering vote needs ``confidence``
    of them. A decided address now asks further second-IP servers until that many have
    spoken - never one that already has, however long ago it was asked."""
    s = _sched()
    s.handle_listen_addrs(LISTEN, 0.0)
    for i in (2, 3):
        _up(s, i, 0.0)
    _up_far(s, 7, 0.0)
    for probe in s.in_flight():
        via = DialBackSource.OTHER_IP if probe.server == PEERS[7] else DialBackSource.CONTACTED_IP
        _result(s, probe, ProbeOutcome.REACHABLE, 1.0, via)
    assert s.reachability.verdict(ME) == "reachable" and not s.in_flight()
    assert _starts(s.handle_timeout(40.0)) == []  # PEERS[7] has spoken: not asked again
    (second,) = _starts(_up_far(s, 6, 41.0))
    assert second.server == PEERS[6]
    _result(s, second, ProbeOutcome.REACHABLE, 42.0, DialBackSource.OTHER_IP)
    assert s.reachability.far_evidence(ME, 42.0) == 2
    assert _starts(_up_far(s, 5, 43.0)) == []  # the threshold is met
