"""Hole punching through real kernel NAT: the transport's timed simultaneous open.

Two hosts behind two masquerading routers (:mod:`.holepunch_lab`) dial each other
from their listen ports at the same moment, host A as the WebSocket client and
host B as the server, 20 times with fresh ports each time. With
endpoint-independent mapping on both routers the SYNs open both NATs and the
connections are direct; with ``--random-fully`` on one router (endpoint-dependent
mapping) the peer's SYN goes to a port nobody mapped, and nothing connects -
which is why the hole-punch exchange does not even try there.

Needs root and ``ip``/``iptables`` (skipped with that reason otherwise).
"""

from __future__ import annotations

import pytest

from .holepunch_lab import TRIALS, build_two_nats, punch_trials
from .netlab import Lab, unavailable_reason

pytestmark = pytest.mark.lab

_REASON = unavailable_reason(("ip", "iptables"))
MIN_DIRECT = 18


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_two_endpoint_independent_nats_are_punched_through() -> None:
    with Lab() as lab:
        topo = build_two_nats(lab)
        report = punch_trials(lab, topo)
        dump = topo.firewall_dump()
    assert report.direct >= MIN_DIRECT, f"{report.direct}/{TRIALS} direct\n{report.logs}\n{dump}"
    # each side ran its own role: A's punches sent the upgrade request, B's answered it
    assert all(r["via"] in ("punch", "listener") for r in report.a + report.b if r["ok"])
    print(f"hole punching through two masquerading NATs: {report.direct}/{TRIALS} direct, "
          f"times {report.times()}")


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_an_endpoint_dependent_nat_defeats_the_punch() -> None:
    with Lab() as lab:
        topo = build_two_nats(lab, b_random_fully=True)
        report = punch_trials(lab, topo, trials=5)
    assert report.direct == 0, report.logs
    assert all(r["error"] for r in report.a + report.b)
