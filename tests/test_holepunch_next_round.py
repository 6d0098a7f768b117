"""The hole-punch machine when the initiator's dials are refused at once: the responder,
still waiting for its own dials, follows the initiator's next round (the simulator's
punch matrix found a firewall that rejects ending the exchange with a protocol error)."""

from __future__ import annotations

import pytest

from protocols import AddressPolicy, ValidationError, WsAddress
from protocols.holepunch import (
    HolePunch,
    HolePunchConnect,
    HolePunchRole,
    HolePunchState,
    HolePunchSync,
    PunchDirect,
    SendPunchMessage,
)

POLICY = AddressPolicy()
A_ADDR = WsAddress.parse("/ip4/34.83.216.30/tcp/44000/ws")
B_ADDR = WsAddress.parse("/ip4/34.83.216.31/tcp/44000/ws")
EIM = "endpoint-independent"


def _message(commands: list[object]) -> object:
    (command,) = [c for c in commands if isinstance(c, SendPunchMessage)]
    return command.message


def _both_punching() -> tuple[HolePunch, HolePunch]:
    initiator = HolePunch(HolePunchRole.INITIATOR, HolePunchConnect.of((B_ADDR,), EIM), POLICY)
    responder = HolePunch(HolePunchRole.RESPONDER, HolePunchConnect.of((A_ADDR,), EIM), POLICY)
    connect = _message(initiator.start(0.0))
    reply = _message(responder.handle_message(connect, 0.05))  # type: ignore[arg-type]
    assert isinstance(_message(initiator.handle_message(reply, 0.1)),  # type: ignore[arg-type]
                      HolePunchSync)
    assert any(isinstance(c, PunchDirect) for c in responder.handle_message(HolePunchSync(), 0.15))
    dial_at = initiator.poll_timeout()  # half the measured round trip after Sync
    assert dial_at is not None
    assert any(isinstance(c, PunchDirect) for c in initiator.handle_timeout(dial_at))
    assert initiator.state is responder.state is HolePunchState.PUNCHING
    return initiator, responder


def test_a_responder_still_punching_follows_the_initiators_next_round() -> None:
    initiator, responder = _both_punching()
    connect = _message(initiator.handle_punch_failed("connection refused", 0.16))
    assert isinstance(connect, HolePunchConnect)
    reply = _message(responder.handle_message(connect, 0.21))
    assert isinstance(reply, HolePunchConnect)
    assert responder.state is HolePunchState.AWAIT_SYNC and responder.attempts == 2
    assert initiator.attempts == 2


def test_a_connect_while_the_initiator_punches_is_still_out_of_turn() -> None:
    initiator, _ = _both_punching()
    with pytest.raises(ValidationError, match="unexpected connect"):
        initiator.handle_message(HolePunchConnect.of((A_ADDR,), EIM), 0.2)
