"""A connection whose requests keep being refused is closed, whatever it sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from actors import EXCHANGE_FAILURES, MemoryNetwork, Node, open_connection, open_node
from actors.connection._connection import Connection
from protocols import (
    IDENTIFY_PROTOCOL_ID,
    AddressPolicy,
    CloseForRefusals,
    ConnectionConfig,
    Identify,
    Keypair,
    NodeConfig,
    RefusalWindow,
)


def test_refusals_close_only_when_enough_fall_within_the_window() -> None:
    window = RefusalWindow(max_refusals=3, window=10.0)
    assert window.handle_refused(0.0) is None
    assert window.handle_refused(5.0) is None
    assert window.handle_refused(10.0) is None  # the first is 10 s old: out of the window
    assert window.handle_refused(14.0) == CloseForRefusals(3, 10.0)
    assert window.handle_refused(14.5) is None  # answered once: the connection is closing
    assert window.total == 5 and window.closing


def test_a_slow_trickle_of_refusals_never_closes() -> None:
    window = RefusalWindow(max_refusals=3, window=10.0)
    assert all(window.handle_refused(t * 5.1) is None for t in range(1000))
    assert len(window._recent) <= 3


def test_the_limits_come_from_the_connection_config() -> None:
    window = ConnectionConfig(max_refusals=2, refusal_window=1.5).new_refusal_window()
    assert (window.max_refusals, window.window) == (2, 1.5)
    with pytest.raises(ValueError):
        ConnectionConfig(max_refusals=0)
    with pytest.raises(ValueError):
        RefusalWindow(1, 0.0)


@asynccontextmanager
async def _bare(net: MemoryNetwork, host: str, server: Node) -> AsyncIterator[Connection]:
    """An authenticated connection to ``server`` from a bare keypair (no node behind it)."""
    async with net.transport(host).dial(server.listen_addrs[0]) as frames, open_connection(
            frames, Keypair.generate(), initiator=True, expected_peer=server.peer_id) as conn:
        yield conn


async def _identify(conn: Connection) -> Identify:
    stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
    return Identify.from_wire(await stream.request({}, timeout=5.0))


async def test_a_peer_opening_streams_for_an_unknown_protocol_is_disconnected(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    config = NodeConfig.from_settings(listen=("/ip4/127.0.1.1/tcp/0/ws",),
                                      policy=AddressPolicy(allow_loopback=True))
    with trio.fail_after(60):
        async with open_node(config, transport=net.transport("127.0.1.1")) as server, \
                _bare(net, "127.0.2.9", server) as honest, \
                _bare(net, "127.0.3.9", server) as flooder:
            await _identify(honest)
            refused = 0
            for _ in range(50):  # bounded: the server must cut it off long before
                if flooder.closed.is_set():
                    break
                try:
                    stream = await flooder.open_stream("/no/such/protocol/1")
                    await stream.request({}, timeout=5.0)
                except EXCHANGE_FAILURES:
                    refused += 1
                await trio.sleep(0.1)
            assert flooder.closed.is_set() and refused == 8
            assert flooder.close_reason is not None
            assert "8 refused requests within 60 s" in flooder.close_reason
            # the honest peer's connection is untouched and still served
            assert not honest.closed.is_set()
            assert (await _identify(honest)).protocols
            assert honest.peer_id == server.peer_id
