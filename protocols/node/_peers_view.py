"""The ``/peers`` document: one row per live connection, for ``autonat peers``.

Theory of operation
-------------------
A row joins a :class:`ConnectionInfo` (who, which address, which direction,
since when) with the peer's :class:`PeerRecord` (its Identify agent), both
from one immutable snapshot, so the document is consistent. ``path`` says
how the bytes travel: ``direct`` for a connection our transport dialed or
accepted, ``hole-punched`` for one a hole punch made (its
``ConnectionInfo.hole_punched``), and ``relayed`` for a peer we reach only
through a relay (the snapshot's ``relayed_peers``: such a row has no
address, direction or times of its own, they are ``null``).

Connection times are on the event loop's clock (``opened_at``); the caller
passes both clocks' ``now`` so a row's ``since`` is wall-clock Unix time and
``connected_s`` a duration - no clock is read here. Rows are oldest first
and capped at ``limit`` (``truncated`` tells), so a boot node with thousands
of connections answers with a bounded document.
"""

from __future__ import annotations

from typing import Any, Final

from ._snapshot import NodeSnapshot

__all__ = ["MAX_PEERS_LISTED", "peers_document"]

MAX_PEERS_LISTED: Final = 1000


def peers_document(snapshot: NodeSnapshot, *, wall_now: float, loop_now: float,
                   limit: int = MAX_PEERS_LISTED) -> dict[str, Any]:
    """``{"peer_id", "count", "truncated", "peers": [row, ...]}``; see the module docstring.

    A row: ``peer_id``, ``address`` (the remote address of the connection),
    ``direction`` (inbound|outbound), ``path``, ``agent`` (Identify's agent
    version, "" until identified), ``since`` (Unix seconds) and ``connected_s``.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    connections = sorted(snapshot.connections, key=lambda c: (c.opened_at, c.connection_id))
    rows: list[dict[str, Any]] = []
    for conn in connections[:limit]:
        record = snapshot.peer(conn.peer_id)
        age = max(0.0, loop_now - conn.opened_at)
        rows.append({
            "peer_id": str(conn.peer_id),
            "address": str(conn.remote_addr),
            "direction": conn.direction.value,
            "path": "hole-punched" if conn.hole_punched else "direct",
            "agent": record.agent_version if record is not None else "",
            "since": round(wall_now - age, 3),
            "connected_s": round(age, 3),
        })
    relayed = [peer for peer in snapshot.relayed_peers if not snapshot.connections_to(peer)]
    for peer in relayed[:max(0, limit - len(rows))]:
        record = snapshot.peer(peer)
        rows.append({"peer_id": str(peer), "address": None, "direction": None,
                     "path": "relayed",
                     "agent": record.agent_version if record is not None else "",
                     "since": None, "connected_s": None})
    count = len(connections) + len(relayed)
    return {"peer_id": str(snapshot.peer_id), "count": count, "truncated": count > limit,
            "peers": rows}
