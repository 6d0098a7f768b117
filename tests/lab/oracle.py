"""The NAT lab's UDP oracle: coturn measures every scenario's NAT beside our node.

Theory of operation
-------------------
RFC 5780 behaviour discovery needs a STUN server with two IPs and two ports
(P = primary, O = other): the client learns its mapping by comparing the
address the server saw from P with the ones it saw from (O.ip, P.port) and O,
and its filtering by asking P to answer from O (``CHANGE-REQUEST`` change IP
and port), then from (P.ip, O.port) (change port), and watching which answers
the NAT lets in. An answer means the NAT let that sender through.

Our node implements both sides (:mod:`protocols.stun`). To check them against
an independent implementation, coturn (Debian package ``coturn``) runs in the
lab:

* ``turnserver`` in a namespace of its own on the internet segment, with the
  two addresses ``COTURN_IP`` and ``COTURN_ALT_IP`` (RFC 5780 is on as soon as
  it listens on two IPs of one family), STUN only, no TLS/DTLS/TCP, its
  database, pid file and log in the lab's directory;
* ``turnutils_natdiscovery -m -f -L <host IP>`` in the namespace of the host
  under test, once against coturn's server and once against our first boot
  node's STUN server (UDP 3478 and its ``--stun-alternate``);
* our discovery client (:func:`actors.transport.discover_udp_profile` with
  the node's default retransmission settings) in the same namespace against
  coturn's server, through a tiny script (``python -c``).

The three run concurrently: each uses its own sockets (distinct ephemeral
ports), and every lab NAT keeps its UDP state per socket, so they cannot
disturb one another. The fourth combination, our discovery against our
server, is what every probe of the scenario reports as ``udp``.

:func:`parse_natdiscovery` turns coturn's text into our vocabulary
(:class:`protocols.stun.NatBehaviour` values): its mapping section says
``No NAT!`` (``none``) when the server saw the local address itself, else
``NAT with <Endpoint Independent | Address Dependent | Address and Port
Dependent> Mapping!``; its filtering section the same with ``Filtering``.
A section without such a line (``STUN receive timeout``: the server never
answered Test I) is ``unknown``. coturn gives up a lost test after about
3 s, so its filtering run behind a filtering NAT takes about 6 s.

:meth:`OracleResult.problems` lists every disagreement: coturn's client
must classify the NAT the same way against both servers, our client must
agree with coturn's against coturn's server, and all of them must equal the
scenario's expected UDP profile.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

from .netlab import Lab, LabCancelled, LabError, LabProcess, Namespace
from .topologies import COTURN_ALT_IP, COTURN_IP, Expectation, Internet, Topology

STUN_PORT = 3478
"""Where coturn and our boot nodes serve STUN (alternate port: + 1 on both)."""
NATDISCOVERY_TIMEOUT = 60.0
"""One ``turnutils_natdiscovery -m -f`` run at most (about 6 s behind a filtering NAT)."""
OUR_DISCOVERY_TIMEOUT = 60.0
"""One run of our discovery script at most (the node's own bound is 20 s)."""
COTURN_START_TIMEOUT = 15.0

UNKNOWN = "unknown"
_MAPPINGS = {
    "NAT with Endpoint Independent Mapping!": "endpoint-independent",
    "NAT with Address Dependent Mapping!": "address-dependent",
    "NAT with Address and Port Dependent Mapping!": "address-and-port-dependent",
}
_FILTERINGS = {
    "NAT with Endpoint Independent Filtering!": "endpoint-independent",
    "NAT with Address Dependent Filtering!": "address-dependent",
    "NAT with Address and Port Dependent Filtering!": "address-and-port-dependent",
}
_NO_NAT = "No NAT! (Endpoint Independent Mapping)"
_FILTERING_HEADER = "-= Filtering Behavior Discovery =-"


@dataclass(frozen=True)
class UdpAnswer:
    """One client's classification of the NAT (our vocabulary), ``error`` if it failed."""

    mapping: str = UNKNOWN
    filtering: str = UNKNOWN
    error: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {"mapping": self.mapping, "filtering": self.filtering}

    def describe(self) -> str:
        text = f"{self.mapping}, filtering {self.filtering}"
        return text if self.error is None else f"{text} ({self.error})"


def parse_natdiscovery(output: str) -> UdpAnswer:
    """``turnutils_natdiscovery -m -f`` output as an answer (see the module docstring)."""
    mapping_part, _, filtering_part = output.partition(_FILTERING_HEADER)
    lines = {line.strip() for line in mapping_part.splitlines()}
    mapping = "none" if _NO_NAT in lines else _last_match(mapping_part, _MAPPINGS)
    return UdpAnswer(mapping, _last_match(filtering_part, _FILTERINGS))


def _last_match(text: str, table: dict[str, str]) -> str:
    found = [table[line.strip()] for line in text.splitlines() if line.strip() in table]
    return found[-1] if found else UNKNOWN


def coturn_missing() -> str | None:
    """Why the oracle cannot run here (``None`` when it can)."""
    missing = [tool for tool in ("turnserver", "turnutils_natdiscovery")
               if shutil.which(tool) is None]
    return f"the UDP oracle needs coturn ({', '.join(missing)}: Debian package coturn)" \
        if missing else None


# --- coturn's server ---------------------------------------------------------------------


def start_coturn(lab: Lab, internet: Internet) -> LabProcess:
    """coturn's ``turnserver`` (STUN only, RFC 5780) in namespace ``coturn``; returns once
    it listens on all four UDP addresses."""
    ns = lab.namespace("coturn")
    internet.attach(ns, "eth0", COTURN_IP, COTURN_ALT_IP)
    tmp = lab.tmp
    argv = ["turnserver", "-n", "--stun-only", f"--listening-ip={COTURN_IP}",
            f"--listening-ip={COTURN_ALT_IP}", f"--listening-port={STUN_PORT}",
            f"--alt-listening-port={STUN_PORT + 1}", "--no-tcp", "--no-tls", "--no-dtls",
            "--no-cli", f"--db={tmp / 'coturn-turndb'}", f"--pidfile={tmp / 'coturn.pid'}",
            f"--log-file={tmp / 'coturn.log'}", "--simple-log"]
    proc = ns.spawn("coturn", argv)
    wanted = {f"{ip}:{port}" for ip in (COTURN_IP, COTURN_ALT_IP)
              for port in (STUN_PORT, STUN_PORT + 1)}

    def listening() -> bool:
        if not proc.running():
            raise LabError(f"turnserver exited with {proc.popen.returncode}\n{proc.tail()}")
        return wanted <= _udp_listeners(ns)

    lab.wait_until(listening, timeout=COTURN_START_TIMEOUT, interval=0.2,
                   what="turnserver to listen")
    return proc


def _udp_listeners(ns: Namespace) -> set[str]:
    """``ip:port`` of every bound UDP socket in ``ns`` (``ss``, from iproute2)."""
    out = ns.run("ss", "-H", "-n", "-u", "-l", check=False).stdout
    return {fields[3] for fields in (line.split() for line in out.splitlines())
            if len(fields) >= 4}


# --- the clients -------------------------------------------------------------------------

_OUR_DISCOVERY = r"""
import json, sys
import trio
from actors.transport import discover_udp_profile
from protocols.stun import Endpoint, UdpDiscoveryConfig

config = UdpDiscoveryConfig()

async def main():
    return await discover_udp_profile(
        Endpoint.of(sys.argv[1], int(sys.argv[2])), local_ip=sys.argv[3],
        retransmission=config.retransmission(), timeout=config.udp_discovery_timeout)

profile = trio.run(main)
print(json.dumps({"mapping": profile.mapping.value, "filtering": profile.filtering.value}))
"""


def spawn_natdiscovery(ns: Namespace, local_ip: str, server_ip: str, *,
                       label: str) -> LabProcess:
    return ns.spawn(label, ["turnutils_natdiscovery", "-m", "-f", "-L", local_ip,
                            "-p", str(STUN_PORT), server_ip])


def spawn_our_discovery(ns: Namespace, local_ip: str, server_ip: str, *,
                        label: str) -> LabProcess:
    return ns.spawn(label, [sys.executable, "-c", _OUR_DISCOVERY, server_ip, str(STUN_PORT),
                            local_ip])


def _finish(proc: LabProcess, timeout: float) -> str | None:
    """Wait for ``proc`` (bounded); the reason it failed, or ``None``."""
    try:
        code = proc.wait(timeout)
    except LabCancelled:
        proc.stop(grace=2.0)
        raise
    except LabError as exc:
        proc.stop(grace=2.0)
        return str(exc)
    return None if code == 0 else f"exit {code}"


def natdiscovery_answer(proc: LabProcess) -> UdpAnswer:
    error = _finish(proc, NATDISCOVERY_TIMEOUT)
    answer = parse_natdiscovery(proc.stdout() + proc.stderr())
    return answer if error is None else UdpAnswer(answer.mapping, answer.filtering, error)


def our_discovery_answer(proc: LabProcess) -> UdpAnswer:
    error = _finish(proc, OUR_DISCOVERY_TIMEOUT)
    try:
        doc: Any = json.loads(proc.stdout().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return UdpAnswer(error=error or "no JSON")
    if not isinstance(doc, dict):
        return UdpAnswer(error=error or "no JSON object")
    return UdpAnswer(str(doc.get("mapping")), str(doc.get("filtering")), error)


# --- one oracle run ----------------------------------------------------------------------


@dataclass(frozen=True)
class OracleResult:
    """The three measurements of one scenario (see the module docstring)."""

    coturn_vs_coturn: UdpAnswer
    """coturn's client against coturn's server."""
    coturn_vs_ours: UdpAnswer
    """coturn's client against our boot node's STUN server."""
    ours_vs_coturn: UdpAnswer
    """Our discovery client against coturn's server."""
    wall_s: float = 0.0

    def problems(self, expect: Expectation) -> list[str]:
        """Every disagreement among the clients and with the expected UDP profile."""
        problems = []
        if self.coturn_vs_ours.as_dict() != self.coturn_vs_coturn.as_dict():
            problems.append(f"coturn's client: {self.coturn_vs_ours.describe()} against our "
                            f"server, {self.coturn_vs_coturn.describe()} against coturn's")
        if self.ours_vs_coturn.as_dict() != self.coturn_vs_coturn.as_dict():
            problems.append(f"against coturn's server: ours {self.ours_vs_coturn.describe()}, "
                            f"coturn's {self.coturn_vs_coturn.describe()}")
        for name, answer in (("coturn vs coturn", self.coturn_vs_coturn),
                             ("coturn vs ours", self.coturn_vs_ours),
                             ("ours vs coturn", self.ours_vs_coturn)):
            problems += expect.udp_problems(answer.as_dict(), source=name)
            if answer.error is not None:
                problems.append(f"{name}: {answer.error}")
        return problems


def run_oracle(lab: Lab, topo: Topology, boot_ip: str) -> OracleResult:
    """Start coturn, then measure the host's NAT three ways at once (module docstring).

    ``boot_ip``: the boot node whose STUN server (UDP 3478, with its alternate) coturn's
    client is pointed at."""
    started = time.monotonic()
    start_coturn(lab, topo.internet)
    topo.forget_udp_mappings()
    host, local = topo.host, topo.host_ip
    procs = (spawn_natdiscovery(host, local, COTURN_IP, label="natdiscovery-coturn"),
             spawn_natdiscovery(host, local, boot_ip, label="natdiscovery-ours"),
             spawn_our_discovery(host, local, COTURN_IP, label="discovery-coturn"))
    return OracleResult(natdiscovery_answer(procs[0]), natdiscovery_answer(procs[1]),
                        our_discovery_answer(procs[2]), time.monotonic() - started)
