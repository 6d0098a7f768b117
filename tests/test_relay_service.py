"""The relay service over in-memory connections (virtual time): reservations accepted and
refused by limits and policy, circuits spliced end to end, closed past their data and
time limits; and relayed connections that run our handshake and mux end to end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from actors import Connection, ConnectionFailed, ProtocolHandler, Stream, open_connection
from actors.connection import StreamEnded, StreamReset
from actors.node._relay import DATA_LIMIT_CODE, DURATION_LIMIT_CODE, RelayService
from actors.node._relay_circuit import (
    RelayRefused,
    accept_circuit,
    accept_relayed,
    dial_circuit,
    open_circuit,
    reserve,
    secure_circuit,
)
from actors.transport import MemoryFrameStream, memory_stream_pair
from protocols import (
    IDENTIFY_PROTOCOL_ID,
    AddressPolicy,
    Identify,
    Keypair,
    NodeConfig,
    PeerId,
    WsAddress,
)
from protocols.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    CircuitData,
    CircuitLimit,
    HopStatus,
    RelayStatus,
    decode_circuit_data,
    decode_hop_message,
)

LAB = AddressPolicy.from_strings(public_networks=["198.51.100.0/24", "203.0.113.0/24"])
RELAY_ADDR = WsAddress("198.51.100.1", "ip4", 44000, False)
TIMEOUT = 300  # virtual seconds


def relay_config(**settings: object) -> NodeConfig:
    return NodeConfig.from_settings(policy=LAB, relay_service=True, **settings)


class Lab:
    """A relay service and clients connected to it over memory frame streams."""

    def __init__(self, nursery: trio.Nursery, stack: AsyncExitStack, config: NodeConfig) -> None:
        self.nursery, self.stack = nursery, stack
        self.connection_config = config.connection
        self.relay_key = Keypair.generate()
        self.service = RelayService(config=config, keypair=self.relay_key,
                                    own_addrs=lambda: [RELAY_ADDR,
                                                       WsAddress("10.0.0.1", "ip4", 1, False)])
        self.ports = iter(range(50000, 60000))
        self.relay_side: dict[PeerId, Connection] = {}

    @property
    def relay_peer(self) -> PeerId:
        return self.relay_key.peer_id

    async def client(self, ip: str, key: Keypair | None = None,
                     handlers: dict[str, ProtocolHandler] | None = None) -> Connection:
        key = key or Keypair.generate()
        here = WsAddress(ip, "ip4", next(self.ports), False)
        ours, theirs = memory_stream_pair(here, RELAY_ADDR)
        self.nursery.start_soon(self._serve, theirs)
        return await self.stack.enter_async_context(open_connection(
            ours, key, initiator=True, expected_peer=self.relay_peer, handlers=handlers))

    async def _serve(self, stream: MemoryFrameStream) -> None:
        async with open_connection(stream, self.relay_key, initiator=False,
                                   handlers={HOP_PROTOCOL_ID: self.service.serve_hop},
                                   config=self.connection_config) as conn:
            self.relay_side[conn.peer_id] = conn
            await conn.closed.wait()


@asynccontextmanager
async def lab(config: NodeConfig | None = None) -> AsyncIterator[Lab]:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            yield Lab(nursery, stack, config or relay_config())
            await stack.aclose()
            nursery.cancel_scope.cancel()


StopHandler = Callable[[Stream[Connection]], Awaitable[None]]


async def echo_target(stream: Stream[Connection]) -> None:
    await accept_circuit(stream, timeout=5)
    while True:
        try:
            message = await stream.receive()
        except StreamEnded:
            return
        await stream.send(message)


# --- reservations --------------------------------------------------------------------


async def test_a_reservation_is_granted_and_ends_with_its_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab() as relay:
        target = await relay.client("203.0.113.2")
        answer = await reserve(target, timeout=5)
        assert answer.status is RelayStatus.OK and answer.reservation is not None
        assert answer.reservation.ttl == 3600
        # only routable addresses are advertised, with the relay's /p2p/ id
        assert answer.reservation.addrs == (RELAY_ADDR.with_peer_id(relay.relay_peer).to_bytes(),)
        assert answer.limit == CircuitLimit(120, 128 * 1024)
        assert relay.service.statistics().rules.reservations == 1
        renewed = await reserve(target, timeout=5)
        assert renewed.status is RelayStatus.OK
        stats = relay.service.statistics().rules
        assert (stats.reservations, stats.reservations_granted, stats.reservations_renewed) == (
            1, 1, 1)
        await target.aclose()
        await trio.sleep(1)
        assert relay.service.statistics().rules.reservations == 0


async def test_a_reserved_connection_does_not_idle_out(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab(relay_config(idle_timeout=60.0)) as relay:
        reserved, idle = await relay.client("203.0.113.2"), await relay.client("203.0.113.3")
        await reserve(reserved, timeout=5)
        await trio.sleep(200)
        assert idle.close_reason is not None and "closed by the peer" in idle.close_reason
        assert reserved.close_reason is None
        assert relay.service.statistics().rules.reservations == 1


async def test_reservations_are_refused_past_the_per_ip_limit(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab(relay_config(relay_max_reservations_per_ip=1)) as relay:
        await reserve(await relay.client("203.0.113.2"), timeout=5)
        with pytest.raises(RelayRefused) as refused:
            await reserve(await relay.client("203.0.113.2"), timeout=5)
        assert refused.value.status is RelayStatus.RESOURCE_LIMIT_EXCEEDED
        await reserve(await relay.client("203.0.113.3"), timeout=5)  # another IP is fine
        stats = relay.service.statistics().rules
        assert stats.reservations == 2
        assert stats.reservations_refused == (("RESOURCE_LIMIT_EXCEEDED", 1),)


async def test_reservations_from_addresses_the_policy_rejects_are_denied(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab() as relay:
        with pytest.raises(RelayRefused) as refused:
            await reserve(await relay.client("10.1.2.3"), timeout=5)
        assert refused.value.status is RelayStatus.PERMISSION_DENIED


async def test_a_malformed_hop_request_is_answered(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab() as relay:
        client = await relay.client("203.0.113.2")
        stream = await client.open_stream(HOP_PROTOCOL_ID)
        reply = decode_hop_message(await stream.request({"type": "connect", "peer": b"x"},
                                                        timeout=5))
        assert reply == HopStatus(RelayStatus.MALFORMED_MESSAGE)
        assert relay.service.statistics().malformed == 1


# --- circuits --------------------------------------------------------------------------


async def reserved_target(relay: Lab, handler: StopHandler = echo_target,
                          key: Keypair | None = None) -> Keypair:
    key = key or Keypair.generate()
    target = await relay.client("203.0.113.2", key, handlers={STOP_PROTOCOL_ID: handler})
    await reserve(target, timeout=5)
    return key


async def test_a_circuit_is_spliced_end_to_end(autojump_clock: trio.testing.MockClock) -> None:
    async with lab() as relay:
        target = await reserved_target(relay)
        initiator = await relay.client("198.51.100.9")
        stream, limit = await open_circuit(initiator, target.peer_id, timeout=5)
        assert limit == CircuitLimit(120, 128 * 1024)
        for payload in (b"hello", b"x" * 1000):
            await stream.send(CircuitData(payload).to_wire())
            assert decode_circuit_data(await stream.receive()).data == payload
        stats = relay.service.statistics().rules
        assert stats.circuits == 1 and stats.bytes_relayed == 2 * 1005
        await stream.aclose()
        await trio.sleep(1)
        stats = relay.service.statistics().rules
        assert stats.circuits == 0 and stats.circuits_ended == (("finished", 1),)


async def test_no_circuit_to_a_peer_without_reservation(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab() as relay:
        initiator = await relay.client("198.51.100.9")
        with pytest.raises(RelayRefused) as refused:
            await open_circuit(initiator, Keypair.generate().peer_id, timeout=5)
        assert refused.value.status is RelayStatus.NO_RESERVATION


async def test_a_target_that_refuses_fails_the_circuit(
        autojump_clock: trio.testing.MockClock) -> None:
    async def refuse(stream: Stream[Connection]) -> None:
        await stream.receive()
        await stream.send({"type": "stop-status", "status": 202}, fin=True)

    async with lab() as relay:
        target = await reserved_target(relay, refuse)
        initiator = await relay.client("198.51.100.9")
        with pytest.raises(RelayRefused) as refused:
            await open_circuit(initiator, target.peer_id, timeout=5)
        assert refused.value.status is RelayStatus.CONNECTION_FAILED
        stats = relay.service.statistics()
        assert stats.stop_failures == 1
        assert stats.rules.circuits_ended == (("connect-failed", 1),)


async def test_a_silent_target_fails_the_circuit_after_the_connect_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    async def silent(stream: Stream[Connection]) -> None:
        await trio.sleep_forever()

    async with lab(relay_config(relay_connect_timeout=3.0)) as relay:
        target = await reserved_target(relay, silent)
        initiator = await relay.client("198.51.100.9")
        start = trio.current_time()
        with pytest.raises(RelayRefused):
            await open_circuit(initiator, target.peer_id, timeout=10)
        assert trio.current_time() - start == pytest.approx(3.0)


async def test_a_circuit_is_closed_past_its_data_limit(
        autojump_clock: trio.testing.MockClock) -> None:
    received: list[bytes] = []
    reset_codes: list[str] = []

    async def sink(stream: Stream[Connection]) -> None:
        await accept_circuit(stream, timeout=5)
        try:
            while True:
                received.append(decode_circuit_data(await stream.receive()).data)
        except StreamReset as exc:
            reset_codes.append(exc.code)

    async with lab(relay_config(relay_circuit_data=1000)) as relay:
        target = await reserved_target(relay, sink)
        initiator = await relay.client("198.51.100.9")
        stream, limit = await open_circuit(initiator, target.peer_id, timeout=5)
        assert limit is not None and limit.data == 1000
        await stream.send(CircuitData(b"a" * 600).to_wire())
        await stream.send(CircuitData(b"b" * 600).to_wire())  # would cross the limit
        with pytest.raises(StreamReset) as reset:
            await stream.receive()
        assert reset.value.code == DATA_LIMIT_CODE
        await trio.sleep(1)
        assert received == [b"a" * 600]  # the message over the limit never arrived
        assert reset_codes == [DATA_LIMIT_CODE]
        stats = relay.service.statistics().rules
        assert stats.circuits_ended == (("data-limit", 1),) and stats.bytes_relayed == 600


async def test_a_circuit_outlives_the_stream_timeout_and_closes_at_its_duration(
        autojump_clock: trio.testing.MockClock) -> None:
    # the duration (60 s) is longer than every connection's stream_timeout (30 s)
    async with lab(relay_config(relay_circuit_duration=60.0)) as relay:
        target = await reserved_target(relay)
        initiator = await relay.client("198.51.100.9")
        stream, _ = await open_circuit(initiator, target.peer_id, timeout=5)
        opened = trio.current_time()
        await trio.sleep(45)
        await stream.send(CircuitData(b"still here").to_wire())
        assert decode_circuit_data(await stream.receive()).data == b"still here"
        with pytest.raises(StreamReset) as reset:
            await stream.receive()
        assert reset.value.code == DURATION_LIMIT_CODE
        assert trio.current_time() - opened == pytest.approx(60.0, abs=0.5)
        await trio.testing.wait_all_tasks_blocked()  # the relay counts the end after the reset
        stats = relay.service.statistics().rules
        assert stats.circuits_ended == (("duration-limit", 1),)


async def test_concurrent_circuits_per_peer_are_limited(
        autojump_clock: trio.testing.MockClock) -> None:
    async with lab(relay_config(relay_max_circuits_per_peer=1)) as relay:
        target = await reserved_target(relay)
        initiator = await relay.client("198.51.100.9")
        first, _ = await open_circuit(initiator, target.peer_id, timeout=5)
        with pytest.raises(RelayRefused) as refused:
            await open_circuit(initiator, target.peer_id, timeout=5)
        assert refused.value.status is RelayStatus.RESOURCE_LIMIT_EXCEEDED
        await first.aclose()
        await trio.sleep(1)
        second, _ = await open_circuit(initiator, target.peer_id, timeout=5)
        await second.aclose()


# --- relayed connections: our handshake and mux inside the circuit --------------------------


def identify_handler(key: Keypair) -> ProtocolHandler:
    async def serve(stream: Stream[Connection]) -> None:
        await stream.receive()
        answer = Identify("trio-autonat/1", "relayed-target", key.public_key.to_protobuf(),
                          (), None, (IDENTIFY_PROTOCOL_ID,))
        await stream.send(answer.to_wire(), fin=True)
    return serve


def connection_target(key: Keypair, accepted: list[Connection],
                      failures: list[str] | None = None) -> StopHandler:
    """A target that runs the listener's side of our handshake inside the circuit."""
    async def serve(stream: Stream[Connection]) -> None:
        try:
            async with accept_relayed(
                    stream, key, timeout=5,
                    handlers={IDENTIFY_PROTOCOL_ID: identify_handler(key)}) as conn:
                accepted.append(conn)
                await conn.closed.wait()
        except ConnectionFailed as exc:
            if failures is None:
                raise
            failures.append(str(exc))
    return serve


