"""Issue 15's proof through real kernel NAT: private nodes reserve on relays and reach
each other - relayed first, then directly by hole punching.

Two hosts behind two masquerading routers run ``autonat node`` against two boot
nodes (:mod:`.relay_punch_lab`): both become ``private`` and reserve on the boot
nodes. Host A then runs ``autonat connect <B's circuit address> --json`` 20 times,
each a fresh process (fresh key, random listen port, fresh NAT mappings): at
least 18 must end ``hole-punched``, with the time to the direct connection
reported. With ``--random-fully`` on B's router (endpoint-dependent mapping) the
connection stays ``relayed`` and the JSON says why. With small relay limits on the
boot nodes, a circuit past its byte or time limit is closed by the relay.

Needs root and ``ip``/``iptables`` (skipped with that reason otherwise).
"""

from __future__ import annotations

import statistics

import pytest

from .netlab import Lab, unavailable_reason
from .processes import http_get
from .relay_punch_lab import (
    NODE_HTTP,
    build,
    connect_runs,
    limit_run,
    summary,
    wait_for_relay_addrs,
)

pytestmark = pytest.mark.lab

_REASON = unavailable_reason(("ip", "iptables"))
_NFT_REASON = unavailable_reason(("ip", "iptables", "nft"))
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


@pytest.mark.skipif(_NFT_REASON is not None, reason=_NFT_REASON or "")
def test_a_host_behind_address_restricted_filtering_is_hole_punched_too() -> None:
    with Lab() as lab:
        relay_lab = build(lab, b_address_restricted=True)
        status_b = wait_for_relay_addrs(lab, relay_lab.nats.host_b, relay_lab.nodes["b"])
        assert status_b["nat_status"] == "private"  # the dial-backs come from a 2nd address
        assert status_b["nat_filtering"] == "address-dependent"
        runs = connect_runs(lab, relay_lab, status_b["relay_addrs"][0], runs=5)
    report = summary(runs)
    assert sum(run.path == "hole-punched" for run in runs) >= 4, report
    print(f"address-restricted B: {sum(run.path == 'hole-punched' for run in runs)}/5 "
          f"hole-punched\n{report}")


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_the_relays_close_a_circuit_past_its_byte_or_time_limit() -> None:
    limits = {"AUTONAT_RELAY_CIRCUIT_DATA": "16384", "AUTONAT_RELAY_CIRCUIT_DURATION": "3"}
    with Lab() as lab:
        relay_lab = build(lab, boot_env=limits)
        status_b = wait_for_relay_addrs(lab, relay_lab.nats.host_b, relay_lab.nodes["b"])
        circuit = status_b["relay_addrs"][0]
        data = limit_run(lab, relay_lab, circuit, mode="data", label="limit-data")
        idle = limit_run(lab, relay_lab, circuit, mode="idle", label="limit-idle")
        ended = [line for site in relay_lab.boots
                 for line in http_get(site.ns, f"http://{site.ip}:7888/metrics")
                 .get("body", "").splitlines()
                 if line.startswith("autonat_relay_circuits_ended_total")]
    # Identify answers (about 0.5 KiB each) until 16 KiB went one way: then the relay cuts
    assert data["closed"] and "relay-data-limit" in data["reason"], data
    assert 1 <= data["requests"] < 64 and data["lived_s"] < 3, data
    # an idle circuit lives its 3 s, then the relay cuts it
    assert idle["closed"] and "relay-duration-limit" in idle["reason"], idle
    assert 2.5 <= idle["lived_s"] <= 6, idle
    assert any('end="data-limit"} 1.0' in line for line in ended), ended
    assert any('end="duration-limit"} 1.0' in line for line in ended), ended
    print(f"relay limits: data limit cut the circuit after {data['requests']} Identify "
          f"answers ({data['lived_s']} s), duration limit after {idle['lived_s']} s")
