"""The hole-punch messages and machine (DCUtR semantics), without Trio or sockets.

Two machines are wired back to back through a modelled relay: every message
arrives ``one_way`` seconds after it is sent, on a virtual clock. The tests
check the moment each side dials, the roles, the retries and when not to try.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import AddressPolicy, LocalProtocolError, ValidationError, WsAddress
from protocols.holepunch import (
    MAX_PUNCH_ADDRS,
    HolePunch,
    HolePunchConfig,
    HolePunchConnect,
    HolePunchFinished,
    HolePunchRole,
    HolePunchState,
    HolePunchSync,
    PunchDirect,
    PunchOutcome,
    SendPunchMessage,
    decode_holepunch_message,
    own_punch_addrs,
    usable_punch_addrs,
)

POLICY = AddressPolicy()
A_ADDR = WsAddress.parse("/ip4/34.83.216.30/tcp/44000/ws")
B_ADDR = WsAddress.parse("/ip4/34.83.216.31/tcp/44000/ws")
EIM, EDM = "endpoint-independent", "endpoint-dependent"


# --- the messages ----------------------------------------------------------------------


def test_golden_wire_forms() -> None:
    connect = HolePunchConnect.of((A_ADDR,), EIM)
    assert connect.to_wire() == {"type": "connect", "addrs": [A_ADDR.to_bytes()],
                                 "mapping": EIM}
    assert HolePunchSync().to_wire() == {"type": "sync"}
    assert decode_holepunch_message(connect.to_wire()) == connect
    assert decode_holepunch_message({"type": "sync", "extra": 1}) == HolePunchSync()


@given(st.lists(st.binary(min_size=1, max_size=64), max_size=MAX_PUNCH_ADDRS),
       st.sampled_from(["none", EIM, EDM, "unknown"]))
def test_connect_round_trips(addrs: list[bytes], mapping: str) -> None:
    message = HolePunchConnect(tuple(addrs), mapping)
    assert decode_holepunch_message(message.to_wire()) == message


@pytest.mark.parametrize(("obj", "match"), [
    ([], "expected a map"),
    ({"type": "punch"}, "unknown type"),
    ({"type": "connect", "mapping": EIM}, "addrs"),
    ({"type": "connect", "addrs": [b"x"] * (MAX_PUNCH_ADDRS + 1), "mapping": EIM},
     "items"),
    ({"type": "connect", "addrs": [b"x"], "mapping": "symmetric"}, "mapping"),
    ({"type": "connect", "addrs": ["text"], "mapping": EIM}, "addrs"),
])
def test_malformed_messages_are_refused(obj: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        decode_holepunch_message(obj)


def test_only_plain_routable_addresses_are_usable_each_judged_alone() -> None:
    secure = WsAddress.parse("/ip4/34.83.216.32/tcp/443/wss")
    private = WsAddress.parse("/ip4/10.0.0.1/tcp/44000/ws")
    message = HolePunchConnect((A_ADDR.to_bytes(), b"\xff\x00junk", secure.to_bytes(),
                                private.to_bytes(), A_ADDR.to_bytes()), EIM)
    usable, skipped = usable_punch_addrs(message, POLICY)
    assert usable == (A_ADDR,)
    assert len(skipped) == 3
    assert any("plain /ws" in why for why in skipped)


# --- the machine, through a modelled relay -------------------------------------------


@dataclass
class Relay:
    """Two machines, messages delayed ``one_way`` each way, a virtual clock."""

    initiator: HolePunch
    responder: HolePunch
    one_way: float
    now: float = 0.0
    queue: list[tuple[float, int, str, object]] = field(default_factory=list)
    dials: dict[str, list[tuple[float, PunchDirect]]] = field(
        default_factory=lambda: {"initiator": [], "responder": []})
    finished: dict[str, HolePunchFinished] = field(default_factory=dict)
    direct_after: int | None = None
    """Report a direct connection to both once this many attempts dialed on both sides."""
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def machine(self, side: str) -> HolePunch:
        return self.initiator if side == "initiator" else self.responder

    def apply(self, side: str, commands: list[object]) -> None:
        other = "responder" if side == "initiator" else "initiator"
        for command in commands:
            if isinstance(command, SendPunchMessage):
                heapq.heappush(self.queue, (self.now + self.one_way, next(self._seq), other,
                                            command.message))
            elif isinstance(command, PunchDirect):
                self.dials[side].append((self.now, command))
            elif isinstance(command, HolePunchFinished):
                self.finished[side] = command
        if self.direct_after is not None and all(
                len(d) >= self.direct_after for d in self.dials.values()):
            self.direct_after = None
            for each in ("initiator", "responder"):
                self.apply(each, self.machine(each).handle_direct_connection(self.now))

    def run(self, limit: float = 300.0) -> None:
        self.apply("initiator", self.initiator.start(self.now))
        while self.now < limit and len(self.finished) < 2:
            times = [t for t in (self.initiator.poll_timeout(), self.responder.poll_timeout())
                     if t is not None]
            if self.queue:
                times.append(self.queue[0][0])
            if not times:
                break
            self.now = max(self.now, min(times))
            while self.queue and self.queue[0][0] <= self.now:
                _, _, side, message = heapq.heappop(self.queue)
                self.apply(side, self.machine(side).handle_message(message, self.now))
            for side in ("initiator", "responder"):
                self.apply(side, self.machine(side).handle_timeout(self.now))


def _pair(*, a_mapping: str = EIM, b_mapping: str = EIM, one_way: float = 0.05,
          a_addrs: tuple[WsAddress, ...] = (A_ADDR,), b_addrs: tuple[WsAddress, ...] = (B_ADDR,),
          config: HolePunchConfig | None = None) -> Relay:
    initiator = HolePunch(HolePunchRole.INITIATOR, HolePunchConnect.of(b_addrs, b_mapping),
                          POLICY, config)
    responder = HolePunch(HolePunchRole.RESPONDER, HolePunchConnect.of(a_addrs, a_mapping),
                          POLICY, config)
    return Relay(initiator, responder, one_way)


@given(st.floats(min_value=0.001, max_value=2.0))
def test_both_sides_dial_at_the_same_moment_in_their_roles(one_way: float) -> None:
    relay = _pair(one_way=one_way)
    relay.direct_after = 1
    relay.run()
    (b_at, b_dial), = relay.dials["initiator"]
    (a_at, a_dial), = relay.dials["responder"]
    assert a_at == pytest.approx(b_at)  # Sync's arrival is the initiator's rtt/2
    assert a_at == pytest.approx(3 * one_way)  # Connect, Connect, Sync
    assert a_dial.as_client and not b_dial.as_client  # A dialed through the relay: client
    assert a_dial.addrs == (B_ADDR,) and b_dial.addrs == (A_ADDR,)
    for side in ("initiator", "responder"):
        done = relay.finished[side]
        assert done.outcome is PunchOutcome.DIRECT and done.attempts == 1
    assert relay.finished["initiator"].rtt == pytest.approx(2 * one_way)


def test_three_failed_attempts_leave_the_relayed_connection_and_say_so() -> None:
    relay = _pair(config=HolePunchConfig(punch_timeout=2.0))
    relay.run()
    assert len(relay.dials["initiator"]) == len(relay.dials["responder"]) == 3
    assert [d.attempt for _, d in relay.dials["initiator"]] == [1, 2, 3]
    done = relay.finished["initiator"]
    assert done.outcome is PunchOutcome.FAILED and done.attempts == 3
    assert "3 attempts failed" in done.reason
    assert relay.finished["responder"].outcome is PunchOutcome.FAILED
    assert relay.initiator.state is relay.responder.state is HolePunchState.DONE


def test_the_second_attempt_can_succeed() -> None:
    relay = _pair(config=HolePunchConfig(punch_timeout=2.0))
    relay.direct_after = 2
    relay.run()
    assert relay.finished["initiator"].outcome is PunchOutcome.DIRECT
    assert relay.finished["initiator"].attempts == 2


@pytest.mark.parametrize(("a_mapping", "b_mapping", "who"), [
    (EDM, EIM, "the peer's NAT"), (EIM, EDM, "our NAT")])
def test_an_endpoint_dependent_mapping_is_not_tried_and_both_say_why(
        a_mapping: str, b_mapping: str, who: str) -> None:
    relay = _pair(a_mapping=a_mapping, b_mapping=b_mapping)
    relay.run()
    assert relay.dials == {"initiator": [], "responder": []}
    for done in relay.finished.values():
        assert done.outcome is PunchOutcome.SKIPPED
        assert "endpoint-dependent" in done.reason
    assert who in relay.finished["initiator"].reason


def test_no_address_to_dial_is_skipped() -> None:
    relay = _pair(a_addrs=())
    relay.run()
    assert relay.finished["initiator"].outcome is PunchOutcome.SKIPPED
    assert "no usable public address" in relay.finished["initiator"].reason
    assert relay.finished["responder"].outcome is PunchOutcome.SKIPPED


def test_a_silent_peer_ends_the_exchange_after_the_reply_timeout() -> None:
    initiator = HolePunch(HolePunchRole.INITIATOR, HolePunchConnect.of((B_ADDR,), EIM), POLICY)
    commands = initiator.start(0.0)
    assert isinstance(commands[0], SendPunchMessage)
    assert initiator.poll_timeout() == HolePunchConfig().reply_timeout
    assert initiator.handle_timeout(1.0) == []
    (done,) = initiator.handle_timeout(10.0)
    assert isinstance(done, HolePunchFinished) and done.outcome is PunchOutcome.FAILED
    assert "stopped answering" in done.reason


def test_a_direct_connection_by_any_route_ends_it_early() -> None:
    initiator = HolePunch(HolePunchRole.INITIATOR, HolePunchConnect.of((B_ADDR,), EIM), POLICY)
    initiator.start(0.0)
    (done,) = initiator.handle_direct_connection(0.01)
    assert isinstance(done, HolePunchFinished) and done.outcome is PunchOutcome.DIRECT
    assert initiator.handle_punch_failed("late", 0.02) == []  # a late dial result


def test_the_stream_ending_while_a_message_is_due_fails_but_not_while_dialing() -> None:
    responder = HolePunch(HolePunchRole.RESPONDER, HolePunchConnect.of((A_ADDR,), EIM), POLICY)
    (done,) = responder.handle_stream_ended("reset", 0.0)
    assert isinstance(done, HolePunchFinished) and done.outcome is PunchOutcome.FAILED
    assert "reset" in done.reason and done.attempts == 0
    responder = HolePunch(HolePunchRole.RESPONDER, HolePunchConnect.of((A_ADDR,), EIM), POLICY)
    responder.handle_message(HolePunchConnect.of((B_ADDR,), EIM), 0.0)
    (dial,) = responder.handle_message(HolePunchSync(), 0.1)
    assert isinstance(dial, PunchDirect)
    # the initiator finished first (its punch landed) and closed the stream: keep going
    assert responder.handle_stream_ended("the peer closed the stream", 0.2) == []
    (done,) = responder.handle_direct_connection(0.3)
    assert isinstance(done, HolePunchFinished) and done.outcome is PunchOutcome.DIRECT
    assert responder.handle_stream_ended("late", 0.4) == []


def test_own_addresses_confirmed_first_then_observed_plain_routable_once() -> None:
    private = WsAddress.parse("/ip4/192.168.1.5/tcp/4001/ws")
    secure = WsAddress.parse("/ip4/34.83.216.40/tcp/443/wss")
    observed = (B_ADDR, private, secure, A_ADDR.with_peer_id(None), B_ADDR)
    assert own_punch_addrs((A_ADDR,), observed, POLICY) == (A_ADDR, B_ADDR)
    many = tuple(WsAddress.parse(f"/ip4/34.83.216.{i}/tcp/44000/ws") for i in range(20))
    assert len(own_punch_addrs((), many, POLICY)) == MAX_PUNCH_ADDRS
    assert own_punch_addrs((), (private,), AddressPolicy(allow_private=True)) == (private,)


def test_a_peer_out_of_turn_is_a_protocol_error_ours_out_of_turn_is_a_bug() -> None:
    responder = HolePunch(HolePunchRole.RESPONDER, HolePunchConnect.of((A_ADDR,), EIM), POLICY)
    with pytest.raises(ValidationError, match="unexpected sync"):
        responder.handle_message(HolePunchSync(), 0.0)
    with pytest.raises(LocalProtocolError, match="start is not accepted"):
        responder.start(0.0)
    initiator = HolePunch(HolePunchRole.INITIATOR, HolePunchConnect.of((B_ADDR,), EIM), POLICY)
    initiator.start(0.0)
    with pytest.raises(ValidationError, match="unexpected sync"):
        initiator.handle_message(HolePunchSync(), 0.1)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        HolePunchConfig(max_attempts=0)
    with pytest.raises(ValueError, match="punch_timeout"):
        HolePunchConfig(punch_timeout=0)
