"""The simulated internet (actors.transport.SimNetwork): NAT boxes on real dials, latency,
loss - raw transport dials, no node, in virtual time."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

from actors import DialError, FrameStream, MemoryTransport, SimNetwork, TransportBroken
from protocols import WsAddress
from protocols.sim import Filtering, Mapping, NatBehaviour, Unsolicited

SERVER, OTHER, HOST, WAN = "10.0.0.1", "10.0.0.2", "172.16.0.2", "10.16.0.1"


def _addr(host: str, port: int = 44000) -> WsAddress:
    return WsAddress.parse(f"/ip4/{host}/tcp/{port}/ws")


async def _echo_listener(net: SimNetwork, host: str, nursery: trio.Nursery,
                         seen: list[WsAddress]) -> None:
    async def handler(stream: FrameStream) -> None:
        seen.append(stream.remote_addr)
        with contextlib.suppress(TransportBroken):
            await stream.send(await stream.receive())

    _transport(net, host)
    await nursery.start(_TRANSPORTS[host].listen, _addr(host), handler)


_TRANSPORTS: dict[str, MemoryTransport] = {}


def _transport(net: SimNetwork, host: str) -> MemoryTransport:
    """One transport per host and network: dials reuse its listen port, as a node's do."""
    if host not in _TRANSPORTS or _TRANSPORTS[host]._network is not net:
        _TRANSPORTS[host] = net.transport(host)
    return _TRANSPORTS[host]


async def _roundtrip(net: SimNetwork, source: str, target: WsAddress) -> float:
    start = trio.current_time()
    async with _transport(net, source).dial(target, reuse_listen_port=True) as stream:
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"
    return trio.current_time() - start


async def test_a_natted_dial_is_seen_from_the_public_address(
        autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    net.add_host(SERVER)
    net.add_host(HOST, behaviour=NatBehaviour(), public_ip=WAN)
    seen: list[WsAddress] = []
    async with trio.open_nursery() as nursery:
        await _echo_listener(net, SERVER, nursery, seen)
        await _echo_listener(net, HOST, nursery, [])
        await _roundtrip(net, HOST, _addr(SERVER))
        assert (seen[0].host, seen[0].port) == (WAN, 44000)  # port preserved
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("filtering", "from_server", "from_other"), [
    (Filtering.ENDPOINT_INDEPENDENT, "ok", "ok"),
    (Filtering.ADDRESS_DEPENDENT, "ok", "timeout"),
    (Filtering.ADDRESS_AND_PORT_DEPENDENT, "timeout", "timeout"),
])
async def test_inbound_dials_meet_the_filter(autojump_clock: trio.testing.MockClock,
                                             filtering: Filtering, from_server: str,
                                             from_other: str) -> None:
    net = SimNetwork()
    for host in (SERVER, OTHER):
        net.add_host(host)
    net.add_host(HOST, behaviour=NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, filtering),
                 public_ip=WAN)
    reached: list[WsAddress] = []
    async with trio.open_nursery() as nursery:
        await _echo_listener(net, SERVER, nursery, [])
        await _echo_listener(net, HOST, nursery, reached)
        await _roundtrip(net, HOST, _addr(SERVER))  # opens the mapping
        got = []
        for source in (SERVER, OTHER):  # from a fresh port, like a dial-back
            with trio.move_on_after(5) as scope:
                async with net.transport(source).dial(_addr(WAN)):
                    pass
            got.append("timeout" if scope.cancelled_caught else "ok")
        assert got == [from_server, from_other]
        assert len(reached) == got.count("ok")
        nursery.cancel_scope.cancel()


async def test_a_rejecting_box_refuses_at_once(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    net.add_host(SERVER)
    net.add_host("10.2.0.1", behaviour=NatBehaviour(
        filtering=Filtering.CLOSED, unsolicited=Unsolicited.REJECT, translates=False))
    async with trio.open_nursery() as nursery:
        await _echo_listener(net, "10.2.0.1", nursery, [])
        await _echo_listener(net, SERVER, nursery, [])
        await _roundtrip(net, "10.2.0.1", _addr(SERVER))  # the firewall's state: no help
        start = trio.current_time()
        with pytest.raises(DialError, match="refused: closed filter"):
            await _roundtrip(net, SERVER, _addr("10.2.0.1"))
        assert trio.current_time() == start
        nursery.cancel_scope.cancel()


async def test_private_addresses_are_not_routed(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    net.add_host(SERVER)
    net.add_host(HOST, behaviour=NatBehaviour(), public_ip=WAN)
    with pytest.raises(DialError, match="no route"):
        await _roundtrip(net, SERVER, _addr(HOST))


async def test_latency_delays_the_connect_and_every_frame(
        autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    net.add_host(SERVER, latency=0.010)
    net.add_host(HOST, behaviour=NatBehaviour(), public_ip=WAN, latency=0.040)
    async with trio.open_nursery() as nursery:
        await _echo_listener(net, SERVER, nursery, [])
        elapsed = await _roundtrip(net, HOST, _addr(SERVER))
        assert elapsed == pytest.approx(0.100 + 0.100)  # SYN round trip + ping round trip
        nursery.cancel_scope.cancel()


async def _lossy_times(seed: int) -> list[float]:
    net = SimNetwork(seed=seed, loss=0.5)
    net.add_host(SERVER)
    net.add_host(OTHER)
    times = []
    async with trio.open_nursery() as nursery:
        await _echo_listener(net, SERVER, nursery, [])
        for _ in range(8):
            try:
                times.append(await _roundtrip(net, OTHER, _addr(SERVER)))
            except DialError:
                times.append(-1.0)
        nursery.cancel_scope.cancel()
    return times


async def test_loss_costs_retransmissions_and_repeats_for_a_seed(
        autojump_clock: trio.testing.MockClock) -> None:
    first, again = await _lossy_times(3), await _lossy_times(3)
    assert first == again
    assert set(first) <= {0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, -1.0}
    assert any(t > 0 for t in first) and 0.0 in first
