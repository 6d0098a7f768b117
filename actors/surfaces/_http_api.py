"""The node's HTTP API: ``/status``, ``/metrics``, ``/healthz``, ``/peers`` on hypercorn/Trio.

Theory of operation
-------------------
:class:`HttpApi` is a small ASGI application. Every request is answered
synchronously from one ``source.snapshot()`` (and ``source.statistics()``)
- immutable values - so a response is consistent and no request can block
or disturb the actors. ``/status`` keeps the :class:`~protocols.StatusListing`
of the last snapshot (the part that scans peers and connections) and
rebuilds it only when the snapshot changed; a request then costs its
round-robin window and the JSON of one small document, at any number of peers. Routes:

``GET /status``
    ``application/json``: the Pyrsia-compatible document built by
    :func:`protocols.status_document` (own addresses, then a round-robin
    window of confirmed public peers, which advances once per request) and
    serialised by :func:`protocols.build_status_document`. A node that holds
    relay reservations (it is private) adds ``relay_addrs``: its
    ``/p2p/RELAY/p2p-circuit/p2p/SELF`` addresses, in a field of their own so
    that readers of ``peer_addrs`` (Pyrsia's included) never meet them.
    ``hole_punched_peers`` and ``relayed_peers`` (when not empty, at most
    :data:`MAX_PATH_PEERS` each) list the connected peers whose path is not a
    plain direct connection (:func:`~actors.surfaces._metrics.connection_paths`).
``GET /metrics``
    Prometheus text format 0.0.4 from the node's own registry
    (:mod:`actors.surfaces._metrics`).
``GET /healthz``
    Whether the node can accept and serve a WebSocket peer now, not only
    whether it runs: ``200 {"ok": true, "state": <lifecycle>, "listener":
    {...}}`` while the supervisor runs *and* the node's own connection to its
    WebSocket listener completed our handshake (a cached self-check, at most
    one loopback dial per interval however often probes ask:
    :mod:`actors.node._listener_check`); ``503`` with ``"ok": false`` and a
    ``"reason"`` otherwise (e.g. a wedged listener: "... did not serve our own
    connection: no handshake within 2 s"). A source without the self-check
    (not a :class:`~actors.Node`) is judged by its supervisor alone.
``GET /peers``
    ``application/json``: the live connections, oldest first (peer id,
    remote address, direction, path, Identify agent, since), at most
    :data:`protocols.node.MAX_PEERS_LISTED` rows - what ``autonat peers``
    prints (:func:`protocols.node.peers_document`).

``GET /``
    ``text/html``: the status page for people (:mod:`actors.surfaces._dashboard`),
    complete without JavaScript, refreshed by its script from ``/status`` and
    ``/peers``; served with a strict Content-Security-Policy.

Any other path is ``404``, any other method ``405`` (with ``Allow: GET``),
WebSocket requests are refused. Request bodies are read and thrown away up to
``MAX_REQUEST_BODY`` bytes within ``BODY_TIMEOUT`` seconds; a bigger or slower
body gets its answer with ``Connection: close`` and is not read. Responses are
small and bounded (the status document is capped by the round-robin window
and the per-field caps). An exception while answering is logged with its
traceback and answered with ``500 {"error": "internal error"}``; hypercorn
itself deals with malformed HTTP. Nothing a client sends can crash the node.

:func:`serve_http` runs the app in the caller's nursery::

    host, port = await nursery.start(serve_http, node, "127.0.0.1", 0)

It binds the listening socket itself - so a busy port is a plain
``OSError`` naming the address, and port ``0`` (any free port) reports the
port actually bound - and hands it to hypercorn's Trio worker
(``hypercorn.trio.run.worker_serve`` with ``sockets=``; ``hypercorn.trio.serve``
would bind by itself and wrap bind errors in nested exception groups).
Cancelling the nursery stops the server *gracefully*: hypercorn runs in a
shielded scope and its shutdown trigger fires on cancellation, so it stops
accepting, closes idle keep-alive connections, lets in-flight requests
finish for up to ``grace`` seconds, and is then cut off - no task, listener
or connection outlives ``serve_http``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Final

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from protocols import (
    NodeSnapshot,
    PeerId,
    RoundRobin,
    StatusListing,
    build_status_document,
    status_document,
)
from protocols.node import ListenerHealth, peers_document

from ..runtime import get_logger
from ._dashboard import DASHBOARD_HEADERS, HTML_TYPE, DashboardView, render_dashboard
from ._metrics import (
    StatusSource,
    connection_paths,
    node_registry,
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
MAX_REQUEST_BODY: Final = 64 * 1024
"""Request bodies (never used) are read and dropped up to this size, then the connection closes."""
BODY_TIMEOUT: Final = 5.0
"""Seconds a client may take to send a request body before the connection is closed."""
JSON_TYPE: Final = "application/json"
METRICS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ROUTES: Final = ("/status", "/metrics", "/healthz", "/peers", "/")
MAX_PATH_PEERS: Final = 64
"""Peers listed at most in ``hole_punched_peers`` and in ``relayed_peers``."""


def _relay_addrs(source: StatusSource) -> tuple[str, ...]:
    """The node's ``/p2p-circuit`` addresses (a :class:`~actors.Node` has them; other
    sources may not)."""
    relay_addrs = getattr(source, "relay_addrs", None)
    return tuple(str(addr) for addr in relay_addrs()) if callable(relay_addrs) else ()


def _paths(source: StatusSource, snapshot: NodeSnapshot) -> dict[PeerId, str]:
    """:func:`connection_paths` from a :class:`~actors.Node`'s hole-punch service and relay
    client (other sources have neither: every peer is direct)."""
    service = getattr(source, "hole_punch", None)
    relayed = getattr(source, "relayed_peers", None)
    return connection_paths(snapshot, service.statistics() if service is not None else None,
                            relayed() if callable(relayed) else ())


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
    extra_headers: tuple[tuple[str, str], ...] = ()

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", self.content_type.encode("latin-1")),
               (b"content-length", str(len(self.body)).encode("ascii")),
               (b"cache-control", b"no-store")]
        if self.allow is not None:
            out.append((b"allow", self.allow.encode("latin-1")))
        out += [(name.encode("latin-1"), value.encode("latin-1"))
                for name, value in self.extra_headers]
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
        version: str | None = None,
        window: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self.version = version if version is not None else package_version()
        self._round_robin = RoundRobin() if window is None else RoundRobin(window)
        self._clock = clock
        self._registry = node_registry(source, version=self.version,
                                       clock=clock)
        self._log = get_logger("actors.http", actor="http-api", node=str(source.peer_id))
        self._requests = self._errors = self._status_served = 0
        self._listing: StatusListing | None = None

    def statistics(self) -> HttpApiStatistics:
        return HttpApiStatistics(self._requests, self._errors, self._status_served)

    # --- request handling, synchronous and side-effect free except the round robin ----

    def respond(self, method: str, path: str, *, reached_at: str | None = None,
                listener: ListenerHealth | None = None) -> HttpResponse:
        """The response to ``method path``; never raises (errors become a 500).

        ``reached_at`` is our local IP the request arrived on (see ``status_document``);
        ``listener`` the listener self-check's result for ``/healthz`` (see
        :meth:`check_listener`).
        """
        self._requests += 1
        try:
            return self._route(method, path, reached_at, listener)
        except Exception:
            self._errors += 1
            self._log.exception("request failed", method=method[:16], path=path[:128])
            return _json(500, {"error": "internal error"})

    async def check_listener(self, method: str, path: str) -> ListenerHealth | None:
        """For ``GET /healthz`` of a source that has one (a :class:`~actors.Node`), its
        listener self-check (cached; bounded by the check's timeout); else None."""
        if method != "GET" or path != "/healthz":
            return None
        check = getattr(self._source, "check_listener", None)
        if not callable(check):
            return None
        try:
            health = await check()
        except Exception:
            self._log.exception("listener self-check failed to run")
            return ListenerHealth(False, "the listener self-check failed to run", None)
        return health if isinstance(health, ListenerHealth) else None

    def _route(self, method: str, path: str, reached_at: str | None,
               listener: ListenerHealth | None = None) -> HttpResponse:
        if path not in ROUTES:
            return _json(404, {"error": "not found"})
        if method != "GET":
            return _json(405, {"error": "method not allowed"}, allow="GET")
        if path == "/status":
            return self._status(reached_at)
        if path == "/metrics":
            return HttpResponse(200, METRICS_TYPE, render_metrics(self._registry))
        if path == "/peers":
            return self._peers()
        if path == "/":
            return self._dashboard()
        return self._health(listener)

    def _dashboard(self) -> HttpResponse:
        """``/``: the status page (:mod:`actors.surfaces._dashboard`)."""
        view = DashboardView(self._source.snapshot(), self._source.statistics(),
                             version=self.version, wall_now=self._clock(),
                             loop_now=trio.current_time(), status_served=self._status_served,
                             http_requests=self._requests)
        return HttpResponse(200, HTML_TYPE, render_dashboard(view),
                            extra_headers=DASHBOARD_HEADERS)

    def _peers(self) -> HttpResponse:
        """``/peers``: the live connections (:func:`protocols.node.peers_document`)."""
        return _json(200, peers_document(self._source.snapshot(), wall_now=self._clock(),
                                         loop_now=trio.current_time()))

    def _status(self, reached_at: str | None) -> HttpResponse:
        snapshot = self._source.snapshot()
        policy = self._source.config.policy
        listing = self._listing
        if listing is None or listing.snapshot is not snapshot:
            listing = self._listing = StatusListing.of(snapshot, policy)
        document = status_document(
            snapshot,
            policy=policy,
            round_robin=self._round_robin,
            version=self.version,
            uptime_s=round(max(0.0, self._clock() - snapshot.started_at), 3),
            probes_served=self._source.probes_served(),
            reached_at=reached_at,
            listing=listing,
        )
        extra = list(document.extra)
        circuits = _relay_addrs(self._source)
        if circuits:
            extra.append(("relay_addrs", circuits))
        paths = _paths(self._source, snapshot)
        for path in ("hole-punched", "relayed"):
            peers = tuple(sorted(str(p) for p, seen in paths.items() if seen == path))
            if peers:
                extra.append((f"{path.replace('-', '_')}_peers", peers[:MAX_PATH_PEERS]))
        if len(extra) != len(document.extra):
            document = replace(document, extra=tuple(extra))
        self._status_served += 1
        return HttpResponse(200, JSON_TYPE, build_status_document(document))

    def _health(self, listener: ListenerHealth | None) -> HttpResponse:
        running = self._source.statistics().supervisor.running
        body: dict[str, object] = {"ok": running,
                                   "state": self._source.snapshot().lifecycle.value}
        reasons = [] if running else ["the node's supervisor is not running"]
        if listener is not None:
            body["listener"] = {"ok": listener.ok, "checked": listener.checked_at is not None,
                                "address": None if listener.address is None
                                else str(listener.address)}
            if not listener.ok:
                reasons.append(listener.reason)
        if reasons:
            body["ok"] = False
            body["reason"] = "; ".join(reasons)
        return _json(503 if reasons else 200, body)

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:  # websocket: refuse the handshake (hypercorn answers 403)
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": None})

    async def _http(self, scope: HTTPScope, receive: ASGIReceiveCallable,
                    send: ASGISendCallable) -> None:
        drained = await _discard_body(receive)
        server = scope.get("server")
        reached_at = str(server[0]) if server else None
        listener = await self.check_listener(scope["method"], scope["path"])
        response = self.respond(scope["method"], scope["path"], reached_at=reached_at,
                                listener=listener)
        headers = response.headers()
        if not drained:  # unread body left on the connection: it cannot be reused
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
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


async def _discard_body(receive: ASGIReceiveCallable) -> bool:
    """Read and drop the request body; False if it is too big, too slow or the client left."""
    total = 0
    with trio.move_on_after(BODY_TIMEOUT):
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            total += len(message["body"])
            if total > MAX_REQUEST_BODY:
                return False
            if not message["more_body"]:
                return True
    return False


# --- the server ------------------------------------------------------------------------------


def _hypercorn_config(grace: float) -> Config:
    if not grace > 0:
        raise ValueError(f"grace must be > 0, got {grace!r}")
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # no handler of its own
    config.graceful_timeout = grace
    config.startup_timeout = config.shutdown_timeout = 5.0
    config.keep_alive_timeout = 5.0
    config.include_server_header = False
    return config


async def _listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening, non-blocking TCP socket; ``OSError`` names the address on failure."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    if type(port) is not int or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be an int in 0..65535, got {port!r}")
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                              flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise OSError(f"cannot resolve HTTP API host {host!r}: {exc}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port} for the HTTP API: "
                                 f"{exc.strerror}") from None
    return sock


