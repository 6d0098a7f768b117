"""The node's HTTP API: ``/status``, ``/metrics`` and ``/healthz`` on hypercorn under Trio.

Theory of operation
-------------------
:class:`HttpApi` is a small ASGI application. Every request is answered
synchronously from one ``source.snapshot()`` (and ``source.statistics()``)
- immutable values - so a response is consistent and no request can block
or disturb the actors. Routes:

``GET /status``
    ``application/json``: the Pyrsia-compatible document built by
    :func:`protocols.status_document` (own addresses, then a round-robin
    window of confirmed public peers, which advances once per request) and
    serialised by :func:`protocols.build_status_document`.
``GET /metrics``
    Prometheus text format 0.0.4 from the node's own registry
    (:mod:`actors._metrics`).
``GET /healthz``
    ``200 {"ok": true, "state": <lifecycle>}`` while the node's supervisor
    runs, ``503`` with ``"ok": false`` otherwise.

Any other path is ``404``, any other method ``405`` (with ``Allow: GET``),
WebSocket requests are refused. Request bodies are never read. Responses are
small and bounded (the status document is capped by the round-robin window
and the per-field caps). An exception while answering is logged with its
traceback and answered with ``500 {"error": "internal error"}``; hypercorn
itself deals with malformed HTTP. Nothing a client sends can crash the node.

:func:`serve_http` runs the app in the caller's nursery::

    host, port = await nursery.start(serve_http, node, "127.0.0.1", 0)

It reports the address actually bound (port ``0`` picks a free one; the
address is read from hypercorn's own report of its listening sockets).
Cancelling the nursery stops the server *gracefully*: hypercorn runs in a
shielded scope and its shutdown trigger fires on cancellation, so it stops
accepting, closes idle keep-alive connections, lets in-flight requests
finish for up to ``grace`` seconds, and is then cut off - no task, listener
or connection outlives ``serve_http``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from protocols import RoundRobin, build_status_document, status_document

from ._metrics import (
    StatisticsProviders,
    StatusSource,
    node_registry,
    read_provider,
    render_metrics,
)

if TYPE_CHECKING:
    from hypercorn.typing import (
        ASGIReceiveCallable,
        ASGISendCallable,
        HTTPScope,
        LifespanScope,
        Scope,
    )

__all__ = ["HttpApi", "HttpApiStatistics", "HttpResponse", "package_version", "serve_http"]

DEFAULT_GRACE: Final = 2.0
"""Seconds in-flight requests may take to finish when the server stops."""
HARD_STOP_SLACK: Final = 1.0
"""Beyond ``grace``, how long hypercorn's own shutdown may take before it is cancelled."""
JSON_TYPE: Final = "application/json"
METRICS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ROUTES: Final = ("/status", "/metrics", "/healthz")


def package_version() -> str:
    """The installed ``trio-autonat`` version (``"unknown"`` when not installed)."""
    try:
        return metadata.version("trio-autonat")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class HttpResponse:
    """One complete response: status, content type and body."""

    status: int
    content_type: str
    body: bytes
    allow: str | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", self.content_type.encode("latin-1")),
               (b"content-length", str(len(self.body)).encode("ascii")),
               (b"cache-control", b"no-store")]
        if self.allow is not None:
            out.append((b"allow", self.allow.encode("latin-1")))
        return out


def _json(status: int, value: object, *, allow: str | None = None) -> HttpResponse:
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return HttpResponse(status, JSON_TYPE, body, allow)


@dataclass(frozen=True)
class HttpApiStatistics:
    requests: int
    errors: int
    status_served: int


