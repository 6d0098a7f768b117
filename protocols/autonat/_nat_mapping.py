"""NAT mapping classification from observed addresses (RFC 4787 terms).

The rule: (docs/architecture.md, "AutoNAT client rules").

Theory of operation
-------------------
Each Identify answer tells us our address as one peer (the *observer*) saw it
on one connection, paired with our own (local) end of that connection. A NAT
translates a local endpoint (ip, port) into an external one; how that
translation depends on the destination is the NAT's *mapping behaviour*:

* ``none`` - every observer sees exactly our local (ip, port): no NAT;
* ``endpoint-independent`` - every observer sees the same external
  (ip, port), different from the local one (full, restricted and
  port-restricted cone NATs; hole punching and port forwarding work);
* ``endpoint-dependent`` - observers see different external endpoints for the
  same local endpoint (symmetric NATs; also NATs that pick the external IP
  from a pool per destination);
* ``unknown`` - not enough independent observers to say.

Rules, in order:

1. Only observations whose observed and local hosts are IPs are used; with a
   ``policy``, observations whose observed IP the policy rejects are dropped.
2. Observations are grouped by *path*: the local endpoint (ip, port), the IP
   family of the observed address, and the observed address's scope
   (``public``: globally routable or in the policy's ``public_networks``;
   ``private``: RFC 1918, CGNAT, ULA, documentation and other reserved
   ranges; ``link-local``; ``loopback``). Only observers reached over the
   same path are compared: a peer on the same host (sees loopback) or the same
   LAN (sees a private address) tells nothing about the NAT towards the
   internet, and comparing its view with an internet observer's would
   wrongly look endpoint-dependent.
3. Within a group, each observer peer counts once (its latest observation),
   and observers sharing one IP count once (the latest of them): one host can
   run many peer ids, so two of them are not independent vantage points.
   An observer whose address is a DNS name counts by its peer id.
4. The group judged is the one with at least ``min_observers`` (default 2)
   distinct observers whose scope ranks highest (public > private >
   link-local > loopback), then the one with most observers. Without such a
   group the answer is ``unknown``.
5. Within that group: all observed endpoints equal to the local endpoint ->
   ``none``; all equal to one other endpoint -> ``endpoint-independent``;
   anything else -> ``endpoint-dependent``.

The local endpoint must be the connection's concrete socket address (never a
wildcard): it is compared with what observers see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from ..core import AddressPolicy, IPAddress, PeerId, WsAddress
from ._autonat_events import NatMapping

__all__ = [
    "AddressObservation",
    "NatMappingReport",
    "analyse_nat_mapping",
    "classify_nat_mapping",
]

Endpoint = tuple[str, int]  # (canonical ip text, port)

SCOPE_RANK: Final = {"public": 3, "private": 2, "link-local": 1, "loopback": 0}


class AddressObservation(Protocol):
    """What :class:`~protocols.ObservedAddr` provides (any object with these attributes)."""

    @property
    def observer(self) -> PeerId: ...

    @property
    def observed(self) -> WsAddress: ...

    @property
    def local(self) -> WsAddress: ...

    @property
    def observer_addr(self) -> WsAddress: ...


@dataclass(frozen=True)
class NatMappingReport:
    """The verdict and what it rests on (for logs, the status API and tests)."""

    mapping: NatMapping
    reason: str
    local: Endpoint | None = None
    scope: str = ""
    observers: int = 0
    external: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class _Path:
    local: Endpoint
    version: int
    scope: str


def _plain_ip(addr: WsAddress) -> IPAddress | None:
    ip = addr.ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _scope(ip: IPAddress, policy: AddressPolicy | None) -> str:
    if ip.is_global or (policy is not None and any(ip in n for n in policy.public_networks)):
        return "public"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    return "private"


def _group(
    observations: Iterable[AddressObservation], policy: AddressPolicy | None
) -> dict[_Path, dict[PeerId, tuple[object, Endpoint]]]:
    """path -> observer peer -> (independence key, observed endpoint); latest wins."""
    groups: dict[_Path, dict[PeerId, tuple[object, Endpoint]]] = {}
    for obs in observations:
        seen, local = _plain_ip(obs.observed), _plain_ip(obs.local)
        if seen is None or local is None:
            continue
        if policy is not None and not policy.is_routable_ip(seen):
            continue
        path = _Path((str(local), obs.local.port), seen.version, _scope(seen, policy))
        observer_ip = _plain_ip(obs.observer_addr)
        independence: object = observer_ip if observer_ip is not None else obs.observer
        groups.setdefault(path, {})[obs.observer] = (independence, (str(seen), obs.observed.port))
    return groups


def _independent(members: dict[PeerId, tuple[object, Endpoint]]) -> dict[object, Endpoint]:
    views: dict[object, Endpoint] = {}
    for independence, endpoint in members.values():
        views.pop(independence, None)  # re-insert: the latest observer on an IP wins
        views[independence] = endpoint
    return views


def analyse_nat_mapping(
    observations: Iterable[AddressObservation],
    *,
    policy: AddressPolicy | None = None,
    min_observers: int = 2,
) -> NatMappingReport:
    """Classify our NAT's mapping behaviour; see the module docstring for the rules."""
    if isinstance(min_observers, bool) or not isinstance(min_observers, int) or min_observers < 2:
        raise ValueError(f"min_observers must be an int >= 2, got {min_observers!r}")
    views = {path: _independent(members) for path, members in _group(observations, policy).items()}
    eligible = [(path, v) for path, v in views.items() if len(v) >= min_observers]
    if not eligible:
        most = max((len(v) for v in views.values()), default=0)
        return NatMappingReport(
            "unknown", f"{most} independent observer(s) of one local endpoint, need {min_observers}"
        )
    path, view = max(eligible, key=lambda item: (SCOPE_RANK[item[0].scope], len(item[1])))
    external = tuple(sorted(set(view.values())))
    if external == (path.local,):
        mapping: NatMapping = "none"
        reason = "observers see our local endpoint"
    elif len(external) == 1:
        mapping, reason = "endpoint-independent", "observers agree on one external endpoint"
    else:
        mapping, reason = "endpoint-dependent", "observers see different external endpoints"
    return NatMappingReport(mapping, reason, path.local, path.scope, len(view), external)


def classify_nat_mapping(
    observations: Iterable[AddressObservation],
    *,
    policy: AddressPolicy | None = None,
    min_observers: int = 2,
) -> NatMapping:
    """Just the verdict of :func:`analyse_nat_mapping`."""
    return analyse_nat_mapping(observations, policy=policy, min_observers=min_observers).mapping
