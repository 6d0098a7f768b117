"""The ``/healthz`` self-check: dial our own WebSocket listener and complete our handshake.

Theory of operation
-------------------
The rules - what to dial, how long a result stays fresh, what a failure
means - are :class:`~protocols.node.ListenerCheckPlan`'s
(:mod:`protocols.node._listener_health`). :class:`ListenerCheck` runs them
*on demand*: :meth:`ListenerCheck.health` returns the cached result while it
is fresh; otherwise the first caller dials
(:func:`~actors.node._hairpin.dial_self`: a fresh ephemeral port, our
handshake expecting our own peer id, within the plan's ``timeout``) and every
concurrent caller waits for that one dial. So health requests at any rate
cost at most one loopback connection per ``interval``, and a node that
nobody asks costs nothing (no task, no timer: it is not a supervised child).

The listener side sees an ordinary inbound connection that turns out to be
ourselves: the Dialer closes it after the handshake, counts it
(``self_connections``) and never registers it, as for the hairpin test.

A caller cancelled while it dials (an HTTP client that went away) loses its
result, not the others': the waiters find no new result and one of them
dials again.
"""

from __future__ import annotations

import trio

from protocols import HairpinOutcome, Keypair, NodeConfig, NodeSnapshot
from protocols.node import ListenerCheckPlan, ListenerHealth, self_check_target

from ..runtime import Watch, get_logger
from ..transport import Transport
from ._hairpin import dial_self

__all__ = ["ListenerCheck"]

MAX_ROUNDS = 3
"""Waits for another caller's dial at most this often before dialing itself."""


class ListenerCheck:
    """Cached, single-flight self-checks of our listener; see the module docstring."""

    def __init__(self, *, config: NodeConfig, keypair: Keypair, transport: Transport,
                 watch: Watch[NodeSnapshot], plan: ListenerCheckPlan | None = None) -> None:
        self._config = config
        self._keypair = keypair
        self._transport = transport
        self._watch = watch
        self.plan = plan if plan is not None else ListenerCheckPlan()
        """The rules and the last result (tests may give one with a shorter interval)."""
        self._running: trio.Event | None = None
        self._log = get_logger("actors.listener-check", actor="listener-check",
                               node=str(keypair.peer_id))

    async def health(self) -> ListenerHealth:
        """The listener's health: the cached result, or a new check (bounded by the
        plan's ``timeout``)."""
        for _ in range(MAX_ROUNDS):
            cached = self.plan.cached(trio.current_time())
            if cached is not None:
                return cached
            if self._running is None:
                break
            await self._running.wait()
        return await self._check()

    async def _check(self) -> ListenerHealth:
        listen = self._watch.get().listen_addrs
        target = self_check_target(listen)
        if target is None:
            return self.plan.unchecked(listen)
        done = self._running = trio.Event()
        try:
            outcome, detail = None, f"no handshake within {self.plan.timeout:g} s"
            with trio.move_on_after(self.plan.timeout):
                outcome, detail = await dial_self(self._transport, self._keypair,
                                                  self._config, target)
            ok = outcome is HairpinOutcome.SELF
            health = self.plan.handle_result(target, ok, detail[:200], trio.current_time())
        finally:
            if self._running is done:
                self._running = None
            done.set()
        if not ok:
            self._log.warning("listener self-check failed", addr=str(target),
                              reason=health.reason)
        return health
