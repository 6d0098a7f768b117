"""StatusTracker actor: events in, snapshots out, persistence, restarts, debounce."""

from __future__ import annotations

import itertools
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
import trio
import trio.testing
from structlog.testing import capture_logs

from actors import PEER_STORE_FILE, StatusTracker, Watch, atomic_write_bytes
from protocols import (
    ConnectionDown,
    ConnectionInfo,
    ConnectionUp,
    Direction,
    Keypair,
    Lifecycle,
    ListenAddrsChanged,
    NodeModel,
    NodeSnapshot,
    PeerId,
    PeersFound,
    WsAddress,
    decode_peer_store,
)

ME = Keypair.from_seed(b"\x01" * 32).peer_id
PEERS = [Keypair.from_seed(bytes([n]) * 32).peer_id for n in range(2, 8)]
LOCAL = WsAddress("127.0.0.1", "ip4", 4001, False)


def found(*peers: PeerId, boot: bool = True) -> PeersFound:
    addrs = tuple(WsAddress(f"127.0.0.{n + 2}", "ip4", 4001, False, p) for n, p in enumerate(peers))
    return PeersFound(addrs, "https://boot.test/status", from_bootstrap=boot)


def up(cid: int, peer: PeerId) -> ConnectionUp:
    remote = WsAddress("127.0.0.9", "ip4", 4001, False)
    return ConnectionUp(ConnectionInfo(cid, peer, Direction.OUTBOUND, LOCAL, remote, 0.0))


@dataclass
class Harness:
    tracker: StatusTracker
    send: trio.MemorySendChannel[object]
    watch: Watch[NodeSnapshot]

    async def until(self, cond: Callable[[], bool]) -> None:
        """Spin without advancing virtual time (a save may be running in a thread)."""
        for _ in range(200_000):
            if cond():
                return
            await trio.sleep(0)
        raise AssertionError("condition never became true")

    async def settle(self) -> None:
        """Until the tracker handled everything sent and waits for more (no time passes)."""
        stats = self.send.statistics
        await self.until(
            lambda: stats().current_buffer_used == 0 and stats().tasks_waiting_receive == 1
        )


@asynccontextmanager
async def running(
    data_dir: Path | None,
    *,
    model: NodeModel | None = None,
    tracker: StatusTracker | None = None,
    save_interval: float = 5.0,
    channel: tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]] | None = None,
) -> AsyncIterator[Harness]:
    send, recv = channel or trio.open_memory_channel[object](64)
    watch: Watch[NodeSnapshot] = tracker._watch if tracker else Watch()
    if tracker is None:
        tracker = StatusTracker(
            model or NodeModel(ME),
            recv,
            watch,
            data_dir=data_dir,
            save_interval=save_interval,
            clock=trio.current_time,
        )
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)
        yield Harness(tracker, send, watch)
        nursery.cancel_scope.cancel()


# --- events in, snapshots out ---------------------------------------------------------


async def test_events_in_snapshots_out(autojump_clock: trio.testing.MockClock) -> None:
    async with running(None) as h:
        first = h.watch.get()
        assert first.lifecycle is Lifecycle.STARTING and first.peers == ()
        updates = h.watch.subscribe()
        assert await updates.__anext__() == first
        await h.send.send(ListenAddrsChanged((LOCAL,)))
        await h.send.send(found(PEERS[0], PEERS[1]))
        await h.send.send(up(1, PEERS[0]))
        with trio.fail_after(5):
            snap = await h.watch.wait_for(lambda s: s.lifecycle is Lifecycle.CONNECTED)
        assert snap.connected_peers == (PEERS[0],)
        assert {rec.peer_id for rec in snap.peers} == {PEERS[0], PEERS[1]}
        assert snap.listen_addrs == (LOCAL,)
        assert (await updates.__anext__()).revision == snap.revision  # skipped to the latest
        published = h.tracker.statistics().snapshots_published
        await h.send.send(ListenAddrsChanged((LOCAL,)))  # no change: no new snapshot
        await h.send.send(ConnectionDown(99, PEERS[0], "unknown connection"))
        await h.settle()
        stats = h.tracker.statistics()
        assert stats.snapshots_published == published
        assert (stats.events, stats.changes, stats.ignored) == (5, 3, 0)
        assert (stats.peers, stats.connections, stats.lifecycle) == (2, 1, Lifecycle.CONNECTED)


async def test_events_waiting_together_make_one_snapshot(
        autojump_clock: trio.testing.MockClock) -> None:
    async with running(None) as h:
        before = h.tracker.statistics().snapshots_published
        for n, peer in enumerate(PEERS):  # send_nowait: the tracker cannot run in between
            h.send.send_nowait(found(peer))
            h.send.send_nowait(up(n + 1, peer))
        await h.settle()
        stats = h.tracker.statistics()
        assert stats.changes == 2 * len(PEERS)  # every event applied ...
        assert stats.snapshots_published == before + 1  # ... and published once
        assert h.watch.get().connected_peers == tuple(sorted(PEERS))


