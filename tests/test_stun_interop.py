"""STUN interoperability with coturn on loopback: coturn's RFC 5780 client
(``turnutils_natdiscovery``) against our server, and our discovery against coturn's
``turnserver``. Skipped where coturn (Debian package ``coturn``) is not installed."""

from __future__ import annotations

import shutil
import socket as stdsocket
import subprocess

import pytest
import trio

from actors.transport import discover_udp_profile, open_stun_server
from protocols.stun import Endpoint, NatBehaviour, Retransmission

GUARD = 60
FAST = Retransmission(rto=0.2, rc=3, rm=4)


@pytest.mark.skipif(shutil.which("turnutils_natdiscovery") is None,
                    reason="coturn's turnutils_natdiscovery is not installed")
async def test_coturn_client_classifies_loopback_through_our_server() -> None:
    with trio.fail_after(GUARD):
        async with open_stun_server(Endpoint.of("127.0.0.1", 0),
                                    Endpoint.of("127.0.0.2", 0)) as server:
            result = await trio.run_process(
                ["turnutils_natdiscovery", "-m", "-f", "-p",
                 str(server.addresses.primary.port), "127.0.0.1"],
                capture_stdout=True, capture_stderr=True, check=False)
            stats = server.statistics().responder
    output = (result.stdout + result.stderr).decode(errors="replace")
    # Bound to 0.0.0.0, coturn's client cannot tell "no NAT" from an
    # endpoint-independent one: on loopback both answers are the open ones.
    assert "Endpoint Independent Mapping" in output, output
    assert "Endpoint Independent Filtering" in output, output
    assert stats.changed >= 1 and stats.errors == 0


def _free_udp_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 and 127.0.0.2 (checked, then released)."""
    for _ in range(20):
        with stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        socks = []
        try:
            for host in ("127.0.0.1", "127.0.0.2"):
                for p in (port, port + 1):
                    s = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
                    socks.append(s)
                    s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free UDP port pair on loopback")


@pytest.mark.skipif(shutil.which("turnserver") is None,
                    reason="coturn's turnserver is not installed")
async def test_our_discovery_against_coturns_server() -> None:
    port = _free_udp_port_pair()
    command = ["turnserver", "-n", "--listening-ip=127.0.0.1", "--listening-ip=127.0.0.2",
               f"--listening-port={port}", f"--alt-listening-port={port + 1}", "--no-tcp",
               "--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout", "--simple-log"]
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(lambda task_status=trio.TASK_STATUS_IGNORED:
                                          trio.run_process(command, check=False,
                                                           stdout=subprocess.DEVNULL,
                                                           stderr=subprocess.DEVNULL,
                                                           task_status=task_status))
            profile = None
            for _ in range(50):  # until turnserver listens (bounded; each try is a full run)
                profile = await discover_udp_profile(Endpoint.of("127.0.0.1", port),
                                                     local_ip="127.0.0.1", retransmission=FAST,
                                                     timeout=5.0)
                if profile.mapped is not None or process.returncode is not None:
                    break
            nursery.cancel_scope.cancel()
    assert profile is not None
    assert profile.mapping is NatBehaviour.NONE
    assert profile.filtering is NatBehaviour.ENDPOINT_INDEPENDENT