class HttpApi:
    """The ASGI application; see the module docstring."""

    def __init__(
        self,
        source: StatusSource,
        *,
        providers: StatisticsProviders | None = None,
        version: str | None = None,
        window: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._providers = providers if providers is not None else StatisticsProviders()
        self.version = version if version is not None else package_version()
        self._round_robin = RoundRobin() if window is None else RoundRobin(window)
        self._clock = clock
        self._registry = node_registry(source, self._providers, version=self.version,
                                       clock=clock)
        self._log = structlog.get_logger("actors.http").bind(
            actor="http-api", local_peer=str(source.peer_id))
        self._requests = self._errors = self._status_served = 0

    def statistics(self) -> HttpApiStatistics:
        return HttpApiStatistics(self._requests, self._errors, self._status_served)

    # --- request handling, synchronous and side-effect free except the round robin ----

    def respond(self, method: str, path: str) -> HttpResponse:
        """The response to ``method path``; never raises (errors become a 500)."""
        self._requests += 1
        try:
            return self._route(method, path)
        except Exception:
            self._errors += 1
            self._log.exception("request failed", method=method[:16], path=path[:128])
            return _json(500, {"error": "internal error"})

    def _route(self, method: str, path: str) -> HttpResponse:
        if path not in ROUTES:
            return _json(404, {"error": "not found"})
        if method != "GET":
            return _json(405, {"error": "method not allowed"}, allow="GET")
        if path == "/status":
            return self._status()
        if path == "/metrics":
            return HttpResponse(200, METRICS_TYPE, render_metrics(self._registry))
        return self._health()

    def _status(self) -> HttpResponse:
        snapshot = self._source.snapshot()
        served = read_provider(self._providers.probes_served, "probes_served")
        document = status_document(
            snapshot,
            policy=self._source.config.policy,
            round_robin=self._round_robin,
            version=self.version,
            uptime_s=round(max(0.0, self._clock() - snapshot.started_at), 3),
            probes_served=int(sum(served.values())),
        )
        self._status_served += 1
        return HttpResponse(200, JSON_TYPE, build_status_document(document))

    def _health(self) -> HttpResponse:
        running = self._source.statistics().supervisor.running
        state = self._source.snapshot().lifecycle.value
        return _json(200 if running else 503, {"ok": running, "state": state})

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:  # websocket: refuse the handshake (hypercorn answers 403)
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": None})

    async def _http(self, scope: HTTPScope, send: ASGISendCallable) -> None:
        response = self.respond(scope["method"], scope["path"])
        await send({"type": "http.response.start", "status": response.status,
                    "headers": response.headers()})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    async def _lifespan(self, scope: LifespanScope, receive: ASGIReceiveCallable,
                        send: ASGISendCallable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# --- the server ------------------------------------------------------------------------------


def _hypercorn_config(host: str, port: int, grace: float) -> Config:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    if type(port) is not int or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be an int in 0..65535, got {port!r}")
    if not grace > 0:
        raise ValueError(f"grace must be > 0, got {grace!r}")
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # no handler of its own
    config.graceful_timeout = grace
    config.startup_timeout = config.shutdown_timeout = 5.0
    config.keep_alive_timeout = 5.0
    config.include_server_header = False
    return config


def _bound_address(binds: object) -> tuple[str, int]:
    """``(host, port)`` from hypercorn's started value, e.g. ``["http://127.0.0.1:41234"]``."""
    if isinstance(binds, list) and binds and isinstance(binds[0], str):
        parts = urlsplit(binds[0])
        if parts.hostname is not None and parts.port is not None:
            return parts.hostname, parts.port
    raise RuntimeError(f"cannot tell which address hypercorn bound from {binds!r}")


async def _serve_shielded(app: HttpApi, config: Config, stop: trio.Event, hard_stop: float, *,
                          task_status: trio.TaskStatus[object]) -> None:
    with trio.CancelScope(shield=True) as scope:
        async def trigger() -> None:
            await stop.wait()
            scope.deadline = trio.current_time() + hard_stop

        await serve(app, config, shutdown_trigger=trigger, task_status=task_status, mode="asgi")


async def serve_http(
    source: StatusSource,
    host: str,
    port: int,
    *,
    providers: StatisticsProviders | None = None,
    version: str | None = None,
    window: int | None = None,
    grace: float = DEFAULT_GRACE,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :class:`HttpApi` for ``source`` on ``host:port`` until cancelled.

    Reports the bound ``(host, port)`` through ``task_status``. Raises
    ``OSError`` when the address cannot be bound.
    """
    app = HttpApi(source, providers=providers, version=version, window=window)
    config = _hypercorn_config(host, port, grace)
    stop = trio.Event()
    log = structlog.get_logger("actors.http").bind(actor="http-api",
                                                   local_peer=str(source.peer_id))
    async with trio.open_nursery() as nursery:
        try:
            binds = await nursery.start(
                partial(_serve_shielded, app, config, stop, grace + HARD_STOP_SLACK))
            bound = _bound_address(binds)
            log.info("http api listening", host=bound[0], port=bound[1])
            task_status.started(bound)
            await trio.sleep_forever()
        finally:
            stop.set()  # graceful stop, bounded by grace + HARD_STOP_SLACK
