"""Nodes that tests run on loopback addresses: one node on a memory network, and a live
newcomer bootstrapped from boot nodes over real sockets.

:func:`memory_node` opens a node listening on ``host`` of a
:class:`~actors.MemoryNetwork` (any port; the test's clock, virtual time
under ``autojump_clock``). :func:`live_newcomer` runs the small network of
tests/test_bootstrap_e2e.py on real loopback sockets (port 0, in
``{net}.0/24``): boot nodes on ``{net}.1``, ``{net}.2``, ... that welcome
newcomers with a probe, all connected to the first, whose HTTP API serves
``/status``; and a newcomer on ``{net}.9`` that bootstraps from that
``/status`` and serves its own HTTP API. It yields as soon as both are up:
the test waits for the state it needs (a verdict, the boot nodes'
Identify) with ``node.wait_for``, within its own time bound. Everything is
closed when the context exits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from actors import MemoryNetwork, Node, open_node, serve_http
from protocols import AddressPolicy, NodeConfig

LOOPBACK = AddressPolicy(allow_loopback=True)


def loopback_config(host: str, **settings: Any) -> NodeConfig:
    """A node listening on ``host`` (any port), loopback addresses allowed; ``settings``
    on top."""
    return NodeConfig.from_settings(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                                    **settings)


@asynccontextmanager
async def memory_node(net: MemoryNetwork, host: str, **settings: Any) -> AsyncIterator[Node]:
    """A running node on ``host`` of ``net`` (:func:`loopback_config` with ``settings``)."""
    async with open_node(loopback_config(host, **settings),
                         transport=net.transport(host)) as running:
        yield running


@dataclass(frozen=True)
class LiveNewcomer:
    """The nodes of :func:`live_newcomer` and where the newcomer's HTTP API listens."""

    boots: list[Node]
    node: Node
    host: str
    port: int


@asynccontextmanager
async def live_newcomer(net: str, agents: tuple[str | None, ...] = (None, None, None)
                        ) -> AsyncIterator[LiveNewcomer]:
    """Boot nodes on ``{net}.1``, ... - one per entry of ``agents``, the entry its
    Identify agent (None: the default) - and a newcomer on ``{net}.9`` that bootstraps
    from the first's ``/status``; see the module docstring."""
    async with AsyncExitStack() as stack:
        boots = [await stack.enter_async_context(open_node(loopback_config(
                     f"{net}.{i + 1}", http_listen="", welcome_probes=True,
                     **({} if agent is None else {"agent_version": agent}))))
                 for i, agent in enumerate(agents)]
        async with trio.open_nursery() as nursery:
            for boot in boots[1:]:
                nursery.start_soon(boots[0].connect, boot.listen_addrs[0])
        nursery = await stack.enter_async_context(trio.open_nursery())
        boot_host, boot_port = await nursery.start(serve_http, boots[0], f"{net}.1", 0)
        node = await stack.enter_async_context(open_node(loopback_config(
            f"{net}.9", http_listen="", boot_urls=(f"http://{boot_host}:{boot_port}/status",))))
        host, port = await nursery.start(serve_http, node, f"{net}.9", 0)
        yield LiveNewcomer(boots, node, host, port)
        nursery.cancel_scope.cancel()
