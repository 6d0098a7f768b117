"""Row 6: ``autonat probe`` as a whole process against py-libp2p's connect + identify.

Ours: wall time of ``autonat probe --peer <boot 1> --peer <boot 2>
--allow-loopback --json`` (process start to exit, NAT verdict included)
against two local boot node processes - two, because a verdict needs two
agreeing servers; against one the probe waits the documented 5 s
small-network wait, which is policy, not cost. Baseline: wall time of
``benchmarks/libp2p_pair.py`` - two py-libp2p hosts on 127.0.0.1 in one
process, connect and identify - run with the interpreter of a virtualenv
that has ``libp2p`` from PyPI (never our .venv).
The ratio is ours / baseline (lower is better).

Run: ``python benchmarks/whole_process.py --libp2p-python VENV/bin/python``
(or without it: a temporary virtualenv is created and removed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, child_env, child_server, raise_nofile

PROCESS_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0


def autonat_command() -> str:
    """The ``autonat`` entry point next to our interpreter."""
    path = Path(sys.executable).parent / "autonat"
    if not path.exists():
        raise RuntimeError(f"{path} missing: install the project (make bench does)")
    return str(path)


@contextlib.contextmanager
def libp2p_venv(base: Path | None = None) -> Iterator[Path]:
    """A virtualenv with ``libp2p`` under ``base`` (or a temp dir); removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="bench-libp2p-", dir=base))
    try:
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "libp2p"],
                       check=True, timeout=INSTALL_TIMEOUT)
        yield python
    finally:
        shutil.rmtree(root, ignore_errors=True)


def timed(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout)[-300:]}")
    return elapsed, done.stdout


def ours_once(addrs: list[str]) -> float:
    peers = [arg for addr in addrs for arg in ("--peer", addr)]
    elapsed, out = timed([autonat_command(), "probe", *peers, "--allow-loopback",
                          "--listen", "/ip4/127.0.0.2/tcp/0/ws", "--json", "--timeout", "30",
                          "--log-level", "error"], env=child_env())
    verdict = json.loads(out)["nat_status"]
    if verdict != "public":
        raise RuntimeError(f"autonat probe said {verdict!r}, expected 'public' on loopback")
    return elapsed


def libp2p_once(python: Path) -> float:
    return timed([str(python), str(HERE / "libp2p_pair.py")])[0]


def measure(python: Path, runs: int) -> list[tuple[float | None, float | None, str]]:
    """Per run: (ours s, py-libp2p s, error text)."""
    results: list[tuple[float | None, float | None, str]] = []
    # two boot nodes: a verdict needs two agreeing servers (confidence 2); with one,
    # the probe would wait out the documented 5 s small-network wait
    with child_server("ours", "--host", "127.0.0.3") as one, \
            child_server("ours", "--host", "127.0.0.4") as two:
        addrs = [str(one.info["addr"]), str(two.info["addr"])]
        for _ in range(runs):
            ours: float | None = None
            base: float | None = None
            error = ""
            try:
                ours = ours_once(addrs)
            except Exception as exc:
                error = f"ours: {exc}"[:200]
            try:
                base = libp2p_once(python)
            except Exception as exc:
                error += f" py-libp2p: {exc}"[:200]
            results.append((ours, base, error.strip()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--libp2p-python", type=Path, default=None,
                        help="interpreter of a virtualenv with libp2p installed")
    args = parser.parse_args()
    raise_nofile()
    with contextlib.ExitStack() as stack:
        python = args.libp2p_python or stack.enter_context(libp2p_venv())
        for ours, base, error in measure(python, args.runs):
            print(json.dumps({"ours_s": ours, "libp2p_s": base, "error": error}))


if __name__ == "__main__":
    main()
