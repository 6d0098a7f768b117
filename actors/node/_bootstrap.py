"""The BootstrapFetcher actor: ``GET /status`` from the boot URLs, hand peers to the Dialer.

Theory of operation
-------------------
The sans-io :class:`~protocols.BootstrapPlan` decides *when* each configured
URL is fetched (first round at once, jittered exponential backoff per failing
URL, refetch rounds while the node has fewer connected peers than
``target_peers``, never more often than ``refetch_interval``) and *when* to
fall back to the persisted peers (once per outage, when every URL's latest
fetch failed). This actor only drives it: a
:class:`~actors.runtime.TimeoutDriver` runs the plan's timer and hands over
its commands - one fetch task per ``FetchUrl`` in the actor's nursery, the
persisted peers for ``FallBackToPersisted`` - and is woken by a finished
fetch or a new node snapshot (followed through the :class:`Watch`, to learn
the connected-peer count).

One fetch, each step bounded:

* ``httpx`` with connect/read/write/pool timeouts of half ``fetch_timeout``
  each, and ``trio.fail_after(fetch_timeout)`` around the whole fetch
  (redirects and body included), so a server that trickles bytes cannot hold
  it longer. At most :data:`MAX_REDIRECTS` redirects, to the same host name
  only unless ``cross_host_redirects`` is on. Environment proxy
  settings are ignored (``trust_env=False``): a node dials peers directly, and
  so reads its boot servers directly.
  No connection is kept for the next fetch (no keep-alive pool): fetches are
  seconds to minutes apart, longer than servers keep an idle connection, and
  a pooled one the server closed would hold a half-closed socket until then.
* The body is streamed and abandoned once it exceeds ``max_status_bytes``
  (a declared ``Content-Length`` over the limit is refused before reading).
  Only identity encoding is accepted (asked for with ``Accept-Encoding:
  identity``) so that a small compressed body cannot expand into a huge one.
* Status 200 only; the body goes to :func:`~protocols.parse_status_document`
  (size, depth and entry count bounded) and then
  :func:`~protocols.select_addresses`: every routable address that is not
  ours, shuffled. Each skipped entry is logged with its reason (the first
  :data:`MAX_SKIP_LINES` one per line, the rest as one aggregated line).
* A usable result is sent to the Dialer as ``PeersFound(addrs,
  source=url, from_bootstrap=True)``.

Whatever a boot server does - refuse, hang, trickle, send 10 MB or hostile
JSON - ends as one :class:`~protocols.FetchOutcome` (counted in
:meth:`BootstrapFetcher.statistics`) and a retry later; the expected failures
(``httpx.HTTPError``, ``OSError``, ``ProtocolError``, timeouts) are caught
and logged, anything else is a bug and propagates to the supervisor.

The plan and the counters live in the fetcher object, which the node creates
once; the supervisor calls :meth:`BootstrapFetcher.run` again after a crash,
and the new incarnation continues the same schedule. Every log line carries
``actor="bootstrap"``, our ``node`` id and, for a fetch, the ``url``.
"""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

import structlog
import trio

if TYPE_CHECKING:  # httpx is imported when there is a URL to fetch (start-up time)
    import httpx

from protocols import (
    AddressSelection,
    Backoff,
    BootstrapCommand,
    BootstrapPlan,
    BootstrapStatistics,
    FetchOutcome,
    FetchUrl,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    PeersFound,
    RemoteProtocolError,
    StatusDocumentError,
    fallback_addresses,
    parse_status_document,
    refetch_backoff,
    select_addresses,
)

from ..runtime import MailboxSender, Pulse, TimeoutDriver, Watch, get_logger
from ..transport import client_context
from ._messages import DialerCommand

__all__ = ["ACTOR_NAME", "FALLBACK_SOURCE", "BootstrapFetcher", "ClientFactory"]

ACTOR_NAME: Final = "bootstrap"
FALLBACK_SOURCE: Final = "peer-store"
MAX_REDIRECTS: Final = 3
MAX_SKIP_LINES: Final = 8
"""Skipped entries logged one per line per fetch; the rest are aggregated."""
FETCH_JITTER: Final = 0.2

Logger = structlog.typing.FilteringBoundLogger
ClientFactory = Callable[..., "httpx.AsyncClient"]
"""Called with ``httpx.AsyncClient`` keyword arguments; tests add a ``transport``."""


