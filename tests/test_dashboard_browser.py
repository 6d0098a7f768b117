"""The dashboard in a real browser: headless Chromium (Debian package ``chromium``) loads
``GET /`` from a live node, with and without JavaScript, and takes a screenshot.

The node is a newcomer that bootstraps from three live boot nodes on
loopback (as in tests/test_bootstrap_e2e.py) until it has a verdict; one
boot node's Identify agent is hostile markup. Chromium's ``--dump-dom``
prints the DOM as the browser built it - after the page's script ran, when
scripts are on - so the tests read what a person would see: the verdict,
compared with what the node's ``/status`` says in the same test, and the
agent string shown as text, with no element injected. A missing chromium
fails the tests (tests/required_tools.py). Every browser run is bounded by
a timeout.
"""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket

from actors import Node
from protocols import Lifecycle, NodeSnapshot
from tests.node_fixtures import live_newcomer
from tests.required_tools import required_tool
from tests.test_dashboard import HOSTILE_AGENT, Page

NET = "127.0.141"
BROWSER_TIMEOUT = 90.0
"""Seconds one Chromium run may take on a loaded machine before the test fails."""
WINDOW = (1280, 1000)


def _settled(node: Node, boots: list[Node]) -> Any:
    ids = {boot.peer_id for boot in boots}

    def check(snap: NodeSnapshot) -> bool:
        agents = {record.peer_id for record in snap.peers if record.agent_version}
        return (snap.lifecycle is Lifecycle.FULLY_CONNECTED and snap.nat_status != "unknown"
                and ids <= agents and ids <= set(snap.connected_peers))
    return check


@asynccontextmanager
async def _live_dashboard() -> AsyncIterator[str]:
    """A newcomer with a verdict, bootstrapped from three boot nodes (the last one's agent
    is hostile markup); yields its HTTP API's base URL."""
    async with live_newcomer(NET, agents=(None, None, HOSTILE_AGENT)) as live:
        await live.node.wait_for(_settled(live.node, live.boots))
        yield f"http://{live.host}:{live.port}"


async def _status(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(f"{base}/status")
    assert response.status_code == 200
    document = response.json()
    assert isinstance(document, dict)
    return document


def _command(tmp_path: Path, *args: str) -> list[str]:
    chromium = required_tool("chromium", "chromium")  # found already: see _chromium_found
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update",
            "--disable-extensions", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args]


async def _chromium(tmp_path: Path, *args: str) -> bytes:
    """One headless Chromium run; its stdout (``--dump-dom``: the DOM)."""
    command = _command(tmp_path, *args)
    with trio.fail_after(BROWSER_TIMEOUT):
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                        check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout


class DevTools:
    """The Chrome DevTools protocol over one WebSocket: calls by id, events kept."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._next = 0
        self._events: list[dict[str, Any]] = []

    async def call(self, method: str, session: str | None = None,
                   **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_message(json.dumps(message))
        while True:
            answer = json.loads(await self._ws.get_message())
            if answer.get("id") == self._next:
                assert "error" not in answer, f"{method}: {answer['error']}"
                result: dict[str, Any] = answer["result"]
                return result
            self._events.append(answer)

    async def event(self, method: str) -> None:
        while not any(event.get("method") == method for event in self._events):
            self._events.append(json.loads(await self._ws.get_message()))


async def _devtools_url(stderr: trio.abc.ReceiveStream) -> str:
    """Chromium prints ``DevTools listening on ws://...`` on stderr once it listens."""
    seen = b""
    while b"\n" not in seen.partition(b"DevTools listening on ")[2]:
        chunk = await stderr.receive_some()
        assert chunk, "chromium exited before listening: " + seen.decode(errors="replace")
        seen += chunk
    return seen.partition(b"DevTools listening on ")[2].split()[0].decode()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some():
        pass


