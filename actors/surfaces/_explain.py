"""What a NAT profile means for the user, in plain English (``autonat probe`` and
``autonat status`` without ``--json``).

Theory of operation
-------------------
Pure: :class:`ProfileFacts` (built from a probe result or a ``/status``
document, unknown or malformed values read as ``unknown``) in, a few
sentences out (:func:`explain`); :func:`wrap` lays them out for a terminal.
No I/O, no Trio: every branch is tested on hand-made facts
(``tests/test_explain.py``). The sentences say, in this order:

1. **Reachability** - ``public``: the addresses other nodes can dial;
   ``private``: the addresses the servers failed to dial back, and the public
   IP peers see; ``unknown``: why (the probe's ``reason``).
2. **The TCP NAT** - its mapping (``none``: no NAT; ``endpoint-independent``:
   one external port per local port; ``endpoint-dependent``: a new port per
   connection, a symmetric NAT) and its filtering (who gets in to a mapped
   port), each in RFC 4787's terms, or what is missing to tell.
3. **Hole punching**, as a likelihood, never a promise, from the mapping and
   filtering (README, "Reading a verdict"), TCP and UDP separately:

   ========================  ============================  ==========
   mapping                   filtering                     likelihood
   ========================  ============================  ==========
   endpoint-dependent (TCP)  any                           unlikely
   address(-and-port)-dep.   any                           unlikely
   (UDP, symmetric)
   none / endpoint-indep.    endpoint-independent          likely
   none / endpoint-indep.    address-dependent             likely
   none / endpoint-indep.    address-and-port-dependent    possible (TCP: simultaneous open),
                                                           likely (UDP: both sides send)
   none / endpoint-indep.    unknown                       possible
   unknown                   any                           not judged
   ========================  ============================  ==========

   The TCP line is left out when the node is ``public`` (peers dial it
   directly); the UDP line says when UDP was not measured.
4. **Hairpinning**, when it was tested (a confirmed external address behind a
   NAT): whether computers on the same LAN can reach the node at that public
   address (``true``), or must use its LAN address (``false``). Nothing is
   said when it is ``null`` (no NAT, not reachable, or not tested).
5. **What to do** - ``public``: nothing to forward; ``private`` behind a NAT:
   forward the TCP listen port on the router to this machine's LAN IP (a
   probe on a random port is told to rerun with a fixed ``--listen``);
   ``private`` without a NAT: a firewall drops inbound connections, open the
   port; ``unknown``: how to get a verdict (more servers, more time).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["ProfileFacts", "explain", "hairpinning_text", "hole_punching", "wrap"]

DEFAULT_PORT: Final = 44000
_TCP_MAPPINGS: Final = ("none", "endpoint-independent", "endpoint-dependent")
_BEHAVIOURS: Final = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
_UDP_MAPPINGS: Final = ("none", *_BEHAVIOURS)
Likelihood = Literal["likely", "possible", "unlikely"]


def _one_of(value: object, allowed: Iterable[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "unknown"


def hairpinning_text(value: object) -> str:
    """``true``, ``false`` or ``unknown`` (JSON null, or anything else)."""
    return "true" if value is True else "false" if value is False else "unknown"


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(item for item in value if isinstance(item, str) and item)


@dataclass(frozen=True)
class ProfileFacts:
    """The facts an explanation rests on (strings as in ``probe --json``)."""

    nat_status: str = "unknown"
    nat_mapping: str = "unknown"
    nat_filtering: str = "unknown"
    udp_mapping: str = "unknown"
    udp_filtering: str = "unknown"
    hairpinning: str = "unknown"
    """``true``, ``false`` or ``unknown`` (see :func:`hairpinning_text`)."""
    reachable_addrs: tuple[str, ...] = ()
    unreachable_addrs: tuple[str, ...] = ()
    observed_addrs: tuple[str, ...] = ()
    reason: str | None = None
    listen_port: int | None = None
    """The TCP port the node listens on, when it is fixed (None: a random port, or not
    known)."""
    lan_ips: tuple[str, ...] = ()
    """This machine's own IPs on its connections (where a port forward must point)."""
    one_shot: bool = True
    """``autonat probe`` (True) or a running node (``autonat status``)."""

    @classmethod
    def from_document(cls, doc: Mapping[str, object], *, listen_port: int | None = None,
                      lan_ips: Iterable[str] = (), one_shot: bool = True) -> ProfileFacts:
        """Facts from a ``probe --json`` result or a ``/status`` document (any value that
        is missing or not understood reads as unknown)."""
        udp = doc.get("udp")
        udp = udp if isinstance(udp, Mapping) else {}
        reason = doc.get("reason")
        return cls(
            nat_status=_one_of(doc.get("nat_status"), ("public", "private")),
            nat_mapping=_one_of(doc.get("nat_mapping"), _TCP_MAPPINGS),
            nat_filtering=_one_of(doc.get("nat_filtering"), _BEHAVIOURS),
            udp_mapping=_one_of(udp.get("mapping"), _UDP_MAPPINGS),
            udp_filtering=_one_of(udp.get("filtering"), _BEHAVIOURS),
            hairpinning=hairpinning_text(doc.get("hairpinning")),
            reachable_addrs=_strings(doc.get("reachable_addrs")),
            unreachable_addrs=_strings(doc.get("unreachable_addrs")),
            observed_addrs=_strings(doc.get("observed_addrs")),
            reason=reason if isinstance(reason, str) and reason else None,
            listen_port=listen_port if listen_port else None,
            lan_ips=tuple(lan_ips),
            one_shot=one_shot,
        )


