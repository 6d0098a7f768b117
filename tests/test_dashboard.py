"""``GET /``: the status page, read as HTML (the browser's view is tests/test_dashboard_browser.py).

A frozen picture of a real node (memory transport) is dressed with what a
boot node would have - a connected peer whose Identify agent is markup, a
probe history - and the page is parsed with :mod:`html.parser`: what a
browser would build from it, text and elements, without running anything.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from html.parser import HTMLParser

import trio

from actors import open_node
from actors.surfaces import HttpApi
from actors.surfaces._dashboard import MAX_PEER_ROWS, SCRIPT, STYLE
from actors.transport import MemoryNetwork
from protocols import (
    AddressPolicy,
    ConnectionInfo,
    Direction,
    Keypair,
    NodeConfig,
    PeerRecord,
    ProbeOutcome,
    ProbeResult,
    WsAddress,
)
from tests.test_http_api import FakeSource

HOSTILE_AGENT = '<script>document.body.dataset.pwned="1"</script><img src=x onerror=alert(1)>"'
LOOPBACK = AddressPolicy(allow_loopback=True)


class Page(HTMLParser):
    """Elements by tag, the text of every element with an id, and all text."""

    def __init__(self, body: bytes) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_by_id: dict[str, str] = {}
        self.texts: list[str] = []
        self.raw: dict[str, str] = {}
        self._open: list[str | None] = []
        self._raw_tag: str | None = None
        self.feed(body.decode("utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("script", "style"):
            self._raw_tag = tag
        if tag not in ("meta", "br", "img", "input", "link"):
            self._open.append(attributes.get("id"))

    def handle_endtag(self, tag: str) -> None:
        self._raw_tag = None
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._raw_tag is not None:
            self.raw[self._raw_tag] = self.raw.get(self._raw_tag, "") + data
            return
        self.texts.append(data)
        for element_id in self._open:
            if element_id is not None:
                self.text_by_id[element_id] = self.text_by_id.get(element_id, "") + data


async def _source(peers: int = 1) -> FakeSource:
    """A real node's snapshot and statistics, plus ``peers`` connected peers with a
    hostile agent string and three finished probes."""
    config = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws",), policy=LOOPBACK)
    async with open_node(config, transport=MemoryNetwork().transport("127.0.0.1")) as node:
        await node.wait_for(lambda s: bool(s.listen_addrs))
        snap, stats = node.snapshot(), node.statistics()
    now = trio.current_time()
    local = WsAddress.parse("/ip4/127.0.0.1/tcp/4001/ws")
    ids = [Keypair.generate().peer_id for _ in range(peers)]
    remotes = [WsAddress.parse(f"/ip4/198.51.100.{i % 250 + 1}/tcp/4001/ws/p2p/{peer}")
               for i, peer in enumerate(ids)]
    connections = tuple(ConnectionInfo(i, peer, Direction.INBOUND, local, remote, now - 75.0)
                        for i, (peer, remote) in enumerate(zip(ids, remotes, strict=True)))
    records = tuple(PeerRecord(peer, (remote,), 0.0, 0.0, agent_version=HOSTILE_AGENT)
                    for peer, remote in zip(ids, remotes, strict=True))
    me = WsAddress.parse("/ip4/203.0.113.9/tcp/4001/ws")
    recent = tuple(ProbeResult(me, ids[0], outcome, at=now - ago, detail=detail)
                   for outcome, ago, detail in (
                       (ProbeOutcome.UNREACHABLE, 30.0, "<b>status=E_DIAL_ERROR</b>"),
                       (ProbeOutcome.REACHABLE, 20.0, ""),
                       (ProbeOutcome.TIMEOUT, 10.0, "")))
    snap = replace(snap, connections=connections, connected_peers=(), local_ips=(),
                   peers=records, nat_status="private", nat_mapping="endpoint-dependent",
                   hairpinning=False, reachable_addrs=(), unreachable_addrs=(me,))
    stats = replace(stats, autonat_client=replace(
        stats.autonat_client, recent=recent,
        outcomes=(("reachable", 1), ("timeout", 1), ("unreachable", 1))))
    return FakeSource(snap.peer_id, config, snap, stats)


async def test_the_page_holds_the_state_without_javascript() -> None:
    source = await _source()
    api = HttpApi(source, version="9.9.9")
    api.respond("GET", "/status")
    response = api.respond("GET", "/")
    assert response.status == 200 and response.content_type == "text/html; charset=utf-8"
    page = Page(response.body)
    snap = source.snap
    assert page.text_by_id["nat-status"] == "private" == snap.nat_status
    text = " ".join(page.texts)
    for expected in ("endpoint-dependent", "9.9.9", str(snap.peer_id),
                     str(snap.unreachable_addrs[0]), str(snap.listen_addrs[0])):
        assert expected in text, expected
    profile = {attrs["data-k"] for tag, attrs in page.tags if attrs.get("data-k")}
    assert {"nat_status", "nat_mapping", "nat_filtering", "hairpinning", "udp.mapping",
            "udp.filtering"} <= profile  # the keys of /status the script refreshes them from
    peers = page.text_by_id["peer-rows"]
    assert str(snap.connections[0].peer_id) in peers and "inbound" in peers
    assert "direct" in peers and "1m 15s" in peers
    assert page.text_by_id["peers-count"] == "1"
    probes = page.text_by_id["probe-rows"]  # newest first (a base58 peer id has no 0)
    assert probes.index("10s") < probes.index("20s") < probes.index("30s")
    assert probes.index("timeout") < probes.index("unreachable")
    assert "reachable 1, timeout 1, unreachable 1" in page.text_by_id["probes"]
    load = page.text_by_id["load"]
    assert "/status requests served1" in load  # the one /status request above
    assert "HTTP requests2" in load
    assert ('meta', {"http-equiv": "refresh", "content": "10"}) in page.tags
    assert page.text_by_id["refresh"].startswith("Static page")


async def test_peer_supplied_markup_is_text_not_markup() -> None:
    response = HttpApi(await _source(), version="x").respond("GET", "/")
    page = Page(response.body)
    assert [tag for tag, _ in page.tags].count("script") == 1  # ours, nothing injected
    assert not any(tag == "img" for tag, _ in page.tags)
    assert HOSTILE_AGENT in page.text_by_id["peer-rows"]  # shown as the text it is
    assert "<b>status=E_DIAL_ERROR</b>" in page.text_by_id["probe-rows"]
    assert b"&lt;script&gt;document.body.dataset.pwned" in response.body


async def test_csp_allows_exactly_the_inline_script_and_style() -> None:
    response = HttpApi(await _source(), version="x").respond("GET", "/")
    headers = {name.decode(): value.decode() for name, value in response.headers()}
    csp = dict(directive.split(" ", 1) for directive in
               headers["content-security-policy"].split("; "))
    page = Page(response.body)
    assert page.raw["script"] == SCRIPT and page.raw["style"] == STYLE
    for directive, inline in (("script-src", SCRIPT), ("style-src", STYLE)):
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert csp[directive] == f"'sha256-{digest}'"
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert "</" not in SCRIPT and "</" not in STYLE  # neither can end its element early
    attributes = {name for _, attrs in page.tags for name in attrs}
    assert not {name for name in attributes if name.startswith("on") or name == "style"}


async def test_the_peer_table_is_bounded() -> None:
    source = await _source(peers=MAX_PEER_ROWS + 5)
    page = Page(HttpApi(source, version="x").respond("GET", "/").body)
    assert page.text_by_id["peers-count"] == str(MAX_PEER_ROWS + 5)
    assert page.text_by_id["peers-more"] == "5 more: see /peers"
    rows = sum(1 for tag, _ in page.tags if tag == "tr")
    assert MAX_PEER_ROWS < rows < MAX_PEER_ROWS + 30  # the other tables are small


async def test_only_get_is_served_at_the_root() -> None:
    api = HttpApi(await _source(), version="x")
    assert api.respond("POST", "/").status == 405
    assert api.respond("GET", "/index.html").status == 404
