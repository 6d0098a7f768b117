"""Server processes the benchmarks start (and kill) on loopback; one kind per run.

``python benchmarks/servers.py KIND [--host H] [--max-connections N] [--probes] [--http]``
prints one JSON line (its pid and address) and serves until SIGTERM/SIGINT:

* ``ours``: a boot node (boot profile; ``--max-connections`` and the AutoNAT
  rate limits raised as asked);
* ``ws``: a bare trio-websocket server holding every connection it accepts;
* ``tcp``: a bare Trio TCP server holding every connection it accepts;
* ``tcp-probe``: the probe-capacity ceiling: per request line ``PORT NONCE``
  it connects back to the requester's IP at PORT, sends the nonce, waits for
  one byte, closes that connection and answers ``OK``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import node_config, raise_nofile

MAX_LINE = 128


def _announce(**info: object) -> None:
    print(json.dumps(info), flush=True)


async def _until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def serve_ours(args: argparse.Namespace) -> None:
    from actors import configure_logging, open_node, serve_http

    configure_logging("console", level="error")
    # every client of a benchmark comes from one loopback host: the per-host and
    # per-network limits are raised with the count (they exist against floods)
    n = args.max_connections
    settings: dict[str, object] = {
        "max_connections": n, "max_connections_per_ip": n, "max_connections_per_subnet": n,
        "max_pending_handshakes": n, "max_pending_per_ip": n, "max_pending_upgrades": n,
        "max_pending_upgrades_per_ip": n, "max_pending_upgrades_per_subnet": n}
    if args.probes:
        settings |= {"rate_global_per_minute": 10**7, "rate_per_peer_per_minute": 10**7,
                     "rate_concurrent_per_peer": 10**4, "rate_per_ip_per_minute": 10**7,
                     "rate_per_subnet_per_minute": 10**7, "rate_concurrent_per_ip": 10**4}
    config = node_config(args.host, **settings)
    async with open_node(config) as node, trio.open_nursery() as nursery:
        http_port = 0
        if args.http:  # the same HTTP API as `autonat boot` serves
            _, http_port = await nursery.start(serve_http, node, args.host, 0)
        _announce(pid=_pid(), addr=str(node.listen_addrs[0].with_peer_id(node.peer_id)),
                  peer_id=str(node.peer_id), http_port=http_port)
        await _until_signalled()
        nursery.cancel_scope.cancel()


async def serve_ws(args: argparse.Namespace) -> None:
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, args.host, 0, None)
        _announce(pid=_pid(), host=args.host, port=server.port)
        await _until_signalled()
        nursery.cancel_scope.cancel()


async def serve_tcp_on(args: argparse.Namespace, probe: bool) -> None:
    async def hold(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(4096):
                pass

    async def probe_handler(stream: trio.SocketStream) -> None:
        peer_ip = stream.socket.getpeername()[0]
        buffer = b""
        async with stream:
            while True:
                while b"\n" not in buffer:
                    data = await stream.receive_some(4096)
                    if not data or len(buffer) > MAX_LINE:
                        return
                    buffer += data
                line, buffer = buffer.split(b"\n", 1)
                port_text, nonce = line.split(b" ", 1)
                ok = b"ERR\n"
                with trio.move_on_after(5):
                    back = await trio.open_tcp_stream(peer_ip, int(port_text))
                    async with back:
                        await back.send_all(nonce + b"\n")
                        if await back.receive_some(1):
                            ok = b"OK\n"
                await stream.send_all(ok)

    handler = probe_handler if probe else hold
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=args.host))
        port = listeners[0].socket.getsockname()[1]
        _announce(pid=_pid(), host=args.host, port=port)
        await _until_signalled()
        nursery.cancel_scope.cancel()


def _pid() -> int:
    import os

    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["ours", "ws", "tcp", "tcp-probe"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--probes", action="store_true", help="raise AutoNAT rate limits")
    parser.add_argument("--http", action="store_true", help="serve the HTTP API (ours)")
    args = parser.parse_args()
    raise_nofile()
    runners = {"ours": serve_ours, "ws": serve_ws}
    if args.kind in runners:
        trio.run(runners[args.kind], args)
    else:
        trio.run(serve_tcp_on, args, args.kind == "tcp-probe")


if __name__ == "__main__":
    main()
