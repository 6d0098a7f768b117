"""``autonat probe`` and ``autonat status`` without ``--json`` end with what the profile means
(the real commands, subprocesses on loopback ``127.0.96.x``; the sentences themselves are
tested in ``tests/test_explain.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from test_cli_node import _boot_cluster, _run

HEADER = "what this means"


def _explanation(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    assert HEADER in lines, stdout
    at = lines.index(HEADER)
    assert lines[at - 1] == "", stdout  # a blank line before it
    tail = lines[at + 1:]
    assert tail and all(line.startswith("  ") for line in tail), stdout
    return tail


async def test_plain_probe_ends_with_the_explanation_and_json_has_none(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with _boot_cluster("96", count=2) as (boots, url):
            urls = [url]
            for boot in boots[1:]:
                urls += ["--peer", str(boot.listen_addrs[0])]
            common = ("--boot-url", *urls, "--allow-loopback", "--timeout", "20")
            plain = await _run(tmp_path, "probe", *common, "--listen", "/ip4/127.0.96.9/tcp/0/ws")
            as_json = await _run(tmp_path, "probe", *common,
                                 "--listen", "/ip4/127.0.96.10/tcp/0/ws", "--json")
            status = await _run(tmp_path, "status", "--http", url.split("/")[2])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("nat status   public\n"), plain.stdout
    tail = _explanation(plain.stdout)
    text = " ".join(line.strip() for line in tail)
    assert "You are reachable at /ip4/127.0.96.9/tcp/" in text
    assert ": other nodes can dial you directly." in text
    assert tail[-1] == "  Nothing to forward on your router."
    # --json is unchanged: one object, no explanation
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["nat_status"] == "public"
    assert HEADER not in as_json.stdout
    # autonat status (plain) of the boot node ends with an explanation too
    assert status.returncode == 0, status.stderr
    status_tail = _explanation(status.stdout)
    assert status_tail[0].startswith(("  You are reachable", "  Whether you are reachable",
                                      "  You are not reachable"))
