"""StatusTracker: the actor that keeps the node's single source of truth.

Theory of operation
-------------------
The tracker drives a sans-io :class:`protocols.NodeModel`. It receives
events (``PeersFound``, ``ConnectionUp``/``Down``, ``PeerIdentified``,
``ListenAddrsChanged``) from its mailbox one at a time, applies each with the
current wall-clock time, and when the model says something changed it
publishes a fresh immutable :class:`protocols.NodeSnapshot` into a
:class:`Watch` - that is what ``node.snapshot()``, ``node.subscribe()``,
``node.wait_for()``, the HTTP API and metrics read. Unknown messages are
logged and skipped, never fatal.

Batching
    Building a snapshot costs O(size of the node), so the tracker applies
    every event already waiting in its mailbox (at most :data:`MAX_BATCH`)
    before it publishes once. An idle node publishes after each event; a
    busy one publishes less often per event the busier it is, so the cost
    of snapshots stays proportional to the events, not to events x peers.
    Readers see the latest state, as with any :class:`Watch` (a state that
    lasted only within one batch is never published).

Ownership and restarts
    The model, the mailbox and the watch are created and owned by the node
    and handed to the tracker. A crashed tracker restarted by the supervisor
    (``run`` is called again) therefore continues from the same model: no
    peer, connection or observation is lost, and live connections - which no
    event would re-announce - stay known. Every incarnation merges the peer
    store file into the model at start; records already in memory win, so
    this is idempotent and only matters for a fresh model.

Persistence
    With a ``data_dir`` the peers live in ``data_dir/peers.json`` (format in
    :mod:`protocols.node._peer_store`). The store is *dirty* when the model's
    ``peers_revision`` differs from the last one saved. A save happens
    ``save_interval`` seconds after the store first became dirty (trailing
    edge, measured with ``trio.current_time()`` so tests run on a mock
    clock), so saves are at least ``save_interval`` apart and a change
    reaches the disk within ``save_interval``. Encoding and the atomic write
    (:func:`atomic_write_bytes`, :mod:`actors.node._storage`) run in a worker
    thread. When the tracker
    stops - cancelled, mailbox closed or crashed - it makes one last save,
    shielded from cancellation and bounded by ``final_save_timeout``.
    A failed save is logged and retried one interval later.

    At start a missing file is fine, an unreadable one is logged, and a
    corrupt one (not JSON, wrong version, too big) is renamed aside to
    ``peers.json.corrupt-<UTC timestamp>`` with a warning and the node
    starts without it. Nothing about the store is ever fatal.

Every log line carries ``actor="status-tracker"``, our ``node`` id and,
where one is involved, the remote ``peer`` id.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import trio

from protocols import (
    ConnectionDown,
    ConnectionUp,
    InboundProbe,
    Lifecycle,
    LifecycleChanged,
    ListenAddrsChanged,
    NodeEvent,
    NodeModel,
    NodeSnapshot,
    PeerIdentified,
    PeerRecord,
    PeersFound,
    PeerStoreError,
    StateChanged,
    StoredPeersLoaded,
    decode_peer_store,
    encode_peer_store,
)

from ..runtime import Pulse, Watch, get_logger
from ._messages import LOCAL_STOP
from ._storage import atomic_write_bytes, read_at_most, remove_stale_temporaries, rename_aside

__all__ = ["PEER_STORE_FILE", "StatusTracker", "StatusTrackerStatistics"]

ACTOR_NAME: Final = "status-tracker"
PEER_STORE_FILE: Final = "peers.json"
DEFAULT_MAX_STORE_BYTES: Final = 4 * 1024 * 1024
_LOGGED_PEERS: Final = 8  # peer ids listed per log line, at most
MAX_BATCH: Final = 256
"""Events applied before one snapshot is published (see the module docstring)."""


class EventReceiver(Protocol):
    """The receive side of a mailbox (``trio.MemoryReceiveChannel``, ``MailboxReceiver``)."""

    async def receive(self) -> object: ...

    def receive_nowait(self) -> object: ...


@dataclass(frozen=True)
class StatusTrackerStatistics:
    """Counters of one tracker (over all its incarnations)."""

    incarnations: int
    events: int
    changes: int
    ignored: int
    snapshots_published: int
    saves: int
    save_failures: int
    last_save_at: float | None  # trio time the last successful save started
    store_dirty: bool
    lifecycle: Lifecycle
    peers: int
    connections: int


class StatusTracker:
    """The node's state actor; see the module docstring."""

    def __init__(
        self,
        model: NodeModel,
        inbox: EventReceiver,
        watch: Watch[NodeSnapshot],
        *,
        data_dir: Path | None = None,
        save_interval: float = 5.0,
        final_save_timeout: float = 10.0,
        max_store_bytes: int = DEFAULT_MAX_STORE_BYTES,
        clock: Callable[[], float] = time.time,
        pulse: Pulse | None = None,
    ) -> None:
        if not (math.isfinite(save_interval) and save_interval >= 0):
            raise ValueError(f"save_interval must be a finite number >= 0, got {save_interval!r}")
        self.model = model
        self._inbox = inbox
        self._watch = watch
        self._data_dir = data_dir
        self._save_interval = save_interval
        self._final_save_timeout = final_save_timeout
        self._max_store_bytes = max_store_bytes
        self._clock = clock
        self._pulse = pulse if pulse is not None else Pulse()
        self._log = get_logger("actors.status_tracker", actor=ACTOR_NAME,
                               node=str(model.local_peer_id))
        self._saved_revision: int | None = None
        self._dirty_since: float | None = None
        self._incarnations = self._events = self._changes = self._ignored = 0
        self._published = self._saves = self._save_failures = 0
        self._last_save_at: float | None = None

    @property
    def store_path(self) -> Path | None:
        return None if self._data_dir is None else self._data_dir / PEER_STORE_FILE

    def statistics(self) -> StatusTrackerStatistics:
        return StatusTrackerStatistics(
            incarnations=self._incarnations,
            events=self._events,
            changes=self._changes,
            ignored=self._ignored,
            snapshots_published=self._published,
            saves=self._saves,
            save_failures=self._save_failures,
            last_save_at=self._last_save_at,
            store_dirty=self._dirty(),
            lifecycle=self.model.lifecycle,
            peers=self.model.peer_count,
            connections=self.model.connection_count,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One incarnation: load the store, publish, then apply events until stopped."""
        self._incarnations += 1
        self._log.info("status tracker starting", incarnation=self._incarnations)
        try:
            await self._load_store()
            self._note_dirty()
            self._publish(initial=True)
            task_status.started()
            await self._loop()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._final_save_timeout):
                if self._dirty():
                    await self._save()

    # --- main loop -----------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            with trio.move_on_at(self._save_deadline()):
                try:
                    event = await self._inbox.receive()
                except trio.EndOfChannel:
                    self._log.info("mailbox closed; status tracker stopping")
                    return
                changed = self._handle(event)
                for _ in range(MAX_BATCH - 1):  # whatever else is already waiting
                    try:
                        event = self._inbox.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    changed = self._handle(event) or changed
                if changed:
                    self._publish()
                continue
            await self._save()

    def _handle(self, event: object) -> bool:
        """Apply one event; True when the model changed (the caller publishes)."""
        self._events += 1
        if not self.model.handles(event):
            self._ignored += 1
            self._log.warning("unknown message ignored", message_type=type(event).__name__)
            return False
        changes = self.model.handle_event(event, self._clock())
        if self._log.is_enabled_for(logging.DEBUG):  # its fields cost more than the check
            self._log.debug("event applied", changed=bool(changes), **_event_fields(event))
        for change in changes:
            if isinstance(change, LifecycleChanged):
                # falling back to bootstrapping because we are stopping is not news
                stopping = isinstance(event, ConnectionDown) and event.reason == LOCAL_STOP
                (self._log.debug if stopping else self._log.info)(
                    "lifecycle changed",
                    lifecycle=change.current.value,
                    previous=change.previous.value,
                    connections=self.model.connection_count,
                    **_cause_fields(event),
                )
            elif isinstance(change, StateChanged):
                self._changes += 1
                self._note_dirty()
        return bool(changes)

    def _publish(self, *, initial: bool = False) -> None:
        if initial and self._watch.version:
            current = self._watch.get()
            if (
                current.revision == self.model.revision
                and current.peer_id == self.model.local_peer_id
            ):
                return  # a restarted incarnation: subscribers already have this state
        self._watch.set(self.model.snapshot(self._clock()))
        self._published += 1
        self._pulse.beat()

    # --- persistence ---------------------------------------------------------

    def _dirty(self) -> bool:
        return self._data_dir is not None and self.model.peers_revision != self._saved_revision

    def _note_dirty(self) -> None:
        if self._dirty() and self._dirty_since is None:
            self._dirty_since = trio.current_time()

    def _save_deadline(self) -> float:
        if self._dirty_since is None or not self._dirty():
            return math.inf
        return self._dirty_since + self._save_interval

    async def _save(self) -> None:
        path = self.store_path
        assert path is not None, "only called when dirty, which needs a data_dir"
        revision, records = self.model.peers_revision, self.model.store_records()
        started = trio.current_time()
        try:
            size = await trio.to_thread.run_sync(
                _encode_and_write, path, records, self._max_store_bytes
            )
        except OSError as exc:
            self._save_failures += 1
            self._dirty_since = trio.current_time()  # retry one interval from now
            self._log.warning("peer store save failed", path=str(path), error=str(exc))
            return
        self._saves += 1
        self._saved_revision = revision
        self._dirty_since = None
        self._last_save_at = started
        self._note_dirty()
        self._log.debug("peer store saved", path=str(path), peers=len(records), bytes=size)

    async def _load_store(self) -> None:
        path = self.store_path
        if path is None:
            return
        fresh = self.model.peers_revision == 0 and self._saved_revision is None
        stale = await trio.to_thread.run_sync(remove_stale_temporaries, path)
        if stale:
            self._log.warning("removed temporary files left by an interrupted save",
                              files=[str(f) for f in stale])
        records = await self._read_store(path)
        if records is not None:
            changes = self.model.handle_stored_peers(records, self._clock())
            added = sum(c.added for c in changes if isinstance(c, StoredPeersLoaded))
            self._log.info("peer store loaded", path=str(path), peers=len(records), added=added)
        if fresh:  # memory now equals the file (or there is nothing to save)
            self._saved_revision = self.model.peers_revision

    async def _read_store(self, path: Path) -> list[PeerRecord] | None:
        try:
            data = await trio.to_thread.run_sync(read_at_most, path, self._max_store_bytes + 1)
        except FileNotFoundError:
            self._log.info("no peer store yet", path=str(path))
            return None
        except OSError as exc:
            self._log.warning(
                "peer store unreadable; starting without it", path=str(path), error=str(exc)
            )
            return None
        try:
            records, reasons = decode_peer_store(
                data, max_bytes=self._max_store_bytes, max_peers=self.model.max_peers
            )
        except PeerStoreError as exc:
            await self._set_aside(path, str(exc))
            return None
        if reasons:
            self._log.warning(
                "peer store entries skipped",
                path=str(path),
                count=len(reasons),
                reasons=reasons[:5],
            )
        return records

    async def _set_aside(self, path: Path, problem: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        try:
            aside = await trio.to_thread.run_sync(rename_aside, path, f".corrupt-{stamp}")
        except OSError as exc:
            self._log.error(
                "corrupt peer store could not be set aside",
                path=str(path),
                problem=problem,
                error=str(exc),
            )
            return
        self._log.warning(
            "corrupt peer store set aside; starting without it",
            path=str(path),
            moved_to=str(aside),
            problem=problem,
        )


def _event_fields(event: NodeEvent) -> dict[str, object]:
    """Log fields naming the peers an event is about."""
    if isinstance(event, PeersFound):
        peers = sorted({str(a.peer_id) for a in event.addrs if a.peer_id is not None})
        return {
            "event_type": "peers_found",
            "source": event.source,
            "peers": peers[:_LOGGED_PEERS],
            "peer_count": len(peers),
        }
    if isinstance(event, ConnectionUp):
        info = event.info
        return {
            "event_type": "connection_up",
            "peer": str(info.peer_id),
            "connection_id": info.connection_id,
            "direction": info.direction.value,
            "remote_addr": str(info.remote_addr),
        }
    if isinstance(event, ConnectionDown):
        return {
            "event_type": "connection_down",
            "peer": str(event.peer_id),
            "connection_id": event.connection_id,
            "reason": event.reason,
        }
    if isinstance(event, PeerIdentified):
        observed = None if event.observed_addr is None else str(event.observed_addr)
        return {
            "event_type": "peer_identified",
            "peer": str(event.peer_id),
            "agent": event.agent_version,
            "observed_addr": observed,
        }
    if isinstance(event, ListenAddrsChanged):
        return {"event_type": "listen_addrs_changed", "addrs": [str(a) for a in event.addrs]}
    if isinstance(event, InboundProbe):
        return {"event_type": "inbound_probe", "peer": str(event.peer),
                "status": event.status.name}
    return {"event_type": type(event).__name__}


def _cause_fields(event: NodeEvent) -> dict[str, object]:
    """What a lifecycle line says about its cause: the event type and the peer, if any."""
    fields = _event_fields(event)
    cause: dict[str, object] = {"cause": fields["event_type"]}
    if "peer" in fields:
        cause["peer"] = fields["peer"]
    return cause


# --- blocking helpers, run in worker threads ------------------------------------


def _encode_and_write(path: Path, records: Sequence[PeerRecord], max_bytes: int) -> int:
    data = encode_peer_store(records, max_bytes=max_bytes)
    atomic_write_bytes(path, data)
    return len(data)
