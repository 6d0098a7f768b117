"""The node's status page: ``GET /`` on the HTTP API, one self-contained HTML document.

Theory of operation
-------------------
:func:`render_dashboard` turns one :class:`DashboardView` - a snapshot, a
statistics reading and the HTTP API's own counters, all immutable - into
one HTML document. The document is complete when it leaves the server:
the verdict and NAT profile, the addresses, the connected peers (the rows
of ``/peers``), the probe history (the scheduler's last results and its
counts by outcome) and the boot-node load (connections, probes served,
dial-backs, ``/status`` requests) are all in the HTML, so the page works
without JavaScript; a ``<noscript>`` meta refresh reloads it every
:data:`NOSCRIPT_REFRESH_S` seconds.

With JavaScript, the inline :data:`SCRIPT` refreshes the page in place
every :data:`REFRESH_S` seconds with plain ``fetch()``: the verdict, the NAT
profile and the counts from ``/status`` (every element with a ``data-k``
attribute names its key there), the peer table from ``/peers``, and the
three sections only the page itself carries (addresses, probe history,
load) from ``/``. Everything the script writes goes through ``textContent``
or is a section of our own server-rendered (already escaped) HTML; it never
assigns markup. Each refresh of ``/status`` counts as a ``/status`` request
and advances its round-robin window, like any other reader's.

Everything a peer can choose (an Identify agent string above all; also
addresses and a probe's detail) is attacker-controlled: every value is
passed through :func:`html.escape` exactly once, where it is placed, and
nothing else is interpolated. On top of that the page is served with a
strict Content-Security-Policy (:data:`CONTENT_SECURITY_POLICY`): nothing
loads from anywhere (``default-src 'none'``), and the one inline script and
the one inline style run only because their SHA-256 hashes are listed, so
injected markup could neither run a script nor load anything. ``fetch()``
may reach this origin only (``connect-src 'self'``). The page is live data:
it is served ``Cache-Control: no-store`` (no cache may keep a copy, so there
is nothing to revalidate either).

The document is bounded: at most :data:`MAX_PEER_ROWS` peer rows and the
scheduler's last :data:`~protocols.RECENT_PROBES` probes.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocols import Direction, NodeSnapshot
from protocols.node import peers_document

from ..node import NodeStatistics

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DASHBOARD_HEADERS",
    "HTML_TYPE",
    "MAX_PEER_ROWS",
    "SCRIPT",
    "STYLE",
    "DashboardView",
    "render_dashboard",
]

HTML_TYPE: Final = "text/html; charset=utf-8"
MAX_PEER_ROWS: Final = 200
"""Peer rows on the page (``/peers`` has up to 1000; the page says how many it left out)."""
REFRESH_S: Final = 5
"""Seconds between the script's refreshes."""
NOSCRIPT_REFRESH_S: Final = 10
"""Seconds between reloads of the page without JavaScript."""

STYLE: Final = """
:root { color-scheme: light; --ok: #1d7a35; --bad: #b3261e; --unk: #6b6b6b; --line: #d8dce3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       background: #f4f6f9; color: #1b1f24; }
header { background: #1b2634; color: #f4f6f9; padding: 14px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 2px 0; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px;
       padding: 16px 24px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
          min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { margin: 0 0 8px; font-size: 15px; }
h3 { margin: 10px 0 4px; font-size: 13px; color: #3a4350; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid var(--line);
         vertical-align: top; }
td.mono { overflow-wrap: anywhere; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
          font-size: 12px; }
table.kv th { width: 45%; font-weight: normal; color: #3a4350; }
ul { margin: 0; padding-left: 18px; overflow-wrap: anywhere; }
.verdict { display: inline-block; font-size: 22px; font-weight: 700; text-transform: uppercase;
           padding: 4px 14px; border-radius: 6px; color: #fff; background: var(--unk);
           margin: 0 0 8px; }
.verdict-public { background: var(--ok); }
.verdict-private { background: var(--bad); }
.muted, .empty { color: #6b6b6b; }
#refresh { font-size: 12px; color: #b8c2cf; }
#refresh.live { color: #8fd19e; }
#refresh.stale { color: #f2b8b5; }
footer { padding: 0 24px 16px; font-size: 12px; color: #6b6b6b; }
"""