async def _serve_shielded(app: HttpApi, config: Config, sock: socket.socket, stop: trio.Event,
                          hard_stop: float, *, task_status: trio.TaskStatus[object]) -> None:
    with trio.CancelScope(shield=True) as scope:
        async def trigger() -> None:
            await stop.wait()
            scope.deadline = trio.current_time() + hard_stop

        await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                           sockets=Sockets([], [sock], []), shutdown_trigger=trigger,
                           task_status=task_status)


async def serve_http(
    source: StatusSource,
    host: str,
    port: int,
    *,
    version: str | None = None,
    window: int | None = None,
    grace: float = DEFAULT_GRACE,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :class:`HttpApi` for ``source`` on ``host:port`` until cancelled.

    Reports the bound ``(host, port)`` through ``task_status`` (port ``0``
    picks a free port). Every metric and the ``probes_served`` count come from
    ``source.statistics()`` and ``source.snapshot()``: a node is all it needs.
    Raises ``OSError`` when the address cannot be bound and ``ValueError`` for
    a malformed host or port.
    """
    app = HttpApi(source, version=version, window=window)
    config = _hypercorn_config(grace)
    sock = await _listening_socket(host, port, config.backlog)
    log = get_logger("actors.http", actor="http-api", node=str(source.peer_id))
    stop = trio.Event()
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(partial(_serve_shielded, app, config, sock, stop,
                                            grace + HARD_STOP_SLACK))
                log.info("http api listening", host=bound_host, port=bound_port)
                task_status.started((bound_host, bound_port))
                await trio.sleep_forever()
            finally:
                stop.set()  # graceful stop, bounded by grace + HARD_STOP_SLACK
    finally:
        sock.close()  # normally closed already by hypercorn's listener
