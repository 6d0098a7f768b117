"""The simulated internet: a :class:`MemoryNetwork` whose hosts sit behind NAT boxes.

Theory of operation
-------------------
Every host is one IP. A host with a public address is reachable as itself; a
host behind a NAT has a private IP (not routable) and a box
(:class:`protocols.sim.NatBox`) with a public IP in front of it; a host behind
a firewall keeps its public IP and has a non-translating box. A dial from
``local`` to ``remote`` (:meth:`SimNetwork._translate`, called by
:class:`MemoryTransport` for every connection attempt) goes:

1. the SYN's round trip: the path's round trip time, plus one TCP
   retransmission timeout (1 s, doubling) per lost attempt - each attempt is
   lost with probability ``loss`` (from the network's seeded generator); after
   :data:`SYN_RETRIES` retransmissions the dial fails, as Linux gives up;
2. out through the dialer's box, if any: the listener will see the box's
   public endpoint (:meth:`NatBox.outbound`);
3. in through the box owning ``remote``'s IP, if any: its filtering decides
   (:meth:`NatBox.inbound`) - deliver to the private endpoint, **drop** (the
   dial never completes; the dialer's own timeout ends it) or **reject**
   (:class:`DialError` at once). A dial to the dialer's own box's public IP
   is hairpinning (:meth:`NatBox.hairpin`);
4. a dial to a private IP from anywhere but that host finds no route.

A hole punch (``transport(ip).punch``) is a TCP simultaneous open through
the same boxes: :mod:`actors.transport._sim_punch`. A flow that is not a
node's connection (the bootstrap fetch's HTTP) takes :meth:`open_flow`.

Established connections are not filtered again (the model decides new flows
only); their frames are delayed by the path's one-way delay, the sum of both
access links' delays (:meth:`_path_delay`). Time is ``trio.current_time()``,
so under ``MockClock(autojump_threshold=0)`` a run takes no wall time waiting
and repeats for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio

from protocols import WsAddress
from protocols.sim import Deliver, Drop, Endpoint, InboundVerdict, NatBehaviour, NatBox, Reject

from ._framestream import DialError
from ._memory_transport import MemoryNetwork, _Listener, _tcp_addr
from ._sim_punch import PunchBoard, SimTransport

__all__ = ["SYN_RETRIES", "SimNetwork"]

SYN_RETRIES = 6
"""Linux ``tcp_syn_retries``: the dial fails after the 7th lost attempt."""
INITIAL_RTO = 1.0
"""RFC 6298: the first retransmission after 1 s, then doubling."""


def _endpoint(addr: WsAddress) -> Endpoint:
    return (addr.host, addr.port)


@dataclass
class SimNetwork(MemoryNetwork):
    """The switchboard with NAT boxes, latency and loss (see the module docstring)."""

    seed: int = 0
    loss: float = 0.0
    """Probability that one connection attempt is lost (either direction)."""
    _rng: random.Random = field(init=False)
    _box_of_host: dict[str, NatBox] = field(default_factory=dict)
    _box_of_public: dict[str, NatBox] = field(default_factory=dict)
    _private: set[str] = field(default_factory=set)
    _latency: dict[str, float] = field(default_factory=dict)
    punches: PunchBoard = field(default_factory=PunchBoard)
    """Hole punches in flight (:mod:`actors.transport._sim_punch`)."""
    record_dials: bool = False  # MemoryNetwork's log of every dial: unread at this scale

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # --- building ----------------------------------------------------------------------

    def add_host(self, ip: str, *, behaviour: NatBehaviour | None = None,
                 public_ip: str | None = None, latency: float = 0.0) -> NatBox | None:
        """Register host ``ip`` with one-way access ``latency`` (seconds): public (no
        ``behaviour``), behind a firewall, or behind a NAT whose public IP is
        ``public_ip``. Returns the box."""
        if ip in self._latency:
            raise ValueError(f"host {ip} already exists")
        self._latency[ip] = latency
        if behaviour is None:
            return None
        face = ip if not behaviour.translates else public_ip
        if face is None:
            raise ValueError(f"a NAT in front of {ip} needs a public_ip")
        if face in self._box_of_public:
            raise ValueError(f"public IP {face} already has a box")
        box = NatBox(behaviour, face, random.Random(self._rng.getrandbits(64)))
        self._box_of_host[ip] = self._box_of_public[face] = box
        if behaviour.translates:
            self._private.add(ip)
            self._latency[face] = latency  # the access link behind the box's face
        for port in behaviour.forwarded_ports:
            box.forward(port, (ip, port))
        return box

    def box(self, ip: str) -> NatBox | None:
        """The box in front of host ``ip`` (None: a public host)."""
        return self._box_of_host.get(ip)

    def transport(self, host: str) -> SimTransport:
        return SimTransport(self, host)

    # --- what a punch needs (actors.transport._sim_punch) --------------------------------

    def is_private(self, ip: str) -> bool:
        return ip in self._private

    def one_way_delay(self, a: str, b: str) -> float:
        return self._path_delay(a, b)

    def listener_at(self, host: str, port: int) -> _Listener | None:
        return self._listeners.get((host, port))

    def punch_out(self, local: WsAddress, remote: WsAddress, now: float) -> Endpoint:
        """Where a punch's SYN from ``local`` to ``remote`` is seen from (the dialer's box
        creates or reuses its binding)."""
        box = self._box_of_host.get(local.host)
        return box.outbound(_endpoint(local), _endpoint(remote), now) if box else _endpoint(local)

    def punch_in(self, seen: Endpoint, remote: WsAddress, now: float) -> InboundVerdict:
        """What a punch's SYN from ``seen`` meets at ``remote``'s box, if any."""
        box = self._box_of_public.get(remote.host)
        return box.inbound(seen, _endpoint(remote), now) if box else Deliver(_endpoint(remote))

    async def open_flow(self, local: WsAddress,
                        remote: WsAddress) -> tuple[WsAddress, WsAddress]:
        """A new TCP flow from ``local`` to ``remote`` (for protocols carried beside the
        nodes' own transport, e.g. HTTP): its SYN round trip, loss and NAT boxes as for a
        dial; (seen from, delivered to), or :class:`DialError`."""
        return await self._translate(local, remote)

    # --- MemoryNetwork hooks -------------------------------------------------------------

    def _path_delay(self, a: str, b: str) -> float:
        return self._latency.get(a, 0.0) + self._latency.get(b, 0.0)

    async def _translate(self, local: WsAddress,
                         remote: WsAddress) -> tuple[WsAddress, WsAddress]:
        await self._handshake_delay(local.host, remote.host)
        now = trio.current_time()
        if remote.host == local.host:
            return local, remote
        if remote.host in self._private:
            raise DialError(f"dial to {remote} refused: no route to a private address")
        source_box = self._box_of_host.get(local.host)
        target_box = self._box_of_public.get(remote.host)
        if source_box is not None and source_box is target_box:
            seen, verdict = source_box.hairpin(_endpoint(local), _endpoint(remote), now)
        else:
            seen = (source_box.outbound(_endpoint(local), _endpoint(remote), now)
                    if source_box is not None else _endpoint(local))
            if target_box is None:
                return _tcp_addr(*seen), remote
            verdict = target_box.inbound(seen, _endpoint(remote), now)
        if isinstance(verdict, Drop):
            await trio.sleep_forever()
        if isinstance(verdict, Reject):
            raise DialError(f"dial to {remote} refused: {verdict.reason}")
        if not isinstance(verdict, Deliver) or seen is None:
            raise AssertionError(f"unexpected verdict {verdict!r}")
        return _tcp_addr(*seen), _tcp_addr(*verdict.private)

    async def _handshake_delay(self, a: str, b: str) -> None:
        """One round trip, plus a retransmission timeout per lost attempt."""
        rtt = 2.0 * self._path_delay(a, b)
        wait, rto = rtt, INITIAL_RTO
        for _ in range(SYN_RETRIES + 1):
            if not (self.loss and self._rng.random() < self.loss):
                if wait:
                    await trio.sleep(wait)
                return
            wait += rto
            rto *= 2.0
        await trio.sleep(wait)
        raise DialError(f"connection to {b} timed out: {SYN_RETRIES + 1} attempts lost")
