"""Push one relayed connection past a relay's limit (run inside host A's namespace).

A node dials ``--circuit`` and then, with ``--mode data``, sends Identify requests
over the relayed connection back to back (each answer is about a kilobyte
through the relay) or, with ``--mode idle``, only waits. It prints one JSON
line: how long the relayed connection lived, how many requests got answers,
and why it ended (``closed``: false when it outlived ``--timeout``)::

    {"closed": true, "lived_s": 3.01, "requests": 0, "reason": "..."}

Bounded: ``--timeout`` seconds in all, each request 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import trio

from actors import ConnectError, Connection, StreamFailure, open_node
from protocols import IDENTIFY_PROTOCOL_ID, AddressPolicy, NodeConfig

from .topologies import PUBLIC_NETWORKS


async def _push(conn: Connection, counter: list[int]) -> None:
    while not conn.closed.is_set():
        stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
        await stream.request({}, timeout=5)
        counter[0] += 1


async def run(circuit: str, mode: str, timeout: float) -> dict[str, object]:
    config = NodeConfig.from_settings(
        listen=("/ip4/0.0.0.0/tcp/0/ws",), http_listen="",
        policy=AddressPolicy.from_strings(public_networks=PUBLIC_NETWORKS))
    counter = [0]
    result: dict[str, object] = {"closed": False, "lived_s": None, "requests": 0,
                                 "reason": None}
    with trio.move_on_after(timeout):
        async with open_node(config) as node:
            try:
                async with node.dial_relayed(circuit) as conn:
                    started = time.monotonic()
                    if mode == "data":  # until the relay cuts the circuit
                        with contextlib.suppress(StreamFailure, trio.TooSlowError):
                            await _push(conn, counter)
                    await conn.closed.wait()  # bounded by the outer timeout
                    result.update(closed=conn.closed.is_set(),
                                  lived_s=round(time.monotonic() - started, 3),
                                  reason=conn.close_reason)
            except ConnectError as exc:
                result["reason"] = f"connect failed: {exc}"
    result["requests"] = counter[0]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--circuit", required=True)
    parser.add_argument("--mode", choices=("data", "idle"), required=True)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(json.dumps(trio.run(run, args.circuit, args.mode, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
