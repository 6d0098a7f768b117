"""Hole punching on the simulated internet (actors.transport._sim_punch): TCP simultaneous
open through NAT boxes, for every pair of mapping x filtering behaviours, against the
definitions (protocols.sim.syn_passes) - raw transports, no node, in virtual time."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from actors import DialError, FrameStream, SimNetwork
from protocols import WsAddress
from protocols.sim import (
    NAT_TYPES,
    Filtering,
    Mapping,
    NatBehaviour,
    Unsolicited,
    expected_punch,
    syn_passes,
)

SERVER, PORT = "10.0.0.1", 44000
A, A_WAN, B, B_WAN = "172.16.0.2", "10.16.0.1", "172.16.0.3", "10.16.1.1"
A_PUBLIC, B_PUBLIC = "10.16.2.1", "10.16.3.1"
PUNCH_TIMEOUT = 5.0  # the node's default punch_timeout

BEHAVIOURS: dict[str, NatBehaviour | None] = {"public": None}
for _m, _f in itertools.product(Mapping, [f for f in Filtering if f is not Filtering.CLOSED]):
    BEHAVIOURS[f"{_m.name}/{_f.name}"] = NatBehaviour(_m, _f)
BEHAVIOURS["firewall/drop"] = NatBehaviour(filtering=Filtering.CLOSED, translates=False)
BEHAVIOURS["firewall/reject"] = NatBehaviour(filtering=Filtering.CLOSED, translates=False,
                                             unsolicited=Unsolicited.REJECT)


def _addr(host: str, port: int = PORT) -> WsAddress:
    return WsAddress.parse(f"/ip4/{host}/tcp/{port}/ws")


class _Side:
    """One host: listens on PORT, records what its listener accepted."""

    def __init__(self, net: SimNetwork, ip: str, behaviour: NatBehaviour | None,
                 public: str) -> None:
        translates = behaviour is not None and behaviour.translates
        self.ip = ip if translates else public
        net.add_host(self.ip, behaviour=behaviour, public_ip=public, latency=0.02)
        self.transport = net.transport(self.ip)
        self.accepted: list[FrameStream] = []
        self.announced: WsAddress | None = None

    async def handler(self, stream: FrameStream) -> None:
        self.accepted.append(stream)
        await trio.sleep_forever()


async def _punch(side: _Side, target: WsAddress, as_client: bool,
                 got: list[tuple[bool, FrameStream]]) -> None:
    with trio.move_on_after(PUNCH_TIMEOUT):
        try:
            async with side.transport.punch(target, as_client=as_client) as stream:
                got.append((as_client, stream))
                await trio.sleep_forever()
        except DialError:
            pass


async def _run_pair(a_behaviour: NatBehaviour | None, b_behaviour: NatBehaviour | None,
                    b_late: float = 0.0) -> tuple[_Side, _Side, list[tuple[bool, FrameStream]]]:
    """Both sides learn their public endpoint from a server, then punch each other (B
    ``b_late`` seconds after A); the punches that connected."""
    net = SimNetwork(seed=3)
    net.add_host(SERVER, latency=0.02)
    a = _Side(net, A, a_behaviour, A_PUBLIC if a_behaviour is None else A_WAN)
    b = _Side(net, B, b_behaviour, B_PUBLIC if b_behaviour is None else B_WAN)
    seen: list[WsAddress] = []

    async def server(stream: FrameStream) -> None:
        seen.append(stream.remote_addr)

    got: list[tuple[bool, FrameStream]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(net.transport(SERVER).listen, _addr(SERVER), server)
        for side in (a, b):
            await nursery.start(side.transport.listen, _addr(side.ip), side.handler)
            async with side.transport.dial(_addr(SERVER)):
                await trio.sleep(0.1)
            side.announced = seen[-1]
        assert a.announced is not None and b.announced is not None
        nursery.start_soon(_punch, a, b.announced, True, got)
        await trio.sleep(b_late)
        nursery.start_soon(_punch, b, a.announced, False, got)
        await trio.sleep(PUNCH_TIMEOUT + 1.0)
        nursery.cancel_scope.cancel()
    return a, b, got


def _connected(a: _Side, b: _Side, got: list[tuple[bool, FrameStream]]) -> bool:
    return bool(got or a.accepted or b.accepted)


@pytest.mark.parametrize("b_name", list(BEHAVIOURS))
@pytest.mark.parametrize("a_name", list(BEHAVIOURS))
async def test_a_punch_connects_exactly_when_the_definitions_say(
        a_name: str, b_name: str, autojump_clock: trio.testing.MockClock) -> None:
    a_behaviour, b_behaviour = BEHAVIOURS[a_name], BEHAVIOURS[b_name]
    a, b, got = await _run_pair(a_behaviour, b_behaviour)
    expected = syn_passes(a_behaviour, b_behaviour) or syn_passes(b_behaviour, a_behaviour)
    assert _connected(a, b, got) is expected


async def test_two_port_restricted_nats_meet_in_one_simultaneous_open(
        autojump_clock: trio.testing.MockClock) -> None:
    restricted = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT)
    a, b, got = await _run_pair(restricted, restricted)
    assert not a.accepted and not b.accepted  # no listener took a SYN
    assert sorted(role for role, _ in got) == [False, True]
    for as_client, stream in got:  # each end in the role its punch asked for
        assert getattr(stream, "is_client", None) is as_client
        assert stream.remote_addr.host == (B_WAN if as_client else A_WAN)  # A asked client


async def test_a_syn_dropped_before_the_peer_punched_passes_when_retransmitted(
        autojump_clock: trio.testing.MockClock) -> None:
    """B punches 2.5 s after A: A's first SYNs die at B's port-restricted box, the one
    retransmitted after B's SYN left passes (a simultaneous open or B's listener)."""
    restricted = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT)
    firewall = BEHAVIOURS["firewall/drop"]
    a, b, got = await _run_pair(firewall, restricted, b_late=2.5)
    assert _connected(a, b, got)
    assert b.accepted or got  # only A's SYN can pass: B's dies at A's closed firewall


async def test_a_symmetric_nat_gives_the_punch_a_port_the_peer_never_aims_at(
        autojump_clock: trio.testing.MockClock) -> None:
    restricted = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT)
    symmetric = NatBehaviour(Mapping.ADDRESS_AND_PORT_DEPENDENT,
                             Filtering.ADDRESS_AND_PORT_DEPENDENT, port_preservation=False)
    a, b, got = await _run_pair(symmetric, restricted)
    assert not _connected(a, b, got)


def test_the_expected_matrix_follows_the_definitions() -> None:
    private = [t.name for t in NAT_TYPES if t.truth.nat_status == "private"]
    matrix = {(x, y): expected_punch(x, y) for x in private for y in private}
    for (x, y), path in matrix.items():
        assert path == matrix[(y, x)]  # symmetric in its two sides
        if "symmetric" in (x, y) or (x.startswith("firewall") and y.startswith("firewall")):
            assert path == "relayed"
        else:
            assert path == "direct"


@pytest.mark.parametrize(("source", "target", "passes"), [
    ("ENDPOINT_INDEPENDENT/ADDRESS_AND_PORT_DEPENDENT",
     "ENDPOINT_INDEPENDENT/ADDRESS_AND_PORT_DEPENDENT", True),   # masquerade x masquerade
    ("ADDRESS_AND_PORT_DEPENDENT/ADDRESS_AND_PORT_DEPENDENT",
     "ENDPOINT_INDEPENDENT/ADDRESS_AND_PORT_DEPENDENT", False),  # a port nobody was told
    ("ADDRESS_AND_PORT_DEPENDENT/ADDRESS_AND_PORT_DEPENDENT",
     "ENDPOINT_INDEPENDENT/ADDRESS_DEPENDENT", True),            # any port of a contacted IP
    ("ENDPOINT_INDEPENDENT/ENDPOINT_INDEPENDENT",
     "ADDRESS_DEPENDENT/ADDRESS_DEPENDENT", False),  # its SYN left from another binding
    ("ADDRESS_AND_PORT_DEPENDENT/ADDRESS_AND_PORT_DEPENDENT",
     "ADDRESS_AND_PORT_DEPENDENT/ENDPOINT_INDEPENDENT", True),   # open filter: anyone
    ("public", "firewall/drop", False),
    ("firewall/reject", "public", True),
])
def test_syn_passes_by_hand(source: str, target: str, passes: bool) -> None:
    """A few cells of the definition worked out by hand (module docstring of
    protocols/sim/_punch_matrix.py), so the table above is not only self-consistent."""
    assert syn_passes(BEHAVIOURS[source], BEHAVIOURS[target]) is passes
