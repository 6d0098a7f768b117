"""Row 3: AutoNAT dial-back probes per second served by one node, and their latency.

``C`` client workers (this process), each with its own key, its own listener
on 127.0.0.1 and one connection to the server, send dial requests back to
back for a fixed time. A probe counts when the answer is OK with a verified
dial-back (``DialResponse(OK, dial_status=OK)``).

* ``ours``: a boot node with the AutoNAT rate limits raised;
* ``tcp``: the ceiling - a bare Trio TCP server that, per request line,
  connects back to the requester, sends the nonce, waits for one byte and
  answers.

Run: ``python benchmarks/probes.py --concurrency 1,10,100 --seconds 5``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_server, percentile, raise_nofile

MAX_REQUESTS = 200_000
"""Upper bound of requests per measurement, whatever the time."""


@dataclass
class ProbeResult:
    kind: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    elapsed: float = 0.0
    error: str = ""

    @property
    def rate(self) -> float | None:
        return len(self.latencies) / self.elapsed if self.elapsed and self.latencies else None

    def p(self, q: float) -> float | None:
        return percentile(self.latencies, q) if self.latencies else None

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "concurrency": self.concurrency, "ok": len(self.latencies),
                "failures": self.failures, "elapsed_s": self.elapsed, "per_s": self.rate,
                "p50_s": self.p(0.5), "p99_s": self.p(0.99), "error": self.error}


async def _ours_worker(info: dict[str, object], result: ProbeResult, stop_at: list[float],
                       ready: trio.Event, go: trio.Event) -> None:
    from _ours import CONFIG, handlers, transport

    from actors import FrameStream, open_connection
    from protocols import (
        DIAL_REQUEST_PROTOCOL_ID,
        DialRequest,
        DialResponse,
        DialStatus,
        Keypair,
        ResponseStatus,
        WsAddress,
        decode_autonat_message,
    )

    keypair = Keypair.generate()
    table = handlers(keypair, dial_back=True)
    net = transport()
    target = WsAddress.parse(str(info["addr"]))

    async def accept(frames: FrameStream) -> None:
        async with open_connection(frames, keypair, initiator=False, handlers=table,
                                   config=CONFIG) as conn:
            await conn.closed.wait()

    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(net.listen, WsAddress.parse("/ip4/127.0.0.1/tcp/0/ws"),
                                      accept)
        addr_bytes = bound.to_bytes()
        async with net.dial(target, reuse_listen_port=False) as frames, open_connection(
                frames, keypair, initiator=True, expected_peer=target.peer_id, handlers=table,
                config=CONFIG) as conn:
            ready.set()
            await go.wait()
            while trio.current_time() < stop_at[0] and len(result.latencies) < MAX_REQUESTS:
                began = time.perf_counter()
                request = DialRequest(addrs=(addr_bytes,), nonce=random.getrandbits(63))
                try:
                    async with await conn.open_stream(DIAL_REQUEST_PROTOCOL_ID) as stream:
                        await stream.send(request.to_wire())
                        answer = decode_autonat_message(await stream.receive())
                except Exception:
                    result.failures += 1
                    continue
                if (isinstance(answer, DialResponse) and answer.status == ResponseStatus.OK
                        and answer.dial_status == DialStatus.OK):
                    result.latencies.append(time.perf_counter() - began)
                else:
                    result.failures += 1
        nursery.cancel_scope.cancel()


async def _tcp_worker(info: dict[str, object], result: ProbeResult, stop_at: list[float],
                      ready: trio.Event, go: trio.Event) -> None:
    host, port = str(info["host"]), int(info["port"])  # type: ignore[call-overload]

    async def accept(stream: trio.SocketStream) -> None:
        async with stream:
            buffer = b""
            while b"\n" not in buffer and len(buffer) < 64:
                data = await stream.receive_some(64)
                if not data:
                    return
                buffer += data
            await stream.send_all(b"1")

    async with trio.open_nursery() as nursery:
        from functools import partial

        listeners = await nursery.start(partial(trio.serve_tcp, accept, 0, host="127.0.0.1"))
        my_port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            ready.set()
            await go.wait()
            buffer = b""
            while trio.current_time() < stop_at[0] and len(result.latencies) < MAX_REQUESTS:
                began = time.perf_counter()
                await stream.send_all(f"{my_port} {random.getrandbits(63)}\n".encode())
                while b"\n" not in buffer:
                    data = await stream.receive_some(64)
                    if not data:
                        raise RuntimeError("server closed")
                    buffer += data
                line, buffer = buffer.split(b"\n", 1)
                if line == b"OK":
                    result.latencies.append(time.perf_counter() - began)
                else:
                    result.failures += 1
        nursery.cancel_scope.cancel()


async def _client(result: ProbeResult, info: dict[str, object]) -> None:
    worker = _ours_worker if result.kind == "ours" else _tcp_worker
    go = trio.Event()
    stop_at = [float("inf")]  # set once every worker is connected, read after ``go``
    start = time.perf_counter()
    with trio.fail_after(result.seconds + 60):
        async with trio.open_nursery() as nursery:
            readies = []
            for _ in range(result.concurrency):
                ready = trio.Event()
                readies.append(ready)
                nursery.start_soon(worker, info, result, stop_at, ready, go)
            for ready in readies:
                await ready.wait()
            stop_at[0] = trio.current_time() + result.seconds
            start = time.perf_counter()
            go.set()
        result.elapsed = time.perf_counter() - start


def measure(kind: str, concurrency: int, seconds: float) -> ProbeResult:
    result = ProbeResult(kind, concurrency, seconds)
    server_kind = "ours" if kind == "ours" else "tcp-probe"
    extra = ["--probes", "--max-connections", str(4 * concurrency + 64)] if kind == "ours" else []
    try:
        with child_server(server_kind, *extra) as server:
            trio.run(_client, result, server.info)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,10,100")
    parser.add_argument("--kinds", default="ours,tcp")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    raise_nofile()
    for c in (int(x) for x in args.concurrency.split(",")):
        for kind in args.kinds.split(","):
            print(json.dumps(measure(kind, c, args.seconds).to_json()), flush=True)


if __name__ == "__main__":
    main()
