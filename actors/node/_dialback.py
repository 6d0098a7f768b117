"""AutoNAT client, per-connection half: receiving dial-backs.

The rules: (docs/architecture.md, "AutoNAT client rules").

Theory of operation
-------------------
When the probing actor asks a server to dial one of our addresses, it
registers the probe here with :meth:`DialBackReceiver.expect`, which
*issues* the request's nonce: 64 bits from :mod:`secrets` (never from the
node's seeded ``random.Random``, which also drives backoff jitter and is
predictable), and never one it issued before (it remembers the last
``NONCE_MEMORY`` nonces and every pending one). The server - if it can reach
the address - opens a **new** connection to it and sends ``DialBack{nonce}``
on ``/libp2p/autonat/2/dial-back``. This handler, registered with the Dialer
for that protocol, runs in that connection's nursery and marks the pending
probe *verified* only when all of this holds:

* the nonce is one we are waiting for, and it has not verified a dial-back
  from the same source IP already: a server that measures filtering dials
  back twice with one nonce, from two IPs (see
  :mod:`protocols.autonat._nat_filtering`), so a nonce verifies at most one
  dial-back per source IP and at most ``MAX_DIAL_BACKS`` in all; another
  ``DialBack`` with it (a replay) is "nonce already used" - also after the
  probe ended, while the nonce is remembered; after that it is simply
  unknown;
* the connection is **inbound** (the server dialed us: that is the whole
  point) and is not the connection the request itself went over;
* the connection was opened after the probe started;
* it arrived on the **listener of the address under test**: our end of the
  connection must be the listener that the probed candidate stands for,
  judged against the listen addresses bound when the probe started
  (:func:`protocols.dial_back_mismatch` has the exact rule). A server that
  dials another of our addresses - one it already knows works - proves
  nothing about the one we asked about.

Each verified arrival records the source IP of its connection
(``PendingProbe.sources``): the server's address the request went to, or
another one (its second address), which is what filtering is judged by.
Anything else is counted as unexpected, logged with the reason and otherwise
ignored; the server's ``DialResponse`` alone never verifies anything. Either
way the handler answers ``DialBackResponse(OK)`` so an honest server can
finish cleanly.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

import trio

from protocols import (
    MAX_DIAL_BACKS,
    DialBack,
    DialBackResponse,
    DialBackStatus,
    Direction,
    PeerId,
    ValidationError,
    WsAddress,
    decode_autonat_message,
    dial_back_mismatch,
)

from ..connection import Connection, Stream
from ..runtime import get_logger, node_field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DIAL_BACK_TIMEOUT = 10.0
"""Seconds a dial-back stream may take to deliver its one message."""
NONCE_MEMORY = 4096
"""How many issued nonces are remembered (never issued again; replays named as such)."""


@dataclass
class PendingProbe:
    """One outstanding dial request, waiting for its dial-back."""

    addr: WsAddress
    server: PeerId
    started_at: float
    request_connection: Connection
    listen_addrs: tuple[WsAddress, ...]
    """Our bound listen addresses when the probe started (see ``dial_back_mismatch``)."""
    verified: trio.Event = field(default_factory=trio.Event)
    arrived_on: WsAddress | None = None
    sources: list[IPAddress] = field(default_factory=list)
    """The source IP of every verified dial-back, in order of arrival."""
    _arrival: trio.Event = field(default_factory=trio.Event)

    def record(self, source: IPAddress | None, local: WsAddress) -> None:
        """One verified dial-back from ``source`` arrived on ``local``."""
        if source is not None:
            self.sources.append(_plain(source))
        if self.arrived_on is None:
            self.arrived_on = local
        self.verified.set()
        arrival, self._arrival = self._arrival, trio.Event()
        arrival.set()

    async def next_arrival(self) -> None:
        """Return once another verified dial-back arrives."""
        await self._arrival.wait()

    def arrived_from(self, ip: IPAddress | None) -> tuple[bool, bool]:
        """(a dial-back came from ``ip``, one came from another IP)."""
        target = None if ip is None else _plain(ip)
        return (any(s == target for s in self.sources),
                any(s != target for s in self.sources))


def _plain(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class DialBackStatistics:
    """What the dial-back receiver saw (monotonic counters) and holds now."""

    verified: int
    """Dial-backs that proved one of our probes (nonce and listener matched)."""
    unexpected: int
    """Dial-backs ignored: unknown or reused nonce, wrong connection or listener."""
    pending: int
    """Probes waiting for their dial-back right now."""


class DialBackReceiver:
    """Nonce table plus the ``/libp2p/autonat/2/dial-back`` handler (client role)."""

    def __init__(self, *, timeout: float = DIAL_BACK_TIMEOUT, node: PeerId | None = None) -> None:
        self._pending: dict[int, PendingProbe] = {}
        # recently issued nonces, oldest first -> source IPs of the dial-backs it verified
        self._issued: dict[int, tuple[IPAddress | None, ...]] = {}
        self._timeout = timeout
        self._verified = 0
        self._unexpected = 0
        self._log = get_logger("actors.autonat", actor="autonat-client", **node_field(node))

    def statistics(self) -> DialBackStatistics:
        return DialBackStatistics(verified=self._verified, unexpected=self._unexpected,
                                  pending=len(self._pending))

    def expect(self, probe: PendingProbe) -> int:
        """Wait for ``probe``'s dial-back under a fresh single-use nonce; returns the nonce."""
        nonce = secrets.randbits(64)
        while nonce in self._issued or nonce in self._pending:
            nonce = secrets.randbits(64)
        self._pending[nonce] = probe
        self._remember(nonce, ())
        return nonce

    def _remember(self, nonce: int, used: tuple[IPAddress | None, ...]) -> None:
        self._issued[nonce] = used
        while len(self._issued) > NONCE_MEMORY:
            del self._issued[next(iter(self._issued))]

    def forget(self, nonce: int) -> None:
        self._pending.pop(nonce, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def serve(self, stream: Stream[Connection]) -> None:
        connection = stream.connection
        with trio.fail_after(self._timeout):
            message = decode_autonat_message(await stream.receive())
        if not isinstance(message, DialBack):
            raise ValidationError(f"expected DialBack on the dial-back stream, got "
                                  f"{type(message).__name__}")
        probe = self._pending.get(message.nonce)
        source = connection.remote_addr.ip
        source = None if source is None else _plain(source)
        used = self._issued.get(message.nonce, ())
        if source in used or len(used) >= MAX_DIAL_BACKS:
            problem: str | None = "nonce already used"
        else:
            problem = self._problem(probe, connection)
        if probe is not None and problem is None:
            self._remember(message.nonce, (*used, source))
            probe.record(source, connection.local_addr)
            self._verified += 1
            self._log.debug("dial-back verified", peer=str(connection.peer_id),
                            addr=str(probe.addr), local=str(connection.local_addr))
        else:
            self._unexpected += 1
            self._log.info("dial-back ignored", peer=str(connection.peer_id), reason=problem)
        await stream.send(DialBackResponse(status=DialBackStatus.OK).to_wire(), fin=True)

    @staticmethod
    def _problem(probe: PendingProbe | None, connection: Connection) -> str | None:
        if probe is None:
            return "unknown nonce"
        if connection.direction is not Direction.INBOUND:
            return "arrived on a connection we opened"
        if connection is probe.request_connection:
            return "arrived on the request's own connection"
        if connection.opened_at < probe.started_at:
            return "arrived on a connection older than the probe"
        mismatch = dial_back_mismatch(probe.addr, connection.local_addr, probe.listen_addrs)
        if mismatch is not None:
            return f"not the listener under test: {mismatch}"
        return None
