"""The attacks of benchmarks/adversarial at small sizes: the defence holds end to end.

Each test starts a lab (three real ``autonat boot`` processes on loopback,
benchmarks/adversarial/_lab.py), runs one attack from loopback source
addresses standing for other hosts and networks, and checks two things: the
attacker gets no more than its share, and an honest ``autonat probe`` from
another /24 still gets the right verdict (``public``) during the attack. The
unit rules behind each defence are tested elsewhere (tests/test_admission.py,
tests/test_autonat_server_rules.py, tests/test_status_view.py, ...); these
tests add the whole process under attack.

The ``*_without_*`` tests run the same attack with the defence configured
away and check that the attacker then wins: proof that the measurement can
see the difference (the test above it would fail).

Timing here is real (separate processes), so only coarse bounds are asserted
(a refused connection is closed within seconds, not at a timeout).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from benchmarks.adversarial import _churn, _connections, _lab, _protocols
from benchmarks.adversarial._lab import Lab, Result, open_lab

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lab, "SETTLE", 0.2)  # RSS after the attack is not asserted here


def attack(run: Callable[[Lab], Awaitable[Result]], *flags: str,
           preexec: Callable[[], object] | None = None) -> Result:
    with open_lab(*flags, preexec=preexec) as lab:
        return trio.run(run, lab)


def config(tmp_path: Path, text: str) -> tuple[str, str]:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return "--config", str(path)


def honest_public(result: Result) -> None:
    assert result.honest is not None
    assert result.honest.verdict == "public", result.honest


# --- 1: idle authenticated connections ----------


def test_one_host_with_fresh_keys_holds_only_its_per_ip_share() -> None:
    result = attack(lambda lab: _connections.idle_one_host(lab, count=30))
    assert result.facts["held"] == 8  # max_connections_per_ip of the boot profile
    honest_public(result)


def test_without_the_per_ip_cap_one_host_holds_every_connection(tmp_path: Path) -> None:
    flags = config(tmp_path, "max_connections_per_ip = 100\n")
    result = attack(lambda lab: _connections.idle_one_host(lab, count=30, probe=False), *flags)
    assert result.facts["held"] == 30


def test_a_full_node_evicts_the_most_represented_network_for_an_honest_newcomer(
        tmp_path: Path) -> None:
    # 20 slots, 2 of them outbound (the helpers); 3 networks of 8 hosts fill the rest
    flags = config(tmp_path, "max_connections = 20\nmax_connections_per_subnet = 8\n")
    result = attack(lambda lab: _connections.idle_many_networks(lab, subnets=3, hosts=8), *flags)
    assert result.facts["held"] <= 18
    assert result.facts["evicted"] >= 1
    honest_public(result)


# --- 2: half-open connections ----------


def test_half_open_connections_take_only_pending_slots_and_end_at_the_handshake_timeout(
        tmp_path: Path) -> None:
    flags = config(tmp_path, "handshake_timeout = 2.0\n")
    result = attack(lambda lab: _connections.half_open(lab, count=30, linger=6.0), *flags)
    assert result.facts["held"] == 8  # max_pending_per_ip
    assert result.facts["still_open"] == 0  # the held ones closed at the handshake timeout
    honest_public(result)


# --- 3: dial-request flood ----------


def test_a_dial_request_flood_from_one_host_is_rate_limited_and_disconnected() -> None:
    result = attack(lambda lab: _protocols.dial_flood(lab, requests=300, seconds=5.0))
    assert result.facts["admitted"] <= 60  # rate_per_ip_per_minute
    assert result.facts["closed_conns"] >= 1  # closed after 8 rejected requests
    honest_public(result)


def test_without_per_ip_rate_limits_the_flood_is_served(tmp_path: Path) -> None:
    flags = config(tmp_path, "rate_per_ip_per_minute = 100000\nrate_per_subnet_per_minute = "
                             "100000\nrate_per_peer_per_minute = 100000\n")
    result = attack(lambda lab: _protocols.dial_flood(lab, requests=300, seconds=5.0), *flags)
    assert result.facts["admitted"] > 60


# --- 4: /status poisoning ----------


def test_peers_announcing_a_third_party_are_not_listed_in_status() -> None:
    result = attack(lambda lab: _protocols.status_poison(lab, one_host=8, hosts=4))
    assert result.facts["poisoned"] == 0
    assert result.facts["honest_listed"] >= 3  # the target and its helpers still are
    honest_public(result)


# --- 5: file-descriptor pressure ----------


def test_at_its_socket_budget_the_node_still_dials_back_and_never_blames_the_client() -> None:
    result = attack(lambda lab: _protocols.fd_pressure(lab, hosts=250, dial_backs=3),
                    preexec=_protocols.low_nofile)
    assert result.facts["held"] < 250  # inbound sockets stopped at the budget
    assert result.facts["dial_errors"] == 0
    assert result.facts["ok"] == 3  # the reserve kept room for the dial-backs
    honest_public(result)


# --- 6: planner churn ----------


def test_churning_peers_stay_within_max_peers(tmp_path: Path) -> None:
    flags = config(tmp_path, "max_peers = 50\n")
    result = attack(lambda lab: _churn.planner_churn(lab, cycles=200, concurrency=16), *flags)
    assert result.facts["done"] >= 190
    assert result.facts["peak_peers"] <= 50 + 16  # the store's bound plus live connections
    honest_public(result)


# --- 7: config bombs ----------


def test_config_bombs_end_autonat_boot_with_one_line() -> None:
    result = trio.run(_churn.config_bombs)
    assert result.facts["one_line"] == result.facts["files"] == 2


# --- 8 and 9: connections that never upgrade, a stalled stream ----------


def test_one_host_cannot_hold_many_connections_that_never_upgrade() -> None:
    result = attack(lambda lab: _connections.no_upgrade(lab, count=40, linger=0.0))
    assert result.facts["held"] <= 8
    honest_public(result)


def test_a_stalled_stream_does_not_stall_the_other_streams_of_its_connection() -> None:
    result = attack(lambda lab: _protocols.stalled_stream(lab, limit=8.0))
    assert 0 <= result.facts["during"] < 1.0
    honest_public(result)
