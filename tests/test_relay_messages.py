"""Circuit Relay v2 messages and circuit addresses: golden vectors, round trips, validation.

Golden vectors live in ``tests/golden/relay_messages.json`` (name -> hex) and are
compared both ways, as in tests/test_messages.py; ``AUTONAT_REGEN_GOLDEN=1``
rewrites the file after a deliberate wire change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import AddressError, Keypair, PeerId, ValidationError, WsAddress, pack, unpack
from protocols.relay import (
    MAX_CIRCUIT_DATA,
    CircuitAddress,
    CircuitData,
    CircuitLimit,
    HopConnect,
    HopReserve,
    HopStatus,
    RelayMessage,
    RelayStatus,
    ReservationInfo,
    StopConnect,
    StopStatus,
    decode_circuit_data,
    decode_hop_message,
    decode_stop_message,
)

GOLDEN_FILE = Path(__file__).parent / "golden" / "relay_messages.json"
REGEN_ENV = "AUTONAT_REGEN_GOLDEN"

PEER_A = Keypair.from_seed(bytes(range(32))).peer_id
PEER_B = Keypair.from_seed(bytes(range(1, 33))).peer_id
RELAY_ADDR = WsAddress.parse("/ip4/198.51.100.7/tcp/44000/ws").with_peer_id(PEER_B)

GOLDEN_CASES: dict[str, RelayMessage] = {
    "hop_reserve": HopReserve(),
    "hop_connect": HopConnect(PEER_A.to_bytes()),
    "hop_status_reserved": HopStatus(
        RelayStatus.OK, ReservationInfo(3600, (RELAY_ADDR.to_bytes(),)),
        CircuitLimit(120, 131072)),
    "hop_status_refused": HopStatus(RelayStatus.RESOURCE_LIMIT_EXCEEDED),
    "stop_connect": StopConnect(PEER_A.to_bytes(), CircuitLimit(120, 131072)),
    "stop_status": StopStatus(RelayStatus.OK),
    "circuit_data": CircuitData(b"\x82\xa1s\x01"),
}


def _decode(data: bytes) -> RelayMessage:
    m = unpack(data)
    if m.get("type") == "data":
        return decode_circuit_data(m)
    if str(m.get("type", "")).startswith("stop-"):
        return decode_stop_message(m)
    return decode_hop_message(m)


@pytest.fixture(scope="module")
def golden() -> dict[str, str]:
    if os.environ.get(REGEN_ENV) == "1":
        vectors = {name: msg.encode().hex() for name, msg in GOLDEN_CASES.items()}
        GOLDEN_FILE.write_text(json.dumps(vectors, indent=2, sort_keys=True) + "\n")
    loaded: dict[str, str] = json.loads(GOLDEN_FILE.read_text())
    return loaded


def test_golden_file_has_exactly_the_known_cases(golden: dict[str, str]) -> None:
    assert sorted(golden) == sorted(GOLDEN_CASES), f"rerun with {REGEN_ENV}=1"


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_vector_both_ways(name: str, golden: dict[str, str]) -> None:
    expected = bytes.fromhex(golden[name])
    assert GOLDEN_CASES[name].encode() == expected
    assert _decode(expected) == GOLDEN_CASES[name]


def test_golden_status_is_the_documented_map(golden: dict[str, str]) -> None:
    # independent of our code: the map the module docstring describes
    decoded = msgpack.unpackb(bytes.fromhex(golden["hop_status_reserved"]), raw=False)
    assert decoded == {"type": "status", "status": 100,
                       "reservation": {"ttl": 3600, "addrs": [RELAY_ADDR.to_bytes()]},
                       "limit": {"duration": 120, "data": 131072}}


def test_status_codes_are_the_specs() -> None:
    assert {s.name: s.value for s in RelayStatus} == {
        "OK": 100, "RESERVATION_REFUSED": 200, "RESOURCE_LIMIT_EXCEEDED": 201,
        "PERMISSION_DENIED": 202, "CONNECTION_FAILED": 203, "NO_RESERVATION": 204,
        "MALFORMED_MESSAGE": 400, "UNEXPECTED_MESSAGE": 401}


# --- round trips ---------------------------------------------------------------------

peers = st.sampled_from([PEER_A.to_bytes(), PEER_B.to_bytes()])
limits = st.none() | st.builds(CircuitLimit, duration=st.integers(1, 2**32 - 1),
                               data=st.integers(1, 2**64 - 1))
reservations = st.builds(ReservationInfo, ttl=st.integers(1, 2**32 - 1),
                         addrs=st.lists(st.binary(min_size=1, max_size=256), max_size=16)
                         .map(tuple))
statuses = st.sampled_from(RelayStatus)
hop_statuses = st.one_of(
    st.builds(HopStatus, status=statuses, reservation=st.none(), limit=limits),
    st.builds(HopStatus, status=st.just(RelayStatus.OK), reservation=reservations,
              limit=limits))
relay_messages = st.one_of(
    st.just(HopReserve()), st.builds(HopConnect, peer=peers), hop_statuses,
    st.builds(StopConnect, peer=peers, limit=limits), st.builds(StopStatus, status=statuses),
    st.builds(CircuitData, data=st.binary(min_size=1, max_size=MAX_CIRCUIT_DATA)))


@given(relay_messages)
def test_every_message_round_trips(message: RelayMessage) -> None:
    assert _decode(message.encode()) == message


# --- validation at the boundary ----------------------------------------------------------


@pytest.mark.parametrize(("wire", "match"), [
    ({"type": "connect"}, "missing field 'peer'"),
    ({"type": "connect", "peer": b"\x00\x01"}, "not a peer id"),
    ({"type": "status", "status": 99}, "unknown RelayStatus value 99"),
    ({"type": "status", "status": 201, "reservation": {"ttl": 5}},
     "a reservation comes only with status OK"),
    ({"type": "status", "status": 100, "reservation": {"ttl": 0}}, "out of range"),
    ({"type": "status", "status": 100, "limit": {"duration": 1}}, "missing field 'data'"),
    ({"type": "status", "status": 100, "limit": [1, 2]}, "expected a map"),
    ({"type": "stop-connect", "peer": PEER_A.to_bytes()}, "unexpected type"),
    ({"type": "data", "data": b"x"}, "unexpected type"),
    ({"type": 7}, "unexpected type"),
])
def test_bad_hop_messages_are_refused(wire: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        decode_hop_message(unpack(pack(wire)))  # type: ignore[arg-type]


def test_stop_and_circuit_streams_accept_only_their_messages() -> None:
    with pytest.raises(ValidationError, match="unexpected type 'reserve'"):
        decode_stop_message({"type": "reserve"})
    with pytest.raises(ValidationError, match="unexpected type 'stop-status'"):
        decode_circuit_data({"type": "stop-status", "status": 100})
    with pytest.raises(ValidationError, match="expected 1 to"):
        decode_circuit_data({"type": "data", "data": b""})
    with pytest.raises(ValidationError, match="expected 1 to"):
        CircuitData(b"x" * (MAX_CIRCUIT_DATA + 1))


def test_a_full_data_message_fits_the_default_frame() -> None:
    from protocols import StreamFrame
    frame = StreamFrame(2**32 - 1, "/libp2p/circuit/relay/0.2.0/stop",
                        CircuitData(b"x" * MAX_CIRCUIT_DATA).to_wire(), True)
    assert len(frame.encode()) <= 64 * 1024


# --- circuit addresses -------------------------------------------------------------------

CIRCUIT_TEXT = f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{PEER_B}/p2p-circuit/p2p/{PEER_A}"


def test_circuit_address_text_and_binary() -> None:
    addr = CircuitAddress.parse(CIRCUIT_TEXT)
    assert addr.relay == RELAY_ADDR and addr.target == PEER_A and addr.relay_peer == PEER_B
    assert str(addr) == CIRCUIT_TEXT
    assert CircuitAddress.parse(addr.to_bytes()) == addr
    from multiaddr import Multiaddr  # an independent encoder agrees on the bytes
    assert Multiaddr(CIRCUIT_TEXT).to_bytes() == addr.to_bytes()


@given(host=st.ip_addresses(v=4).map(str), port=st.integers(1, 65535), secure=st.booleans())
def test_circuit_addresses_round_trip(host: str, port: int, secure: bool) -> None:
    relay = WsAddress(host, "ip4", port, secure, PEER_B)
    addr = CircuitAddress(relay, PEER_A)
    assert CircuitAddress.parse(addr.to_bytes()) == addr
    assert CircuitAddress.parse(str(addr)) == addr


@pytest.mark.parametrize(("text", "match"), [
    ("/ip4/198.51.100.7/tcp/44000/ws/p2p-circuit/p2p/" + str(PEER_A), "must end in /p2p/"),
    (f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{PEER_B}/p2p-circuit", "not a circuit address"),
    (f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{PEER_B}/p2p-circuit/p2p/{PEER_A}/p2p-circuit/p2p/"
     f"{PEER_B}", "one /p2p-circuit"),
    (f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{PEER_B}/p2p-circuit/p2p/{PEER_B}", "relay itself"),
    (f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{PEER_B}/p2p-circuit/ip4/1.2.3.4", "exactly /p2p/"),
    (f"/ip4/198.51.100.7/tcp/44000/ws/p2p/{PEER_B}/p2p-circuit/p2p/xyz", "circuit target"),
])
def test_bad_circuit_addresses(text: str, match: str) -> None:
    with pytest.raises(AddressError, match=match):
        CircuitAddress.parse(text)


def test_binary_garbage_is_an_address_error() -> None:
    good = CircuitAddress.parse(CIRCUIT_TEXT).to_bytes()
    for cut in range(len(good)):
        with pytest.raises(AddressError):
            CircuitAddress.parse(good[:cut])
    with pytest.raises(AddressError):
        CircuitAddress.parse(RELAY_ADDR.to_bytes())


def test_ws_addresses_still_refuse_circuits() -> None:
    with pytest.raises(AddressError):
        WsAddress.parse(CIRCUIT_TEXT)
    assert CircuitAddress.is_circuit(CIRCUIT_TEXT)
    assert not CircuitAddress.is_circuit(str(RELAY_ADDR))
    assert isinstance(PeerId.from_bytes(HopConnect(PEER_A.to_bytes()).peer), PeerId)