async def test_two_nodes_connected_only_through_a_relay_exchange_identify(
        autojump_clock: trio.testing.MockClock) -> None:
    key_b, accepted = Keypair.generate(), []
    async with lab() as relay:
        await reserved_target(relay, connection_target(key_b, accepted), key=key_b)
        key_a = Keypair.generate()
        initiator = await relay.client("198.51.100.9", key_a)
        async with dial_circuit(initiator, key_b.peer_id, key_a) as conn:
            assert conn.peer_id == key_b.peer_id and conn.relayed
            stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
            reply = Identify.from_wire(await stream.request({}, timeout=5))
            assert reply.agent_version == "relayed-target"
            assert reply.public_key == key_b.public_key.to_protobuf()
            assert [c.peer_id for c in accepted] == [key_a.peer_id] and accepted[0].relayed
        await trio.sleep(1)
        stats = relay.service.statistics().rules
        assert stats.circuits == 0 and stats.bytes_relayed > 0


async def test_relayed_connections_cannot_reserve_or_connect_further(
        autojump_clock: trio.testing.MockClock) -> None:
    # A connects to B through the relay; B also runs a relay service: over the relayed
    # connection, A can neither reserve on B nor open a circuit through it.
    key_b = Keypair.generate()
    b_service = RelayService(config=relay_config(), keypair=key_b, own_addrs=lambda: ())

    async def b_side(stream: Stream[Connection]) -> None:
        async with accept_relayed(stream, key_b, timeout=5,
                                  handlers={HOP_PROTOCOL_ID: b_service.serve_hop}) as conn:
            await conn.closed.wait()

    async with lab() as relay:
        await reserved_target(relay, b_side, key=key_b)
        key_a = Keypair.generate()
        initiator = await relay.client("198.51.100.9", key_a)
        async with dial_circuit(initiator, key_b.peer_id, key_a) as conn:
            with pytest.raises(RelayRefused) as refused:
                await reserve(conn, timeout=5)
            assert refused.value.status is RelayStatus.PERMISSION_DENIED
            with pytest.raises(RelayRefused) as refused:
                await open_circuit(conn, relay.relay_peer, timeout=5)
            assert refused.value.status is RelayStatus.PERMISSION_DENIED