async def test_unknown_messages_are_logged_and_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with capture_logs() as logs:
        async with running(None) as h:
            await h.send.send("not an event")
            await h.send.send(found(PEERS[0]))
            with trio.fail_after(5):
                await h.watch.wait_for(lambda s: len(s.peers) == 1)
            assert h.tracker.statistics().ignored == 1
    [warning] = [e for e in logs if e["event"] == "unknown message ignored"]
    assert warning["log_level"] == "warning"
    assert warning["message_type"] == "str"


async def test_every_log_line_names_the_actor_and_the_peers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        async with running(tmp_path) as h:
            await h.send.send(ListenAddrsChanged((LOCAL,)))
            await h.send.send(up(1, PEERS[0]))
            await h.send.send(ConnectionDown(1, PEERS[0], "bye"))
            await h.settle()
    assert logs
    for entry in logs:
        assert entry["actor"] == "status-tracker"
        assert entry["node"] == str(ME)
        assert "local_peer" not in entry  # our id once, as node
    changes = [e for e in logs if e["event"] == "lifecycle changed"]
    assert [(e["previous"], e["lifecycle"]) for e in changes] == [
        ("starting", "bootstrapping"),
        ("bootstrapping", "connected"),
        ("connected", "bootstrapping"),
    ]
    assert changes[1]["peer"] == changes[2]["peer"] == str(PEERS[0])


async def test_applied_events_are_logged_at_debug_level_only(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    before, configured = structlog.get_config()["wrapper_class"], structlog.is_configured()
    try:
        for level, expected in ((logging.DEBUG, 3), (logging.INFO, 0)):
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
            with capture_logs() as logs:
                async with running(tmp_path / str(level)) as h:
                    await h.send.send(ListenAddrsChanged((LOCAL,)))
                    await h.send.send(up(1, PEERS[0]))
                    await h.send.send(ConnectionDown(1, PEERS[0], "bye"))
                    await h.settle()
            applied = [(e["event_type"], e.get("peer")) for e in logs
                       if e["event"] == "event applied"]
            assert applied == [("listen_addrs_changed", None), ("connection_up", str(PEERS[0])),
                               ("connection_down", str(PEERS[0]))][:expected]
    finally:
        if configured:
            structlog.configure(wrapper_class=before)
        else:
            structlog.reset_defaults()


# --- persistence -------------------------------------------------------------------------


async def test_peers_survive_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with running(tmp_path) as h:
        await h.send.send(found(PEERS[0], PEERS[1]))
        await h.settle()
        assert not (tmp_path / PEER_STORE_FILE).exists()  # debounced, not yet written
    # cancelled: the final shielded save wrote the store
    records, reasons = decode_peer_store((tmp_path / PEER_STORE_FILE).read_bytes())
    assert {rec.peer_id for rec in records} == {PEERS[0], PEERS[1]} and reasons == []
    async with running(tmp_path) as h:  # a brand-new node with the same data_dir
        snap = h.watch.get()
        assert {rec.peer_id for rec in snap.peers} == {PEERS[0], PEERS[1]}
        record = snap.peer(PEERS[0])
        assert record is not None and record.from_bootstrap
        assert not h.tracker.statistics().store_dirty  # memory equals the file
    assert os.listdir(tmp_path) == [PEER_STORE_FILE]  # no temp files left behind
    assert stat.S_IMODE((tmp_path / PEER_STORE_FILE).stat().st_mode) == 0o600


async def test_temporaries_of_a_killed_save_are_removed_at_start(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    old = tmp_path / f".{PEER_STORE_FILE}.0123456789abcdef.tmp"  # a save killed long ago
    young = tmp_path / f".{PEER_STORE_FILE}.fedcba9876543210.tmp"  # maybe a live writer
    other = tmp_path / f".{PEER_STORE_FILE}.notours.tmp"
    for path in (old, young, other):
        path.write_bytes(b"{")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    with capture_logs() as logs:
        async with running(tmp_path):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, other.name])
    assert any(e["event"] == "removed temporary files left by an interrupted save"
               and e["files"] == [str(old)] for e in logs)


async def test_closing_the_mailbox_stops_the_tracker_and_saves(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    send, recv = trio.open_memory_channel[object](8)
    tracker = StatusTracker(NodeModel(ME), recv, Watch(), data_dir=tmp_path / "new" / "dir")
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)
        await send.send(found(PEERS[2]))
        await send.aclose()
    [rec], _ = decode_peer_store((tmp_path / "new" / "dir" / PEER_STORE_FILE).read_bytes())
    assert rec.peer_id == PEERS[2]
    assert tracker.statistics().saves == 1


