"""AutoNAT server role: answer dial requests under the server rules.

The rules: (docs/architecture.md, "AutoNAT server rules").

Theory of operation
-------------------
The Dialer registers :meth:`AutonatServer.serve` for
``/libp2p/autonat/2/dial-request``, so one request runs in the requesting
connection's nursery, bounded as a whole by ``server_timeout``:

1. read the ``DialRequest`` (after the early rate check of step 2);
2. ask the sans-io :class:`~protocols.RateLimiter` (global, per peer, per IP
   and per subnet per minute; concurrent per peer and per IP) - once before
   reading anything, so a flood costs no parsing, and again to admit the
   request; over a limit the answer is ``E_REQUEST_REJECTED`` and nothing
   is dialed. Each rejection counts as a refusal of the connection
   (:meth:`~actors.connection.Connection.count_refusal`), which closes it
   once ``max_refusals`` (8 by default) of its requests or streams were
   refused within ``refusal_window``;
3. :func:`~protocols.choose_dial_address` picks **exactly one** address - the
   first the server is willing to dial: never a relay, a DNS name or an
   address the :class:`~protocols.AddressPolicy` rejects, and an IP other than
   the requester's observed IP only after the client sent 30-100 KB of dial
   data (amplification prevention) or, with ``allow_other_ip = false``, never.
   Nothing acceptable -> ``E_DIAL_REFUSED``;
4. dial back on a **fresh** connection that never reuses our listen port
   (optionally from ``dialback_source``). The connect phase follows a
   :class:`~protocols.ConnectPlan` made from the request connection's own
   path measurement (:func:`~protocols.plan_dial_back`: hedged attempts about
   one RTT apart, as many as the path's loss calls for, and a give-up a few
   retransmission timeouts later, never before ``dialback_floor``; the
   handshake's round trip where the transport measures nothing); a
   dial-back to another IP than the requester's waits the fixed
   ``dialback_timeout``. The handshakes after the connect
   run under their own timeouts. Then authenticate the requester there,
   send ``DialBack{nonce}`` on ``/libp2p/autonat/2/dial-back`` and wait for
   ``DialBackResponse``. No connection, or a handshake the peer failed
   (refused the upgrade, wrong peer id) -> ``E_DIAL_ERROR``; connected but a
   handshake timed out or the dial-back exchange failed ->
   ``E_DIAL_BACK_ERROR`` (something answered: no evidence of unreachability). A dial that
   failed *on this host* (:class:`~actors.transport.LocalDialError`: out of
   file descriptors or buffers, no free port, ``dialback_source`` not
   usable) is answered ``E_INTERNAL_ERROR``: only a failure on the path to
   the client is evidence that the client is unreachable;
   A server with a second address makes **two** dial-backs to the chosen
   address, concurrently, when the request asks for it
   (``DialRequest.filtering``: a client that cannot tell the two apart would
   take the same-IP one for reachability) and the address is at the
   requester's observed IP (never
   an extra one to another IP: no amplification), both with the request's
   nonce and the same connect plan: (a) from ``dialback_source`` - the
   reachability dial-back, whose result is ``dial_status`` exactly as
   before - and (b) from the IP the client contacted, on a fresh ephemeral
   port. ``DialResponse.dial_backs`` reports both (``OTHER_IP``,
   ``CONTACTED_IP``); the client learns its NAT's filtering from which of
   them arrived (:mod:`protocols.autonat._nat_filtering`). A server without
   a second address (or whose second address is the one the client
   contacted) makes today's single dial-back and reports it as
   ``CONTACTED_IP``: a client then learns whether a same-IP, fresh-port
   packet gets in, which can show ``address-and-port-dependent`` filtering
   but cannot tell ``endpoint-independent`` from ``address-dependent``. A
   dial-back that failed on this host is reported ``UNUSED`` (no evidence);
5. answer ``DialResponse(OK, addr_idx, dial_status, dial_backs)`` and report an
   :class:`~protocols.InboundProbe` to the StatusTracker (for every request,
   whatever the answer, so "fully connected" and ``probes_served`` work).

The dial-back connection lives only inside this handler; it is never
registered with the Dialer, so it does not count as a peer connection here.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from protocols import (
    DIAL_BACK_PROTOCOL_ID,
    ConnectPlan,
    DialBack,
    DialBackAttempt,
    DialBackResponse,
    DialBackSource,
    DialBackStatus,
    DialDataBudget,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    InboundProbe,
    Keypair,
    NodeConfig,
    PeerId,
    RateLimiter,
    RateLimitReason,
    ResponseStatus,
    ValidationError,
    WsAddress,
    choose_dial_address,
    decode_autonat_message,
    plan_dial_back,
)

from ..connection import (
    CONNECT_FAILURES,
    EXCHANGE_FAILURES,
    Connection,
    ConnectionConfig,
    ConnectionFailed,
    Stream,
    open_connection,
)
from ..runtime import MailboxSender, get_logger
from ..transport import HandshakeTimedOut, LocalDialError, Transport
from ._messages import TrackerEvent


def plain_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
             ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip``, an IPv4-mapped IPv6 address as its IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class AutonatServerStatistics:
    """What the AutoNAT server did (monotonic counters)."""

    answered: tuple[tuple[str, int], ...]
    """``("<ResponseStatus>/<DialStatus>", count)`` of every dial request answered, sorted;
    the only count of probes served (``/status`` ``probes_served`` is its total)."""
    dial_backs: int
    """Dial-backs attempted (a connection to a requester's address)."""
    local_failures: int = 0
    """Dial-backs that failed on this host (answered ``E_INTERNAL_ERROR``)."""
    closed_for_rejections: int = 0
    """Connections closed when a rejected request was their ``max_refusals``-th refusal
    within ``refusal_window``."""

    def by_status(self) -> dict[str, int]:
        return dict(self.answered)

    @property
    def total_answered(self) -> int:
        return sum(count for _, count in self.answered)


class AutonatServer:
    """Serves dial requests for other nodes; see the module docstring."""

    def __init__(self, *, config: NodeConfig, keypair: Keypair, transport: Transport,
                 connection_config: ConnectionConfig, tracker: MailboxSender[TrackerEvent],
                 rng: random.Random) -> None:
        self._config = config
        self._keypair = keypair
        self._transport = transport
        self._conn_config = connection_config
        self._tracker = tracker
        self._rng = rng
        server = config.autonat_server_config
        self.limiter = RateLimiter(server.rate_global_per_minute,
                                   server.rate_per_peer_per_minute,
                                   server.rate_concurrent_per_peer,
                                   per_ip_per_minute=server.rate_per_ip_per_minute,
                                   per_subnet_per_minute=server.rate_per_subnet_per_minute,
                                   concurrent_per_ip=server.rate_concurrent_per_ip)
        self._closed_for_rejections = 0
        self._answered: Counter[str] = Counter()
        self._dial_backs = self._local_failures = 0
        self._log = get_logger("actors.autonat", actor="autonat-server",
                               node=str(keypair.peer_id))

    def statistics(self) -> AutonatServerStatistics:
        return AutonatServerStatistics(answered=tuple(sorted(self._answered.items())),
                                       dial_backs=self._dial_backs,
                                       local_failures=self._local_failures,
                                       closed_for_rejections=self._closed_for_rejections)

    @property
    def total_answered(self) -> int:
        """Dial requests answered so far, without building the statistics."""
        return self._answered.total()

    async def serve(self, stream: Stream[Connection]) -> None:
        connection = stream.connection
        peer, ip = connection.peer_id, connection.remote_addr.ip
        with trio.fail_after(self._config.autonat_server_config.server_timeout):
            early = self.limiter.check(peer, trio.current_time(), ip=ip)
            if early is not None:  # refused before reading or parsing anything
                await self._reject(stream, None, early)
                return
            message = decode_autonat_message(await stream.receive())
            if not isinstance(message, DialRequest):
                raise ValidationError(f"expected DialRequest, got {type(message).__name__}")
            rejected = self.limiter.try_acquire(peer, trio.current_time(), ip=ip)
            if rejected is not None:
                await self._reject(stream, message, rejected)
                return
            try:
                await self._handle(stream, peer, message)
            finally:
                self.limiter.release(peer, ip=ip)

    async def _reject(self, stream: Stream[Connection], request: DialRequest | None,
                      reason: RateLimitReason) -> None:
        """``E_REQUEST_REJECTED``; a connection that keeps asking is closed."""
        connection = stream.connection
        self._log.debug("dial request rejected", peer=str(connection.peer_id),
                        reason=reason.value)
        await self._answer(stream, connection.peer_id, request,
                           ResponseStatus.E_REQUEST_REJECTED, detail=f"rate limit: {reason.value}")
        if connection.count_refusal(f"dial request rejected ({reason.value})"):
            self._closed_for_rejections += 1

    async def _handle(self, stream: Stream[Connection], peer: PeerId, request: DialRequest) -> None:
        choice = choose_dial_address(
            request.addrs, observed_ip=stream.connection.remote_addr.ip,
            policy=self._config.policy,
            allow_other_ip=self._config.autonat_server_config.allow_other_ip,
            requester=peer, rng=self._rng)
        if choice.addr is None or choice.index is None:
            reasons = "; ".join(r.detail for r in choice.rejected) or "no address"
            self._log.info("dial request refused", peer=str(peer), reasons=reasons)
            await self._answer(stream, peer, request, ResponseStatus.E_DIAL_REFUSED,
                               detail=reasons[:200])
            return
        if choice.dial_data:
            await self._collect_dial_data(stream, choice.index, choice.dial_data)
        dial_status, attempts = await self._dial_backs_for(stream.connection, choice.addr,
                                                           peer, request)
        if dial_status is None:  # failed on our side: no evidence about the client
            await self._answer(stream, peer, request, ResponseStatus.E_INTERNAL_ERROR,
                               detail="dial-back failed on the server's side",
                               dial_backs=attempts)
            return
        await self._answer(stream, peer, request, ResponseStatus.OK, dial_status=dial_status,
                           addr_idx=choice.index, dialed=choice.addr, dial_backs=attempts)

    async def _dial_backs_for(self, connection: Connection, addr: WsAddress, peer: PeerId,
                              request: DialRequest
                              ) -> tuple[DialStatus | None, tuple[DialBackAttempt, ...]]:
        """The reachability dial-back and, when it measures filtering, the same-IP one.

        Returns the reachability ``dial_status`` (None: failed on our side) and
        the attempts to report, in :class:`DialBackSource` order; a dial-back
        that failed on our side is reported ``UNUSED`` (no evidence), so that a
        client does not take the other one for the reachability dial-back.
        """
        nonce = request.nonce
        plan = self._plan(connection, addr)
        second = self._config.autonat_server_config.dialback_source
        contacted = connection.local_addr.ip
        if second is not None and contacted is not None \
                and plain_ip(ipaddress.ip_address(second)) == plain_ip(contacted):
            second = None  # the client contacted our second address: it is no "other" IP
        to_requester = addr.ip is not None and connection.remote_addr.ip is not None \
            and plain_ip(addr.ip) == plain_ip(connection.remote_addr.ip)
        if second is None or not to_requester or contacted is None or not request.filtering:
            source = DialBackSource.CONTACTED_IP if second is None else DialBackSource.OTHER_IP
            source_ip = second
            if second is None and to_requester and contacted is not None:
                # reported as the contacted IP's, so it must leave from there: a host
                # with several addresses would otherwise pick one by its routes
                source_ip = str(plain_ip(contacted))
            status = await self._dial_back(addr, peer, nonce, plan, source_ip=source_ip)
            return status, (DialBackAttempt(source, status or DialStatus.UNUSED),)
        results: dict[DialBackSource, DialStatus | None] = {}

        async def attempt(source: DialBackSource, source_ip: str) -> None:
            results[source] = await self._dial_back(addr, peer, nonce, plan, source_ip=source_ip)

        async with trio.open_nursery() as nursery:  # concurrently: the answer is no slower
            nursery.start_soon(attempt, DialBackSource.CONTACTED_IP, str(plain_ip(contacted)))
            nursery.start_soon(attempt, DialBackSource.OTHER_IP, second)
        reported = tuple(DialBackAttempt(source, results.get(source) or DialStatus.UNUSED)
                         for source in DialBackSource)
        return results.get(DialBackSource.OTHER_IP), reported

    async def _collect_dial_data(self, stream: Stream[Connection], index: int, amount: int) -> None:
        """Ask for ``amount`` bytes first: dialing another IP must cost the client more."""
        await stream.send(DialDataRequest(addr_idx=index, num_bytes=amount).to_wire())
        budget = DialDataBudget(amount)
        while not budget.complete:
            message = decode_autonat_message(await stream.receive())
            if not isinstance(message, DialDataResponse):
                raise ValidationError(f"expected DialDataResponse, got {type(message).__name__}")
            budget.add(len(message.data))  # ValidationError past the requested amount

    async def _dial_back(self, addr: WsAddress, peer: PeerId, nonce: int,
                         plan: ConnectPlan, *, source_ip: str | None) -> DialStatus | None:
        """Dial ``addr`` back and send the nonce; None when it failed for a local reason.

        ``plan`` bounds the connect phase (the transport gives up as it says); the
        handshakes after it run under their own timeouts. Only a failure to connect
        or a handshake the peer failed is ``E_DIAL_ERROR``: a handshake that timed out
        after the connection was made means something answered at ``addr`` over a
        slow or lossy path - no evidence either way, ``E_DIAL_BACK_ERROR``.
        """
        self._dial_backs += 1
        async with AsyncExitStack() as stack:
            try:
                frames = await stack.enter_async_context(self._transport.dial(
                    addr.with_peer_id(peer), reuse_listen_port=False,
                    source_ip=source_ip, connect_plan=plan))
                connection = await stack.enter_async_context(open_connection(
                    frames, self._keypair, initiator=True, expected_peer=peer,
                    config=self._conn_config))
            except LocalDialError as exc:
                self._local_failures += 1
                self._log.warning("dial-back impossible on this host; answering "
                                  "E_INTERNAL_ERROR, not E_DIAL_ERROR", peer=str(peer),
                                  addr=str(addr), error=str(exc))
                return None
            except CONNECT_FAILURES as exc:
                timed_out = isinstance(exc, HandshakeTimedOut) or (
                    isinstance(exc, ConnectionFailed) and exc.timed_out)
                self._log.info("dial-back failed", peer=str(peer), addr=str(addr),
                               error=str(exc), attempts=len(plan.attempts),
                               give_up_after=round(plan.give_up_after, 3),
                               connected=timed_out)
                return DialStatus.E_DIAL_BACK_ERROR if timed_out else DialStatus.E_DIAL_ERROR
            return await self._send_dial_back(connection, peer, nonce)

    def _plan(self, connection: Connection, addr: WsAddress) -> ConnectPlan:
        """The connect phase of a dial-back to ``addr`` of the requester of ``connection``:
        planned from that connection's path when ``addr`` is at its IP, else the fixed
        ``dialback_timeout`` (another IP is another path)."""
        server = self._config.autonat_server_config
        same_path = addr.host == connection.remote_addr.host
        return plan_dial_back(connection.path_stats() if same_path else None,
                              ceiling=server.dialback_timeout, floor=server.dialback_floor)

    async def _send_dial_back(self, connection: Connection, peer: PeerId,
                              nonce: int) -> DialStatus:
        try:
            back = await connection.open_stream(DIAL_BACK_PROTOCOL_ID)
            reply = await back.request(DialBack(nonce=nonce).to_wire(),
                                       timeout=self._config.autonat_client.probe_timeout)
            answer = decode_autonat_message(reply)
        except EXCHANGE_FAILURES as exc:  # StreamTimeout included
            self._log.info("dial-back exchange failed", peer=str(peer), error=str(exc))
            return DialStatus.E_DIAL_BACK_ERROR
        await connection.aclose("dial-back done")
        ok = isinstance(answer, DialBackResponse) and answer.status == DialBackStatus.OK
        return DialStatus.OK if ok else DialStatus.E_DIAL_BACK_ERROR

    async def _answer(self, stream: Stream[Connection], peer: PeerId, request: DialRequest | None,
                      status: ResponseStatus, *, dial_status: DialStatus = DialStatus.UNUSED,
                      addr_idx: int = 0, dialed: WsAddress | None = None,
                      detail: str = "", dial_backs: tuple[DialBackAttempt, ...] = ()) -> None:
        response = DialResponse(status=status, addr_idx=addr_idx, dial_status=dial_status,
                                dial_backs=dial_backs)
        await stream.send(response.to_wire(), fin=True)
        self._answered[f"{status.name}/{dial_status.name}"] += 1
        await self._tracker.send(InboundProbe(
            peer=peer, status=status, at=trio.current_time(), dial_status=dial_status,
            dialed=dialed, requested=0 if request is None else len(request.addrs),
            detail=detail))
