"""An InboundProbe that reaches the StatusTracker before its ConnectionUp is not lost.

The AutoNAT server and the Dialer report to the tracker independently; the
model-level rule is tested in ``test_node_model.py``, this drives the actor.
"""

from __future__ import annotations

import trio
import trio.testing

from actors import StatusTracker, Watch
from protocols import (
    ConnectionInfo,
    ConnectionUp,
    DialStatus,
    Direction,
    InboundProbe,
    Keypair,
    Lifecycle,
    ListenAddrsChanged,
    NodeModel,
    NodeSnapshot,
    PeersFound,
    ResponseStatus,
    WsAddress,
)

ME = Keypair.from_seed(b"\x01" * 32).peer_id
BOOT = Keypair.from_seed(b"\x02" * 32).peer_id
LOCAL = WsAddress("127.0.0.1", "ip4", 4001, False)
BOOT_ADDR = WsAddress("127.0.0.2", "ip4", 4001, False, BOOT)


async def test_probe_before_connection_up_ends_fully_connected(
        autojump_clock: trio.testing.MockClock) -> None:
    send, recv = trio.open_memory_channel[object](16)
    watch: Watch[NodeSnapshot] = Watch()
    tracker = StatusTracker(NodeModel(ME), recv, watch, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)
        for event in (
            ListenAddrsChanged((LOCAL,)),
            PeersFound((BOOT_ADDR,), "https://boot.test/status", from_bootstrap=True),
            InboundProbe(peer=BOOT, status=ResponseStatus.OK, at=trio.current_time(),
                         dial_status=DialStatus.OK, dialed=LOCAL, requested=1),
        ):
            await send.send(event)
        await trio.testing.wait_all_tasks_blocked()
        assert tracker.statistics().events == 3
        assert watch.get().lifecycle is Lifecycle.BOOTSTRAPPING  # no connection on record yet
        assert tracker.model.early_probes == (BOOT,)  # held, not dropped
        info = ConnectionInfo(1, BOOT, Direction.INBOUND, LOCAL, BOOT_ADDR.with_peer_id(None),
                              trio.current_time())
        await send.send(ConnectionUp(info))
        with trio.fail_after(5):
            snap = await watch.wait_for(lambda s: s.connections != ())
        assert snap.lifecycle is Lifecycle.FULLY_CONNECTED
        nursery.cancel_scope.cancel()
