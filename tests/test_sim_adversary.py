"""The simulator's adversarial servers: which handlers each mode replaces, what it rewrites.

Their behaviour on the wire is exercised by real runs (tests/test_sim_robustness.py);
these are the parts that need no network.
"""

from __future__ import annotations

import pytest

from actors.surfaces._sim_adversary import Adversary
from protocols import DIAL_REQUEST_PROTOCOL_ID, IDENTIFY_PROTOCOL_ID, WsAddress
from protocols.sim import LIAR_MODES


async def _real(stream: object) -> None:  # a stand-in for the node's own handler
    raise AssertionError("not called here")


REAL = {DIAL_REQUEST_PROTOCOL_ID: _real, IDENTIFY_PROTOCOL_ID: _real}


@pytest.mark.parametrize(("mode", "replaced"), [
    ("claim_reachable", {DIAL_REQUEST_PROTOCOL_ID}),
    ("claim_unreachable", {DIAL_REQUEST_PROTOCOL_ID}),
    ("silent", {DIAL_REQUEST_PROTOCOL_ID}),
    ("wrong_observed", {IDENTIFY_PROTOCOL_ID}),
    ("vanish", set()),  # honest until the runner shuts the node down
])
def test_each_mode_replaces_only_its_protocol(mode: str, replaced: set[str]) -> None:
    overrides = Adversary(mode, at=0.0).overrides(REAL)  # type: ignore[arg-type]
    assert set(overrides) == replaced
    assert all(handler is not _real for handler in overrides.values())


def test_every_mode_is_covered() -> None:
    assert set(LIAR_MODES) == {"claim_reachable", "claim_unreachable", "wrong_observed",
                               "silent", "vanish"}


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown liar mode 'flaky'"):
        Adversary("flaky", at=0.0)


def test_wrong_observed_rewrites_only_the_observed_address() -> None:
    liar = Adversary("wrong_observed", at=0.0, index=2)
    real = WsAddress.parse("/ip4/10.16.0.9/tcp/4001/ws")
    message = {"t": "identify", "observed_addr": real.to_bytes(), "agent_version": "x"}
    rewritten = liar.rewrite_observed(message)
    wrong = WsAddress.parse(rewritten["observed_addr"])
    assert (wrong.host, wrong.port) == ("10.250.0.3", 4001)
    assert {k: v for k, v in rewritten.items() if k != "observed_addr"} == \
        {"t": "identify", "agent_version": "x"}
    assert liar.lies == 1
    assert liar.rewrite_observed({"t": "identify"}) == {"t": "identify"}  # nothing to lie about
    assert liar.lies == 1