async def test_a_corrupt_store_is_set_aside_with_a_warning(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    store = tmp_path / PEER_STORE_FILE
    store.write_bytes(b'{"version": 1, "peers": [')
    with capture_logs() as logs:
        async with running(tmp_path) as h:
            assert h.watch.get().peers == ()
            await h.send.send(found(PEERS[0]))
            await h.settle()
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("peers.json.corrupt-")]
    assert aside.read_bytes() == b'{"version": 1, "peers": ['
    [warning] = [e for e in logs if e["event"].startswith("corrupt peer store set aside")]
    assert warning["log_level"] == "warning"
    assert warning["moved_to"] == str(aside)
    assert "not valid JSON" in warning["problem"]
    [rec], _ = decode_peer_store(store.read_bytes())  # a fresh store was written at stop
    assert rec.peer_id == PEERS[0]


async def test_a_second_corrupt_store_does_not_overwrite_the_first(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    for content in (b"one", b"two"):
        (tmp_path / PEER_STORE_FILE).write_bytes(content)
        async with running(tmp_path):
            pass
    asides = sorted(p.read_bytes() for p in tmp_path.glob("peers.json.corrupt-*"))
    assert asides == [b"one", b"two"]


async def test_bad_entries_are_skipped_and_the_rest_loaded(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    good = {
        "peer_id": str(PEERS[1]),
        "addrs": [f"/ip4/127.0.0.5/tcp/4001/ws/p2p/{PEERS[1]}"],
        "first_seen": 1,
        "last_seen": 2,
    }
    doc = {"version": 1, "peers": [{"peer_id": "nope"}, good]}
    (tmp_path / PEER_STORE_FILE).write_text(json.dumps(doc))
    with capture_logs() as logs:
        async with running(tmp_path) as h:
            assert [rec.peer_id for rec in h.watch.get().peers] == [PEERS[1]]
    [warning] = [e for e in logs if e["event"] == "peer store entries skipped"]
    assert warning["count"] == 1
    assert not list(tmp_path.glob("*.corrupt-*"))


async def test_save_failures_are_logged_not_fatal(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_bytes(b"")
    with capture_logs() as logs:
        async with running(blocker, save_interval=1.0) as h:
            await h.send.send(found(PEERS[0]))
            await trio.sleep(1.5)
            await h.settle()
            assert h.tracker.statistics().save_failures >= 1
            await h.send.send(found(PEERS[1]))  # still working
            with trio.fail_after(5):
                await h.watch.wait_for(lambda s: len(s.peers) == 2)
    assert any(e["event"] == "peer store save failed" for e in logs)


async def test_saves_are_debounced_in_virtual_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with running(tmp_path, save_interval=5.0) as h:
        start = trio.current_time()
        await h.send.send(found(PEERS[0]))
        await trio.sleep(4.9)
        assert h.tracker.statistics().saves == 0
        assert not (tmp_path / PEER_STORE_FILE).exists()
        await trio.sleep(0.2)
        await h.until(lambda: h.tracker.statistics().saves == 1)
        assert h.tracker.statistics().last_save_at == pytest.approx(start + 5.0)
        save_times = {start + 5.0}
        for n in range(23):  # a change every 0.7 s, from 5.1 s to 20.5 s
            await h.send.send(found(PEERS[n % len(PEERS)]))
            await h.settle()
            await trio.sleep(0.7)
            await h.settle()  # a save may have started: let its thread finish
            last = h.tracker.statistics().last_save_at
            assert last is not None
            save_times.add(last)
        await trio.sleep(6)
        await h.settle()
        assert not h.tracker.statistics().store_dirty
        last = h.tracker.statistics().last_save_at
        assert last is not None
        save_times.add(last)
    times = sorted(save_times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 5.0 - 1e-9 for gap in gaps), times
    # dirty at 0 -> saved at 5; dirty at 5.1 -> 10.1; at 10.7 -> 15.7; at 16.3 -> 21.3
    assert times == pytest.approx([start + t for t in (5.0, 10.1, 15.7, 21.3)]), times


async def test_without_data_dir_nothing_is_written(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with running(None) as h:
        await h.send.send(found(PEERS[0]))
        await trio.sleep(20)
        stats = h.tracker.statistics()
        assert (stats.saves, stats.store_dirty) == (0, False)
    assert h.tracker.store_path is None


# --- restarts ------------------------------------------------------------------------------


async def test_a_restarted_incarnation_continues_from_the_same_model(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    channel = trio.open_memory_channel[object](16)
    async with running(tmp_path, channel=channel) as h:
        tracker = h.tracker
        await h.send.send(ListenAddrsChanged((LOCAL,)))
        await h.send.send(found(PEERS[0]))
        await h.send.send(up(1, PEERS[0]))
        await h.settle()
        published = tracker.statistics().snapshots_published
    await channel[0].send(up(2, PEERS[1]))  # arrives while no incarnation runs
    async with running(tmp_path, tracker=tracker, channel=channel) as h:
        with trio.fail_after(5):
            snap = await h.watch.wait_for(lambda s: len(s.connections) == 2)
        assert snap.lifecycle is Lifecycle.CONNECTED
        assert snap.connected_peers == tuple(sorted((PEERS[0], PEERS[1])))
        stats = tracker.statistics()
        assert stats.incarnations == 2
        assert stats.snapshots_published == published + 1  # no duplicate on restart


# --- atomic writes -------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]
