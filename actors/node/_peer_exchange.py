"""Peer exchange (``/trio-autonat/peers/1``): the server's handler and the client's request.

The rules: (docs/architecture.md, "Peer exchange"); the decisions are sans-io
in :mod:`protocols.bootstrap` (:func:`~protocols.bootstrap.sample_peers`,
:func:`~protocols.bootstrap.interpret_peers_response`,
:class:`~protocols.bootstrap.PeerExchangePlan`).

Theory of operation
-------------------
* :class:`PeerExchangeServer` is a per-connection handler the Dialer runs
  for the protocol id. Under its own :class:`~protocols.RateLimiter`
  (:func:`~protocols.bootstrap.peer_exchange_limiter`; checked before the
  request is read, so a flood costs no parsing) it reads one
  ``PeersRequest``, answers with a random sample of the verified peers of
  the latest snapshot (:func:`~protocols.bootstrap.verified_peers`, computed
  once per snapshot) and finishes. A refused request is reset with
  ``err: "rate-limited"`` and counts as a refusal of the connection (closed
  after ``max_refusals``, like refused dial requests).
* :func:`ask_for_peers` is the client's one exchange on an existing
  connection: request, response (bounded by a timeout), the usable
  addresses. The AutonatProbe runs it when its plan says so and hands the
  addresses to the Dialer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio

from protocols import ErrorCode, NodeConfig, NodeSnapshot, PeerId, WsAddress
from protocols.bootstrap import (
    PEER_EXCHANGE_PROTOCOL_ID,
    ExchangedPeers,
    PeersRequest,
    PeersResponse,
    interpret_peers_response,
    peer_exchange_limiter,
    sample_peers,
    verified_peers,
)

from ..connection import Connection, Stream
from ..runtime import Watch, get_logger, node_field

__all__ = ["PeerExchangeServer", "PeerExchangeServerStatistics", "ask_for_peers"]


@dataclass(frozen=True)
class PeerExchangeServerStatistics:
    """What the peer-exchange handler served (monotonic counters)."""

    answered: int
    peers_sent: int
    rejected: int
    """Requests refused by the rate limits."""


class PeerExchangeServer:
    """The per-connection handler; see the module docstring."""

    def __init__(self, *, config: NodeConfig, watch: Watch[NodeSnapshot],
                 rng: random.Random, node: PeerId | None = None) -> None:
        self._config = config
        self._watch = watch
        self._rng = rng
        self.limiter = peer_exchange_limiter()
        self._cached: tuple[NodeSnapshot, tuple[tuple[PeerId, WsAddress], ...]] | None = None
        self._answered = self._sent = self._rejected = 0
        self._log = get_logger("actors.peer_exchange", actor="peer-exchange",
                               **node_field(node))

    def statistics(self) -> PeerExchangeServerStatistics:
        return PeerExchangeServerStatistics(answered=self._answered, peers_sent=self._sent,
                                            rejected=self._rejected)

    def candidates(self) -> tuple[tuple[PeerId, WsAddress], ...]:
        """The verified peers of the latest snapshot (recomputed only when it changed)."""
        snapshot = self._watch.get()
        if self._cached is None or self._cached[0] is not snapshot:
            self._cached = (snapshot, verified_peers(snapshot, self._config.policy))
        return self._cached[1]

    async def serve(self, stream: Stream[Connection]) -> None:
        connection = stream.connection
        peer, ip = connection.peer_id, connection.remote_addr.ip
        with trio.fail_after(self._config.identify_timeout):
            reason = self.limiter.try_acquire(peer, trio.current_time(), ip=ip)
            if reason is not None:  # refused before reading or parsing anything
                self._rejected += 1
                self._log.debug("peer exchange refused", peer=str(peer), reason=reason.value)
                await stream.reset(ErrorCode.RATE_LIMITED)
                connection.count_refusal(f"peer exchange refused ({reason.value})")
                return
            try:
                request = PeersRequest.from_wire(await stream.receive())
                response = sample_peers(self.candidates(), requester=peer, count=request.max,
                                        rng=self._rng)
                await stream.send(response.to_wire(), fin=True)
            finally:
                self.limiter.release(peer, ip=ip)
        self._answered += 1
        self._sent += len(response.peers)


async def ask_for_peers(connection: Connection, *, count: int, own: PeerId,
                        config: NodeConfig) -> ExchangedPeers:
    """Ask ``connection``'s peer for up to ``count`` peers; the usable ones.

    Raises what an exchange can (``EXCHANGE_FAILURES``: reset, closed,
    invalid answer, :class:`~actors.connection.StreamTimeout`).
    """
    stream = await connection.open_stream(PEER_EXCHANGE_PROTOCOL_ID)
    reply = await stream.request(PeersRequest(count).to_wire(),
                                 timeout=config.identify_timeout)
    return interpret_peers_response(PeersResponse.from_wire(reply), own=own,
                                    asked=connection.peer_id, policy=config.policy)
