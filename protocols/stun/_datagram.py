"""Datagram: one UDP payload with the transport addresses it goes from and to.

The STUN machines never touch a socket: they return the datagrams to send as
:class:`Datagram` values, and their driver sends each ``payload`` from the
socket bound to ``source`` to ``destination``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._stun_codec import Endpoint

__all__ = ["Datagram"]


@dataclass(frozen=True, slots=True)
class Datagram:
    payload: bytes
    source: Endpoint
    """The local address to send from (a server with several addresses has several sockets)."""
    destination: Endpoint
