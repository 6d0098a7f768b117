"""Rows 1 and 2: connection set-up time and server RSS per idle connection.

One client (this process) opens N connections to one server process on
loopback, at most ``concurrency`` set-ups in flight, and keeps them open:

* ``ours``: a boot node; a connection counts when our handshake is done and
  the client's Identify request to the node has been answered (the client
  also answers the node's own Identify request, as a peer would);
* ``ws``: a bare trio-websocket server, a connection counts at the end of the
  WebSocket upgrade;
* ``tcp``: a bare Trio TCP server, a connection counts when connected.

Reported per size: the time for all N, for the first 1,000 and for the last
1,000 set-ups (in completion order), and the server's VmRSS growth per
connection once all are up and idle. Each size has a time budget: when it
runs out no new set-up starts, those in flight are cancelled, and the result
says how many were up.

Run: ``python benchmarks/setup_conn.py --sizes 1000,2000 --budget 60``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_server, raise_nofile, settle_rss, vm_rss_kib

KINDS = ("ours", "ws", "tcp")
CHUNK = 1000
CLOSE_GRACE = 20.0


@dataclass
class SetupResult:
    kind: str
    size: int
    budget: float
    done: list[float] = field(default_factory=list)
    failures: int = 0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    timed_out: bool = False
    error: str = ""

    @property
    def up(self) -> int:
        return len(self.done)

    @property
    def complete(self) -> bool:
        return self.up == self.size

    @property
    def total(self) -> float | None:
        return self.done[-1] if self.complete else None

    @property
    def first_chunk(self) -> float | None:
        chunk = min(CHUNK, self.size)
        return self.done[chunk - 1] if self.up >= chunk else None

    @property
    def last_chunk(self) -> float | None:
        if not self.complete:
            return None
        if self.size <= CHUNK:
            return self.done[-1]
        return self.done[-1] - self.done[-CHUNK - 1]

    @property
    def rss_per_conn_kib(self) -> float | None:
        if self.up == 0 or self.rss_after_kib == 0:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.up

    def status(self) -> str:
        if self.error:
            return f"{self.kind} error: {self.error}"
        if self.complete:
            return ""
        return f"{self.kind}: {self.up}/{self.size} in {self.budget:g} s"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "size": self.size, "budget": self.budget, "up": self.up,
                "failures": self.failures, "total_s": self.total,
                "first_1000_s": self.first_chunk, "last_1000_s": self.last_chunk,
                "rss_before_kib": self.rss_before_kib, "rss_after_kib": self.rss_after_kib,
                "rss_per_conn_kib": self.rss_per_conn_kib, "timed_out": self.timed_out,
                "error": self.error}


# --- one connection of each kind --------------------------------------------


async def _ours_factory(info: dict[str, object]):  # type: ignore[no-untyped-def]
    from _ours import CONFIG, handlers, transport

    from actors import open_connection
    from protocols import IDENTIFY_PROTOCOL_ID, Identify, Keypair, WsAddress

    target = WsAddress.parse(str(info["addr"]))
    dialer = transport()

    async def one(done: trio.Event, hold: trio.Event, keypair: Keypair) -> None:
        async with dialer.dial(target, reuse_listen_port=False) as frames, open_connection(
                frames, keypair, initiator=True, expected_peer=target.peer_id,
                handlers=handlers(keypair), config=CONFIG) as conn:
            stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
            Identify.from_wire(await stream.request({}, timeout=30.0))
            done.set()
            await hold.wait()

    return one, Keypair.generate


async def _ws_factory(info: dict[str, object]):  # type: ignore[no-untyped-def]
    from trio_websocket import open_websocket

    host, port = str(info["host"]), int(info["port"])  # type: ignore[call-overload]

    async def one(done: trio.Event, hold: trio.Event, _key: object) -> None:
        async with open_websocket(host, port, "/", use_ssl=False):
            done.set()
            await hold.wait()

    return one, lambda: None


async def _tcp_factory(info: dict[str, object]):  # type: ignore[no-untyped-def]
    host, port = str(info["host"]), int(info["port"])  # type: ignore[call-overload]

    async def one(done: trio.Event, hold: trio.Event, _key: object) -> None:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            done.set()
            await hold.wait()

    return one, lambda: None


FACTORIES = {"ours": _ours_factory, "ws": _ws_factory, "tcp": _tcp_factory}


# --- the client --------------------------------------------------------------


async def _client(result: SetupResult, info: dict[str, object], pid: int,
                  concurrency: int) -> None:
    one, make_key = await FACTORIES[result.kind](info)
    keys = [make_key() for _ in range(result.size)]  # outside the timed part
    hold = trio.Event()
    limiter = trio.Semaphore(concurrency)
    max_failures = max(10, result.size // 100)

    async def connection(index: int, start: float, deadline: float) -> None:
        done = trio.Event()
        with trio.CancelScope(deadline=deadline) as scope:

            async def mark() -> None:
                await done.wait()
                scope.deadline = math.inf  # up: held until the end, whatever the budget
                result.done.append(time.perf_counter() - start)
                limiter.release()

            try:
                async with trio.open_nursery() as inner:
                    inner.start_soon(mark)
                    try:
                        await one(done, hold, keys[index])
                    finally:
                        inner.cancel_scope.cancel()
            except Exception:
                result.failures += 1
                if not done.is_set():
                    limiter.release()

    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        deadline = trio.current_time() + result.budget
        with trio.move_on_at(deadline) as budget:
            for index in range(result.size):
                if result.failures > max_failures:
                    result.error = f"{result.failures} failed set-ups"
                    break
                await limiter.acquire()
                nursery.start_soon(connection, index, start, deadline)
            for _ in range(concurrency):  # the ones still in flight
                await limiter.acquire()
        result.timed_out = budget.cancelled_caught
        await trio.sleep(2.0)  # idle
        result.rss_after_kib = vm_rss_kib(pid)
        hold.set()
        nursery.cancel_scope.deadline = trio.current_time() + CLOSE_GRACE


def measure(kind: str, size: int, budget: float, concurrency: int = 32) -> SetupResult:
    result = SetupResult(kind, size, budget)
    extra = ["--max-connections", str(size + 64)] if kind == "ours" else []
    try:
        with child_server(kind, *extra) as server:
            result.rss_before_kib = settle_rss(server.pid)
            trio.run(_client, result, server.info, server.pid, concurrency)
    except Exception as exc:  # the row says what failed, the other rows go on
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000", help="comma-separated connection counts")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per size")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    raise_nofile()
    for size in (int(s) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            r = measure(kind, size, args.budget, args.concurrency)
            print(json.dumps(r.to_json()), flush=True)


if __name__ == "__main__":
    main()
