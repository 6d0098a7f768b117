"""AutoNAT client, per-connection half: receiving dial-backs (DESIGN 5.6).

Theory of operation
-------------------
When the probing actor asks a server to dial one of our addresses, it
registers the request's random 64-bit nonce here with :meth:`expect`. The
server - if it can reach the address - opens a **new** connection to it and
sends ``DialBack{nonce}`` on ``/libp2p/autonat/2/dial-back``. This handler,
registered with the Dialer for that protocol, runs in that connection's
nursery and marks the pending probe *verified* only when all of this holds:

* the nonce is one we are waiting for;
* the connection is **inbound** (the server dialed us: that is the whole
  point) and is not the connection the request itself went over;
* the connection was opened after the probe started.

Anything else is counted as unexpected and otherwise ignored; the server's
``DialResponse`` alone never verifies anything. Either way the handler
answers ``DialBackResponse(OK)`` so an honest server can finish cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
import trio

from protocols import (
    DialBack,
    DialBackResponse,
    DialBackStatus,
    Direction,
    PeerId,
    ValidationError,
    WsAddress,
    decode_autonat_message,
)

from ._connection import Connection
from ._stream import Stream

DIAL_BACK_TIMEOUT = 10.0
"""Seconds a dial-back stream may take to deliver its one message."""


@dataclass
class PendingProbe:
    """One outstanding dial request, waiting for its dial-back."""

    addr: WsAddress
    server: PeerId
    started_at: float
    request_connection: Connection
    verified: trio.Event = field(default_factory=trio.Event)
    arrived_on: WsAddress | None = None


class DialBackReceiver:
    """Nonce table plus the ``/libp2p/autonat/2/dial-back`` handler (client role)."""

    def __init__(self, *, timeout: float = DIAL_BACK_TIMEOUT) -> None:
        self._pending: dict[int, PendingProbe] = {}
        self._timeout = timeout
        self.verified = 0
        self.unexpected = 0
        self._log = structlog.get_logger("actors.autonat").bind(actor="autonat-client")

    def expect(self, nonce: int, probe: PendingProbe) -> None:
        if nonce in self._pending:
            raise ValueError("nonce already pending")
        self._pending[nonce] = probe

    def forget(self, nonce: int) -> None:
        self._pending.pop(nonce, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def serve(self, stream: Stream) -> None:
        connection = stream.connection
        with trio.fail_after(self._timeout):
            message = decode_autonat_message(await stream.receive())
        if not isinstance(message, DialBack):
            raise ValidationError(f"expected DialBack on the dial-back stream, got "
                                  f"{type(message).__name__}")
        probe = self._pending.get(message.nonce)
        problem = self._problem(probe, connection)
        if probe is not None and problem is None:
            probe.arrived_on = connection.local_addr
            probe.verified.set()
            self.verified += 1
            self._log.debug("dial-back verified", peer=str(connection.peer_id),
                            addr=str(probe.addr), local=str(connection.local_addr))
        else:
            self.unexpected += 1
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
        return None
