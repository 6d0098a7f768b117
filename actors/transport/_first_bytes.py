"""A stream that remembers how the peer's first bytes began: how a WebSocket client
tells a TCP simultaneous open from a broken server.

Theory of operation
-------------------
Nodes dial from their listen port (``SO_REUSEPORT``) so that NATs with
endpoint-independent mapping show one public port to every peer. When two
such nodes dial each other at the same moment - a peer learned from a third
node, dialing us while we dial it - each SYN meets the other's half-open
socket, and the kernel joins them into *one* TCP connection (simultaneous
open, RFC 9293 section 3.5). There is no listener on either side of it: both
ends are WebSocket clients, both send ``GET ... Upgrade: websocket``, and
each receives a request where it waits for a response. The WebSocket library
reports only a protocol error.

:class:`FirstBytesStream` wraps the connection for the client handshake and
keeps the first few bytes the peer sent. If the handshake fails and they
begin with an HTTP request line, the peer was a client too: the transport
raises :class:`~actors.transport.SimultaneousOpen` and redials from an
ephemeral port, which a listener answers. Both ends do so, and the Dialer's
duplicate rule keeps one of the two resulting connections.

Past the first bytes the wrapper only forwards, at the cost of one call.
"""

from __future__ import annotations

from typing import Final

import trio

PREFIX_BYTES: Final = 8
_REQUEST_STARTS: Final = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ")


class FirstBytesStream(trio.abc.HalfCloseableStream):
    """Forwards to ``inner``; :attr:`first_bytes` holds the start of what it received."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.first_bytes = b""

    @property
    def peer_sent_request(self) -> bool:
        """The peer began with an HTTP request line: it is a client, not a server."""
        return self.first_bytes.startswith(_REQUEST_STARTS)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if len(self.first_bytes) < PREFIX_BYTES:
            self.first_bytes += data[:PREFIX_BYTES - len(self.first_bytes)]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.inner, trio.abc.HalfCloseableStream):
            await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()
