"""``autonat connect TARGET``: reach one peer and say by which path.

Theory of operation
-------------------
The command runs a temporary node (like ``probe``), which bootstraps from
``--boot-url`` / ``--peer`` as usual, and then connects to TARGET:

* a **WebSocket multiaddr** ``.../p2p/<id>``: a direct dial; path ``direct``;
* a **circuit address** ``.../p2p/RELAY/p2p-circuit/p2p/<id>``: a relayed
  connection through that relay; the peer (it accepted it) starts a hole
  punch at once, so the command then waits for the exchange's outcome
  (:meth:`~actors.node.HolePunchService.next_report`): path ``hole-punched``
  when a direct connection replaced the relayed one, else ``relayed`` with
  the reason (skipped: an endpoint-dependent mapping, no address; failed:
  the attempts and the last error);
* a **peer id**: its addresses from what the node learned (the boot list,
  peer exchange) are tried directly first; if none works, a circuit through
  each connected relay in turn (a relay without a reservation for the peer
  refuses, and the next is asked).

Before a relayed dial the node waits up to :data:`OBSERVE_GRACE` seconds for
a peer to tell it its public address (Identify's observed address): that is
what our side of the hole punch announces, and without it the exchange is
skipped. ``elapsed_s`` runs from the start of the connect (after the
bootstrap), ``time_to_direct_s`` from the relayed connection to the direct
one, ``rtt_ms`` is the round trip over the relayed connection (the
handshake's, or the initiator's measured one when it is larger).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import trio

from protocols import PeerId, ProtocolError, WsAddress
from protocols.holepunch import PunchOutcome
from protocols.relay import HOP_PROTOCOL_ID, CircuitAddress

from ..node import ConnectError, HolePunchReport, Node

OBSERVE_GRACE: Final = 5.0
"""How long a relayed connect waits for our first observed address."""


class TargetError(ValueError):
    """TARGET is neither a multiaddr nor a peer id."""


def parse_target(text: str) -> CircuitAddress | WsAddress | PeerId:
    """TARGET as a circuit address, a WebSocket multiaddr with ``/p2p/``, or a peer id."""
    try:
        if text.startswith("/"):
            if CircuitAddress.is_circuit(text):
                return CircuitAddress.parse(text)
            addr = WsAddress.parse(text)
            if addr.peer_id is None:
                raise TargetError(f"{text}: the multiaddr lacks /p2p/<peer id>")
            return addr
        return PeerId.from_string(text)
    except (ProtocolError, ValueError) as exc:
        if isinstance(exc, TargetError):
            raise
        raise TargetError(f"{text}: not a multiaddr or peer id ({exc})") from exc


def _result(target: str, peer: PeerId, path: str | None, started: float, *,
            attempts: int = 0, reason: str | None = None, rtt: float | None = None,
            report: HolePunchReport | None = None, via: str | None = None) -> dict[str, Any]:
    return {
        "target": target,
        "peer_id": str(peer),
        "path": path,
        "attempts": attempts,
        "elapsed_s": round(time.monotonic() - started, 3),
        "time_to_direct_s": (round(report.elapsed, 3) if report is not None
                             and report.outcome is PunchOutcome.DIRECT else None),
        "rtt_ms": None if rtt is None else round(rtt * 1000, 2),
        "hole_punch": None if report is None else report.outcome.value,
        "reason": reason,
        "relay": via,
    }


async def connect_to(node: Node, target_text: str, timeout: float) -> dict[str, Any]:
    """Connect to TARGET (see the module docstring); the result document. Bounded by
    ``timeout`` seconds, plus at most one relayed dial's own timeout."""
    started = time.monotonic()
    deadline = trio.current_time() + timeout
    target = parse_target(target_text)
    peer = target.target if isinstance(target, CircuitAddress) else (
        target.peer_id if isinstance(target, WsAddress) else target)
    assert peer is not None
    errors: list[str] = []
    if isinstance(target, WsAddress | PeerId):
        with trio.move_on_at(deadline):
            for addr in _direct_addrs(node, target):
                try:
                    await node.connect(addr, timeout=max(0.1, timeout / 2))
                except ConnectError as exc:
                    errors.append(str(exc))
                    continue
                return _result(target_text, peer, "direct", started)
    circuits = ([target] if isinstance(target, CircuitAddress)
                else list(_circuits_via_relays(node, peer)))
    for circuit in circuits:
        if trio.current_time() >= deadline:
            break
        if node.snapshot().connections_to(peer):  # learned and dialed meanwhile
            return _result(target_text, peer, "direct", started)
        try:
            await node.connect(circuit.relay, timeout=max(0.1, deadline - trio.current_time()))
            with trio.move_on_at(min(deadline, trio.current_time() + OBSERVE_GRACE)):
                await node.wait_for(lambda s: bool(s.observed_addrs))
            return await _relayed(node, target_text, circuit, started, deadline)
        except ConnectError as exc:
            errors.append(str(exc))
    if not circuits and not errors:
        errors.append("no address known for that peer and no relay connected")
    if trio.current_time() >= deadline:
        errors.append(f"timed out after {timeout:g} s")
    return _result(target_text, peer, None, started, reason="; ".join(errors))


