"""Identify decisions: what we tell peers, and what we believe of their answers.

Theory of operation
-------------------
Identify is where a node learns the two things AutoNAT needs: the addresses
a peer listens on, and the address the peer *observed us* connecting from.
Both come from untrusted peers, so this module is deliberately strict:

* **Which addresses we advertise** (:func:`advertised_addrs`): confirmed
  reachable addresses first, then the configured ``announce`` addresses
  (a port forward's or load balancer's public address: a claim peers verify
  by dialing, see :mod:`protocols.config._announce`), then our listen addresses, a wildcard listener
  (``0.0.0.0`` / ``::``) replaced by the local IPs our live connections use
  with its port - a peer cannot dial ``0.0.0.0``.
* **What we send** (:func:`build_identify`): our protobuf public key, our
  agent and protocol versions, the protocols we serve, the listen addresses
  the :class:`AddressPolicy` calls routable (never a loopback or private
  address a policy rejects; see (docs/architecture.md, "Address policy")),
  and as ``observed_addr`` the real remote address of the connection the
  request came on.
* **What we accept** (:func:`interpret_identify`): the public key must be
  the very key the handshake authenticated (else the peer is lying about
  who it is, and the whole answer is rejected); each listen address is
  parsed on its own - an unusable one is skipped with a reason, it does not
  spoil the rest; a listen address naming a different ``/p2p/`` id is
  skipped; only policy-routable addresses are kept, so a routable peer can
  never plant a non-routable address in our peer store. The observed
  address is kept as reported (without a peer id): whether it is usable as
  a reachability candidate is decided later, by the AutoNAT logic.
* **STUN servers** (``stun_addrs``): we advertise ours (a wildcard IP
  replaced by the local IP of the connection the message goes out on, so
  the peer gets the IP it reached us at) when the policy calls it routable
  or it is on the IP the peer reached us at;
  of a peer's we keep only entries whose IP is the IP its connection comes
  from (the rule of docs/architecture.md, "Bootstrap /status": a peer can
  point us only at its own host, so it cannot make us send datagrams to a
  third party) and that the policy calls routable.

Nothing here does I/O; the IdentifyActor drives it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ..core import (
    AddressError,
    AddressPolicy,
    InvalidKey,
    IPAddress,
    PeerId,
    PublicKey,
    UdpAddress,
    ValidationError,
    WsAddress,
)
from ._identify_msg import MAX_STUN_ADDRS, Identify

IDENTIFY_PROTOCOL_VERSION = "trio-autonat/1.0.0"
MAX_ADVERTISED = 16


@dataclass(frozen=True)
class PeerIdentified:
    """A peer's Identify answer, already validated and filtered by the address policy.

    ``observed_addr`` is our address as that peer saw it on ``connection_id``;
    ``local_addr`` is our end of that connection (to pair observation with the
    local port for NAT mapping).
    """

    peer_id: PeerId
    connection_id: int
    listen_addrs: tuple[WsAddress, ...]
    observed_addr: WsAddress | None
    local_addr: WsAddress
    protocols: tuple[str, ...]
    agent_version: str
    observer_addr: WsAddress
    stun_addrs: tuple[UdpAddress, ...] = ()
    """The peer's STUN servers, each on the IP its connection comes from."""
    stun_alternate: bool = False
    """They answer RFC 5780 CHANGE-REQUEST (the server has a second address)."""


@dataclass(frozen=True)
class IdentifyOutcome:
    """A validated Identify answer plus the entries that were skipped, with reasons."""

    event: PeerIdentified
    skipped: tuple[tuple[str, str], ...]


def advertised_addrs(
    *,
    listen_addrs: Iterable[WsAddress],
    reachable_addrs: Iterable[WsAddress],
    local_addrs: Iterable[WsAddress],
    announce_addrs: Iterable[WsAddress] = (),
) -> tuple[WsAddress, ...]:
    """Addresses we tell peers we listen on, without duplicates, reachable ones first.

    ``listen_addrs`` are our bound listeners, ``reachable_addrs`` those AutoNAT
    confirmed, ``announce_addrs`` the configured public ones (next), ``local_addrs``
    the local ends of our live connections. A
    wildcard listener (``0.0.0.0`` / ``::``) is replaced by each local IP of
    its IP version, with the listener's port.
    """
    locals_ = tuple(local_addrs)
    result: dict[WsAddress, None] = dict.fromkeys(reachable_addrs)
    result.update(dict.fromkeys(announce_addrs))
    for bound in listen_addrs:
        if bound.ip is None or not bound.ip.is_unspecified:
            result[bound] = None
            continue
        for local in locals_:
            if local.ip is not None and local.ip.version == bound.ip.version:
                result[WsAddress(host=local.host, kind=local.kind, port=bound.port,
                                 secure=bound.secure, peer_id=None)] = None
    return tuple(result)


