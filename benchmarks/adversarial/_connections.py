"""Attacks on connection slots and sockets: attacks 1, 2, 5 and 8 of the table.

Theory of operation
-------------------
Each attack opens many connections to the target from chosen loopback source
IPs and *holds* them: a holder task waits until either the node closes its
connection or the attack ends. The figures come from the holders:

* **tried** - connections attempted;
* **held** - connections still open once every attempt is done and the node
  has had ``settle`` seconds to act (what the attacker keeps);
* **time to close** - how long the node took to close the ones it did not
  keep (median, from the first byte to the close), and for attacks whose held
  connections must end on their own (half-open, no upgrade) how long those
  lasted, waited for at most ``linger`` seconds.

While the attacker holds its connections an honest ``autonat probe`` runs
from another /24 (:func:`~benchmarks.adversarial._lab.honest_probe`); the
target's RSS and CPU are sampled for the whole attack.

The connection kinds: ``authenticated`` (handshake done, fresh key each,
then idle), ``half-open`` (WebSocket upgraded, our handshake never started),
``raw`` (TCP only, the WebSocket upgrade never sent). Connecting is bounded
by ``concurrency`` at a time; holding is not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import trio

from actors import Connection, FrameStream
from benchmarks._ours import transport

from ._lab import (
    Lab,
    Result,
    honest_probe,
    host_ips,
    measured,
    median_text,
    metric,
    open_bare,
    open_raw_tcp,
)

CONNECT_BUDGET = 120.0
"""Seconds all attempts of one attack may take to connect."""


@dataclass
class Holds:
    tried: int = 0
    live: int = 0
    failed: int = 0
    refused_after: list[float] = field(default_factory=list)
    held_closed_after: list[float] = field(default_factory=list)
    attempts_done: int = 0
    settled_at: float = 0.0


async def _until_closed_or(stop: trio.Event, closed: Callable[[], Awaitable[object]]) -> bool:
    """Wait for ``closed()`` to return or ``stop``; True when the connection closed."""
    outcome = [False]
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            with contextlib.suppress(Exception):
                await closed()
            outcome[0] = True
            nursery.cancel_scope.cancel()

        async def stopper() -> None:
            await stop.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(stopper)
    return outcome[0]


async def _frames_closed(frames: FrameStream) -> None:
    while True:
        await frames.receive()


async def _raw_closed(stream: trio.SocketStream) -> None:
    while await stream.receive_some(4096):
        pass


async def _hold(kind: str, lab: Lab, ip: str, limiter: trio.CapacityLimiter, stop: trio.Event,
                holds: Holds) -> None:
    target = lab.target
    began = trio.current_time()
    try:
        async with AsyncExitStack() as stack:
            async with limiter:
                closed: Callable[[], Awaitable[object]]
                if kind == "authenticated":
                    conn: Connection = await stack.enter_async_context(open_bare(target.addr, ip))
                    closed = conn.closed.wait
                elif kind == "half-open":
                    frames = await stack.enter_async_context(transport().dial(
                        target.addr, reuse_listen_port=False, source_ip=ip))
                    closed = lambda: _frames_closed(frames)  # noqa: E731
                else:
                    raw = await open_raw_tcp(target.ip, target.port, ip)
                    await stack.enter_async_context(raw)
                    closed = lambda: _raw_closed(raw)  # noqa: E731
            holds.live += 1
            holds.attempts_done += 1
            if await _until_closed_or(stop, closed):
                after = trio.current_time() - began
                kept = holds.settled_at and trio.current_time() > holds.settled_at
                (holds.held_closed_after if kept else holds.refused_after).append(after)
            holds.live -= 1
    except Exception:
        holds.failed += 1
        holds.attempts_done += 1
        holds.refused_after.append(trio.current_time() - began)


async def hold_flood(lab: Lab, kind: str, sources: Sequence[str], per_source: int, *,
                     name: str, concurrency: int = 32, settle: float = 1.5,
                     linger: float = 0.0, probe: bool = True,
                     during: Callable[[], Awaitable[str]] | None = None) -> Result:
    """Open ``per_source`` connections of ``kind`` from each IP of ``sources``, hold them,
    probe honestly (and run ``during``, whose text joins *held*), then wait up to
    ``linger`` s for the node to close what it kept."""
    holds = Holds(tried=len(sources) * per_source)
    stop = trio.Event()
    limiter = trio.CapacityLimiter(concurrency)
    evicted_before = await metric(lab.target, "autonat_inbound_evicted_total")
    async with measured(lab.target.pid) as gauge, trio.open_nursery() as nursery:
        for ip in sources:
            for _ in range(per_source):
                nursery.start_soon(_hold, kind, lab, ip, limiter, stop, holds)
        with trio.move_on_after(CONNECT_BUDGET):
            while holds.attempts_done < holds.tried:
                await trio.sleep(0.1)
        await trio.sleep(settle)
        holds.settled_at = trio.current_time()
        held = holds.live
        extra = await during() if during else ""
        verdict = await honest_probe(lab) if probe else None
        with trio.move_on_after(linger):
            while holds.live:
                await trio.sleep(0.1)
        still_open = holds.live
        stop.set()
    evicted = await metric(lab.target, "autonat_inbound_evicted_total") - evicted_before
    return Result(
        attack=name, tried=f"{holds.tried:,}",
        held="; ".join(t for t in (_held_text(held, evicted), extra) if t),
        close=_close_text(holds, still_open, linger), honest=verdict, gauge=gauge,
        facts={"tried": holds.tried, "held": held, "evicted": evicted,
               "still_open": still_open, "failed": holds.failed})


def _held_text(held: int, evicted: float) -> str:
    return f"{held:,}" + (f" ({evicted:.0f} evicted for newcomers)" if evicted else "")


def _close_text(holds: Holds, still_open: int, linger: float) -> str:
    parts = [f"refused: {median_text(holds.refused_after)}"] if holds.refused_after else []
    if holds.held_closed_after:
        parts.append(f"kept ones closed after {median_text(holds.held_closed_after)}")
    if still_open and linger:
        parts.append(f"{still_open} open after {linger:g} s")
    return "; ".join(parts) or "-"


# --- the attacks of the table ----------


async def idle_one_host(lab: Lab, count: int = 200, probe: bool = True) -> Result:
    """1a: one host opens ``count`` authenticated idle connections with fresh keys, a few
    at a time (so the per-IP cap of established connections decides, not the pending one)."""
    return await hold_flood(lab, "authenticated", ["127.0.0.2"], count, probe=probe,
                            concurrency=4,
                            name="1a idle authenticated conns, one host, fresh keys")


async def idle_many_networks(lab: Lab, subnets: int = 10, hosts: int = 64) -> Result:
    """1b: ``subnets`` /24s of ``hosts`` hosts each hold one idle connection apiece."""
    sources = [ip for n in range(subnets) for ip in host_ips(f"127.0.{20 + n}", hosts)]
    return await hold_flood(lab, "authenticated", sources, 1,
                            name=f"1b idle authenticated conns, {subnets} /24s x {hosts} hosts")


async def half_open(lab: Lab, count: int = 200, linger: float = 15.0) -> Result:
    """2: one host opens ``count`` WebSocket connections and never starts the handshake."""
    return await hold_flood(lab, "half-open", ["127.0.0.3"], count, linger=linger,
                            name="2 half-open: handshake never started, one host")


async def no_upgrade(lab: Lab, count: int = 500, linger: float = 15.0) -> Result:
    """8: one host opens ``count`` TCP connections and never sends the WebSocket upgrade."""
    return await hold_flood(lab, "raw", ["127.0.0.8"], count, linger=linger,
                            name="8 TCP conns that never upgrade, one host")