SCRIPT: Final = """
"use strict";
(function () {
  var PERIOD_MS = @PERIOD_MS@, MAX_ROWS = @MAX_ROWS@;
  var PAGE_SECTIONS = ["addresses", "probes", "load"];
  function missing(value) { return value === null || value === undefined; }
  function show(el, value) { el.textContent = missing(value) ? "-" : String(value); }
  function duration(s) {
    s = Math.max(0, Math.floor(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
  }
  function lookup(doc, key) {
    return key.split(".").reduce(function (v, k) { return missing(v) ? undefined : v[k]; }, doc);
  }
  function applyStatus(doc) {
    document.querySelectorAll("[data-k]").forEach(function (el) {
      var key = el.getAttribute("data-k"), value = lookup(doc, key);
      if (value === undefined) { return; }
      if (key === "hairpinning") { value = value === null ? "unknown" : String(value); }
      show(el, key === "uptime_s" ? duration(value) : value);
    });
    var verdict = document.getElementById("nat-status");
    var known = doc.nat_status === "public" || doc.nat_status === "private";
    verdict.className = "verdict verdict-" + (known ? doc.nat_status : "unknown");
  }
  function applyPeers(doc) {
    var rows = document.createElement("tbody");
    rows.id = "peer-rows";
    doc.peers.slice(0, MAX_ROWS).forEach(function (peer) {
      var tr = document.createElement("tr");
      [peer.peer_id, peer.address, peer.direction, peer.path, peer.agent,
       peer.connected_s === null ? null : duration(peer.connected_s)].forEach(function (value, i) {
        var td = document.createElement("td");
        if (i === 0 || i === 1 || i === 4) { td.className = "mono"; }
        show(td, value === "" ? "-" : value);
        tr.appendChild(td);
      });
      rows.appendChild(tr);
    });
    document.getElementById("peer-rows").replaceWith(rows);
    show(document.getElementById("peers-count"), doc.count);
    var left = doc.count - Math.min(doc.peers.length, MAX_ROWS);
    show(document.getElementById("peers-more"), left > 0 ? left + " more: see /peers" : "");
  }
  function applyPage(text) {
    var page = new DOMParser().parseFromString(text, "text/html");
    PAGE_SECTIONS.forEach(function (id) {
      var mine = document.getElementById(id), fresh = page.getElementById(id);
      if (mine && fresh) { mine.replaceWith(document.importNode(fresh, true)); }
    });
  }
  async function get(path, json) {
    var response = await fetch(path, {cache: "no-store"});
    if (!response.ok) { throw new Error(path + " answered HTTP " + response.status); }
    return json ? response.json() : response.text();
  }
  async function refresh() {
    var note = document.getElementById("refresh");
    try {
      var got = await Promise.all([get("/status", true), get("/peers", true), get("/", false)]);
      applyStatus(got[0]);
      applyPeers(got[1]);
      applyPage(got[2]);
      show(note, "Live: refreshed from /status and /peers at " + new Date().toLocaleTimeString());
      note.className = "live";
    } catch (error) {
      show(note, "Refresh failed (" + error.message + "); retrying");
      note.className = "stale";
    }
    setTimeout(refresh, PERIOD_MS);
  }
  refresh();
})();
""".replace("@PERIOD_MS@", str(REFRESH_S * 1000)).replace("@MAX_ROWS@", str(MAX_PEER_ROWS))


