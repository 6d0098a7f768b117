"""AutoNAT client decisions: which of our addresses to probe, and which servers to ask.

Theory of operation
-------------------
Candidate addresses (:func:`candidate_addresses`)
    A candidate is an address at which our *listener* might be reachable:

    a. every listen address the :class:`~protocols.AddressPolicy` calls
       routable (wildcards such as ``0.0.0.0`` and port 0 never are);
    b. every observed address (Identify's ``observed_addr``) whose IP the
       policy calls routable, translated onto our listen port: the observed
       IP with the port of each listen address of the same IP family. That
       is what a NAT that preserves ports, or forwards our listen port,
       exposes. When the observed connection's local port *was* that listen
       port (we reuse the listen port for outbound connections, see
       (docs/architecture.md, "Wire protocol")), the observed port is the
       NAT's mapping of our listen port and is a candidate as well.

    The secure flag (``/ws`` or ``/wss``) comes from the listen address, not
    from the observer. DNS names are never candidates: servers do not dial
    them. Peer ids are stripped. The result has no duplicates and a
    deterministic order: most distinct observers first, then listen
    addresses before translated ones, then by text; at most ``limit``.

    Corroboration: once the best of those is seen by at least two observers,
    the observed addresses only one observer reports are dropped from them
    (listen addresses stay). An observed address is the observer's word, and
    a lying observer's address would be probed, fail, and make the node
    ``private`` before its real address was confirmed (the simulator's
    ``wrong_observed`` scenario: 22 of 54 hosts flipped that way). While no
    address has two observers (a network of one boot node) every address
    counts. Observers count by peer id here: a host running several peer ids
    can still corroborate its own lie.

Servers (:func:`choose_servers`)
    Up to ``count`` distinct peers that announce the dial-request protocol
    and are not excluded (ourselves, distrusted servers, servers that already
    gave evidence for the address). Each pick prefers a peer in a subnet not
    used yet (/24 for IPv4, /48 for IPv6), then one on an IP not used yet, so
    that servers behind one network - or one operator's sybils - cannot
    outvote the rest; ties are broken at random by the injected
    ``random.Random``.

Dial-back evidence (:func:`dial_back_mismatch`)
    A dial-back proves a candidate reachable only when it arrives on the
    listener that candidate stands for. The client knows the candidate, its
    own end of the inbound connection (``local``) and its bound listen
    addresses; the rule mirrors how candidates are derived above:

    1. ``local`` must be one of our listeners: a listen address with the
       same port, the same ``/ws`` or ``/wss`` flag and the same IP (any IP
       for a wildcard listener such as ``0.0.0.0``);
    2. the candidate must have the ``/ws``/``/wss`` flag and the IP family of
       ``local`` (a candidate takes both from the listen address it was
       derived from; NATs do not translate between families);
    3. when the candidate's IP *is* the local IP, nothing translated the
       connection: the ports must be equal too;
    4. when the candidate's IP is the IP of another of our (non-wildcard)
       listeners, the dial-back should have arrived at that IP: mismatch;
    5. otherwise a NAT translated the candidate (an observed IP). If its
       port is one of our listen ports (same flag and family) the candidate
       stands for that listener - a port-preserving NAT or a port forward -
       and the dial-back must arrive on that port. A port that is none of
       our listen ports is the NAT's mapping of *some* listen port (the
       observed port of a connection that left from it); the NAT alone
       decides which, so any listener that passed 1 and 2 is accepted.

    Limits: behind a NAT the client cannot tell a dial-back to the public
    address from a LAN peer dialing the private one (both arrive on the same
    listener), and with a wildcard listener it does not know which local IPs
    are its own, so rule 4 only covers IPs that appear in listen addresses.
    A NAT that maps one listen port onto the number of *another* listen port
    is refused by rule 5 (conservative: not evidence, never false evidence).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from dataclasses import dataclass

from ..core import AddressPolicy, IPAddress, PeerId, WsAddress
from ._autonat_msg import DIAL_REQUEST_PROTOCOL_ID
from ._nat_mapping import AddressObservation

__all__ = ["ProbeServer", "candidate_addresses", "choose_servers", "dial_back_mismatch"]

_PREFIX = {4: 24, 6: 48}


@dataclass(frozen=True)
class _Candidate:
    addr: WsAddress
    from_listen: bool


def _plain(ip: IPAddress | None) -> IPAddress | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _listens_on(listen: WsAddress, local: WsAddress) -> bool:
    """Did the connection with local end ``local`` use ``listen``'s socket port?"""
    if listen.port != local.port:
        return False
    listen_ip, local_ip = _plain(listen.ip), _plain(local.ip)
    if listen_ip is None or local_ip is None or listen_ip.is_unspecified:
        return True
    return listen_ip == local_ip


def _translations(obs: AddressObservation, listen_addrs: Iterable[WsAddress]) -> set[WsAddress]:
    seen_ip = _plain(obs.observed.ip)
    if seen_ip is None:
        return set()
    kind = f"ip{seen_ip.version}"
    out: set[WsAddress] = set()
    for listen in listen_addrs:
        listen_ip = _plain(listen.ip)
        if listen_ip is None or listen_ip.version != seen_ip.version or listen.port == 0:
            continue
        out.add(WsAddress(str(seen_ip), kind, listen.port, listen.secure))
        if _listens_on(listen, obs.local):
            out.add(WsAddress(str(seen_ip), kind, obs.observed.port, listen.secure))
    return out


