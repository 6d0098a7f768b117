"""Where the memory of an idle authenticated connection goes, on the boot node's side.

The memory row of ``make bench`` says *how much* (server RSS per idle
connection against bare trio-websocket); this says *what*. A boot node runs
in this process (boot profile, limits raised for the count) with
``tracemalloc`` on; a child process opens N connections to it (handshake,
Identify answered both ways) and holds them. With all of them up and idle,
the script compares a snapshot against one taken before and prints, per
connection: the Trio tasks by name, the live Python objects by type (from the
garbage collector), and the traced bytes by allocating line.

It is the profile behind the memory notes of ``BENCHMARKS.md``: Trio's
per-task objects (task, context, cancel status, coroutine frames) are the
largest single share, so tasks per connection is the figure to watch.

Run: ``python benchmarks/conn_memory.py --connections 500`` (loopback only;
bounded by ``--timeout``).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, node_config, raise_nofile

CLIENT = """
import json, sys, trio
sys.path.insert(0, {here!r})
import setup_conn

async def main(info, n):
    one, make_key = await setup_conn._ours_factory(info)
    hold = trio.Event()
    async with trio.open_nursery() as nursery:
        done = []
        for index in range(n):
            event = trio.Event()
            done.append(event)
            nursery.start_soon(one, event, hold, make_key())
            if index % 32 == 31:
                await event.wait()
        for event in done:
            await event.wait()
        print("UP", flush=True)
        await trio.sleep_forever()

trio.run(main, json.loads(sys.argv[1]), int(sys.argv[2]))
"""


def _tasks() -> collections.Counter[str]:
    names: collections.Counter[str] = collections.Counter()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        names[task.name.split(" ")[0]] += 1
        stack.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return names


def _objects() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())


async def _measure(n: int, timeout: float, top: int) -> None:
    from actors import configure_logging, open_node

    configure_logging("console", level="error")
    limit = n + 64
    config = node_config(
        max_connections=limit, max_connections_per_ip=limit, max_connections_per_subnet=limit,
        max_pending_handshakes=limit, max_pending_per_ip=limit, max_pending_upgrades=limit,
        max_pending_upgrades_per_ip=limit, max_pending_upgrades_per_subnet=limit)
    async with open_node(config) as node:
        await trio.sleep(1.0)
        info = {"addr": str(node.listen_addrs[0].with_peer_id(node.peer_id))}
        tasks0, objects0, snap0 = _tasks(), _objects(), tracemalloc.take_snapshot()
        client = CLIENT.format(here=str(ROOT / "benchmarks"))
        with trio.fail_after(timeout):
            process = await trio.lowlevel.open_process(
                [PYTHON, "-c", client, json.dumps(info), str(n)], stdout=subprocess.PIPE)
            try:
                assert process.stdout is not None
                seen = b""
                while b"UP" not in seen:
                    chunk = await process.stdout.receive_some()
                    if not chunk:
                        raise RuntimeError("the client process ended early")
                    seen += chunk
                await trio.sleep(3.0)  # idle: Identify and welcome probes are over
                tasks1, objects1, snap1 = _tasks(), _objects(), tracemalloc.take_snapshot()
            finally:
                process.kill()
                await process.wait()
    _report(n, tasks1 - tasks0, objects1 - objects0, snap1.compare_to(snap0, "lineno"), top)


def _report(n: int, tasks: collections.Counter[str], objects: collections.Counter[str],
            lines: list[tracemalloc.StatisticDiff], top: int) -> None:
    print(f"tasks per connection: {sum(tasks.values()) / n:.2f}")
    for name, count in tasks.most_common(top):
        print(f"  {count / n:5.2f}  {name}")
    print(f"objects per connection: {sum(objects.values()) / n:.1f}")
    for name, count in objects.most_common(top):
        print(f"  {count / n:6.2f}  {name}")
    total = sum(stat.size_diff for stat in lines)
    print(f"traced KiB per connection: {total / n / 1024:.1f}")
    for stat in lines[:top]:
        frame = stat.traceback[0]
        where = frame.filename.replace(str(ROOT) + "/", "")
        print(f"  {stat.size_diff / n:7.0f} B  {stat.count_diff / n:5.2f} obj  "
              f"{where}:{frame.lineno}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.connections <= 20_000:
        parser.error("--connections must be between 1 and 20000")
    raise_nofile()
    tracemalloc.start(1)
    trio.run(_measure, args.connections, args.timeout, args.top)


if __name__ == "__main__":
    main()