def _direct_addrs(node: Node, target: WsAddress | PeerId) -> Iterator[WsAddress]:
    if isinstance(target, WsAddress):
        yield target
        return
    record = node.snapshot().peer(target)
    if record is not None:
        yield from record.addrs


def _circuits_via_relays(node: Node, peer: PeerId) -> Iterator[CircuitAddress]:
    snapshot = node.snapshot()
    for info in snapshot.connections:
        record = snapshot.peer(info.peer_id)
        if record is None or HOP_PROTOCOL_ID not in record.protocols:
            continue
        relay_addr = next((a for a in record.addrs), None)
        if relay_addr is not None and info.peer_id != peer:
            yield CircuitAddress(relay_addr, peer)


async def _relayed(node: Node, target_text: str, circuit: CircuitAddress, started: float,
                   deadline: float) -> dict[str, Any]:
    """Through ``circuit`` (the dial bounded by the relay client's own timeouts), then
    wait for the hole punch's outcome until ``deadline`` or the exchange's longest run."""
    service = node.hole_punch
    assert service is not None
    peer = circuit.target
    previous = service.report_for(peer)
    report: HolePunchReport | None = None
    async with node.dial_relayed(circuit) as relayed:
        rtt: float | None = relayed.path_stats().srtt
        with trio.move_on_at(min(deadline, trio.current_time() + service.exchange_bound())):
            report = await service.next_report(peer, previous)
    via = str(circuit.relay_peer)
    if report is None:
        return _result(target_text, peer, "relayed", started, rtt=rtt, via=via,
                       reason="no hole-punch outcome in time (the peer may not punch)")
    if report.rtt is not None:
        rtt = report.rtt if rtt is None else max(rtt, report.rtt)
    if report.outcome is PunchOutcome.DIRECT:
        return _result(target_text, peer, "hole-punched", started, attempts=report.attempts,
                       rtt=rtt, report=report, via=via)
    return _result(target_text, peer, "relayed", started, attempts=report.attempts,
                   reason=f"hole punch {report.outcome.value}: {report.reason}", rtt=rtt,
                   report=report, via=via)


def print_connect(result: dict[str, Any]) -> None:
    print(f"peer         {result['peer_id']}")
    print(f"path         {result['path'] or 'none (not connected)'}")
    if result["relay"]:
        print(f"relay        {result['relay']}")
    print(f"attempts     {result['attempts']}")
    if result["rtt_ms"] is not None:
        print(f"rtt          {result['rtt_ms']} ms over the relay")
    if result["time_to_direct_s"] is not None:
        print(f"to direct    {result['time_to_direct_s']} s after the relayed connection")
    if result["reason"]:
        print(f"reason       {result['reason']}")
    print(f"elapsed      {result['elapsed_s']} s")
