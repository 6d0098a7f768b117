"""Connections awaiting the WebSocket upgrade are capped per IP, per subnet and in total.

Real sockets on loopback only: Linux routes all of 127.0.0.0/8 to ``lo``, so
clients bound to 127.0.0.x and 127.0.1.x play hosts on two /24 networks.
"""

from __future__ import annotations

import trio
import trio.testing
from structlog.testing import capture_logs

from actors import (
    FrameStream,
    WebSocketTransport,
    node_registry,
    open_connection,
    open_node,
    render_metrics,
)
from actors.transport._accept import SocketBudget
from actors.transport._upgrade_gate import LOG_INTERVAL, UpgradeGate
from protocols import AddressPolicy, Keypair, NodeConfig, UpgradeLimits, WsAddress

GATE_WARNING = "inbound connections refused or evicted before the WebSocket upgrade"


async def _counted(server: WebSocketTransport, total: int) -> None:
    """Until the server decided about ``total`` connections (waiting, refused, evicted)."""
    while True:
        stats = server.upgrades.statistics()
        if stats.pending + stats.evicted + sum(n for _, n in stats.refused) >= total:
            return
        await trio.sleep(0.005)


async def _closed_by_peer(stream: trio.SocketStream, wait: float) -> bool:
    """Did the other side close ``stream`` within ``wait`` seconds?"""
    with trio.move_on_after(wait):
        try:
            return await stream.receive_some(1) == b""
        except trio.BrokenResourceError:  # reset
            return True
    return False


async def test_a_host_flooding_unupgraded_connections_cannot_lock_out_an_honest_client(
) -> None:
    server_keys, client_keys = Keypair.generate(), Keypair.generate()
    # room for 9 sockets: without the upgrade caps the flood would take them all
    server = WebSocketTransport(handshake_timeout=30.0,
                                budget=SocketBudget(limit=100, reserve=90),
                                upgrade_limits=UpgradeLimits(max_pending=4, per_ip=2,
                                                             per_subnet=4))
    authenticated = trio.Event()

    async def serve(frames: FrameStream) -> None:
        async with open_connection(frames, server_keys, initiator=False):
            authenticated.set()
            await trio.sleep_forever()

    flood: list[trio.SocketStream] = []
    with trio.fail_after(20), capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            (addr,) = await nursery.start(server.listen,
                                          WsAddress.parse("/ip4/127.0.0.1/tcp/0/ws"), serve)
            try:
                # 127.0.0.2 and .3 open six raw connections each, .4 one: none ever upgrades
                for source in ["127.0.0.2"] * 6 + ["127.0.0.3"] * 6 + ["127.0.0.4"]:
                    flood.append(await trio.open_tcp_stream("127.0.0.1", addr.port,
                                                            local_address=source))
                    await _counted(server, len(flood))  # one at a time: oldest is index 0
                with trio.fail_after(5):  # promptly, not after the flood's 30 s timeouts
                    client = WebSocketTransport()
                    async with client.dial(addr.with_peer_id(server_keys.peer_id),
                                           reuse_listen_port=False,
                                           source_ip="127.0.1.5") as frames, \
                            open_connection(frames, client_keys, initiator=True,
                                            expected_peer=server_keys.peer_id) as conn:
                        await authenticated.wait()
                        assert conn.peer_id == server_keys.peer_id
                closed = [await _closed_by_peer(s, 0.3 if i in (1, 6, 7) else 2.0)
                          for i, s in enumerate(flood)]
            finally:
                for stream in flood:
                    stream.socket.close()
            nursery.cancel_scope.cancel()
    # .2's four extra and .3's four extra (per IP), .4's one (per subnet), and .2's
    # oldest, evicted for the honest newcomer from 127.0.1.0/24; three still wait
    assert [i for i, gone in enumerate(closed) if not gone] == [1, 6, 7]
    stats = server.upgrades.statistics()
    assert stats.refused == (("upgrade_ip", 8), ("upgrade_subnet", 1))
    assert stats.evicted == 1
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [GATE_WARNING]


async def test_refusals_are_logged_once_per_interval_with_their_counts(
        autojump_clock: trio.testing.MockClock) -> None:
    gate = UpgradeGate(UpgradeLimits(max_pending=1, per_ip=1, per_subnet=1))
    with capture_logs() as logs:
        for _ in range(5):
            gate._note("upgrade_ip", "192.0.2.1")
        await trio.sleep(LOG_INTERVAL)
        gate._note("upgrade_full", "198.51.100.1")
    assert [e["counts"] for e in logs] == [{"upgrade_ip": 1},
                                           {"upgrade_ip": 4, "upgrade_full": 1}]


async def test_a_node_takes_its_caps_from_the_config_and_exports_the_refusals() -> None:
    config = NodeConfig.from_settings(
        listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=AddressPolicy(allow_loopback=True),
        http_listen="", max_pending_upgrades_per_ip=1)
    raw: list[trio.SocketStream] = []
    with trio.fail_after(20):
        async with open_node(config) as node:
            port = node.listen_addrs[0].port
            try:
                for _ in range(3):
                    raw.append(await trio.open_tcp_stream("127.0.0.1", port,
                                                          local_address="127.0.0.2"))
                while (stats := node.statistics().upgrades) is None or stats.pending < 1 \
                        or sum(n for _, n in stats.refused) < 2:
                    await trio.sleep(0.005)
                metrics = render_metrics(node_registry(node)).decode()
            finally:
                for stream in raw:
                    stream.socket.close()
    assert 'autonat_inbound_refusals_total{reason="upgrade_ip"} 2.0' in metrics
    assert "autonat_inbound_refused_total 2.0" in metrics
    assert "autonat_inbound_upgrades_evicted_total 0.0" in metrics