def _host(addr: str) -> str | None:
    """The IP of ``/ip4/IP/...`` or ``/ip6/IP/...`` (None for anything else)."""
    parts = addr.split("/")
    if len(parts) > 2 and parts[0] == "" and parts[1] in ("ip4", "ip6", "dns", "dns4", "dns6"):
        return parts[2]
    return None


def _and(items: Iterable[str], limit: int = 3) -> str:
    """``a``, ``a and b``, ``a, b and c``; beyond ``limit``: ``a, b and 2 more``."""
    items = list(items)
    if len(items) > limit:
        items = [*items[:limit - 1], f"{len(items) - limit + 1} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def hole_punching(mapping: str, filtering: str, *, udp: bool) -> tuple[Likelihood, str] | None:
    """How likely hole punching is on our side of the path, and why (None: cannot tell)."""
    if (udp and mapping in ("address-dependent", "address-and-port-dependent")) \
            or (not udp and mapping == "endpoint-dependent"):
        return ("unlikely", "the NAT gives each destination a new external port, which the "
                "other peer cannot predict; expect to need a relay")
    if mapping not in ("none", "endpoint-independent"):
        return None
    if filtering == "endpoint-independent":
        if mapping == "none":
            return "likely", "nothing translates or filters your address"
        return "likely", "once a mapping exists, anyone can reach it"
    if filtering == "address-dependent":
        return "likely", "both sides dial each other, and each side's attempt opens the way in"
    if filtering == "address-and-port-dependent":
        if udp:
            return "likely", "both sides send to each other at once, the usual case for ICE"
        return ("possible", "it needs a simultaneous open from the mapped port (both sides "
                "dial at the same moment); that usually works with this kind of NAT, but some "
                "routers reject the unexpected connection attempt")
    return "possible", "the mapping is stable, but the filtering was not measured"


_TCP_MAPPING_TEXT: Final = {
    "none": "There is no NAT on your TCP path (servers saw your own address)",
    "endpoint-independent": "You are behind a NAT that keeps one external port per local "
                            "port (endpoint-independent mapping)",
    "endpoint-dependent": "You are behind a NAT that gives every connection a new external "
                          "port (endpoint-dependent mapping: a symmetric NAT)",
    "unknown": "The kind of NAT is not known (telling needs two servers on distinct IPs "
               "that saw your address)",
}
_FILTERING_TEXT: Final = {
    "endpoint-independent": "{what} from anyone get in (endpoint-independent filtering)",
    "address-dependent": "only hosts you have contacted get in (address-dependent "
                         "filtering)",
    "address-and-port-dependent": "only replies from the exact host and port you contacted "
                                  "get in (address-and-port-dependent filtering)",
}
_UDP_MAPPING_TEXT: Final = {
    "none": "no NAT (the STUN server saw your own address)",
    "endpoint-independent": "one public port for every destination (endpoint-independent "
                            "mapping)",
    "address-dependent": "a new public port per destination IP (address-dependent mapping: "
                         "a symmetric NAT)",
    "address-and-port-dependent": "a new public port per destination (address-and-port-"
                                  "dependent mapping: a symmetric NAT)",
}


def _filtering(value: str, what: str) -> str | None:
    text = _FILTERING_TEXT.get(value)
    return None if text is None else text.format(what=what)


def _tcp_nat(facts: ProfileFacts) -> str:
    mapping = _TCP_MAPPING_TEXT[facts.nat_mapping]
    filtering = _filtering(facts.nat_filtering, "connections")
    if filtering is None:
        why = ("it cannot be measured on a NAT that does not keep its mappings"
               if facts.nat_mapping == "endpoint-dependent"
               else "measuring it needs two servers with a second address, "
               "--dialback-source")
        filtering = f"which inbound connections get in is not known ({why})"
    joiner = "; " if facts.nat_mapping == "unknown" else ", and "
    return f"{mapping}{joiner}{filtering}."


def _punch_sentence(label: str, mapping: str, filtering: str, *, udp: bool) -> str:
    judged = hole_punching(mapping, filtering, udp=udp)
    if judged is None:
        return (f"Whether {label} hole punching can work is not known: the mapping is "
                "unknown.")
    likelihood, why = judged
    how = "send to each other" if udp else "dial each other"
    return f"{label} hole punching (both peers {how} at once) is {likelihood}: {why}."


def _udp(facts: ProfileFacts) -> list[str]:
    if facts.udp_mapping == "unknown":
        if facts.udp_filtering != "unknown":  # odd: filtering without a mapping
            return [f"UDP: {_filtering(facts.udp_filtering, 'packets')}, but the UDP mapping is "
                    "not known, so nothing can be said about hole punching over UDP."]
        return ["UDP was not measured (no peer advertised a STUN server, or it did not "
                "answer)."]
    mapping = _UDP_MAPPING_TEXT[facts.udp_mapping]
    filtering = _filtering(facts.udp_filtering, "packets") or (
        "the UDP filtering is not known (the STUN server has no second address)")
    return [f"UDP: {mapping}; {filtering}.",
            _punch_sentence("UDP", facts.udp_mapping, facts.udp_filtering, udp=True)]


def _hairpinning(facts: ProfileFacts) -> list[str]:
    if facts.hairpinning == "true":
        return ["Your router hairpins: computers on your own LAN can reach this node at its "
                "public address too."]
    if facts.hairpinning == "false":
        lan = f" ({_and(facts.lan_ips)})" if facts.lan_ips else ""
        return ["Your router does not hairpin: computers on your own LAN cannot reach this "
                f"node at its public address; they must use its LAN address{lan}."]
    return []


def _reachability(facts: ProfileFacts) -> str:
    if facts.nat_status == "public":
        if not facts.reachable_addrs:
            return "You are reachable (public), though no address was reported."
        return (f"You are reachable at {_and(facts.reachable_addrs)}: other nodes can dial "
                "you directly.")
    if facts.nat_status == "private":
        where = (f" at {_and(facts.unreachable_addrs)}" if facts.unreachable_addrs else "")
        seen = sorted({h for h in map(_host, facts.observed_addrs) if h})
        also = f" Peers see you at {_and(seen)}." if seen else ""
        return ("You are not reachable from outside: servers could not dial you back"
                f"{where}.{also}")
    why = facts.reason or ("no two servers have agreed on an address yet (or there is no "
                           "routable address to test)")
    return f"Whether you are reachable is not known yet: {why}."


def _port_text(facts: ProfileFacts) -> str:
    if facts.listen_port is not None:
        return f"TCP port {facts.listen_port}"
    return f"the TCP port your node listens on ({DEFAULT_PORT} unless you set --listen)"


def _advice(facts: ProfileFacts) -> list[str]:
    if facts.nat_status == "public":
        return ["Nothing to forward on your router."]
    if facts.nat_status == "private":
        if facts.nat_mapping == "none":
            lines = [f"Nothing translates your address, so a firewall drops inbound "
                     f"connections: allow inbound {_port_text(facts)} in the firewall of this "
                     "machine or network."]
        else:
            to = (f"this machine (LAN IP {_and(facts.lan_ips)})" if facts.lan_ips
                  else "this machine")
            lines = [f"To be reachable, forward {_port_text(facts)} on your router to {to}."]
        if facts.one_shot and facts.listen_port is None:
            lines.append(f"This probe listened on a random port: after opening the port, "
                         f"probe again with --listen /ip4/0.0.0.0/tcp/{DEFAULT_PORT}/ws "
                         "(or your node's port).")
        return lines
    if facts.one_shot:
        return ["To get a verdict: check that the boot URLs answer, add servers "
                "(--boot-url, --peer), or allow more time (--timeout)."]
    return ["The node keeps probing: ask again later, or give it more peers (--boot-url, "
            "--peer)."]


def explain(facts: ProfileFacts) -> list[str]:
    """A few plain sentences on what ``facts`` mean for the user (see the module doc)."""
    lines = [_reachability(facts)]
    if facts.nat_status != "unknown" or facts.nat_mapping != "unknown" \
            or facts.nat_filtering != "unknown":
        lines.append(_tcp_nat(facts))
    if facts.nat_status == "private" or (facts.nat_status == "unknown"
                                         and facts.nat_mapping != "unknown"):
        lines.append(_punch_sentence("TCP", facts.nat_mapping, facts.nat_filtering, udp=False))
    lines.extend(_hairpinning(facts))
    lines.extend(_udp(facts))
    lines.extend(_advice(facts))
    return lines


def wrap(sentences: Iterable[str], width: int = 79, indent: str = "  ") -> list[str]:
    """Sentences as terminal lines: each starts a line, continuation lines are indented;
    addresses are never broken."""
    out: list[str] = []
    for sentence in sentences:
        out.extend(textwrap.wrap(sentence, width, initial_indent=indent,
                                 subsequent_indent=indent * 2, break_long_words=False,
                                 break_on_hyphens=False))
    return out
