"""The ``announce`` setting: externally visible addresses a node advertises as its own.

Theory of operation
-------------------
A node behind a port forward or a load balancer (a Kubernetes boot node
behind its per-pod LoadBalancer Service) listens on one address and is
reached at another that it cannot see itself: no local interface carries
it, and peers observe only the source address of our *outbound*
connections, which a load balancer does not translate. ``announce`` names
those addresses. The node advertises them first - in Identify's
``listen_addrs``, in its ``/status`` ``peer_addrs`` (its own addresses come
first there) and in its snapshot - and probes the IP ones with AutoNAT like
any other candidate.

Announcing is a claim, not evidence: other nodes still verify an announced
address by dialing it (a newcomer's dial authenticates our peer id, an
AutoNAT server's dial-back proves reachability) before they pass it on
(docs/architecture.md, "Bootstrap /status").

:func:`announce_address` is the one place the value is parsed, when the
configuration is built: a multiaddr (``/ip4/203.0.113.7/tcp/44000/ws``,
``/dns4/boot-0.example.org/tcp/44000/wss``) or ``HOST:PORT`` (an IPv4
address, ``[IPv6]``, or a DNS name; ``/ws``). A ``/p2p/`` part, port 0 or a
wildcard IP is refused with the reason, because peers could not use it.
"""

from __future__ import annotations

from ..core import AddressError, WsAddress

__all__ = ["announce_address"]

_EXAMPLES = "e.g. /ip4/203.0.113.7/tcp/44000/ws or 203.0.113.7:44000"


def announce_address(text: str) -> WsAddress:
    """``text`` (a multiaddr or ``HOST:PORT``) as the address to advertise; ``ValueError``
    says what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"announce: expected a multiaddr or HOST:PORT ({_EXAMPLES}), "
                         f"got {text!r}")
    text = text.strip()
    try:
        if text.startswith("/"):
            addr = WsAddress.parse(text)
        else:
            if text.rpartition(":")[2] == "" or not text.rpartition(":")[2].isdigit():
                raise AddressError("HOST:PORT needs a port")
            addr = WsAddress.from_url(f"ws://{text}/")
    except AddressError as exc:
        raise ValueError(f"announce: {text!r} is not a usable address: {exc} ({_EXAMPLES})"
                         ) from None
    if addr.peer_id is not None:
        raise ValueError(f"announce: {text!r} must not contain /p2p/ (the node adds its own "
                         "peer id)")
    if addr.port == 0:
        raise ValueError(f"announce: {text!r} has port 0; announce the port peers dial")
    if addr.ip is not None and addr.ip.is_unspecified:
        raise ValueError(f"announce: {text!r} is a wildcard address; announce the public "
                         "IP or DNS name peers dial")
    return addr
