"""Adversarial AutoNAT servers for the simulator: real nodes that answer with wrong words.

Theory of operation
-------------------
A lying boot node is a real node (``open_node``, every actor) whose handler
for ``/libp2p/autonat/2/dial-request`` (or, for ``wrong_observed``,
``/ipfs/id/1.0.0``) is replaced through ``open_node(handler_overrides=...)``
by an :class:`Adversary`. The adversary
speaks the real wire protocol: it reads a valid ``DialRequest`` and answers a
valid ``DialResponse``; only the content is false. Production server code
carries no lying flag: the lies live here, in a module only the simulator
imports (the one hook, ``handler_overrides``, is generic). The modes
(:data:`protocols.sim.LIAR_MODES`):

* ``claim_reachable`` - answers ``OK``/``OK`` (and every dial-back ``OK``)
  without dialing: a claim of reachability that no dial-back backs;
* ``claim_unreachable`` - answers ``OK``/``E_DIAL_ERROR`` (every dial-back
  failed) without dialing: a reachable host told it is not;
* ``wrong_observed`` - serves dial requests honestly, but its Identify
  answer reports an observed address that is not the requester's: another
  public IP, one per liar (``10.250.0.<n>``), the port kept - the node's
  real Identify answer with that one field rewritten on its way out;
* ``silent`` - honest until ``at``, then reads each request and never
  answers (the client's own timeout ends the stream);
* ``vanish`` - honest; the runner (:mod:`._sim_events`) shuts the node down
  at ``at``, so it needs no handler here.

Honest answers are delegated to the node's real handler, which
``open_node`` hands to :meth:`Adversary.overrides`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import trio

from protocols import (
    DIAL_REQUEST_PROTOCOL_ID,
    IDENTIFY_PROTOCOL_ID,
    DialBackAttempt,
    DialBackSource,
    DialRequest,
    DialResponse,
    DialStatus,
    ResponseStatus,
    ValidationError,
    WireMap,
    WsAddress,
    decode_autonat_message,
)
from protocols.sim import LIAR_MODES

from ..connection import Connection, ProtocolHandler, Stream

__all__ = ["Adversary"]

_ANSWER_TIMEOUT = 30.0
"""A lying answer is bounded as the real server's is."""


class Adversary:
    """The misbehaviour of one boot node in ``mode`` (module docstring)."""

    def __init__(self, mode: str, *, at: float, index: int = 0) -> None:
        if mode not in LIAR_MODES:
            raise ValueError(f"unknown liar mode {mode!r}; one of {', '.join(LIAR_MODES)}")
        self.mode = mode
        self._at = at
        self._wrong_ip = f"10.250.0.{index % 250 + 1}"
        self._honest: ProtocolHandler | None = None
        self._identify: ProtocolHandler | None = None
        self.lies = 0
        """Dial requests answered with a lie (or left unanswered)."""

    def overrides(self, real: Mapping[str, ProtocolHandler]) -> Mapping[str, ProtocolHandler]:
        """``open_node(handler_overrides=...)``: the node's real handlers in (the honest
        answers), the lying one out."""
        self._honest = real.get(DIAL_REQUEST_PROTOCOL_ID)
        self._identify = real.get(IDENTIFY_PROTOCOL_ID)
        if self.mode == "wrong_observed":
            return {IDENTIFY_PROTOCOL_ID: self._identify_wrongly}
        if self.mode in ("claim_reachable", "claim_unreachable", "silent"):
            return {DIAL_REQUEST_PROTOCOL_ID: self._dial_request}
        return {}

    async def _dial_request(self, stream: Stream[Connection]) -> None:
        if self.mode == "silent" and trio.current_time() < self._at:
            if self._honest is not None:
                await self._honest(stream)
            return
        with trio.fail_after(_ANSWER_TIMEOUT):
            request = decode_autonat_message(await stream.receive())
        if not isinstance(request, DialRequest):
            raise ValidationError(f"expected DialRequest, got {type(request).__name__}")
        self.lies += 1
        if self.mode == "silent":
            await trio.sleep_forever()  # the stream is cancelled with its connection
        status = DialStatus.OK if self.mode == "claim_reachable" else DialStatus.E_DIAL_ERROR
        backs = tuple(DialBackAttempt(source, status) for source in DialBackSource) \
            if request.filtering else (DialBackAttempt(DialBackSource.OTHER_IP, status),)
        response = DialResponse(status=ResponseStatus.OK, addr_idx=0, dial_status=status,
                                dial_backs=backs)
        await stream.send(response.to_wire(), fin=True)

    async def _identify_wrongly(self, stream: Stream[Connection]) -> None:
        if self._identify is not None:
            await self._identify(cast(Stream[Connection], _WrongObserved(stream, self)))

    def rewrite_observed(self, message: WireMap) -> WireMap:
        """``message`` (an Identify answer) with our wrong observed address."""
        raw = message.get("observed_addr")
        if not isinstance(raw, bytes):
            return message
        real = WsAddress.parse(raw)
        wrong = WsAddress(host=self._wrong_ip, kind="ip4", port=real.port, secure=real.secure)
        self.lies += 1
        return {**message, "observed_addr": wrong.to_bytes()}


class _WrongObserved:
    """A stream as the real Identify handler sees it: what it sends has its
    ``observed_addr`` rewritten (:meth:`Adversary.rewrite_observed`)."""

    def __init__(self, stream: Stream[Connection], adversary: Adversary) -> None:
        self._stream = stream
        self._adversary = adversary
        self.connection = stream.connection

    async def receive(self) -> WireMap:
        return await self._stream.receive()

    async def send(self, message: WireMap, *, fin: bool = False) -> None:
        await self._stream.send(self._adversary.rewrite_observed(message), fin=fin)
