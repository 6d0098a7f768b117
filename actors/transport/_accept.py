"""The accept loop: file-descriptor headroom, and resource errors logged once per burst.

Theory of operation
-------------------
A process has a fixed number of file descriptors (``RLIMIT_NOFILE``). If
inbound connections may use all of them, everything else the node does
fails at once: peer-store saves, dial-backs (whose failure a server could
wrongly report as the client being unreachable), even accepting the next
connection. :class:`SocketBudget` counts the sockets the transport holds
(inbound and outbound) and :func:`accept_loop` refuses a new inbound
connection - accepts it and closes it at once - while fewer than
``reserve`` descriptors would remain: a full node says no quickly and keeps
working. The reserve is a tenth of the limit, at least :data:`MIN_RESERVE`.

Should ``accept`` itself fail for lack of resources (``EMFILE``, ``ENFILE``,
``ENOBUFS``, ``ENOMEM``: other parts of the process used the descriptors),
the loop pauses :data:`ACCEPT_PAUSE` seconds and tries again; it logs one
warning when such a burst starts and one line with the count when accepting
works again - never a traceback per attempt. Other errors end the listener.
"""

from __future__ import annotations

import errno
import resource
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import trio

from ..runtime import get_logger

__all__ = ["ACCEPT_PAUSE", "CAPACITY_ERRNOS", "MIN_RESERVE", "SocketBudget", "accept_loop"]

ACCEPT_PAUSE: Final = 0.1
MIN_RESERVE: Final = 64
CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_log = get_logger("actors.transport")


class SocketBudget:
    """How many sockets the transport may hold; see the module docstring."""

    def __init__(self, limit: int | None = None, *, reserve: int | None = None) -> None:
        if limit is None:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if limit == resource.RLIM_INFINITY:
                limit = 1 << 20
        self.reserve = reserve if reserve is not None else max(MIN_RESERVE, limit // 10)
        self.limit = limit
        self.in_use = 0
        self.refused = 0

    @property
    def room(self) -> bool:
        """May another inbound socket be kept?"""
        return self.in_use + self.reserve < self.limit

    def take(self) -> None:
        self.in_use += 1

    def give_back(self) -> None:
        self.in_use -= 1


class _Listener(Protocol):
    async def accept(self) -> trio.SocketStream: ...


async def accept_loop(listener: _Listener, serve: Callable[[trio.SocketStream], Awaitable[None]],
                      budget: SocketBudget, *, where: str = "") -> None:
    """Accept until cancelled, starting ``serve(stream)`` in a task per kept connection."""
    failed = 0
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                if not failed:
                    _log.warning("accept failed: out of resources; pausing and retrying",
                                 listener=where, error=exc.strerror,
                                 sockets=budget.in_use, fd_limit=budget.limit)
                failed += 1
                await trio.sleep(ACCEPT_PAUSE)
                continue
            if failed:
                _log.warning("accepting again", listener=where, failed_accepts=failed)
                failed = 0
            if not budget.room:
                budget.refused += 1
                if budget.refused == 1 or budget.refused % 1000 == 0:
                    _log.warning("inbound connection refused: keeping file descriptors in "
                                 "reserve", listener=where, sockets=budget.in_use,
                                 fd_limit=budget.limit, refused=budget.refused)
                stream.socket.close()
                continue
            nursery.start_soon(_kept, serve, stream, budget)


async def _kept(serve: Callable[[trio.SocketStream], Awaitable[None]],
                stream: trio.SocketStream, budget: SocketBudget) -> None:
    budget.take()
    try:
        await serve(stream)
    finally:
        budget.give_back()