async def test_a_relay_cannot_impersonate_the_target(
        autojump_clock: trio.testing.MockClock) -> None:
    # A lying relay answers CONNECT itself and runs the key exchange with its own key.
    liar = Keypair.generate()
    target = Keypair.generate().peer_id

    async def lying_hop(stream: Stream[Connection]) -> None:
        await stream.receive()
        await stream.send(HopStatus(RelayStatus.OK).to_wire())
        with contextlib.suppress(ConnectionFailed):  # the initiator hangs up on us
            await secure_circuit(stream, liar, initiator=False, timeout=5)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            here = WsAddress("198.51.100.9", "ip4", 1, False)
            ours, theirs = memory_stream_pair(here, RELAY_ADDR)

            async def serve_liar() -> None:
                async with open_connection(theirs, liar, initiator=False,
                                           handlers={HOP_PROTOCOL_ID: lying_hop}) as conn:
                    await conn.closed.wait()

            nursery.start_soon(serve_liar)
            key_a = Keypair.generate()
            async with open_connection(ours, key_a, initiator=True,
                                       expected_peer=liar.peer_id) as to_relay:
                with pytest.raises(ConnectionFailed, match="but the other end is"):
                    async with dial_circuit(to_relay, target, key_a):
                        pass  # pragma: no cover - the handshake must fail
            nursery.cancel_scope.cancel()


