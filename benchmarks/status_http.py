"""Row 4: ``GET /status`` requests per second with ``wrk``, ours against nginx.

A boot node serves ``/status`` on 127.0.0.1; its body is fetched once and
written to a static file that nginx (one worker process, like our single
process) serves at the same path on another loopback port. ``wrk`` loads
each for a few seconds with 1 and with 50 connections (one thread).

Run: ``python benchmarks/status_http.py --seconds 5``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_server, free_port, raise_nofile, stop

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /status {{ default_type application/json; }}
    }}
}}
"""


def need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists()
                                  else None)
    if path is None:
        raise RuntimeError(f"{tool} not installed (make bench installs it as root)")
    return path


def fetch(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_http(url: str, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fetch(url, timeout=2.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wrk(url: str, connections: int, seconds: float) -> float:
    """Requests/s that wrk reports (one thread, ``connections`` connections)."""
    cmd = [need("wrk"), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "5s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no Requests/sec in wrk output: {out[-300:]}")
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw non-2xx answers")
    return float(match.group(1))


@contextlib.contextmanager
def nginx_serving(body: bytes) -> Iterator[str]:
    """nginx on 127.0.0.1:<free port> serving ``body`` at /status; yields the URL."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    try:
        (tmp / "www").mkdir()
        (tmp / "www" / "status").write_bytes(body)
        for path in (tmp, tmp / "www"):
            path.chmod(0o755)  # nginx workers may run as another user
        (tmp / "www" / "status").chmod(0o644)
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
        proc = subprocess.Popen([need("nginx"), "-c", str(conf), "-p", str(tmp)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}/status"
            if wait_http(url) != body:
                raise RuntimeError("nginx serves another body")
            yield url
        finally:
            stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(connections: tuple[int, ...] = (1, 50),
            seconds: float = 5.0) -> dict[int, tuple[float, float]]:
    """``{connections: (ours req/s, nginx req/s)}``."""
    results: dict[int, tuple[float, float]] = {}
    with child_server("ours", "--http") as server:
        ours_url = f"http://127.0.0.1:{server.info['http_port']}/status"
        body = wait_http(ours_url)
        with nginx_serving(body) as nginx_url:
            for c in connections:
                results[c] = (wrk(ours_url, c, seconds), wrk(nginx_url, c, seconds))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    raise_nofile()
    for c, (ours, nginx) in measure(seconds=args.seconds).items():
        print(json.dumps({"connections": c, "ours_per_s": ours, "nginx_per_s": nginx,
                          "ratio": ours / nginx}))


if __name__ == "__main__":
    main()
