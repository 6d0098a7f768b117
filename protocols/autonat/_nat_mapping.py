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
   "Latest" is the order of the input: pass observations oldest first (the
   order they were made; :class:`~protocols.autonat.ObservationIndex` keeps
   them so and computes the same verdict incrementally).
   An observer whose address is a DNS name counts by its peer id.
4. The group judged is the one with at least ``min_observers`` (default 2)
   distinct observers whose scope ranks highest (public > private >
   link-local > loopback), then the one with most observers. Without such a
   group the answer is ``unknown``.
5. Within that group, one endpoint seen by at least two observers and by
   more than half of them decides: our local endpoint -> ``none``, another
   -> ``endpoint-independent``; without such a majority ->
   ``endpoint-dependent``. A majority, not unanimity: an observer can lie
   about what it saw (Identify is its word), and one liar among honest
   observers of a cone NAT would otherwise make every node look
   symmetric - the simulator's ``wrong_observed`` scenario had 6 of 54
   mappings right that way. A symmetric NAT gives each observer its own
   port, so no endpoint gathers a majority there; the cost is that a NAT
   that picks its external IP per destination from a pool, seen by two
   observers on one IP and one on another, passes for a cone NAT.

The local endpoint must be the connection's concrete socket address (never a
wildcard): it is compared with what observers see.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
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


@dataclass(frozen=True, slots=True)
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


def _classify_one(
    obs: AddressObservation, policy: AddressPolicy | None
) -> tuple[_Path, object, Endpoint] | None:
    """Rules 1-3 for one observation: (path, independence key, observed endpoint), or None."""
    seen, local = _plain_ip(obs.observed), _plain_ip(obs.local)
    if seen is None or local is None:
        return None
    if policy is not None and not policy.is_routable_ip(seen):
        return None
    path = _Path((str(local), obs.local.port), seen.version, _scope(seen, policy))
    observer_ip = _plain_ip(obs.observer_addr)
    independence: object = observer_ip if observer_ip is not None else obs.observer
    return path, independence, (str(seen), obs.observed.port)


def _group(
    observations: Iterable[AddressObservation], policy: AddressPolicy | None
) -> dict[_Path, dict[PeerId, tuple[object, Endpoint]]]:
    """path -> observer peer -> (independence key, observed endpoint).

    ``observations`` are oldest first: a later observation of the same observer
    replaces the earlier one *and* moves it to the end, so each group's members
    are in recency order (which :func:`_independent` relies on).
    """
    groups: dict[_Path, dict[PeerId, tuple[object, Endpoint]]] = {}
    for obs in observations:
        one = _classify_one(obs, policy)
        if one is None:
            continue
        path, independence, endpoint = one
        members = groups.setdefault(path, {})
        members.pop(obs.observer, None)  # re-insert: the latest observation is the last
        members[obs.observer] = (independence, endpoint)
    return groups


def _independent(members: dict[PeerId, tuple[object, Endpoint]]) -> dict[object, Endpoint]:
    """One view per independence key: that of its most recent member (members oldest first)."""
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
    """Classify our NAT's mapping behaviour; see the module docstring for the rules.

    ``observations`` oldest first (rule 3: the latest observer on an IP wins).
    """
    if isinstance(min_observers, bool) or not isinstance(min_observers, int) or min_observers < 2:
        raise ValueError(f"min_observers must be an int >= 2, got {min_observers!r}")
    views = {path: _independent(members) for path, members in _group(observations, policy).items()}
    eligible = [(path, v) for path, v in views.items() if len(v) >= min_observers]
    if not eligible:
        return _unknown(max((len(v) for v in views.values()), default=0), min_observers)
    path, view = max(eligible, key=lambda item: (SCOPE_RANK[item[0].scope], len(item[1])))
    return _report(path, Counter(view.values()), len(view))


def _unknown(most: int, min_observers: int) -> NatMappingReport:
    """Rule 4 found no group: ``most`` is the largest number of independent observers."""
    return NatMappingReport(
        "unknown", f"{most} independent observer(s) of one local endpoint, need {min_observers}"
    )


def _verdict(total: int, top: int, local: int) -> NatMapping:
    """Rule 5 from the group's independent observers: ``total`` of them, ``top`` seeing
    the most common endpoint, ``local`` seeing our local endpoint (a majority is unique,
    so it is ours exactly when ``local == top``)."""
    if top >= 2 and 2 * top > total:
        return "none" if local == top else "endpoint-independent"
    return "endpoint-dependent"


def _report(path: _Path, views: Counter[Endpoint], observers: int) -> NatMappingReport:
    """Rule 5 for the group judged: ``views`` its endpoints with their observer counts."""
    mapping = _verdict(sum(views.values()), max(views.values()), views.get(path.local, 0))
    reason = {
        "none": "a majority of observers see our local endpoint",
        "endpoint-independent": "a majority of observers agree on one external endpoint",
        "endpoint-dependent": "no external endpoint is seen by a majority of observers",
    }[mapping]
    return NatMappingReport(mapping, reason, path.local, path.scope, observers,
                            tuple(sorted(views)))


def classify_nat_mapping(
    observations: Iterable[AddressObservation],
    *,
    policy: AddressPolicy | None = None,
    min_observers: int = 2,
) -> NatMapping:
    """Just the verdict of :func:`analyse_nat_mapping`."""
    return analyse_nat_mapping(observations, policy=policy, min_observers=min_observers).mapping
