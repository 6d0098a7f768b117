"""ServerChoice: which connected AutoNAT servers to ask about one of our addresses, sans-io.

Theory of operation
-------------------
The probe scheduler (:mod:`._probe_scheduler`) decides *which address* is
probed *when*, and which servers must not be asked about it (distrusted
ones, those busy with it or asked about it lately, those whose evidence on
it is still live: the ``skip`` set). This module picks *whom* to ask among
the rest. It owns:

* **the servers** - connected peers whose Identify lists the dial-request
  protocol, each with the remote address of its connection, kept as a dict
  and as an array with every peer's position in it (:meth:`~ServerChoice.add`
  / :meth:`~ServerChoice.remove`, O(1): a removed peer's slot takes the
  array's last peer), so that a random server is one draw by index;
* **the far-capable set** - peers whose Identify also lists the protocol of
  dial-backs from a second IP (:meth:`~ServerChoice.set_far`), connected or
  not yet (a peer's Identify may come before its connection is reported);
* **the rng** - the injected ``random.Random`` every choice draws from, so
  that a seeded run asks the same servers in the same order.

Distinct subnets and IPs first
    Every choice is :func:`choose_servers`: each pick prefers a server in a
    subnet not used yet, then one on an IP not used yet, so that servers
    behind one network - or one operator's sybils - cannot outvote the rest;
    ties are broken at random.

Sampling beyond :data:`SAMPLE_SERVERS`
    Up to that many servers a choice is among all of them (O(S)). Beyond,
    it is among a random sample of that many servers not in ``skip``, drawn
    by index from the array (at most ``4 * SAMPLE_SERVERS`` draws), falling
    back to all servers only when the draws find too few - which means most
    servers are in ``skip``, i.e. the exclusion set is itself of size O(S).
    So the cost of a choice does not grow with the number of servers in the
    common case.

Far first
    A verdict that rests only on dial-backs from IPs we contacted (or on a
    server's claims about them) is what an address-dependent filter shows
    too. While fewer than ``enough`` servers (the reachability threshold)
    have live evidence on the address from a second IP,
    :meth:`~ServerChoice.far_servers` names the connected far-capable
    servers not in ``skip``, and a round asks one of them first
    (:meth:`~ServerChoice.far_first`), the rest among all servers; once
    enough of them have spoken it names none.

Fresh first
    When an address's live evidence disagrees (some servers reached it,
    some did not), its round asks servers without live evidence on it first
    and only makes up the number with those that have
    (:meth:`~ServerChoice.fresh_first`): otherwise a verdict resting on two
    lying servers and one honest one is re-confirmed by the same three every
    round, and the other honest servers are never heard.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Final

from ..core import PeerId, WsAddress
from ._autonat_candidates import ProbeServer, choose_servers
from ._autonat_msg import DIAL_REQUEST_PROTOCOL_ID

__all__ = ["SAMPLE_SERVERS", "ServerChoice"]

SAMPLE_SERVERS: Final = 64
"""Up to this many servers, a round chooses among all of them; beyond, among a sample."""


class ServerChoice:
    """The connected AutoNAT servers and the choice among them; see the module docstring."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._servers: dict[PeerId, WsAddress] = {}  # connected server -> its remote address
        self._server_ids: list[PeerId] = []  # the same, as an array (sampling by index)
        self._server_at: dict[PeerId, int] = {}  # position in _server_ids
        self._far: set[PeerId] = set()  # Identify lists DIAL_BACK_OTHER_IP_PROTOCOL_ID

    def __len__(self) -> int:
        """The number of connected servers (O(1))."""
        return len(self._servers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._servers

    # --- bookkeeping -----------------------------------------------------------

    def add(self, peer: PeerId, remote_addr: WsAddress) -> bool:
        """``peer`` is a connected server (again, or at a new ``remote_addr``);
        True when it was not one before."""
        new = peer not in self._servers
        if new:
            self._server_at[peer] = len(self._server_ids)
            self._server_ids.append(peer)
        self._servers[peer] = remote_addr
        return new

    def remove(self, peer: PeerId) -> None:
        """``peer`` is no connected server (any more); nothing changes if it was none."""
        if self._servers.pop(peer, None) is None:
            return
        at, last = self._server_at.pop(peer), self._server_ids.pop()
        if last != peer:
            self._server_ids[at] = last
            self._server_at[last] = at

    def set_far(self, peer: PeerId, far: bool) -> None:
        """Whether ``peer`` dials back from a second IP (per its latest Identify; False
        once its connection is gone)."""
        if far:
            self._far.add(peer)
        else:
            self._far.discard(peer)

    def is_far(self, peer: PeerId) -> bool:
        return peer in self._far

    # --- choosing ------------------------------------------------------------

    def choose(self, want: int, skip: set[PeerId],
               among: set[PeerId] | None = None) -> list[PeerId]:
        """Up to ``want`` servers not in ``skip``, spread over subnets (:func:`choose_servers`).

        Among ``among`` when given; else over all servers when there are at
        most :data:`SAMPLE_SERVERS`, beyond over that many eligible ones drawn
        at random by index (see the module docstring).
        """
        if among is not None:
            pool: Iterable[PeerId] = among
        elif len(self._servers) <= SAMPLE_SERVERS:
            pool = self._servers
        else:
            pool = self._sample(skip)
        options = [ProbeServer(peer, self._servers[peer], (DIAL_REQUEST_PROTOCOL_ID,))
                   for peer in pool]
        return [s.peer_id for s in choose_servers(options, want, exclude=skip, rng=self._rng)]

    def far_servers(self, skip: set[PeerId], *, enough: int,
                    far_heard: Callable[[], int]) -> set[PeerId]:
        """Connected servers that dial back from a second IP, not in ``skip`` - while
        fewer than ``enough`` servers' live evidence on the address is of that kind
        (``far_heard()``, asked only when such a server is known); else none."""
        if not self._far or far_heard() >= enough:
            return set()
        return {peer for peer in self._far if peer in self._servers and peer not in skip}

    def far_first(self, want: int, skip: set[PeerId], far: set[PeerId]) -> list[PeerId]:
        """One of the servers ``far`` (from :meth:`far_servers`), then up to ``want - 1``
        more among all servers."""
        chosen = self.choose(1, skip, among=far)
        chosen += self.choose(want - 1, skip | set(chosen)) if want > 1 else []
        return chosen

    def fresh_first(self, want: int, skip: set[PeerId], evidence: frozenset[PeerId]
                    ) -> list[PeerId]:
        """For a contested address's round: servers without live evidence on it
        (``evidence``) first, then - only to make up the number - those with."""
        fresh = self.choose(want, skip | evidence)
        if len(fresh) < want:
            fresh += self.choose(want - len(fresh), skip | set(fresh))
        return fresh

    def _sample(self, skip: set[PeerId]) -> Iterable[PeerId]:
        """:data:`SAMPLE_SERVERS` servers not in ``skip``, drawn by index (at most
        ``4 * SAMPLE_SERVERS`` draws); all servers when the draws find too few."""
        ids = self._server_ids
        sample: dict[PeerId, None] = {}
        for _ in range(4 * SAMPLE_SERVERS):
            peer = ids[self._rng.randrange(len(ids))]
            if peer not in skip:
                sample[peer] = None
                if len(sample) == SAMPLE_SERVERS:
                    break
        return sample if len(sample) == SAMPLE_SERVERS else ids
