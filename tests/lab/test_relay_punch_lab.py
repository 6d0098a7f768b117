"""Issue 15's proof through real kernel NAT: private nodes reserve on relays and reach
each other - relayed first, then directly by hole punching.

Two hosts behind two masquerading routers run ``autonat node`` against two boot
nodes (:mod:`.relay_punch_lab`): both become ``private`` and reserve on the boot
nodes. Host A then runs ``autonat connect <B's circuit address> --json`` 20 times,
each a fresh process (fresh key, random listen port, fresh NAT mappings): at
least 18 must end ``hole-punched``, with the time to the direct connection
reported. With ``--random-fully`` on B's router (endpoint-dependent mapping) the
connection stays ``relayed`` and the JSON says why.

Needs root and ``ip``/``iptables`` (skipped with that reason otherwise).
"""

from __future__ import annotations

import statistics

import pytest

from .netlab import Lab, unavailable_reason
from .processes import http_get
from .relay_punch_lab import NODE_HTTP, build, connect_runs, summary, wait_for_relay_addrs

pytestmark = pytest.mark.lab

_REASON = unavailable_reason(("ip", "iptables"))
RUNS = 20
MIN_PUNCHED = 18


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_private_nodes_behind_two_nats_connect_relayed_then_hole_punched() -> None:
    with Lab() as lab:
        relay_lab = build(lab)
        host_a, host_b = relay_lab.nats.host_a, relay_lab.nats.host_b
        status_a = wait_for_relay_addrs(lab, host_a, relay_lab.nodes["a"])
        status_b = wait_for_relay_addrs(lab, host_b, relay_lab.nodes["b"])
        assert status_a["nat_status"] == status_b["nat_status"] == "private"
        assert status_b["nat_mapping"] == "endpoint-independent"
        runs = connect_runs(lab, relay_lab, status_b["relay_addrs"][0], runs=RUNS)
        metrics = http_get(host_b, f"http://{NODE_HTTP}/metrics").get("body", "")
        logs = relay_lab.nodes["b"].tail(60)
    report = summary(runs)
    punched = [run for run in runs if run.path == "hole-punched"]
    assert len(punched) >= MIN_PUNCHED, f"{len(punched)}/{RUNS} hole-punched\n{report}\n{logs}"
    for run in punched:
        assert run.doc is not None and run.doc["relay"] and run.doc["attempts"] >= 1
        assert run.doc["time_to_direct_s"] is not None and run.doc["rtt_ms"] is not None
    # B (the initiator, a long-running node) counted each exchange it won
    assert f'autonat_hole_punches_total{{outcome="direct"}} {float(len(punched))}' in metrics
    to_direct = [float(run.doc["time_to_direct_s"]) for run in punched if run.doc]
    elapsed = [float(run.doc["elapsed_s"]) for run in punched if run.doc]
    print(f"relay + hole punch through two masquerading NATs: {len(punched)}/{RUNS} "
          f"hole-punched; time to direct median {statistics.median(to_direct) * 1000:.0f} ms "
          f"(max {max(to_direct) * 1000:.0f} ms); connect elapsed median "
          f"{statistics.median(elapsed) * 1000:.0f} ms\n{report}")


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_an_endpoint_dependent_nat_stays_relayed_and_says_why() -> None:
    with Lab() as lab:
        relay_lab = build(lab, b_random_fully=True)
        status_b = wait_for_relay_addrs(lab, relay_lab.nats.host_b, relay_lab.nodes["b"])
        assert status_b["nat_mapping"] == "endpoint-dependent"
        runs = connect_runs(lab, relay_lab, status_b["relay_addrs"][0], runs=3)
    report = summary(runs)
    assert all(run.path == "relayed" for run in runs), report
    assert all("endpoint-dependent" in (run.doc or {}).get("reason", "") for run in runs), report
    print(f"--random-fully on B's router: 3/3 relayed, hole punch skipped\n{report}")