class Spying:
    """Wraps the relay's rules: sees every message the relay forwards, may alter one."""

    def __init__(self, service: RelayService, tamper_at: int | None = None) -> None:
        self.seen: list[bytes] = []
        self._tamper_at = tamper_at
        rules = service.rules
        original = rules.handle_data

        def spy(cid: int, way: object, size: int) -> bool:
            return original(cid, way, size)  # type: ignore[arg-type]

        rules.handle_data = spy  # type: ignore[method-assign]
        service_forward = service._forward

        async def forward(cid: int, src: Stream[Connection], dst: Stream[Connection],
                          way: object) -> object:
            original_send = dst.send

            async def send(message: dict[str, object], *, fin: bool = False) -> None:
                data = decode_circuit_data(message).data  # type: ignore[arg-type]
                self.seen.append(data)
                if self._tamper_at is not None and len(self.seen) == self._tamper_at:
                    data = bytes([data[0] ^ 1]) + data[1:]
                await original_send(CircuitData(data).to_wire(), fin=fin)

            dst.send = send  # type: ignore[method-assign]
            return await service_forward(cid, src, dst, way)  # type: ignore[arg-type]

        service._forward = forward  # type: ignore[method-assign]


async def test_a_curious_relay_reads_nothing(autojump_clock: trio.testing.MockClock) -> None:
    key_b, accepted = Keypair.generate(), []
    async with lab() as relay:
        spy = Spying(relay.service)
        await reserved_target(relay, connection_target(key_b, accepted), key=key_b)
        key_a = Keypair.generate()
        initiator = await relay.client("198.51.100.9", key_a)
        async with dial_circuit(initiator, key_b.peer_id, key_a) as conn:
            stream = await conn.open_stream(IDENTIFY_PROTOCOL_ID)
            reply = Identify.from_wire(await stream.request({}, timeout=5))
            assert reply.agent_version == "relayed-target"
        seen = b"".join(spy.seen)
        assert len(spy.seen) > 6  # key exchange, handshake, Identify
        for secret in (b"relayed-target", IDENTIFY_PROTOCOL_ID.encode(), b"hello"):
            assert secret not in seen


async def test_a_tampering_relay_breaks_the_connection_instead_of_fooling_it(
        autojump_clock: trio.testing.MockClock) -> None:
    key_b, accepted, failures = Keypair.generate(), [], []
    async with lab() as relay:
        Spying(relay.service, tamper_at=6)  # after the key exchange (4 messages)
        await reserved_target(relay, connection_target(key_b, accepted, failures), key=key_b)
        key_a = Keypair.generate()
        initiator = await relay.client("198.51.100.9", key_a)
        with pytest.raises(ConnectionFailed):
            async with dial_circuit(initiator, key_b.peer_id, key_a):
                pass  # pragma: no cover - the altered handshake frame is refused
        await trio.sleep(1)
        assert accepted == [] and failures and "failed authentication" in failures[0]
