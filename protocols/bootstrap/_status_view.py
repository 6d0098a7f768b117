"""What a node says about itself on ``GET /status``: a NodeSnapshot as a StatusDocument.

Theory of operation
-------------------
:func:`status_document` turns one immutable :class:`NodeSnapshot` into the
Pyrsia-compatible :class:`StatusDocument` (docs/architecture.md,
"Bootstrap /status"); the HTTP API serialises it with
:func:`build_status_document`. It reads no clock and does no I/O: uptime,
version and the served-probe count are arguments. What depends on the
snapshot alone - our addresses, the verified public peers, the extra fields -
is a :class:`StatusListing`, which a server builds once per snapshot; each
request then only takes its round-robin window and fills in the counters.

Pyrsia's fields
    ``peer_id`` is ours. ``peers_count`` is the number of peers we have a
    live connection to. ``peer_addrs`` is our own addresses first, then a
    :class:`RoundRobin` window of other peers, so successive requests spread
    new clients over the network (the seed's round robin).

Our own addresses (:func:`own_addresses`)
    The configured ``announce`` addresses first (``snapshot.announce_addrs``:
    the public address of a port forward or load balancer, which readers
    verify by dialing it), then the addresses AutoNAT confirmed reachable
    (``snapshot.reachable_addrs``)
    when there are any; before a verdict, the bound listen addresses. Each
    carries ``/p2p/<our id>``. A node listening on ``0.0.0.0`` therefore
    lists no own address until its reachability is known - an unspecified
    address is useless to a client.

Other peers, "confirmed public" (:func:`public_peer_addresses`)
    A peer counts as confirmed public when it is *connected* and has
    *answered Identify* (its record has an agent version or protocols), and
    one of its known addresses is routable and *verified*:

    * our AutoNAT server dialed it back there successfully
      (``PeerRecord.verified_addrs``): proof that the peer is reachable at
      that address, even on another IP (a multi-homed host, a port forward);
      or
    * it is the address one of our live *outbound* connections to the peer
      goes to: we reached it there ourselves.

    A self-announced address that is neither is never listed: with it, one
    connected peer could make every newcomer that reads our document dial a
    victim. Nor is the address of a peer that only connected to us, even on
    its own IP: that proves the host, not that anyone can reach it there -
    most such peers sit behind NAT, and handing them out would make every
    reader dial in vain (and, when the peer dials the reader from its listen
    port meanwhile, collide with it in a TCP simultaneous open). One address
    per peer is handed out (dial-back proof first, then the address we
    dialed), so the window counts peers, not addresses.
    This function is the one place that decides it.

Never a non-routable address
    Every address in the document - ``peer_addrs``, ``reachable_addrs`` and
    ``observed_addrs`` - passes the node's :class:`AddressPolicy`, so a boot
    node on the internet never advertises loopback or private addresses,
    while a lab with ``allow_loopback`` sees its 127.0.0.x nodes.

Our extra fields
    ``nat_status``, ``nat_mapping``, ``state`` (the lifecycle value),
    ``connections`` (live connections), ``probes_served``, ``uptime_s`` and
    ``version`` are first-class :class:`StatusDocument` fields;
    ``reachable_addrs``, ``observed_addrs`` (our address as peers saw it,
    distinct values, without ``/p2p/``), ``nat_filtering`` and ``hairpinning`` (true, false
    or null: untested or not applicable) go into ``extra``, and so does
    ``stun_addrs`` (our STUN server, ``/ip4/<ip>/udp/<port>``; a wildcard IP
    given as the IPs of our own listed addresses; left out without a server).
    ``udp`` is our UDP NAT profile, ``{"mapping": ..., "filtering": ...}``. Readers ignore
    fields they do not know, so a Pyrsia client reads our document unchanged.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ..core import AddressPolicy, LocalProtocolError, PeerId, UdpAddress, WsAddress
from ..node import Direction, NodeSnapshot, PeerRecord
from ._round_robin import RoundRobin
from ._status_doc import StatusDocument

__all__ = ["StatusListing", "own_addresses", "public_peer_addresses", "status_document",
           "verified_peers"]

MAX_LISTED_ADDRS: Final = 16
"""Cap for ``reachable_addrs`` and ``observed_addrs`` in the document."""


@dataclass(frozen=True)
class StatusListing:
    """Everything in the document that depends only on the snapshot and the policy.

    Built once per snapshot by :meth:`of` (the work proportional to the
    number of peers and connections); a server keeps the last one and reuses
    it for every request until the snapshot changes, so serving ``/status``
    costs the same at 10 peers and at 10,000.
    """

    snapshot: NodeSnapshot
    peer_id: str
    own: tuple[str, ...]
    public_peers: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def of(cls, snapshot: NodeSnapshot, policy: AddressPolicy,
           own: Sequence[WsAddress] | None = None) -> StatusListing:
        """``own`` overrides :func:`own_addresses` (filtered by ``policy`` too)."""
        return cls(
            snapshot=snapshot,
            peer_id=str(snapshot.peer_id),
            own=own_addresses(snapshot, policy) if own is None else _render(
                snapshot, policy.filter(own)),
            public_peers=public_peer_addresses(snapshot, policy),
            extra=(
                ("reachable_addrs", _plain(policy.filter(snapshot.reachable_addrs))),
                ("observed_addrs",
                 _plain(policy.filter(o.observed for o in snapshot.observed_addrs))),
                *_stun_extra(snapshot, policy),
            ),
        )


def status_document(
    snapshot: NodeSnapshot,
    *,
    policy: AddressPolicy,
    round_robin: RoundRobin,
    version: str,
    uptime_s: float,
    probes_served: int,
    own: Sequence[WsAddress] | None = None,
    reached_at: str | None = None,
    listing: StatusListing | None = None,
) -> StatusDocument:
    """The ``/status`` document for ``snapshot``; advances ``round_robin`` by one window.

    ``own`` overrides :func:`own_addresses` (e.g. configured announce
    addresses); it is filtered by ``policy`` like everything else.
    ``reached_at`` is the local IP this HTTP request arrived on. When the
    policy leaves us no address to list, our wildcard or matching listen
    addresses are listed on that IP: the requester just reached us there, so
    it is usable *by that requester* (a boot node on a laptop answering a
    client on 127.0.0.1, or on a LAN). It is never handed to anyone else.
    ``listing`` is this snapshot's :class:`StatusListing` when the caller
    keeps one (it must have been built from ``snapshot``, ``policy`` and ``own``).
    """
    if not isinstance(uptime_s, int | float) or not math.isfinite(uptime_s):
        raise LocalProtocolError(f"uptime_s must be a finite number, got {uptime_s!r}")
    if listing is None:
        listing = StatusListing.of(snapshot, policy, own)
    elif listing.snapshot is not snapshot:
        raise LocalProtocolError("the status listing was built from another snapshot")
    mine = listing.own
    if not mine and reached_at is not None:
        mine = _render(snapshot, reached_addresses(snapshot, reached_at))
    peer_addrs = round_robin.next_window(mine, listing.public_peers)
    return StatusDocument(
        peer_id=listing.peer_id,
        peers_count=len(snapshot.connected_peers),
        peer_addrs=peer_addrs,
        nat_status=snapshot.nat_status,
        nat_mapping=snapshot.nat_mapping,
        state=snapshot.lifecycle.value,
        uptime_s=max(0.0, float(uptime_s)),
        connections=len(snapshot.connections),
        probes_served=probes_served,
        version=version,
        extra=(*listing.extra, ("nat_filtering", snapshot.nat_filtering),
               ("hairpinning", snapshot.hairpinning)),
        udp=(("mapping", snapshot.udp.mapping.value),
             ("filtering", snapshot.udp.filtering.value)),
    )


def reached_addresses(snapshot: NodeSnapshot, reached_at: str) -> list[WsAddress]:
    """Listen addresses that cover ``reached_at`` (wildcard or equal), on that IP."""
    try:
        ip = ipaddress.ip_address(reached_at)
    except ValueError:
        return []
    result = []
    for addr in snapshot.listen_addrs:
        if addr.ip is None or addr.ip.version != ip.version:
            continue
        if addr.ip.is_unspecified or addr.ip == ip:
            result.append(WsAddress(host=str(ip), kind=addr.kind, port=addr.port,
                                    secure=addr.secure))
    return result


def own_addresses(snapshot: NodeSnapshot, policy: AddressPolicy) -> tuple[str, ...]:
    """Our routable addresses with ``/p2p/<our id>``: announced ones, then confirmed reachable
    ones, else listen ones."""
    reachable = policy.filter(snapshot.reachable_addrs)
    return _render(snapshot, (*policy.filter(snapshot.announce_addrs),
                              *(reachable or policy.filter(snapshot.listen_addrs))))


def public_peer_addresses(snapshot: NodeSnapshot, policy: AddressPolicy) -> tuple[str, ...]:
    """One verified routable address (with ``/p2p/``) per confirmed public peer, in peer
    id order (see "Other peers" in the module docstring)."""
    return tuple(str(addr.with_peer_id(peer)) for peer, addr in verified_peers(snapshot, policy))


def verified_peers(snapshot: NodeSnapshot,
                   policy: AddressPolicy) -> tuple[tuple[PeerId, WsAddress], ...]:
    """The confirmed public peers with their one verified routable address (no ``/p2p/``),
    in peer id order: what ``/status`` lists and peer exchange samples. The one place
    that decides which addresses we pass on (see "Other peers" in the module docstring)."""
    dialed: dict[PeerId, list[WsAddress]] = {}
    connected: set[PeerId] = set()
    for conn in snapshot.connections:
        connected.add(conn.peer_id)
        if conn.direction is Direction.OUTBOUND:
            dialed.setdefault(conn.peer_id, []).append(conn.remote_addr.with_peer_id(None))
    chosen: list[tuple[PeerId, WsAddress]] = []
    for record in snapshot.peers:
        if record.peer_id not in connected or not _identified(record):
            continue
        reached = (*record.verified_addrs, *dialed.get(record.peer_id, ()))
        address = next(iter(policy.filter(reached)), None)
        if address is not None:
            chosen.append((record.peer_id, address.with_peer_id(None)))
    return tuple(chosen)


def _stun_extra(snapshot: NodeSnapshot,
                policy: AddressPolicy) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``("stun_addrs", (...))`` when our STUN server runs and has a routable address."""
    server = snapshot.stun_server
    if server is None or server.primary.port == 0:
        return ()
    ip, port = server.primary.ip, server.primary.port
    ips = [ip] if not ip.is_unspecified else [
        a.ip for a in (policy.filter(snapshot.reachable_addrs)
                       or policy.filter(snapshot.listen_addrs))
        if a.ip is not None and a.ip.version == ip.version and not a.ip.is_unspecified]
    listed = tuple(dict.fromkeys(str(UdpAddress(one, port)) for one in ips
                                 if policy.is_routable_ip(one)))[:MAX_LISTED_ADDRS]
    return (("stun_addrs", listed),) if listed else ()


def _identified(record: PeerRecord) -> bool:
    return bool(record.agent_version or record.protocols)


def _render(snapshot: NodeSnapshot, addrs: Iterable[WsAddress]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(a.with_peer_id(snapshot.peer_id)) for a in addrs))


def _plain(addrs: Iterable[WsAddress]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(a.with_peer_id(None)) for a in addrs))[:MAX_LISTED_ADDRS]
