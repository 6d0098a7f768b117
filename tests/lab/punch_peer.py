"""One side of the lab's hole-punch trials (run inside a namespace, one process per host).

Each trial ``i`` gets fresh listen ports on both hosts (``base_port + i``), so no
trial inherits a NAT mapping, a conntrack entry or a TIME_WAIT socket from the
one before: every trial is a first meeting, like two peers punching once;
so trials may overlap in time (they start ``--spacing`` apart).
Both processes are given the same wall-clock schedule (``--start`` +
``i * --spacing``), standing in for the synchronisation the hole-punch
exchange provides over the relay. At its moment each side calls
``WebSocketTransport.punch`` towards the other's public address in its
assigned role (the client sends ``ping``, the server answers ``pong``); an
exchange on a connection the listener accepted (the peer's SYN found our
listener) counts too, as it does for the node. One JSON line per trial::

    {"trial": 3, "ok": true, "via": "punch", "elapsed_s": 0.004, "error": null}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio

from actors.transport import DialError, FrameStream, TransportError, WebSocketTransport
from protocols import WsAddress

PING, PONG = b"ping", b"pong"


async def _answer(stream: FrameStream, done: trio.Event, via: list[str]) -> None:
    """Serve an inbound connection: the peer reached our listener."""
    with trio.move_on_after(10):
        if await stream.receive() == PING:
            await stream.send(PONG)
            via.append("listener")
            done.set()
        await done.wait()


async def _exchange(stream: FrameStream, as_client: bool) -> None:
    if as_client:
        await stream.send(PING)
        if await stream.receive() != PONG:
            raise TransportError("no pong")
    elif await stream.receive() == PING:
        await stream.send(PONG)
    else:
        raise TransportError("no ping")


async def trial(index: int, args: argparse.Namespace) -> dict[str, Any]:
    transport = WebSocketTransport()
    port, peer_port = args.base_port + index, args.peer_base_port + index
    peer = WsAddress(args.peer_ip, "ip4", peer_port, False)
    done, via = trio.Event(), list[str]()
    error: str | None = None
    elapsed = None
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.listen, WsAddress("0.0.0.0", "ip4", port, False),
                            lambda stream: _answer(stream, done, via))
        await trio.sleep(max(0.0, args.start + index * args.spacing - time.time()))
        started = trio.current_time()
        as_client = args.role == "client"
        try:
            with trio.fail_after(args.timeout):
                async with transport.punch(peer, as_client=as_client) as stream:
                    await _exchange(stream, as_client)
                    via.append("punch")
                    done.set()
        except (DialError, TransportError, trio.TooSlowError) as exc:
            error = str(exc) or type(exc).__name__
            with trio.move_on_after(max(0.0, args.timeout - (trio.current_time() - started))):
                await done.wait()  # the peer may still reach our listener
        if done.is_set():
            elapsed = round(trio.current_time() - started, 4)
        nursery.cancel_scope.cancel()
    return {"trial": index, "ok": done.is_set(), "via": via[0] if via else None,
            "elapsed_s": elapsed, "error": None if done.is_set() else error}


async def main(args: argparse.Namespace) -> None:
    """Trials overlap in time (each has its own ports); results print in trial order."""
    results: dict[int, dict[str, Any]] = {}

    async def run_one(index: int) -> None:
        results[index] = await trial(index, args)

    async with trio.open_nursery() as nursery:
        for index in range(args.trials):
            nursery.start_soon(run_one, index)
    for index in sorted(results):
        print(json.dumps(results[index]), flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-ip", required=True)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--peer-base-port", type=int, required=True)
    parser.add_argument("--role", choices=("client", "server"), required=True)
    parser.add_argument("--start", type=float, required=True, help="wall-clock time of trial 0")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=4.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse_args(sys.argv[1:]))