def build_identify(
    *,
    public_key: PublicKey,
    agent_version: str,
    listen_addrs: Iterable[WsAddress],
    observed_addr: WsAddress | None,
    protocols: Iterable[str],
    policy: AddressPolicy,
    stun_addrs: Iterable[UdpAddress] = (),
    stun_alternate: bool = False,
    reached_ip: IPAddress | None = None,
) -> Identify:
    """Our Identify answer for one connection (``observed_addr`` = its remote end).

    ``stun_addrs`` are our STUN servers as the peer can reach them (wildcards
    already replaced); those the policy rejects are left out, but for one on
    ``reached_ip``, the local IP of this connection: the peer reached us
    there, so telling this peer is no leak (as ``/status`` does with the
    address a request arrived on).
    """
    advertised: list[bytes] = []
    for addr in listen_addrs:
        plain = addr.with_peer_id(None)
        if policy.is_routable(plain) and plain.to_bytes() not in advertised:
            advertised.append(plain.to_bytes())
    observed = observed_addr.with_peer_id(None).to_bytes() if observed_addr else None
    stun = tuple(dict.fromkeys(a.to_bytes() for a in stun_addrs
                               if a.ip == reached_ip or policy.is_routable_ip(a.ip)
                               ))[:MAX_STUN_ADDRS]
    return Identify(
        protocol_version=IDENTIFY_PROTOCOL_VERSION,
        agent_version=agent_version,
        public_key=public_key.to_protobuf(),
        listen_addrs=tuple(advertised[:MAX_ADVERTISED]),
        observed_addr=observed,
        protocols=tuple(protocols),
        stun_addrs=stun,
        stun_alternate=bool(stun) and stun_alternate,
    )


def interpret_identify(
    message: Identify,
    *,
    peer_id: PeerId,
    connection_id: int,
    local_addr: WsAddress,
    remote_addr: WsAddress,
    policy: AddressPolicy,
) -> IdentifyOutcome:
    """Validate a peer's Identify; raises ValidationError if its key is not the peer's."""
    try:
        key = PublicKey.from_protobuf(message.public_key)
    except InvalidKey as exc:
        raise ValidationError(f"identify from {peer_id}: unusable public key: {exc}") from exc
    if key.peer_id != peer_id:
        raise ValidationError(
            f"identify from {peer_id} carries the key of {key.peer_id}; rejecting the answer")
    skipped: list[tuple[str, str]] = []
    listen = _accept_listen_addrs(message.listen_addrs, peer_id, policy, skipped)
    observed = _parse_observed(message.observed_addr, skipped)
    stun = _accept_stun_addrs(message.stun_addrs, remote_addr, policy, skipped)
    event = PeerIdentified(
        peer_id=peer_id,
        connection_id=connection_id,
        listen_addrs=tuple(listen),
        observed_addr=observed,
        local_addr=local_addr,
        protocols=_shared(message.protocols),
        agent_version=message.agent_version,
        observer_addr=remote_addr,
        stun_addrs=stun,
        stun_alternate=bool(stun) and message.stun_alternate,
    )
    return IdentifyOutcome(event, tuple(skipped))


def _accept_stun_addrs(raw_addrs: tuple[bytes, ...], remote_addr: WsAddress,
                       policy: AddressPolicy,
                       skipped: list[tuple[str, str]]) -> tuple[UdpAddress, ...]:
    accepted: list[UdpAddress] = []
    for raw in raw_addrs:
        try:
            addr = UdpAddress.parse(raw)
        except AddressError as exc:
            skipped.append((raw.hex(), f"stun address: {exc}"))
            continue
        if addr.ip != remote_addr.ip:
            skipped.append((str(addr), f"stun address not on the peer's IP {remote_addr.host}"))
        elif not policy.is_routable_ip(addr.ip):
            skipped.append((str(addr), "stun address not routable under the address policy"))
        elif addr not in accepted:
            accepted.append(addr)
    return tuple(accepted)


def _accept_listen_addrs(
    raw_addrs: tuple[bytes, ...],
    peer_id: PeerId,
    policy: AddressPolicy,
    skipped: list[tuple[str, str]],
) -> list[WsAddress]:
    accepted: list[WsAddress] = []
    for raw in raw_addrs:
        try:
            addr = WsAddress.parse(raw)
        except AddressError as exc:
            skipped.append((raw.hex(), str(exc)))
            continue
        if addr.peer_id is not None and addr.peer_id != peer_id:
            skipped.append((str(addr), f"names another peer id than {peer_id}"))
            continue
        reason = policy.reason_rejected(addr)
        if reason is not None:
            skipped.append((str(addr), reason))
            continue
        full = addr.with_peer_id(peer_id)
        if full not in accepted:
            accepted.append(full)
    return accepted


def _parse_observed(raw: bytes | None, skipped: list[tuple[str, str]]) -> WsAddress | None:
    if raw is None:
        return None
    try:
        return WsAddress.parse(raw).with_peer_id(None)
    except AddressError as exc:
        skipped.append((raw.hex(), f"observed address: {exc}"))
        return None


@functools.lru_cache(maxsize=256)
def _shared(protocols: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple (and one copy of its strings) for each list of protocols peers send.

    Nodes of one version serve the same protocols, and every peer's record keeps
    its list: a simulation of thousands of nodes held a copy per peer of each
    node (an eighth of a host's memory). The cache returns the first equal tuple
    it kept; it is bounded, so peers that send many different lists only miss it.
    """
    return protocols
