"""Bootstrapping over the simulated internet: the real ``GET /status``, without sockets.

Theory of operation
-------------------
A real host fetches its boot URLs with the BootstrapFetcher (httpx) from the
boot nodes' HTTP API (:class:`~actors.surfaces._http_api.HttpApi`, an ASGI
app under hypercorn). In the simulator both ends run unchanged and only the
wire between them is replaced: each host's fetcher gets an ``httpx``
client whose transport is a :class:`SimHttpTransport` (through the node's
``http_client_factory`` seam), and each boot node's :class:`HttpApi` is
registered with the :class:`StatusServers` of the run under its HTTP
endpoint.

One request: the transport opens a new flow from an ephemeral port of the
host to the URL's endpoint through :meth:`SimNetwork.open_flow` - the SYN's
round trip with the network's loss and retransmissions, the host's NAT box
(the boot node sees the box's public endpoint), the target's filter - then
spends one more round trip for the request and its response, and hands the
request to the boot node's real ASGI app (``httpx.ASGITransport``, with the
client endpoint the boot node would see). The fetcher's timeouts, status
checks, size limits and the real :func:`~protocols.parse_status_document` /
:func:`~protocols.select_addresses` all run; a refused flow is an
``httpx.ConnectError`` as a refused socket is, a dropped one hangs until the
fetcher's own timeout.

A boot node's load is its app's own counter
(:meth:`HttpApi.statistics` ``status_served``). A boot node that stopped
serves no HTTP either: each server is registered with an ``alive`` test (the
simulator's: its node still listens), and a flow to a dead one is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import httpx
import trio

from protocols import WsAddress

from ..transport import DialError, SimNetwork
from ._http_api import HttpApi

__all__ = ["HTTP_PORT", "SimHttpTransport", "StatusServers"]

HTTP_PORT = 7888
"""Where a simulated boot node serves its HTTP API."""


def _tcp(host: str, port: int) -> WsAddress:
    return WsAddress(host=host, kind="ip4", port=port, secure=False, peer_id=None)


class StatusServers:
    """The run's HTTP APIs by (IP, port), and the client factory hosts fetch with."""

    def __init__(self, net: SimNetwork) -> None:
        self._net = net
        self._apps: dict[tuple[str, int], tuple[HttpApi, Callable[[], bool]]] = {}

    def add(self, ip: str, api: HttpApi, port: int = HTTP_PORT,
            alive: Callable[[], bool] = lambda: True) -> str:
        """Serve ``api`` at ``ip`` while ``alive()``; its ``/status`` URL."""
        self._apps[(ip, port)] = (api, alive)
        return f"http://{ip}:{port}/status"

    def app_at(self, ip: str, port: int) -> HttpApi | None:
        """The app answering at ``ip:port`` now (None: nothing, or its node stopped)."""
        app, alive = self._apps.get((ip, port), (None, lambda: False))
        return app if alive() else None

    def client_factory(self, host_ip: str) -> Callable[..., httpx.AsyncClient]:
        """What ``open_node(http_client_factory=...)`` takes for host ``host_ip``."""
        def factory(**kwargs: Any) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=SimHttpTransport(self._net, host_ip, self),
                                     **kwargs)
        return factory


class SimHttpTransport(httpx.AsyncBaseTransport):
    """One host's HTTP over the simulated internet (see the module docstring)."""

    def __init__(self, net: SimNetwork, host_ip: str, servers: StatusServers) -> None:
        self._net = net
        self._host_ip = host_ip
        self._servers = servers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        local = _tcp(self._host_ip, self._net.next_port())
        try:
            seen, target = await self._net.open_flow(local, _tcp(url.host, port))
        except DialError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        app = self._servers.app_at(target.host, target.port)
        if app is None:
            raise httpx.ConnectError(f"connection refused: nothing serves HTTP on "
                                     f"{url.host}:{port}", request=request)
        await trio.sleep(2.0 * self._net.one_way_delay(self._host_ip, target.host))
        asgi = httpx.ASGITransport(app=cast(Any, app), client=(seen.host, seen.port))
        return await asgi.handle_async_request(request)
