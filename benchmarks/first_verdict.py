"""Time to first NAT verdict over real loopback WebSockets, against a baseline.

Each round starts 3 AutoNAT server nodes and 1 client node on distinct
127.x addresses, then measures, from the client's first dial:

* ``baseline``: connected to all 3 servers and identified by them - the
  bare cost of connection setup plus one Identify round trip, which any
  NAT-detection scheme has to pay;
* ``verdict``: ``nat_status`` left ``unknown`` (a real dial-back verdict,
  confidence 2).

The figure of merit is ``verdict / baseline``: how many "connect + identify"
times the whole AutoNAT decision costs on top. It is a ratio measured in the
same run, so a slow or busy machine moves both sides. For comparison
(docs/architecture.md, "Numbers to beat"): Pyrsia's documented first verdict
~26 s; go-libp2p 14.3 s and rust-libp2p 5.7 s median on a home router
(ProbeLab).

Run: ``.venv/bin/python benchmarks/first_verdict.py [rounds]``
"""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import AsyncExitStack

import trio

from actors import configure_logging, open_node
from protocols import AddressPolicy, HttpConfig, NodeConfig

LOOPBACK = AddressPolicy(allow_loopback=True)


def _config(host: str) -> NodeConfig:
    return NodeConfig(listen=(f"/ip4/{host}/tcp/0/ws",), policy=LOOPBACK,
                      http=HttpConfig(http_listen=""))


async def one_round(index: int) -> tuple[float, float]:
    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(open_node(_config(f"127.0.3.{i + 1}")))
                   for i in range(3)]
        client = await stack.enter_async_context(open_node(_config(f"127.0.4.{index % 200 + 1}")))
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(client.connect, server.listen_addrs[0])
        await client.wait_for(lambda s: len(s.observed_addrs) >= 3)
        baseline = time.perf_counter() - start
        await client.wait_for(lambda s: s.nat_status != "unknown")
        verdict = time.perf_counter() - start
        assert client.snapshot().nat_status == "public"
        return baseline, verdict


async def main(rounds: int) -> None:
    results = []
    with trio.fail_after(60 + 10 * rounds):
        for index in range(rounds):
            results.append(await one_round(index))
    baselines = [b for b, _ in results]
    verdicts = [v for _, v in results]
    ratios = [v / b for b, v in results]
    print(f"rounds: {rounds}")
    print(f"baseline (connect 3 + identify) median: {statistics.median(baselines) * 1000:.1f} ms")
    print(f"first verdict median:                   {statistics.median(verdicts) * 1000:.1f} ms")
    print(f"first verdict p90:                      "
          f"{sorted(verdicts)[int(0.9 * (rounds - 1))] * 1000:.1f} ms")
    print(f"ratio verdict/baseline median:          {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    configure_logging("console", level="warning")
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 20)
