"""``autonat connect``: TARGET parsing, and real connects over loopback WebSockets - a
direct dial, a relayed connection replaced by a hole-punched one (the real
``Transport.punch`` with both roles), a circuit the relay refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from actors import open_node
from actors.surfaces._cli import main
from actors.surfaces._cli_commands import _connect
from actors.surfaces._cli_connect import TargetError, parse_target
from protocols import AddressPolicy, Keypair, NodeConfig, WsAddress
from protocols.relay import CircuitAddress

LOOPBACK = AddressPolicy(allow_loopback=True)


def config(host: str, **settings: Any) -> NodeConfig:
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    http_listen="", **settings)


def test_targets_are_circuits_multiaddrs_or_peer_ids() -> None:
    peer = Keypair.generate().peer_id
    relay = f"/ip4/198.51.100.1/tcp/4001/ws/p2p/{Keypair.generate().peer_id}"
    assert isinstance(parse_target(f"{relay}/p2p-circuit/p2p/{peer}"), CircuitAddress)
    assert parse_target(f"/ip4/198.51.100.2/tcp/4001/ws/p2p/{peer}") == WsAddress.parse(
        f"/ip4/198.51.100.2/tcp/4001/ws/p2p/{peer}")
    assert parse_target(str(peer)) == peer
    with pytest.raises(TargetError, match="lacks /p2p/"):
        parse_target("/ip4/198.51.100.2/tcp/4001/ws")
    with pytest.raises(TargetError, match="not a multiaddr or peer id"):
        parse_target("nonsense")


def test_a_bad_target_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connect", "nonsense", "--json"]) == 1
    assert "not a multiaddr or peer id" in capsys.readouterr().err


async def test_connect_through_a_relay_ends_hole_punched_over_loopback() -> None:
    with trio.fail_after(40):
        async with open_node(config("127.0.0.30", relay_service=True)) as relay, \
                open_node(config("127.0.0.31")) as b:
            await b.reserve_relay(relay.listen_addrs[0])
            await b.wait_for(lambda s: bool(s.observed_addrs))
            [circuit] = b.relay_addrs()
            # one peer is a's target: it does not dial b's address if it learns it
            a_config = config("127.0.0.32", peers=(str(relay.listen_addrs[0]),),
                              target_peers=1)
            result = await _connect(a_config, str(circuit), 20)
            assert result["path"] == "hole-punched", result
            assert result["attempts"] == 1 and result["hole_punch"] == "direct"
            assert result["relay"] == str(relay.peer_id)
            assert result["rtt_ms"] is not None and result["time_to_direct_s"] is not None
            assert result["reason"] is None
            json.dumps(result)
            hole_punch = b.statistics().hole_punch
            assert hole_punch is not None and hole_punch.outcomes["direct"] == 1
            # a direct target is dialed directly
            direct = await _connect(config("127.0.0.33"), str(b.listen_addrs[0]), 10)
            assert direct["path"] == "direct" and direct["attempts"] == 0


async def test_a_circuit_without_a_reservation_is_not_connected_and_says_why() -> None:
    with trio.fail_after(30):
        async with open_node(config("127.0.0.34", relay_service=True)) as relay:
            nobody = Keypair.generate().peer_id
            circuit = CircuitAddress(relay.listen_addrs[0], nobody)
            result = await _connect(config("127.0.0.35"), str(circuit), 10)
            assert result["path"] is None
            assert "NO_RESERVATION" in result["reason"]
