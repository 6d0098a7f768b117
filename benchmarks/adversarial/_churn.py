"""Attacks on the node's bookkeeping: planner churn (6) and config bombs (7).

Theory of operation
-------------------
6. **planner churn** - ``cycles`` connections, each with a fresh key from one
   of 800 hosts in four /24s (``concurrency`` at a time, consecutive cycles
   on different /24s, so that the per-network caps - which a busy node frees
   only once it has processed the closes - are not what stops them): connect, answer the
   node's Identify announcing a listen address on a closed port, disconnect.
   Every cycle leaves a new peer with an address in the node's peer store
   and dial planner, and the planner then tries to redial it and fails, so
   both grow and churn as fast as the attacker likes. The defence is the
   bound ``max_peers`` (5000 in the boot profile; the least useful idle peer
   is forgotten first). *held* is the largest ``autonat_peers_known`` seen
   during the churn, sampled every second.
7. **config bombs** - ``autonat boot --config FILE`` with a deeply nested
   TOML array and with a 5,000-digit integer. The defence: one
   ``autonat: error: FILE: ...`` line on stderr (a ``ConfigError``) and a
   non-zero exit, quickly, instead of a recursion or integer-conversion
   traceback.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import trio

from benchmarks._common import ROOT, child_env
from benchmarks._ours import handlers
from protocols import IDENTIFY_PROTOCOL_ID, Keypair, WsAddress

from ._lab import (
    Lab,
    Result,
    autonat_command,
    honest_probe,
    measured,
    metric,
    open_bare,
)

CYCLE_TIMEOUT = 10.0


async def _one_cycle(lab: Lab, ip: str, port: int) -> None:
    keypair = Keypair.generate()
    announced = WsAddress.parse(f"/ip4/{ip}/tcp/{port}/ws")
    table = dict(handlers(keypair, listen_addrs=(announced,)))
    serve_identify = table[IDENTIFY_PROTOCOL_ID]
    identified = trio.Event()

    async def serve_and_note(stream):  # type: ignore[no-untyped-def]
        await serve_identify(stream)
        identified.set()

    table[IDENTIFY_PROTOCOL_ID] = serve_and_note
    async with open_bare(lab.target.addr, ip, keypair=keypair, table=table):
        await identified.wait()


def _source(number: int) -> str:
    """Cycle ``number``'s source IP: consecutive cycles rotate over four /24s."""
    return f"127.0.{50 + number % 4}.{1 + (number // 4) % 200}"


def _error_kind(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[-120:]}" if text else type(exc).__name__


async def planner_churn(lab: Lab, cycles: int = 10_000, concurrency: int = 32,
                        seconds: float = 900.0) -> Result:
    """Attack 6; see the module docstring."""
    counts = {"started": 0, "done": 0, "failed": 0}
    errors: Counter[str] = Counter()
    peak_peers = [0.0]
    deadline = trio.current_time() + seconds

    async def worker(index: int) -> None:
        while counts["started"] < cycles and trio.current_time() < deadline:
            number = counts["started"]
            counts["started"] += 1
            try:
                with trio.fail_after(CYCLE_TIMEOUT):
                    await _one_cycle(lab, _source(number), 1 + number % 999)
                counts["done"] += 1
            except Exception as exc:
                counts["failed"] += 1
                errors[_error_kind(exc)] += 1

    async def sample_peers() -> None:
        while True:
            peak_peers[0] = max(peak_peers[0], await metric(lab.target, "autonat_peers_known"))
            await trio.sleep(1.0)

    began = trio.current_time()
    async with measured(lab.target.pid) as gauge:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_peers)
            async with trio.open_nursery() as workers:
                for index in range(concurrency):
                    workers.start_soon(worker, index)
                await trio.sleep(2.0)
                verdict = await honest_probe(lab)
            nursery.cancel_scope.cancel()
        elapsed = trio.current_time() - began
        final_peers = await metric(lab.target, "autonat_peers_known")
    return Result(
        attack=f"6 planner churn: connect/Identify/disconnect, fresh keys, {concurrency} at once",
        tried=f"{counts['done']:,} cycles ({counts['failed']} failed) in {elapsed:.0f} s",
        held=f"peers known: peak {peak_peers[0]:.0f}, end {final_peers:.0f}",
        close="-", honest=verdict, gauge=gauge,
        facts={"done": counts["done"], "failed": counts["failed"],
               "peak_peers": peak_peers[0], "final_peers": final_peers},
        notes=[f"{n} x {kind}" for kind, n in errors.most_common(5)])


# --- 7: config bombs ----------

BOMBS = {
    "nested": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "digits": "[dialer]\ntarget_peers = " + "9" * 5000 + "\n",
}


async def config_bombs() -> Result:
    """Attack 7; see the module docstring."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="autonat-bomb-") as tmp:
        for name, text in BOMBS.items():
            path = Path(tmp) / f"{name}.toml"
            path.write_text(text)
            args = autonat_command("boot", "--config", str(path), "--data-dir", tmp,
                                   "--http", "", "--listen", "/ip4/127.0.0.1/tcp/0/ws")
            began = time.monotonic()
            with trio.fail_after(60):
                done = await trio.run_process(args, capture_stdout=True, capture_stderr=True,
                                              check=False, cwd=ROOT, env=child_env())
            lines = done.stderr.decode().strip().splitlines()
            outcomes.append((name, done.returncode, lines, time.monotonic() - began))
    one_line = sum(1 for _, code, lines, _ in outcomes
                   if code != 0 and len(lines) == 1 and lines[0].startswith("autonat: error:"))
    slowest = max(seconds for *_, seconds in outcomes)
    return Result(
        attack="7 config bombs: TOML nested 5,000 deep, a 5,000-digit int",
        tried=f"{len(outcomes)} files",
        held=f"{one_line}/{len(outcomes)} one-line errors, exit "
        + "/".join(str(code) for _, code, _, _ in outcomes),
        close=f"{slowest:.2f} s to exit", honest=None, gauge=None,
        facts={"one_line": float(one_line), "files": float(len(outcomes))}
        | {f"lines_{name}": len(lines) for name, _, lines, _ in outcomes})
