"""``/healthz`` reflects whether the node's WebSocket listener serves a peer (the self-check).

The wedge: :class:`GatedTransport` wraps a real transport and, while its gate
is shut, holds every inbound connection without serving it - TCP (or the
in-memory stream) is accepted, the WebSocket/handshake never completes, as
with a stuck accept loop. The self-check's dial then times out.

* the plan's rules, sans-io: fresh results reused, the target address;
* on the autojump clock (in-memory transport): a healthy node is ok; once the
  listener is wedged, a check finds it within ``interval + timeout``; a
  burst of health requests costs one dial; the node recovers;
* over real loopback sockets: ``GET /healthz`` is 200 for a healthy node and
  503 with the reason once its listener is wedged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from actors import HttpApi, MemoryNetwork, Node, WebSocketTransport, open_node, serve_http
from actors.transport import FrameStream, Transport
from actors.transport._framestream import StreamHandler
from protocols import AddressPolicy, NodeConfig, WsAddress
from protocols.node import ListenerCheckPlan, self_check_target

LOOPBACK = AddressPolicy(allow_loopback=True)


class GatedTransport:
    """A transport whose listener stops serving inbound connections while ``shut``."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self._open = trio.Event()
        self._open.set()
        self.held = 0
        self.dials = 0

    def shut(self) -> None:
        self._open = trio.Event()

    def reopen(self) -> None:
        self._open.set()

    async def listen(self, addr: WsAddress, handler: StreamHandler, *,
                     task_status: trio.TaskStatus[list[WsAddress]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
        async def gated(stream: FrameStream) -> None:
            if not self._open.is_set():
                self.held += 1
                await self._open.wait()  # wedged: accepted, never served
                return
            await handler(stream)

        await self._inner.listen(addr, gated, task_status=task_status)

    def dial(self, addr: WsAddress, **kw: Any) -> AbstractAsyncContextManager[FrameStream]:
        self.dials += 1
        return self._inner.dial(addr, **kw)

    def punch(self, addr: WsAddress, *,
              as_client: bool) -> AbstractAsyncContextManager[FrameStream]:
        return self._inner.punch(addr, as_client=as_client)


# --- the rules -----------------------------------------------------------------------------


def test_the_target_is_the_first_plain_ws_listener_on_loopback() -> None:
    def parse(*texts: str) -> list[WsAddress]:
        return [WsAddress.parse(t) for t in texts]

    assert self_check_target(parse("/ip4/0.0.0.0/tcp/44000/ws")) == WsAddress.parse(
        "/ip4/127.0.0.1/tcp/44000/ws")
    assert self_check_target(parse("/ip6/::/tcp/5/ws")) == WsAddress.parse("/ip6/::1/tcp/5/ws")
    assert self_check_target(parse("/ip4/198.51.100.2/tcp/443/wss",
                                   "/ip4/198.51.100.2/tcp/80/ws")) == WsAddress.parse(
        "/ip4/198.51.100.2/tcp/80/ws")
    assert self_check_target(parse("/ip4/198.51.100.2/tcp/443/wss")) is None
    assert self_check_target([]) is None


def test_a_result_is_reused_for_one_interval() -> None:
    plan = ListenerCheckPlan(interval=5.0, timeout=2.0)
    target = WsAddress.parse("/ip4/127.0.0.1/tcp/1/ws")
    assert plan.cached(0.0) is None
    ok = plan.handle_result(target, True, "reached our own listener", 10.0)
    assert ok.ok and ok.reason == ""
    assert plan.cached(14.9) is ok
    assert plan.cached(15.0) is None
    bad = plan.handle_result(target, False, "no handshake within 2 s", 15.0)
    assert not bad.ok
    assert bad.reason == ("the WebSocket listener /ip4/127.0.0.1/tcp/1/ws did not serve our "
                          "own connection: no handshake within 2 s")
    assert (plan.checks, plan.failures) == (2, 1)
    assert not plan.unchecked(()).ok
    assert plan.unchecked((WsAddress.parse("/ip4/1.2.3.4/tcp/443/wss"),)).ok
    with pytest.raises(ValueError, match="interval"):
        ListenerCheckPlan(interval=0)


# --- a node on the autojump clock ----------------------------------------------------------


@asynccontextmanager
async def _gated_node(transport: Transport) -> AsyncIterator[tuple[Node, GatedTransport]]:
    gated = GatedTransport(transport)
    config = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK)
    async with open_node(config, transport=gated) as node:
        await node.wait_for(lambda s: bool(s.listen_addrs))
        yield node, gated


async def test_a_wedged_listener_is_found_within_interval_plus_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(120):
        async with _gated_node(MemoryNetwork().transport("127.0.0.1")) as (node, gated):
            plan = node.listener_check.plan
            healthy = await node.check_listener()
            assert healthy.ok, healthy.reason
            assert healthy.address == node.listen_addrs[0].with_peer_id(None)
            # a burst of requests within the interval: one self-dial served them all
            dials = gated.dials
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(node.check_listener)
            assert gated.dials == dials
            assert plan.checks == 1
            wedged_at = trio.current_time()
            gated.shut()
            while (health := await node.check_listener()).ok:
                await trio.sleep(0.5)
            found = trio.current_time() - wedged_at
            assert found <= plan.interval + plan.timeout
            assert "did not serve our own connection: no handshake within 2 s" in health.reason
            assert gated.held >= 1
            api = HttpApi(node, window=4)  # what GET /healthz answers now (cached result)
            answer = api.respond("GET", "/healthz",
                                 listener=await api.check_listener("GET", "/healthz"))
            assert answer.status == 503
            assert json.loads(answer.body)["reason"] == health.reason
            gated.reopen()
            await trio.sleep(plan.interval)
            assert (await node.check_listener()).ok


async def test_concurrent_requests_share_one_dial_while_it_runs(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with _gated_node(MemoryNetwork().transport("127.0.0.1")) as (node, gated):
            gated.shut()  # every check now takes the whole timeout
            results = []

            async def ask() -> None:
                results.append(await node.check_listener())

            dials = gated.dials
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(ask)
            assert gated.dials == dials + 1
            assert len(results) == 20 and not any(r.ok for r in results)
            assert node.listener_check.plan.checks == 1


# --- over real loopback sockets --------------------------------------------------------------


async def test_healthz_is_200_then_503_with_the_reason_when_the_listener_wedges() -> None:
    with trio.fail_after(30):
        async with _gated_node(WebSocketTransport()) as (node, gated):
            node.listener_check.plan = ListenerCheckPlan(interval=0.5, timeout=1.0)
            async with trio.open_nursery() as nursery:
                host, port = await nursery.start(partial(serve_http, node, "127.0.0.1", 0))
                async with httpx.AsyncClient(base_url=f"http://{host}:{port}",
                                             timeout=10) as client:
                    response = await client.get("/healthz")
                    assert response.status_code == 200, response.text
                    assert response.json()["listener"]["ok"] is True
                    gated.shut()
                    for _ in range(40):  # each round: >= 0.25 s, at most one timeout
                        response = await client.get("/healthz")
                        if response.status_code == 503:
                            break
                        await trio.sleep(0.25)
                    assert response.status_code == 503, response.text
                    body = response.json()
                    assert body["ok"] is False and body["listener"]["ok"] is False
                    assert "did not serve our own connection" in body["reason"]
                    gated.reopen()
                nursery.cancel_scope.cancel()


async def test_the_self_check_ignores_the_address_policy(
        autojump_clock: trio.testing.MockClock) -> None:
    """A boot node's policy rejects loopback (it never advertises it), yet the self-check
    dials its own listener there: it is a local check, not a peer address."""
    config = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",))
    assert not config.policy.allow_loopback
    with trio.fail_after(60):
        async with open_node(config, transport=MemoryNetwork().transport("127.0.0.1")) as node:
            await node.wait_for(lambda s: bool(s.listen_addrs))
            health = await node.check_listener()
            assert health.ok, health.reason
            assert health.address == node.listen_addrs[0].with_peer_id(None)