class _Rejected(Exception):
    """The server answered, but not with something we read."""

    def __init__(self, outcome: FetchOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome


@dataclass(frozen=True)
class _Result:
    outcome: FetchOutcome
    reason: str = ""
    selection: AddressSelection | None = None
    owner: PeerId | None = None
    """The document's own ``peer_id``: the boot node the URL belongs to."""


def plan_for(config: NodeConfig, rng: random.Random) -> BootstrapPlan:
    """The fetch schedule a node's settings imply."""
    bootstrap = config.bootstrap
    return BootstrapPlan(
        bootstrap.boot_urls, target_peers=config.dialer.target_peers, rng=rng,
        backoff=Backoff(initial=bootstrap.fetch_retry_initial, maximum=bootstrap.fetch_retry_max,
                        jitter=FETCH_JITTER),
        refetch=refetch_backoff(bootstrap.refetch_interval))


class BootstrapFetcher:
    """See the module docstring. Create once per node; ``run`` is one incarnation."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        dialer: MailboxSender[DialerCommand],
        watch: Watch[NodeSnapshot],
        local_peer: PeerId,
        rng: random.Random | None = None,
        client_factory: ClientFactory | None = None,
        plan: BootstrapPlan | None = None,
        pulse: Pulse | None = None,
    ) -> None:
        self._config = config
        self._pulse = pulse if pulse is not None else Pulse()
        self._dialer = dialer
        self._watch = watch
        self._local_peer = local_peer
        self._rng = rng if rng is not None else random.Random()
        self._client_factory = client_factory  # None: httpx.AsyncClient
        self._plan = plan if plan is not None else plan_for(config, self._rng)
        self._driver = TimeoutDriver[BootstrapCommand](self._plan)
        self._log = get_logger("actors.bootstrap", actor=ACTOR_NAME, node=str(local_peer))

    @property
    def plan(self) -> BootstrapPlan:
        return self._plan

    def statistics(self) -> BootstrapStatistics:
        return self._plan.statistics()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._plan.handle_driver_restart(trio.current_time())
        self._driver = TimeoutDriver[BootstrapCommand](self._plan)
        async with self._client() as client, trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_snapshots)
            task_status.started()
            self._log.info("bootstrap started", urls=list(self._plan.urls))
            await self._driver.run(partial(self._perform, client, nursery))

    async def _perform(self, client: httpx.AsyncClient | None, nursery: trio.Nursery,
                       commands: list[BootstrapCommand]) -> None:
        for command in commands:
            if isinstance(command, FetchUrl):
                assert client is not None, "a URL to fetch means there are boot URLs"
                nursery.start_soon(self._fetch_and_report, client, command.url)
                self._pulse.beat()  # a fetch is in flight
            else:
                await self._fall_back()

    async def _follow_snapshots(self) -> None:
        async for snapshot in self._watch.subscribe():
            self._plan.handle_connected_count(len(snapshot.connected_peers),
                                              trio.current_time())
            self._driver.wake()

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient | None]:
        """The HTTP client; None without boot URLs (nothing to fetch, nothing to load)."""
        if not self._plan.urls:
            yield None
            return
        import httpx

        step = self._config.bootstrap.fetch_timeout / 2
        factory = self._client_factory if self._client_factory is not None else httpx.AsyncClient
        client = factory(
            verify=client_context(self._config.tls_ca),
            timeout=httpx.Timeout(connect=step, read=step, write=step, pool=step),
            follow_redirects=True, max_redirects=MAX_REDIRECTS, trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            event_hooks={"response": [self._check_redirect]},
            headers={"accept": "application/json", "accept-encoding": "identity",
                     "user-agent": self._config.agent_version})
        async with client:
            yield client

    # --- one fetch -------------------------------------------------------------

    async def _fetch_and_report(self, client: httpx.AsyncClient, url: str) -> None:
        started = trio.current_time()
        result = await self._fetch(client, url)
        log = self._log.bind(url=url, outcome=result.outcome.value,
                             elapsed=round(trio.current_time() - started, 3))
        if result.selection is not None:
            self._report_selection(result.selection, log)
            if result.selection.usable:
                await self._dialer.send(PeersFound(result.selection.usable, source=url,
                                                   from_bootstrap=True, owner=result.owner))
        now = trio.current_time()
        self._plan.handle_fetch_finished(url, result.outcome, now, result.reason)
        if result.outcome.useful:
            log.info("bootstrap fetch succeeded", peers=len(result.selection.usable)
                     if result.selection else 0)
        else:
            log.warning("bootstrap fetch failed", reason=result.reason,
                        retry_in=round(self._plan.retry_at(url) - now, 3))
        self._driver.wake()
        self._pulse.beat()  # the URL's status changed

    async def _check_redirect(self, response: httpx.Response) -> None:
        """Refuse a redirect to another host before it is followed (unless configured)."""
        if not response.has_redirect_location or self._config.bootstrap.cross_host_redirects:
            return
        target = response.request.url.join(response.headers["location"])
        if target.host != response.request.url.host:
            raise _Rejected(FetchOutcome.HTTP_ERROR,
                            f"redirect to another host ({target.host}) refused; set "
                            "cross_host_redirects to follow it")

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> _Result:
        import httpx

        limit = self._config.bootstrap.fetch_timeout
        try:
            with trio.fail_after(limit):
                body = await self._download(client, url)
        except trio.TooSlowError:
            return _Result(FetchOutcome.TIMEOUT, f"no complete answer within {limit:g} s")
        except httpx.TimeoutException as exc:  # one network step took over half the limit
            step = {httpx.ConnectTimeout: "connect", httpx.ReadTimeout: "read",
                    httpx.WriteTimeout: "write"}.get(type(exc), "connection pool")
            return _Result(FetchOutcome.TIMEOUT, f"{step} timed out after {limit / 2:g} s")
        except _Rejected as exc:
            return _Result(exc.outcome, str(exc))
        except httpx.TooManyRedirects:
            return _Result(FetchOutcome.HTTP_ERROR, f"more than {MAX_REDIRECTS} redirects")
        except (httpx.HTTPError, OSError) as exc:
            return _Result(FetchOutcome.NETWORK_ERROR, _describe(exc))
        return self._read_document(body)

    async def _download(self, client: httpx.AsyncClient, url: str) -> bytes:
        cap = self._config.bootstrap.max_status_bytes
        async with client.stream("GET", url) as response:
            _check_response(response, cap)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > cap:
                    raise _Rejected(FetchOutcome.TOO_LARGE, f"body exceeds {cap} bytes")
            return bytes(body)

    def _read_document(self, body: bytes) -> _Result:
        try:
            parsed = parse_status_document(body, max_bytes=self._config.bootstrap.max_status_bytes,
                                           max_addrs=self._config.bootstrap.max_status_addrs)
        except StatusDocumentError as exc:
            return _Result(FetchOutcome.BAD_DOCUMENT, str(exc))
        except RemoteProtocolError as exc:  # pragma: no cover - the parser raises only the above
            return _Result(FetchOutcome.BAD_DOCUMENT, str(exc))
        selection = select_addresses(parsed.addresses, policy=self._config.policy,
                                     local_peer=self._local_peer, rng=self._rng,
                                     rejected=parsed.rejected)
        self._plan.handle_addresses_selected(len(selection.usable), len(selection.skipped),
                                             trio.current_time())
        if not selection.usable:
            return _Result(FetchOutcome.EMPTY, "the document lists no address this node can use",
                           selection, parsed.peer_id)
        return _Result(FetchOutcome.OK, "", selection, parsed.peer_id)

    @staticmethod
    def _report_selection(selection: AddressSelection, log: Logger) -> None:
        for entry in selection.skipped[:MAX_SKIP_LINES]:
            log.info("skipped bootstrap address", entry=entry.entry, reason=entry.reason,
                     kind=entry.kind.value)
        rest = selection.skipped[MAX_SKIP_LINES:]
        if rest:
            log.info("skipped more bootstrap addresses", count=len(rest),
                     by_kind=AddressSelection((), rest).skipped_by_kind())

    # --- fallback ----------------------------------------------------------------

    async def _fall_back(self) -> None:
        self._plan.handle_fallback_sent(trio.current_time())
        try:
            records = self._watch.get().peers
        except LookupError:
            records = ()
        selection = fallback_addresses(records, policy=self._config.policy,
                                       local_peer=self._local_peer,
                                       limit=self._config.bootstrap.max_status_addrs)
        fallback = ("using persisted peers" if selection.usable
                    else "no persisted peer to fall back on")
        if self._plan.urls:
            self._log.warning(f"every bootstrap URL failed; {fallback}",
                              urls=len(self._plan.urls), addrs=len(selection.usable),
                              skipped=len(selection.skipped))
        else:
            self._log.info(f"no bootstrap URL configured; {fallback}",
                           addrs=len(selection.usable), skipped=len(selection.skipped))
        if selection.usable:
            await self._dialer.send(PeersFound(selection.usable, source=FALLBACK_SOURCE))


def _check_response(response: httpx.Response, cap: int) -> None:
    if response.status_code != 200:
        raise _Rejected(FetchOutcome.HTTP_ERROR,
                        f"HTTP {response.status_code} {response.reason_phrase}".strip())
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _Rejected(FetchOutcome.HTTP_ERROR,
                        f"compressed body ({encoding[:40]}) refused: only identity is accepted")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _Rejected(FetchOutcome.TOO_LARGE,
                        f"Content-Length {declared[:20]} exceeds {cap} bytes")


def _describe(exc: BaseException) -> str:
    """``Type: message``, ending with the OS's words when an OS error is the root cause.

    httpx reports a refused connection as ``ConnectError: all attempts to
    connect to HOST:PORT failed``; the ``connection refused`` is buried in its
    cause chain (an exception group of ``ConnectionRefusedError``). TLS errors
    are OS errors too, but their errno is OpenSSL's: they are described by
    their own reason (a failed certificate check names what failed).
    """
    text = str(exc) or type(exc).__name__
    root = _os_cause(exc)
    words = ""
    if isinstance(root, ssl.SSLCertVerificationError):  # its errno is not an OS errno
        words = (f"tls: certificate verify failed: {root.verify_message} "
                 "(is the server's CA in tls_ca?)")
    elif isinstance(root, ssl.SSLError):
        words = f"tls: {root.reason or root.strerror}".lower()
    elif root is not None:
        words = (os.strerror(root.errno) if isinstance(root.errno, int) and root.errno > 0
                 else str(root.strerror or "")).lower()
    suffix = f" ({words})" if words and words not in text.lower() else ""
    return f"{type(exc).__name__}: {text}{suffix}"[:300]


def _os_cause(exc: BaseException) -> OSError | None:
    """The innermost OS error with an errno text behind ``exc`` (causes, contexts, groups)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    found: OSError | None = None
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            found = current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found