def candidate_addresses(
    listen_addrs: Iterable[WsAddress],
    observations: Iterable[AddressObservation],
    policy: AddressPolicy,
    *,
    limit: int = 16,
) -> tuple[WsAddress, ...]:
    """Our addresses worth probing, best first (see the module docstring)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    listens = [addr.with_peer_id(None) for addr in listen_addrs]
    observers: dict[WsAddress, set[PeerId]] = {}
    for addr in listens:
        if addr.ip is not None and policy.is_routable(addr):
            observers.setdefault(addr, set())
    for obs in observations:
        for addr in _translations(obs, listens):
            if policy.is_routable(addr):
                observers.setdefault(addr, set()).add(obs.observer)
    listed = set(listens)
    ranked = sorted(observers, key=lambda a: (-len(observers[a]), a not in listed, str(a)))
    return corroborated(ranked[:limit], lambda a: len(observers[a]), listed)


def corroborated(best_first: Sequence[WsAddress], observers: Callable[[WsAddress], int],
                 listed: Container[WsAddress]) -> tuple[WsAddress, ...]:
    """``best_first`` without the observed addresses of a single observer, once the best
    has two (module docstring, "Corroboration")."""
    if not best_first or observers(best_first[0]) < 2:
        return tuple(best_first)
    return tuple(a for a in best_first if observers(a) >= 2 or a in listed)


# --- dial-back evidence ---------------------------------------------------------


def _scheme(addr: WsAddress) -> str:
    return "/wss" if addr.secure else "/ws"


def dial_back_mismatch(candidate: WsAddress, local: WsAddress,
                       listen_addrs: Iterable[WsAddress]) -> str | None:
    """Why a dial-back of ``candidate`` that arrived at our end ``local`` is not evidence.

    ``None``: it arrived on the listener the candidate stands for, so it counts.
    Otherwise a short reason, for the log. ``listen_addrs`` are our *bound*
    listen addresses (real ports). The rule is in the module docstring.
    """
    listens = list(listen_addrs)
    cand_ip, local_ip = _plain(candidate.ip), _plain(local.ip)
    if cand_ip is None:
        return f"{candidate} has no IP address"
    if local_ip is None:
        return f"arrived at {local}, which has no IP address"
    if not any(listen.secure == local.secure and _listens_on(listen, local)
               for listen in listens):
        return f"arrived at {local}, which is none of our listeners"
    if candidate.secure != local.secure:
        return (f"{candidate} is a {_scheme(candidate)} address but arrived on a "
                f"{_scheme(local)} listener")
    if cand_ip.version != local_ip.version:
        return f"{candidate} is IPv{cand_ip.version} but arrived over IPv{local_ip.version}"
    if cand_ip == local_ip:
        if candidate.port != local.port:
            return f"{candidate} was dialed but arrived on listener port {local.port}"
        return None
    listen_ips = {_plain(listen.ip) for listen in listens}
    if cand_ip in listen_ips and not cand_ip.is_unspecified:
        return f"{candidate} has the IP of one of our listen addresses but arrived at {local}"
    listen_ports = set()
    for listen in listens:
        listen_ip = _plain(listen.ip)
        if (listen.secure == candidate.secure and listen_ip is not None
                and listen_ip.version == cand_ip.version):
            listen_ports.add(listen.port)
    if candidate.port in listen_ports and candidate.port != local.port:
        return (f"{candidate} stands for our listen port {candidate.port} but arrived on "
                f"listener port {local.port}")
    return None


# --- servers -------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeServer:
    """A connected peer that might serve dial requests; ``addr`` is where we reach it."""

    peer_id: PeerId
    addr: WsAddress
    protocols: tuple[str, ...] = ()

    @property
    def serves_dial_requests(self) -> bool:
        return DIAL_REQUEST_PROTOCOL_ID in self.protocols


def _network_keys(server: ProbeServer) -> tuple[object, object]:
    """(subnet, host) of the server's address; a DNS name is its own subnet."""
    ip = _plain(server.addr.ip)
    if ip is None:
        return ("dns", server.addr.host), ("dns", server.addr.host)
    subnet = ipaddress.ip_network(f"{ip}/{_PREFIX[ip.version]}", strict=False)
    return subnet, ip


def _novelty(server: ProbeServer, subnets: set[object], hosts: set[object]) -> int:
    """0: new subnet, 1: new IP in a used subnet, 2: an IP already used."""
    subnet, host = _network_keys(server)
    return 0 if subnet not in subnets else 1 if host not in hosts else 2


def choose_servers(
    peers: Iterable[ProbeServer],
    count: int = 3,
    *,
    exclude: Collection[PeerId] = (),
    rng: random.Random,
) -> tuple[ProbeServer, ...]:
    """Up to ``count`` distinct dial-request servers spread over subnets and IPs."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pool: dict[PeerId, ProbeServer] = {}
    for server in peers:
        if server.serves_dial_requests and server.peer_id not in exclude:
            pool.setdefault(server.peer_id, server)
    candidates = sorted(pool.values(), key=lambda s: s.peer_id)  # independent of input order
    rng.shuffle(candidates)
    chosen: list[ProbeServer] = []
    subnets: set[object] = set()
    hosts: set[object] = set()
    while candidates and len(chosen) < count:
        # min() keeps the first (random) of equals
        best = min(candidates, key=lambda server: _novelty(server, subnets, hosts))
        candidates.remove(best)
        chosen.append(best)
        subnet, host = _network_keys(best)
        subnets.add(subnet)
        hosts.add(host)
    return tuple(chosen)