def _csp_source(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


CONTENT_SECURITY_POLICY: Final = "; ".join((
    "default-src 'none'",
    f"script-src {_csp_source(SCRIPT)}",
    f"style-src {_csp_source(STYLE)}",
    "connect-src 'self'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
"""Only the inline :data:`SCRIPT` and :data:`STYLE` (by hash) and fetches to this origin."""

DASHBOARD_HEADERS: Final = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
)
"""Sent with the page besides ``Content-Type`` and ``Cache-Control: no-store``."""


@dataclass(frozen=True)
class DashboardView:
    """Everything one rendering of the page reads (immutable values only)."""

    snapshot: NodeSnapshot
    statistics: NodeStatistics
    version: str
    wall_now: float
    """Unix time of the rendering (uptime, peers' ``since``)."""
    loop_now: float
    """The event loop's time (connection and probe times are on that clock)."""
    status_served: int
    """``/status`` documents the HTTP API served."""
    http_requests: int
    """Requests the HTTP API answered, this one included."""


def _e(value: object) -> str:
    """``value`` as HTML text (the one way any value enters the page)."""
    return html.escape(str(value), quote=True)


def _duration(seconds: float) -> str:
    """``1h 2m 3s``, as the script's ``duration()`` writes it."""
    s = max(0, int(seconds))
    hours, minutes = s // 3600, s % 3600 // 60
    return ((f"{hours}h " if hours else "") + (f"{minutes}m " if hours or minutes else "")
            + f"{s % 60}s")


def _kv(rows: Iterable[tuple[str, object, str | None]]) -> str:
    """A two-column table; the third item, when given, is the row's ``/status`` key."""
    cells = "".join(
        f"<tr><th>{_e(label)}</th><td{_status_key(key)}>{_e(value)}</td></tr>"
        for label, value, key in rows)
    return f'<table class="kv">{cells}</table>'


def _status_key(key: str | None) -> str:
    return "" if key is None else f' data-k="{_e(key)}"'


def _list(title: str, items: Iterable[object], empty: str) -> str:
    entries = "".join(f"<li><code>{_e(item)}</code></li>" for item in items)
    body = f"<ul>{entries}</ul>" if entries else f'<p class="empty">{_e(empty)}</p>'
    return f"<h3>{_e(title)}</h3>{body}"


def _table(headers: Iterable[str], rows: Iterable[Iterable[object]], *,
           body_id: str | None = None, mono: frozenset[int] = frozenset()) -> str:
    """A table; the cells of the ``mono`` columns are ids and addresses (wrapped anywhere)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="mono">{_e(cell)}</td>' if i in mono else
                         f"<td>{_e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows)
    body_attr = "" if body_id is None else f' id="{_e(body_id)}"'
    return f"<table><thead><tr>{head}</tr></thead><tbody{body_attr}>{body}</tbody></table>"


def _hairpinning(value: bool | None) -> str:
    return "unknown" if value is None else str(value).lower()


def _verdict(view: DashboardView) -> str:
    snap = view.snapshot
    status = snap.nat_status
    profile = _kv((
        ("TCP mapping", snap.nat_mapping, "nat_mapping"),
        ("TCP filtering", snap.nat_filtering, "nat_filtering"),
        ("Hairpinning", _hairpinning(snap.hairpinning), "hairpinning"),
        ("UDP mapping", snap.udp.mapping.value, "udp.mapping"),
        ("UDP filtering", snap.udp.filtering.value, "udp.filtering"),
    ))
    return (f'<section id="verdict"><h2>NAT verdict</h2>'
            f'<p id="nat-status" class="verdict verdict-{_e(status)}" data-k="nat_status">'
            f"{_e(status)}</p>{profile}</section>")


def _addresses(view: DashboardView) -> str:
    snap = view.snapshot
    return ('<section id="addresses"><h2>Addresses</h2>'
            + _list("Reachable (confirmed by AutoNAT)", snap.reachable_addrs, "none confirmed")
            + _list("Unreachable", snap.unreachable_addrs, "none")
            + _list("Listening on", snap.listen_addrs, "no listener")
            + _list("Relayed (/p2p-circuit)", snap.relay_addrs, "no relay reservation")
            + "</section>")


def _peers(view: DashboardView) -> str:
    document = peers_document(view.snapshot, wall_now=view.wall_now, loop_now=view.loop_now,
                              limit=MAX_PEER_ROWS)
    rows: list[dict[str, Any]] = document["peers"]
    table = _table(
        ("Peer", "Address", "Direction", "Path", "Agent", "Connected"),
        ((row["peer_id"], row["address"] or "-", row["direction"] or "-", row["path"],
          row["agent"] or "-",
          "-" if row["connected_s"] is None else _duration(row["connected_s"]))
         for row in rows),
        body_id="peer-rows", mono=frozenset({0, 1, 4}))
    left = document["count"] - len(rows)
    more = f"{left} more: see /peers" if left > 0 else ""
    return (f'<section id="peers" class="wide"><h2>Connected peers '
            f'(<span id="peers-count">{_e(document["count"])}</span>)</h2>{table}'
            f'<p id="peers-more" class="muted">{_e(more)}</p></section>')


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none yet"


def _probes(view: DashboardView) -> str:
    client = view.statistics.autonat_client
    summary = _kv((
        ("Probes by outcome", _counts(dict(client.outcomes)), None),
        ("In flight", client.in_flight, None),
        ("AutoNAT servers connected", client.servers_available, None),
        ("Servers asked / answered",
         f"{len(client.servers_contacted)} / {len(client.servers_answered)}", None),
    ))
    recent = _table(
        ("Ago", "Outcome", "Address", "Server", "Detail"),
        ((_duration(view.loop_now - result.at), result.outcome.value, result.addr,
          result.server, result.detail or "-") for result in reversed(client.recent)),
        body_id="probe-rows", mono=frozenset({2, 3, 4}))
    return (f'<section id="probes"><h2>Probe history</h2>{summary}'
            f"<h3>Latest probes, newest first</h3>{recent}</section>")


def _load(view: DashboardView) -> str:
    snap, stats = view.snapshot, view.statistics
    inbound = sum(1 for conn in snap.connections if conn.direction is Direction.INBOUND)
    server, received = stats.autonat_server, stats.dial_back
    rows: list[tuple[str, object, str | None]] = [
        ("Connections in / out", f"{inbound} / {len(snap.connections) - inbound}", None),
        ("Peers known", len(snap.peers), None),
        ("AutoNAT probes served", server.total_answered, None),
        ("... by answer", _counts(server.by_status()), None),
        ("Dial-backs made (failed here)", f"{server.dial_backs} ({server.local_failures})",
         None),
        ("Dial-backs received: verified / ignored",
         f"{received.verified} / {received.unexpected}", None),
        ("/status requests served", view.status_served, None),
        ("HTTP requests", view.http_requests, None),
        ("Inbound connections refused", stats.dialer.inbound_refused, None),
    ]
    if stats.relay is not None:
        rules = stats.relay.rules
        rows.append(("Relay reservations / circuits", f"{rules.reservations} / {rules.circuits}",
                     None))
    return f'<section id="load"><h2>Boot-node load</h2>{_kv(rows)}</section>'


def render_dashboard(view: DashboardView) -> bytes:
    """The page for ``view`` as UTF-8 HTML; see the module docstring."""
    snap = view.snapshot
    uptime = _duration(view.wall_now - snap.started_at)
    header = (
        "<header><h1>trio-autonat node</h1>"
        f'<p><code id="peer-id">{_e(snap.peer_id)}</code></p>'
        f'<p>version <span data-k="version">{_e(view.version)}</span> &middot; '
        f'state <span data-k="state">{_e(snap.lifecycle.value)}</span> &middot; '
        f'up <span data-k="uptime_s">{_e(uptime)}</span></p>'
        f'<p id="refresh">Static page: reloads every {NOSCRIPT_REFRESH_S} s.</p></header>')
    body = (header + "<main>" + _verdict(view) + _load(view) + _addresses(view) + _probes(view)
            + _peers(view) + "</main>"
            '<footer>Machine-readable: <a href="/status">/status</a> &middot; '
            '<a href="/peers">/peers</a> &middot; <a href="/metrics">/metrics</a> &middot; '
            '<a href="/healthz">/healthz</a></footer>')
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<noscript><meta http-equiv="refresh" content="{NOSCRIPT_REFRESH_S}"></noscript>'
        f"<title>{_e(snap.nat_status)} - trio-autonat node</title>"
        f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n")
    return page.encode("utf-8")