async def _dom_without_javascript(tmp_path: Path, url: str) -> bytes:
    """The DOM of ``url`` with JavaScript disabled, over DevTools (``--dump-dom`` itself
    needs JavaScript): a page rendered server-side must hold its data as loaded."""
    command = _command(tmp_path, "--remote-debugging-address=127.0.0.1",
                       "--remote-debugging-port=0", "about:blank")
    with trio.fail_after(BROWSER_TIMEOUT):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(partial(trio.run_process, command, check=False,
                                                  stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.PIPE))
            try:
                ws_url = await _devtools_url(process.stderr)
                nursery.start_soon(_drain, process.stderr)  # never let its pipe fill
                async with trio_websocket.open_websocket_url(ws_url) as ws:
                    tools = DevTools(ws)
                    target = await tools.call("Target.createTarget", url="about:blank")
                    session = (await tools.call("Target.attachToTarget", flatten=True,
                                                targetId=target["targetId"]))["sessionId"]
                    await tools.call("Emulation.setScriptExecutionDisabled", session, value=True)
                    await tools.call("Page.enable", session)
                    await tools.call("Page.navigate", session, url=url)
                    await tools.event("Page.loadEventFired")
                    root = (await tools.call("DOM.getDocument", session))["root"]["nodeId"]
                    dom = await tools.call("DOM.getOuterHTML", session, nodeId=root)
            finally:
                nursery.cancel_scope.cancel()  # run_process terminates chromium
    return str(dom["outerHTML"]).encode()


def _assert_hostile_agent_inert(page: Page) -> None:
    assert [tag for tag, _ in page.tags].count("script") == 1  # ours: nothing injected
    assert not any(tag == "img" for tag, _ in page.tags)
    body = next(attrs for tag, attrs in page.tags if tag == "body")
    assert "data-pwned" not in body
    assert HOSTILE_AGENT in page.text_by_id["peer-rows"]  # shown as the text it is


def _chromium_found() -> None:
    """Fails (or skips) before any node starts: a pytest outcome raised inside the
    nodes' nurseries would reach pytest wrapped in an exception group."""
    required_tool("chromium", "chromium")


async def test_without_javascript_the_page_shows_the_verdict(tmp_path: Path) -> None:
    _chromium_found()
    with trio.fail_after(180):
        async with _live_dashboard() as base:
            dom = await _dom_without_javascript(tmp_path, f"{base}/")
            status = await _status(base)
    page = Page(dom)
    assert page.text_by_id["nat-status"] == status["nat_status"] != "unknown"
    assert page.text_by_id["refresh"].startswith("Static page")  # the script did not run
    assert ("meta", {"http-equiv": "refresh", "content": "10"}) in page.tags
    _assert_hostile_agent_inert(page)


async def test_with_javascript_the_page_refreshes_from_status(tmp_path: Path) -> None:
    _chromium_found()
    shot = tmp_path / "dashboard.png"
    with trio.fail_after(240):
        async with _live_dashboard() as base:
            # virtual time: the first refresh and the next one after REFRESH_S run
            dom = await _chromium(tmp_path, "--virtual-time-budget=8000", "--dump-dom",
                                  f"{base}/")
            await _chromium(tmp_path, "--virtual-time-budget=3000",
                            f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}",
                            f"{base}/")
            status = await _status(base)
    page = Page(dom)
    assert page.text_by_id["refresh"].startswith("Live: refreshed from /status")
    verdict = next(attrs for tag, attrs in page.tags if attrs.get("id") == "nat-status")
    assert page.text_by_id["nat-status"] == status["nat_status"] != "unknown"
    assert verdict["class"] == f"verdict verdict-{status['nat_status']}"
    assert int(page.text_by_id["peers-count"]) >= 3  # the boot nodes (and any dial-back)
    _assert_hostile_agent_inert(page)
    _assert_screenshot(shot.read_bytes(), WINDOW)


def _assert_screenshot(png: bytes, size: tuple[int, int]) -> None:
    """A PNG of ``size`` whose pixels are far from uniform (a rendered page, not blank)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks: dict[bytes, bytes] = {}
    offset = 8
    while offset < len(png):
        (length,), kind = struct.unpack(">I", png[offset:offset + 4]), png[offset + 4:offset + 8]
        chunks[kind] = chunks.get(kind, b"") + png[offset + 8:offset + 8 + length]
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height) == size and depth == 8 and color in (2, 6)  # RGB or RGBA
    pixels = zlib.decompress(chunks[b"IDAT"])
    assert len(pixels) == height * (1 + width * (3 if color == 2 else 4))  # every row
    assert len(set(pixels)) > 64, "the screenshot is (nearly) blank"
    assert len(png) > 20_000
