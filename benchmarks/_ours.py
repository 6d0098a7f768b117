"""The client side of our protocol, built from the public API only (rows 1 and 3).

A benchmark client is not a whole node: it holds thousands of connections, so
each one is a bare authenticated :func:`actors.open_connection` over
:class:`actors.WebSocketTransport` that answers Identify (as any peer must)
and, for probes, AutoNAT dial-backs.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors import ConnectionConfig, ProtocolHandler, Stream, WebSocketTransport
from protocols import (
    DIAL_BACK_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    AddressPolicy,
    DialBack,
    DialBackResponse,
    DialBackStatus,
    Keypair,
    WsAddress,
    decode_autonat_message,
)
from protocols.identify import build_identify

POLICY = AddressPolicy(allow_loopback=True)
CONFIG = ConnectionConfig(handshake_timeout=30.0, idle_timeout=None)


def transport() -> WebSocketTransport:
    return WebSocketTransport(connect_timeout=30.0, handshake_timeout=30.0)


def handlers(keypair: Keypair, *, dial_back: bool = False,
             listen_addrs: tuple[WsAddress, ...] = ()) -> Mapping[str, ProtocolHandler]:
    """Identify (answer and push) and, with ``dial_back``, the AutoNAT dial-back.

    ``listen_addrs`` are announced in our Identify answers (none by default).
    """
    protocols = (IDENTIFY_PROTOCOL_ID, IDENTIFY_PUSH_PROTOCOL_ID)

    async def serve_identify(stream: Stream) -> None:  # type: ignore[type-arg]
        await stream.receive()
        message = build_identify(
            public_key=keypair.public_key, agent_version="bench-client/0",
            listen_addrs=listen_addrs, observed_addr=stream.connection.remote_addr,
            protocols=protocols, policy=POLICY)
        await stream.send(message.to_wire(), fin=True)

    async def serve_push(stream: Stream) -> None:  # type: ignore[type-arg]
        await stream.receive()

    async def serve_dial_back(stream: Stream) -> None:  # type: ignore[type-arg]
        message = decode_autonat_message(await stream.receive())
        assert isinstance(message, DialBack)
        await stream.send(DialBackResponse(status=DialBackStatus.OK).to_wire(), fin=True)

    table: dict[str, ProtocolHandler] = {IDENTIFY_PROTOCOL_ID: serve_identify,
                                         IDENTIFY_PUSH_PROTOCOL_ID: serve_push}
    if dial_back:
        table[DIAL_BACK_PROTOCOL_ID] = serve_dial_back
    return table
