"""BootstrapFetcher against mock and hostile HTTP servers, in virtual time.

Every test but the last runs on the autojump clock with ``httpx.MockTransport``
(no sockets): the handlers below play a good boot node, a dead one, a slow
one, a trickling one, a huge one and a hostile one. The last test reads a
real HTTP/1.1 server on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from actors import BootstrapFetcher, Mailbox, Watch
from actors.node._messages import DialerCommand
from protocols import (
    AddressPolicy,
    Backoff,
    BootstrapConfig,
    BootstrapPlan,
    ConnectionInfo,
    Direction,
    Keypair,
    Lifecycle,
    NodeConfig,
    NodeSnapshot,
    PeerId,
    PeerRecord,
    PeersFound,
    StatusDocument,
    WsAddress,
    build_status_document,
)

URL = "http://boot.example:7888/status"
URL2 = "http://boot2.example:7888/status"
ME = Keypair.generate()
BOOT = Keypair.generate()
EXACT = Backoff(initial=2.0, multiplier=2.0, maximum=60.0, jitter=0.0)
EXACT_REFETCH = Backoff(initial=30.0, multiplier=2.0, maximum=480.0, jitter=0.0)
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def _addr(peer: PeerId, host: str, port: int = 44000) -> WsAddress:
    return WsAddress.parse(f"/ip4/{host}/tcp/{port}/ws/p2p/{peer}")


def _public_addrs(count: int) -> list[WsAddress]:
    return [_addr(Keypair.generate().peer_id, f"8.8.{i // 250}.{i % 250 + 1}")
            for i in range(count)]


def _document(addrs: Sequence[str | WsAddress], boot: PeerId = BOOT.peer_id) -> bytes:
    return build_status_document(StatusDocument(
        peer_id=str(boot), peers_count=len(addrs), peer_addrs=tuple(str(a) for a in addrs)))


def _ok(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


def _snapshot(*, connected: int = 0, peers: Sequence[PeerRecord] = (),
              revision: int = 1) -> NodeSnapshot:
    local = WsAddress.parse("/ip4/8.8.4.4/tcp/44000/ws")
    conns = tuple(
        ConnectionInfo(i, Keypair.generate().peer_id, Direction.OUTBOUND, local,
                       _addr(ME.peer_id, "8.8.8.8").with_peer_id(None), 0.0)
        for i in range(connected))
    return NodeSnapshot(peer_id=ME.peer_id, lifecycle=Lifecycle.BOOTSTRAPPING,
                        lifecycle_since=0.0, listen_addrs=(), peers=tuple(peers),
                        connections=conns, observed_addrs=(), started_at=0.0, updated_at=0.0,
                        revision=revision)


class Harness:
    """A fetcher wired to a mailbox we read and a watch we write."""

    def __init__(self, handler: Handler | Callable[[httpx.Request], httpx.Response], *,
                 urls: Sequence[str] = (URL,), exact: bool = True, snapshot: NodeSnapshot | None
                 = None, **overrides: Any) -> None:
        self.config = NodeConfig.from_settings(boot_urls=tuple(urls), **overrides)
        self.box: Mailbox[DialerCommand] = Mailbox(64, name="dialer")
        self.watch: Watch[NodeSnapshot] = Watch(snapshot if snapshot is not None
                                                else _snapshot())
        rng = random.Random(5)
        plan = BootstrapPlan(urls, target_peers=self.config.dialer.target_peers, rng=rng,
                             backoff=EXACT, refetch=EXACT_REFETCH) if exact else None
        self.fetcher = BootstrapFetcher(
            config=self.config, dialer=self.box.sender(), watch=self.watch,
            local_peer=ME.peer_id, rng=rng, plan=plan,
            client_factory=partial(httpx.AsyncClient, transport=httpx.MockTransport(handler)))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.fetcher.run)
            yield
            nursery.cancel_scope.cancel()

    async def next_found(self, timeout: float = 1000.0) -> PeersFound:
        with trio.fail_after(timeout):
            message = await self.box.receiver().receive()
        assert isinstance(message, PeersFound)
        return message

    def pending(self) -> list[DialerCommand]:
        out: list[DialerCommand] = []
        while True:
            try:
                out.append(self.box.receiver().receive_nowait())
            except trio.WouldBlock:
                return out

    def outcomes(self) -> dict[str, int]:
        return {k: v for k, v in self.fetcher.statistics().by_outcome().items() if v}


# --- success --------------------------------------------------------------------------


async def test_every_usable_address_is_sent_and_every_skip_is_explained(
        autojump_clock: trio.testing.MockClock) -> None:
    good = _public_addrs(30)
    loopback = _addr(Keypair.generate().peer_id, "127.0.0.1")
    own = _addr(ME.peer_id, "8.8.9.9")
    plain_tcp = f"/ip4/8.8.7.7/tcp/44000/p2p/{Keypair.generate().peer_id}"
    body = _document([*good, own, loopback, plain_tcp])

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return _ok(body)

    with capture_logs() as logs:
        harness = Harness(handler)
        async with harness.running():
            found = await harness.next_found()
    assert found.source == URL and found.from_bootstrap
    assert sorted(map(str, found.addrs)) == sorted(map(str, good))
    assert list(found.addrs) != good  # shuffled
    skipped = {entry["entry"]: entry for entry in logs
               if entry["event"] == "skipped bootstrap address"}
    assert skipped[str(own)]["reason"] == "that is this node's own peer id"
    assert "loopback" in skipped[str(loopback)]["reason"]
    assert skipped[plain_tcp]["reason"] == "unsupported transport (no /ws or /wss)"
    assert {e["actor"] for e in skipped.values()} == {"bootstrap"}
    assert {e["url"] for e in skipped.values()} == {URL}
    [done] = [e for e in logs if e["event"] == "bootstrap fetch succeeded"]
    assert done["peers"] == 30 and done["url"] == URL
    assert harness.outcomes() == {"ok": 1}
    stats = harness.fetcher.statistics()
    assert (stats.addresses_found, stats.addresses_skipped) == (30, 3)


async def test_many_skips_are_aggregated(autojump_clock: trio.testing.MockClock) -> None:
    entries = [f"/ip4/10.0.{i // 200}.{i % 200 + 1}/tcp/1/ws/p2p/{BOOT.peer_id}"
               for i in range(50)]
    body = _document([*entries, *_public_addrs(1)])
    with capture_logs() as logs:
        harness = Harness(lambda request: _ok(body))
        async with harness.running():
            await harness.next_found()
    singles = [e for e in logs if e["event"] == "skipped bootstrap address"]
    [summary] = [e for e in logs if e["event"] == "skipped more bootstrap addresses"]
    assert len(singles) == 8
    assert summary["count"] == 42 and summary["by_kind"] == {"not routable": 42}


async def test_redirects_are_followed_but_limited(autojump_clock: trio.testing.MockClock) -> None:
    body = _document(_public_addrs(2))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/status":
            return httpx.Response(301, headers={"location": "/v2/status"})
        if request.url.path == "/v2/status":
            return _ok(body)
        return httpx.Response(302, headers={"location": request.url.path})  # a loop

    harness = Harness(handler, urls=(URL, "http://loop.example/loop"))
    async with harness.running():
        found = await harness.next_found()
        await trio.sleep(1)
    assert found.source == URL and len(found.addrs) == 2
    assert harness.outcomes() == {"ok": 1, "http_error": 1}


@pytest.mark.parametrize("allowed", [False, True], ids=["refused", "configured"])
async def test_a_redirect_to_another_host_is_refused_unless_configured(
        autojump_clock: trio.testing.MockClock, allowed: bool) -> None:
    body = _document(_public_addrs(2))
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.host == "boot.example":
            return httpx.Response(302, headers={"location": "http://victim.example/status"})
        return _ok(body)

    harness = Harness(handler, cross_host_redirects=allowed)
    async with harness.running():
        if allowed:
            found = await harness.next_found()
            assert len(found.addrs) == 2
        else:
            await trio.sleep(1)
    if allowed:
        assert asked == [URL, "http://victim.example/status"]
    else:
        assert asked == [URL]  # the third party was never contacted
        assert harness.outcomes() == {"http_error": 1}
        (status,) = harness.fetcher.statistics().urls
        assert "redirect to another host (victim.example) refused" in (status.last_error or "")


# --- failures -------------------------------------------------------------------------


async def test_server_error_is_retried_with_backoff(
        autojump_clock: trio.testing.MockClock) -> None:
    body = _document(_public_addrs(3))
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(trio.current_time())
        return httpx.Response(500) if len(calls) <= 3 else _ok(body)

    with capture_logs() as logs:
        harness = Harness(handler, snapshot=_snapshot(connected=8))
        async with harness.running():
            found = await harness.next_found()
            await trio.sleep(1000)  # at target_peers: no refetch
    assert [t - calls[0] for t in calls] == [0.0, 2.0, 6.0, 14.0]
    assert len(found.addrs) == 3
    assert harness.outcomes() == {"http_error": 3, "ok": 1}
    failures = [e for e in logs if e["event"] == "bootstrap fetch failed"]
    assert [e["retry_in"] for e in failures] == [2.0, 4.0, 8.0]
    assert failures[0]["reason"] == "HTTP 500 Internal Server Error"


async def test_default_plan_jitters_but_stays_within_bounds(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(trio.current_time())
        raise httpx.ConnectError("connection refused", request=request)

    harness = Harness(handler, exact=False, fetch_retry_initial=2.0, fetch_retry_max=16.0)
    async with harness.running():
        await trio.sleep(100)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    bases = [2.0, 4.0, 8.0, 16.0] + [16.0] * len(gaps)
    assert len(gaps) >= 6
    assert all(0.8 * base - 1e-9 <= gap <= base + 1e-9 for gap, base in zip(gaps, bases,
                                                                            strict=False))
    assert harness.outcomes() == {"network_error": len(calls)}


async def test_slow_server_times_out_without_holding_up_the_others(
        autojump_clock: trio.testing.MockClock) -> None:
    body = _document(_public_addrs(2))

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "boot.example":
            await trio.sleep(10_000)
        return _ok(body)

    harness = Harness(handler, urls=(URL, URL2), fetch_timeout=5.0)
    async with harness.running():
        start = trio.current_time()
        found = await harness.next_found()
        assert found.source == URL2 and trio.current_time() - start < 1
        await trio.sleep(5.5)
        assert harness.outcomes() == {"ok": 1, "timeout": 1}
        await trio.sleep(100)  # keeps retrying the slow one, still running
    assert harness.outcomes()["timeout"] >= 4


async def test_trickling_body_hits_the_total_deadline(
        autojump_clock: trio.testing.MockClock) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"peer_id": "'
        while True:
            await trio.sleep(1)  # each read is quick; the whole fetch is not
            yield b"x"

    harness = Harness(lambda request: httpx.Response(200, content=trickle()),
                      fetch_timeout=5.0)
    async with harness.running():
        await trio.sleep(5.5)
    assert harness.outcomes() == {"timeout": 1}


async def test_timeouts_say_which_limit_ran_out(autojump_clock: trio.testing.MockClock) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        while True:
            await trio.sleep(1)
            yield b" "

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "boot.example":  # one network step ran out (half the limit)
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, content=trickle())  # the whole fetch ran out

    with capture_logs() as logs:
        harness = Harness(handler, urls=(URL, URL2), fetch_timeout=5.0)
        async with harness.running():
            await trio.sleep(5.5)
    reasons = {e["reason"] for e in logs if e["event"] == "bootstrap fetch failed"}
    assert reasons == {"no complete answer within 5 s", "read timed out after 2.5 s"}


async def test_huge_body_is_abandoned_early(autojump_clock: trio.testing.MockClock) -> None:
    sent = 0

    async def ten_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(160):
            sent += 65536
            yield b" " * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "boot.example":
            return httpx.Response(200, content=ten_megabytes())
        return httpx.Response(200, content=b"{}", headers={"content-length": "10485760"})

    with capture_logs() as logs:
        harness = Harness(handler, urls=(URL, URL2), max_status_bytes=256 * 1024)
        async with harness.running():
            await trio.sleep(1)
    assert harness.outcomes() == {"too_large": 2}
    assert sent <= 256 * 1024 + 65536  # stopped reading right after the limit
    reasons = sorted(e["reason"] for e in logs if e["event"] == "bootstrap fetch failed")
    assert reasons == ["Content-Length 10485760 exceeds 262144 bytes",
                       "body exceeds 262144 bytes"]


HOSTILE: dict[str, tuple[bytes, dict[str, str]]] = {
    "not-json": (b"<html>hello</html>", {}),
    "array": (b"[1, 2, 3]", {}),
    "peer-id-number": (b'{"peer_id": 12, "peer_addrs": []}', {}),
    "peer-id-garbage": (b'{"peer_id": "12D3KooW0OIl", "peer_addrs": []}', {}),
    "nan": (b'{"peer_id": NaN}', {}),
    "deep": (b"[" * 100_000 + b"]" * 100_000, {}),
    "deep-object": (b'{"peer_id": "%s", "a": ' % str(BOOT.peer_id).encode()
                    + b'{"a": ' * 20_000 + b"1" + b"}" * 20_001, {}),
    "wrong-types": (json.dumps({"peer_id": str(BOOT.peer_id), "peers_count": "many",
                                "peer_addrs": {"a": 1}, "uptime_s": [1]}).encode(), {}),
    "invalid-multiaddrs": (_document(["garbage", "/ip4/999.1.1.1/tcp/1/ws", "/ip4/8.8.8.8",
                                      "/unix/tmp/sock", "/ip4/8.8.8.8/udp/1/quic", "\x00" * 500,
                                      "/ip4/8.8.8.8/tcp/1/ws/p2p-circuit"]), {}),
    "gzip": (b"\x1f\x8b" + b"\x00" * 30, {"content-encoding": "gzip"}),
    "huge-int": (b'{"peer_id": "%s", "peers_count": ' % str(BOOT.peer_id).encode()
                 + b"9" * 100_000 + b"}", {}),
}


async def test_hostile_documents_are_bounded_and_harmless(
        autojump_clock: trio.testing.MockClock) -> None:
    urls = [f"http://{name}.example/status" for name in HOSTILE]

    async def stream(body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    def handler(request: httpx.Request) -> httpx.Response:
        body, headers = HOSTILE[request.url.host.removesuffix(".example")]
        return httpx.Response(200, content=stream(body), headers=headers)

    harness = Harness(handler, urls=urls, max_status_bytes=256 * 1024)
    async with harness.running():
        await trio.sleep(1)
    outcomes = harness.outcomes()
    assert sum(outcomes.values()) == len(HOSTILE)
    assert outcomes == {"bad_document": 7, "empty": 3, "http_error": 1}
    # every URL failed: the fetcher fell back to the (empty) peer store, sending nothing
    assert harness.pending() == []
    assert harness.fetcher.statistics().fallbacks == 1


async def test_ten_thousand_addresses_are_capped(autojump_clock: trio.testing.MockClock) -> None:
    body = _document(_public_addrs(10_000))
    assert len(body) > 500_000
    harness = Harness(lambda request: _ok(body), max_status_bytes=2_000_000,
                      max_status_addrs=256)
    async with harness.running():
        found = await harness.next_found()
    assert len(found.addrs) == 256
    assert harness.fetcher.statistics().addresses_skipped == 1  # one "over limit" entry


async def test_a_bug_is_not_swallowed(autojump_clock: trio.testing.MockClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in the fetch path")

    harness = Harness(handler)
    with pytest.raises(BaseExceptionGroup) as info:
        async with harness.running():
            await trio.sleep(10)
    assert info.group_contains(RuntimeError, match="bug in the fetch path", depth=None)


# --- fallback and refetch --------------------------------------------------------------


async def test_all_urls_down_falls_back_to_persisted_peers_once_per_outage(
        autojump_clock: trio.testing.MockClock) -> None:
    stored_peer = Keypair.generate().peer_id
    record = PeerRecord(stored_peer, (_addr(stored_peer, "8.8.1.1"),
                                      _addr(stored_peer, "10.1.1.1")), 1.0, 5.0)
    mine = PeerRecord(ME.peer_id, (_addr(ME.peer_id, "8.8.2.2"),), 1.0, 6.0)
    up = False
    body = _document(_public_addrs(2))

    def handler(request: httpx.Request) -> httpx.Response:
        if up and request.url.host == "boot.example":
            return _ok(body)
        raise httpx.ConnectError("connection refused", request=request)

    harness = Harness(handler, urls=(URL, URL2), target_peers=2,
                      snapshot=_snapshot(peers=[record, mine]))
    async with harness.running():
        found = await harness.next_found()
        assert found.source == "peer-store" and not found.from_bootstrap
        assert found.addrs == (_addr(stored_peer, "8.8.1.1"),)  # private and own skipped
        await trio.sleep(200)  # many more failed retries: no second fallback
        assert harness.pending() == []
        assert harness.outcomes()["network_error"] > 10
        up = True  # boot.example comes back: the outage ends
        found = await harness.next_found()
        assert found.source == URL
        up = False
        harness.watch.set(_snapshot(connected=1, peers=[record], revision=2))  # below target
        found = await harness.next_found()  # refetch fails everywhere: a new outage
        assert found.source == "peer-store"
        await trio.sleep(300)
        assert harness.pending() == []
    assert harness.fetcher.statistics().fallbacks == 2


async def test_no_boot_urls_means_persisted_peers_at_start(
        autojump_clock: trio.testing.MockClock) -> None:
    peer = Keypair.generate().peer_id
    record = PeerRecord(peer, (_addr(peer, "8.8.1.1"),), 1.0, 5.0)
    harness = Harness(lambda request: pytest.fail("no URL to fetch"), urls=(),
                      snapshot=_snapshot(peers=[record]))
    async with harness.running():
        found = await harness.next_found()
        await trio.sleep(1000)
    assert found.source == "peer-store" and found.addrs == record.addrs
    assert harness.pending() == []


async def test_refetch_when_connected_peers_drop_below_target(
        autojump_clock: trio.testing.MockClock) -> None:
    body = _document(_public_addrs(2))
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(trio.current_time())
        return _ok(body)

    harness = Harness(handler, target_peers=3)
    async with harness.running():
        start = trio.current_time()
        await harness.next_found()
        harness.watch.set(_snapshot(connected=3, revision=2))  # at target: no refetch
        await trio.sleep(100)
        assert len(calls) == 1
        harness.watch.set(_snapshot(connected=2, revision=3))  # dropped below target
        await trio.sleep(0.1)
        assert [t - start for t in calls] == [0.0, 100.0]  # at once: 30 s passed
        await trio.sleep(59)
        assert len(calls) == 2  # not more often than the (doubled) interval
        await trio.sleep(1)
        assert [t - start for t in calls] == [0.0, 100.0, 160.0]
        harness.watch.set(_snapshot(connected=3, revision=4))
        await trio.sleep(1000)
    assert len(calls) == 3
    assert harness.fetcher.statistics().refetch_rounds == 2


async def test_restart_continues_the_same_schedule(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(trio.current_time())
        return httpx.Response(503)

    harness = Harness(handler)
    async with harness.running():
        await trio.sleep(7)  # failures at 0, 2, 6: the next is due at 14
    async with harness.running():  # a new incarnation of the same fetcher
        await trio.sleep(10)
    assert [t - calls[0] for t in calls] == [0.0, 2.0, 6.0, 14.0]


# --- a real socket ----------------------------------------------------------------------


async def test_fetches_from_a_real_http_server_on_loopback() -> None:
    peer = Keypair.generate().peer_id
    body = _document([f"/ip4/127.0.0.1/tcp/44001/ws/p2p/{peer}", "/ip4/127.0.0.1/tcp/44002/ws"])
    requests: list[bytes] = []

    async def serve(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        requests.append(data)
        if data.startswith(b"GET /old "):
            head = b"HTTP/1.1 302 Found\r\nLocation: /status\r\nContent-Length: 0\r\n"
            await stream.send_all(head + b"Connection: close\r\n\r\n")
        else:
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            await stream.send_all(head + body)
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            config = NodeConfig(bootstrap=BootstrapConfig(boot_urls=(f"http://127.0.0.1:{port}/old",)),
                                policy=AddressPolicy(allow_loopback=True))
            box: Mailbox[DialerCommand] = Mailbox(8)
            fetcher = BootstrapFetcher(config=config, dialer=box.sender(),
                                       watch=Watch(_snapshot()), local_peer=ME.peer_id)
            await nursery.start(fetcher.run)
            found = await box.receiver().receive()
            nursery.cancel_scope.cancel()
    assert isinstance(found, PeersFound) and found.from_bootstrap
    assert sorted(str(a) for a in found.addrs) == [
        f"/ip4/127.0.0.1/tcp/44001/ws/p2p/{peer}",
        f"/ip4/127.0.0.1/tcp/44002/ws/p2p/{BOOT.peer_id}"]
    assert [r.split(b" ", 2)[1] for r in requests] == [b"/old", b"/status"]
    assert b"user-agent: trio-autonat/" in requests[0].lower()
    assert fetcher.statistics().by_outcome()["ok"] == 1
