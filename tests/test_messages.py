"""Every wire message: golden byte vectors, hypothesis round trips, validation.

Golden vectors live in ``tests/golden/messages.json`` (name -> hex) and are
compared exactly both ways: ``encode(msg) == golden`` and
``decode(golden) == msg``. A deliberate wire change is recorded by running
``AUTONAT_REGEN_GOLDEN=1 pytest tests/test_messages.py`` and committing the
diff; without the variable the file is only read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocols import (
    DEFAULT_LIMITS,
    DIAL_BACK_PROTOCOL_ID,
    DIAL_REQUEST_PROTOCOL_ID,
    HANDSHAKE_CONTEXT,
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    MAX_IDENTIFY_SIZE,
    Auth,
    DecodeError,
    DialBack,
    DialBackAttempt,
    DialBackResponse,
    DialBackSource,
    DialBackStatus,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    ErrorCode,
    ErrorFrame,
    FrameTooLarge,
    HandshakeOrderError,
    Hello,
    Identify,
    Limits,
    ProtocolError,
    ResponseStatus,
    StreamFrame,
    ValidationError,
    WindowUpdate,
    WireMap,
    WireMessage,
    WireValue,
    decode_autonat_message,
    decode_handshake_frame,
    decode_stream_frame,
    handshake_payload,
    unpack,
)
from protocols.bootstrap import PeerEntry, PeersRequest, PeersResponse

GOLDEN_FILE = Path(__file__).parent / "golden" / "messages.json"
REGEN_ENV = "AUTONAT_REGEN_GOLDEN"

# --- fixed example values -------------------------------------------------------

ED25519_KEY = bytes.fromhex("08011220") + bytes(range(1, 33))  # protobuf-wrapped key
NONCE = bytes(range(32))
SIGNATURE = bytes(range(64, 128))
# /ip4/198.51.100.7/tcp/44000/ws and /ip4/203.0.113.9/tcp/4001/ws
ADDR_A = bytes.fromhex("04c633640706abe0dd03")
ADDR_B = bytes.fromhex("04cb007109060fa1dd03")

IDENTIFY_FULL = Identify(
    protocol_version="trio-autonat/1",
    agent_version="trio-autonat/0.1.0",
    public_key=ED25519_KEY,
    listen_addrs=(ADDR_A, ADDR_B),
    observed_addr=ADDR_B,
    protocols=(IDENTIFY_PROTOCOL_ID, IDENTIFY_PUSH_PROTOCOL_ID, DIAL_REQUEST_PROTOCOL_ID,
               DIAL_BACK_PROTOCOL_ID),
)
IDENTIFY_MINIMAL = Identify("", "", ED25519_KEY, (), None, ())
# /ip4/198.51.100.7/udp/3478: a STUN server with an RFC 5780 alternate
STUN_ADDR = bytes.fromhex("04c63364079102 0d96".replace(" ", ""))
IDENTIFY_STUN = Identify("trio-autonat/1", "trio-autonat/0.1.0", ED25519_KEY, (ADDR_A,), ADDR_B,
                         (IDENTIFY_PROTOCOL_ID,), stun_addrs=(STUN_ADDR,), stun_alternate=True)
DIAL_REQUEST = DialRequest(addrs=(ADDR_A, ADDR_B), nonce=0x0123456789ABCDEF)

Decoder = Callable[[bytes], object]


def decode_identify(data: bytes) -> Identify:
    return Identify.from_wire(unpack(data))


def decode_autonat(data: bytes) -> object:
    return decode_autonat_message(unpack(data))


def decode_peers_request(data: bytes) -> object:
    return PeersRequest.from_wire(unpack(data))


def decode_peers_response(data: bytes) -> object:
    return PeersResponse.from_wire(unpack(data))


# an Ed25519 identity-multihash peer id (of ED25519_KEY)
PEER_ID_BYTES = bytes([0x00, len(ED25519_KEY)]) + ED25519_KEY


# name -> (message, decoder). Every message type appears at least once.
GOLDEN_CASES: dict[str, tuple[WireMessage, Decoder]] = {
    "hello": (Hello(version=1, public_key=ED25519_KEY, nonce=NONCE), decode_handshake_frame),
    "auth": (Auth(signature=SIGNATURE), decode_handshake_frame),
    "stream_frame_open": (StreamFrame(1, IDENTIFY_PROTOCOL_ID, {}, False), decode_stream_frame),
    "stream_frame_identify": (StreamFrame(2, None, IDENTIFY_FULL.to_wire(), True),
                              decode_stream_frame),
    "stream_frame_dial_request": (
        StreamFrame(3, DIAL_REQUEST_PROTOCOL_ID, DIAL_REQUEST.to_wire(), False),
        decode_stream_frame),
    "error_frame": (ErrorFrame(5, ErrorCode.UNSUPPORTED_PROTOCOL), decode_stream_frame),
    "error_frame_max_stream_id": (ErrorFrame(2**32 - 1, ErrorCode.STREAM_TIMEOUT),
                                  decode_stream_frame),
    "window_update": (WindowUpdate(7, 8), decode_stream_frame),
    "identify": (IDENTIFY_FULL, decode_identify),
    "identify_minimal": (IDENTIFY_MINIMAL, decode_identify),
    "identify_stun": (IDENTIFY_STUN, decode_identify),
    "dial_request": (DIAL_REQUEST, decode_autonat),
    "dial_request_filtering": (DialRequest(addrs=(ADDR_A,), nonce=1, filtering=True),
                               decode_autonat),
    "dial_data_request": (DialDataRequest(addr_idx=1, num_bytes=50_000), decode_autonat),
    "dial_data_response": (DialDataResponse(data=b"\x00" * 16), decode_autonat),
    "dial_response_ok": (DialResponse(ResponseStatus.OK, 0, DialStatus.OK), decode_autonat),
    "dial_response_dial_backs": (
        DialResponse(ResponseStatus.OK, 0, DialStatus.E_DIAL_ERROR,
                     (DialBackAttempt(DialBackSource.CONTACTED_IP, DialStatus.OK),
                      DialBackAttempt(DialBackSource.OTHER_IP, DialStatus.E_DIAL_ERROR))),
        decode_autonat),
    "dial_response_refused": (
        DialResponse(ResponseStatus.E_DIAL_REFUSED, 0, DialStatus.UNUSED), decode_autonat),
    "dial_back": (DialBack(nonce=2**64 - 1), decode_autonat),
    "dial_back_response": (DialBackResponse(DialBackStatus.OK), decode_autonat),
    "peers_request": (PeersRequest(max=16), decode_peers_request),
    "peers_response": (PeersResponse((PeerEntry(PEER_ID_BYTES, (ADDR_A,)),
                                      PeerEntry(PEER_ID_BYTES, (ADDR_A, ADDR_B)))),
                       decode_peers_response),
    "peers_response_empty": (PeersResponse(()), decode_peers_response),
}


@pytest.fixture(scope="module")
def golden() -> dict[str, str]:
    if os.environ.get(REGEN_ENV) == "1":
        vectors = {name: msg.encode().hex() for name, (msg, _) in GOLDEN_CASES.items()}
        GOLDEN_FILE.parent.mkdir(exist_ok=True)
        GOLDEN_FILE.write_text(json.dumps(vectors, indent=2, sort_keys=True) + "\n")
    loaded: dict[str, str] = json.loads(GOLDEN_FILE.read_text())
    return loaded


def test_golden_file_has_exactly_the_known_cases(golden: dict[str, str]) -> None:
    assert sorted(golden) == sorted(GOLDEN_CASES), f"rerun with {REGEN_ENV}=1"


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_vector_both_ways(name: str, golden: dict[str, str]) -> None:
    message, decoder = GOLDEN_CASES[name]
    assert name in golden, f"no golden vector {name!r}; rerun with {REGEN_ENV}=1"
    expected = bytes.fromhex(golden[name])
    assert message.encode() == expected
    assert decoder(expected) == message


def test_golden_vectors_cover_every_message_type() -> None:
    covered = {type(msg) for msg, _ in GOLDEN_CASES.values()}
    assert covered == {Hello, Auth, StreamFrame, ErrorFrame, WindowUpdate, Identify, DialRequest,
                       DialDataRequest, DialDataResponse, DialResponse, DialBack,
                       DialBackResponse, PeersRequest, PeersResponse}


def test_golden_hello_is_readable_msgpack(golden: dict[str, str]) -> None:
    # Independent of our code: the hello vector is the map that
    # (docs/architecture.md, "Wire protocol") describes.
    decoded = msgpack.unpackb(bytes.fromhex(golden["hello"]), raw=False)
    assert decoded == {"t": "hello", "v": 1, "key": ED25519_KEY, "nonce": NONCE}


# --- hypothesis strategies for valid messages ------------------------------------

printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("éλ中🙂")
labels = st.text(printable, min_size=1, max_size=60)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
addrs = st.binary(min_size=1, max_size=256)


def _depth(value: WireValue) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


wire_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.text(max_size=20) | st.binary(max_size=20))
wire_values: st.SearchStrategy[WireValue] = st.recursive(
    wire_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
wire_maps: st.SearchStrategy[WireMap] = st.dictionaries(st.text(max_size=8), wire_values,
                                                       max_size=6)

hellos = st.builds(Hello, version=u32, public_key=st.binary(min_size=1, max_size=128),
                   nonce=st.binary(min_size=32, max_size=32))
auths = st.builds(Auth, signature=st.binary(min_size=64, max_size=64))
stream_frames = st.builds(StreamFrame, stream_id=u32, protocol=st.none() | labels,
                          message=wire_maps, fin=st.booleans())
error_frames = st.builds(ErrorFrame, stream_id=u32,
                         code=st.sampled_from(list(ErrorCode)) | labels)
identifies = st.builds(
    Identify,
    protocol_version=st.text(printable, max_size=40),
    agent_version=st.text(printable, max_size=40),
    public_key=st.binary(min_size=1, max_size=128),
    listen_addrs=st.lists(st.binary(min_size=1, max_size=64), max_size=8).map(tuple),
    observed_addr=st.none() | st.binary(min_size=1, max_size=256),
    protocols=st.lists(labels, max_size=8).map(tuple),
    stun_addrs=st.lists(st.binary(min_size=1, max_size=32), max_size=4).map(tuple),
    stun_alternate=st.booleans(),
)
autonat_messages = st.one_of(
    st.builds(DialRequest, addrs=st.lists(addrs, min_size=1, max_size=16).map(tuple),
              nonce=u64, filtering=st.booleans()),
    st.builds(DialDataRequest, addr_idx=u32, num_bytes=u64),
    st.builds(DialDataResponse, data=st.binary(min_size=1, max_size=4096)),
    st.builds(DialResponse, status=st.sampled_from(ResponseStatus), addr_idx=u32,
              dial_status=st.sampled_from(DialStatus),
              dial_backs=st.lists(st.builds(DialBackAttempt,
                                            source=st.sampled_from(DialBackSource),
                                            dial_status=st.sampled_from(DialStatus)),
                                  max_size=2, unique_by=lambda a: a.source).map(tuple)),
    st.builds(DialBack, nonce=u64),
    st.builds(DialBackResponse, status=st.sampled_from(DialBackStatus)),
)


@given(hellos | auths)
def test_handshake_frames_round_trip(frame: Hello | Auth) -> None:
    assert decode_handshake_frame(frame.encode()) == frame


@given(stream_frames | error_frames | st.builds(WindowUpdate, u32, st.integers(1, 2**32 - 1)))
def test_stream_frames_round_trip(frame: StreamFrame | ErrorFrame | WindowUpdate) -> None:
    if isinstance(frame, StreamFrame):
        assume(_depth(frame.message) <= DEFAULT_LIMITS.max_depth - 1)
    assert decode_stream_frame(frame.encode()) == frame


@given(identifies)
def test_identify_round_trips(message: Identify) -> None:
    data = message.encode()
    assert len(data) == message.encoded_size() <= MAX_IDENTIFY_SIZE
    assert decode_identify(data) == message


@given(identifies)
def test_identify_size_bound_never_underestimates(message: Identify) -> None:
    # from_wire skips the exact size only when this bound already fits
    assert message.size_bound() >= message.encoded_size()


def test_identify_encode_still_checks_limits_tighter_than_its_fields() -> None:
    message = Identify("p", "a" * 100, ED25519_KEY, (), None, ())
    assert len(message.encode()) == message.encoded_size()
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 50"):
        message.encode(Limits(max_str_len=50))
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 64 bytes"):
        message.encode(Limits(max_frame_size=64))


@given(autonat_messages)
def test_autonat_messages_round_trip(message: WireMessage) -> None:
    assert decode_autonat(message.encode()) == message


@given(autonat_messages, u32)
def test_autonat_message_inside_a_stream_frame(message: WireMessage, stream_id: int) -> None:
    frame = StreamFrame(stream_id, DIAL_REQUEST_PROTOCOL_ID, message.to_wire(), True)
    decoded = decode_stream_frame(frame.encode())
    assert isinstance(decoded, StreamFrame)
    assert decode_autonat_message(decoded.message) == message


# --- handshake frames -------------------------------------------------------------


def test_handshake_payload_layout() -> None:
    payload = handshake_payload(NONCE, ED25519_KEY)
    assert HANDSHAKE_CONTEXT == b"trio-autonat/handshake/1"
    assert payload == HANDSHAKE_CONTEXT + NONCE + ED25519_KEY
    with pytest.raises(ValidationError, match="handshake nonce: expected exactly 32 bytes"):
        handshake_payload(NONCE[:-1], ED25519_KEY)


def raw(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


GOOD_HELLO = {"t": "hello", "v": 1, "key": ED25519_KEY, "nonce": NONCE}


@pytest.mark.parametrize(
    ("obj", "error", "fragment"),
    [
        ({**GOOD_HELLO, "t": "hi"}, ValidationError, "unknown type 't'='hi'"),
        ({**GOOD_HELLO, "t": 1}, ValidationError, "unknown type 't'=1"),
        ({"v": 1}, ValidationError, "handshake frame: missing field 't'"),
        ({"t": "hello", "v": 1, "key": ED25519_KEY}, ValidationError,
         "hello frame: missing field 'nonce'"),
        ({**GOOD_HELLO, "v": True}, ValidationError, "hello.v: expected an integer, got bool"),
        ({**GOOD_HELLO, "v": -1}, ValidationError, r"hello.v: -1 is out of range"),
        ({**GOOD_HELLO, "nonce": NONCE + b"x"}, ValidationError,
         "hello.nonce: expected exactly 32 bytes, got 33"),
        ({**GOOD_HELLO, "nonce": "x" * 32}, ValidationError,
         "hello.nonce: expected bytes, got string"),
        ({**GOOD_HELLO, "key": b""}, ValidationError, "hello.key: expected 1 to 128 bytes"),
        ({"t": "auth", "sig": b"x" * 63}, ValidationError,
         "auth.sig: expected exactly 64 bytes, got 63"),
        ({"t": "auth"}, ValidationError, "auth frame: missing field 'sig'"),
        ({"s": 1, "m": {}, "fin": False}, HandshakeOrderError,
         "expected a handshake frame, got a stream frame"),
    ],
)
def test_bad_handshake_frames(obj: dict[str, object], error: type[ProtocolError],
                              fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        decode_handshake_frame(raw(obj))


def test_handshake_frames_ignore_unknown_fields() -> None:
    assert decode_handshake_frame(raw({**GOOD_HELLO, "future": [1]})) == Hello(1, ED25519_KEY,
                                                                                NONCE)


def test_handshake_decoder_respects_limits() -> None:
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 50 bytes"):
        decode_handshake_frame(raw(GOOD_HELLO), Limits(max_frame_size=50))


def test_invalid_handshake_frames_cannot_be_constructed() -> None:
    with pytest.raises(ValidationError, match=r"hello\.v: expected an integer, got bool"):
        Hello(version=True, public_key=ED25519_KEY, nonce=NONCE)
    with pytest.raises(ValidationError, match=r"hello\.nonce: expected exactly 32 bytes, got 3"):
        Hello(version=1, public_key=ED25519_KEY, nonce=b"abc")
    with pytest.raises(ValidationError, match=r"auth\.sig: expected bytes, got bytearray"):
        Auth(signature=bytearray(64))  # type: ignore[arg-type]


# --- stream and error frames -------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "error", "fragment"),
    [
        ({"m": {}, "fin": False}, ValidationError, "stream frame: missing field 's'"),
        ({"s": 1, "fin": False}, ValidationError, "stream frame: missing field 'm'"),
        ({"s": 1, "m": {}}, ValidationError, "stream frame: missing field 'fin'"),
        ({"s": 1, "m": {}, "fin": 1}, ValidationError,
         "stream frame.fin: expected a bool, got integer"),
        ({"s": True, "m": {}, "fin": False}, ValidationError,
         "stream frame.s: expected an integer, got bool"),
        ({"s": 2**32, "m": {}, "fin": False}, ValidationError,
         r"stream frame.s: 4294967296 is out of range \[0, 4294967295\]"),
        ({"s": 1, "m": [], "fin": False}, ValidationError,
         "stream frame.m: expected a map, got array"),
        ({"s": 1, "p": "", "m": {}, "fin": False}, ValidationError,
         "stream frame.p: expected 1 to 256 UTF-8 bytes, got 0"),
        ({"s": 1, "p": b"/x", "m": {}, "fin": False}, ValidationError,
         "stream frame.p: expected a string, got bytes"),
        ({"s": 1, "p": "/a\x00", "m": {}, "fin": False}, ValidationError,
         "stream frame.p: contains control characters"),
        ({"s": 1, "err": "bad-message", "fin": False}, ValidationError,
         "error frame.fin: must be true"),
        ({"s": 1, "err": "bad-message"}, ValidationError, "error frame: missing field 'fin'"),
        ({"s": 1, "err": "", "fin": True}, ValidationError, "error frame.err: expected 1 to 64"),
        ({"s": 1, "err": 3, "fin": True}, ValidationError,
         "error frame.err: expected a string, got integer"),
        ({"s": 1, "err": "x", "m": {}, "fin": True}, ValidationError, "both 'm' and 'err'"),
        ({"s": 1, "w": 1, "m": {}, "fin": False}, ValidationError, "both 'm' and 'w'"),
        ({"s": 1, "w": 1, "err": "x", "fin": True}, ValidationError, "both 'err' and 'w'"),
        ({"w": 1}, ValidationError, "window update: missing field 's'"),
        ({"s": 1, "w": 0}, ValidationError, r"window update.w: 0 is out of range \[1, "),
        ({"s": 1, "w": 2**32}, ValidationError, "window update.w: 4294967296 is out of range"),
        ({"s": 1, "w": True}, ValidationError, "window update.w: expected an integer, got bool"),
        ({"s": 1, "w": "8"}, ValidationError, "window update.w: expected an integer, got string"),
        ({"t": "hello", "s": 1}, HandshakeOrderError,
         "unexpected handshake frame 'hello' after the handshake"),
        ({"s": 1, "m": {"x": 1.5}, "fin": False}, DecodeError,
         "frame.m.x: float values are not allowed"),
    ],
)
def test_bad_stream_frames(obj: dict[str, object], error: type[ProtocolError],
                           fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        decode_stream_frame(raw(obj))


def test_stream_frame_protocol_is_optional_and_nil_means_absent() -> None:
    frame = decode_stream_frame(raw({"s": 4, "p": None, "m": {"a": 1}, "fin": True}))
    assert frame == StreamFrame(4, None, {"a": 1}, True)
    assert "p" not in frame.to_wire()


def test_window_update_ignores_unknown_keys() -> None:
    frame = decode_stream_frame(raw({"s": 3, "w": 8, "fin": False, "later": [1]}))
    assert frame == WindowUpdate(3, 8)
    assert frame.to_wire() == {"s": 3, "w": 8}


def test_unknown_error_codes_are_kept() -> None:
    frame = decode_stream_frame(raw({"s": 7, "err": "future-code", "fin": True}))
    assert frame == ErrorFrame(7, "future-code")
    assert ErrorFrame(7, ErrorCode.BAD_MESSAGE).to_wire() == {"s": 7, "err": "bad-message",
                                                              "fin": True}


def test_error_codes() -> None:
    assert [c.value for c in ErrorCode] == ["unsupported-protocol", "too-many-streams",
                                            "stream-timeout", "bad-message", "internal-error",
                                            "flow-control", "rate-limited"]


def test_invalid_stream_frames_cannot_be_constructed() -> None:
    with pytest.raises(DecodeError, match=r"stream frame\.m\.x: float values are not allowed"):
        StreamFrame(1, None, {"x": 1.0}, False)  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match=r"stream frame\.fin: expected a bool, got integer"):
        StreamFrame(1, None, {}, 0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"error frame\.s: -1 is out of range"):
        ErrorFrame(-1, ErrorCode.BAD_MESSAGE)


def test_stream_frame_encoding_respects_limits() -> None:
    frame = StreamFrame(1, None, {"blob": b"x" * 100}, False)
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 50"):
        frame.encode(Limits(max_bin_len=50))
    with pytest.raises(FrameTooLarge, match="nesting deeper than 2"):
        StreamFrame(1, None, {"a": [1]}, False).encode(Limits(max_depth=2))


# --- identify -------------------------------------------------------------------------


def test_identify_wire_layout() -> None:
    wire = IDENTIFY_FULL.to_wire()
    assert list(wire) == ["protocol_version", "agent_version", "public_key", "listen_addrs",
                          "observed_addr", "protocols"]
    assert "observed_addr" not in IDENTIFY_MINIMAL.to_wire()
    assert "stun_addrs" not in wire and "stun_alternate" not in wire  # as before STUN
    assert list(IDENTIFY_STUN.to_wire())[-2:] == ["stun_addrs", "stun_alternate"]
    assert IDENTIFY_PROTOCOL_ID == "/ipfs/id/1.0.0"
    assert IDENTIFY_PUSH_PROTOCOL_ID == "/ipfs/id/push/1.0.0"


def _identify_wire(**changes: WireValue) -> WireMap:
    wire = IDENTIFY_FULL.to_wire()
    wire.update(changes)
    return wire


@pytest.mark.parametrize(
    ("wire", "fragment"),
    [
        ({k: v for k, v in IDENTIFY_FULL.to_wire().items() if k != "public_key"},
         "identify: missing field 'public_key'"),
        (_identify_wire(listen_addrs=[b""]), r"identify.listen_addrs\[0\]: expected 1 to 256"),
        (_identify_wire(listen_addrs=[b"x"] * 33), "identify.listen_addrs: expected 0 to 32"),
        (_identify_wire(listen_addrs=b"x"), "identify.listen_addrs: expected an array, got bytes"),
        (_identify_wire(observed_addr="x"), "identify.observed_addr: expected bytes, got string"),
        (_identify_wire(protocols=["/a", 7]),
         r"identify.protocols\[1\]: expected a string, got integer"),
        (_identify_wire(agent_version="x" * 257), "identify.agent_version: expected 0 to 256"),
        (_identify_wire(protocol_version=None),
         "identify.protocol_version: expected a string, got nil"),
        (_identify_wire(stun_addrs=[b"x"] * 5), "identify.stun_addrs: expected 0 to 4"),
        (_identify_wire(stun_addrs=[b"x" * 33]), r"identify.stun_addrs\[0\]: expected 1 to 32"),
        (_identify_wire(stun_addrs=b"x"), "identify.stun_addrs: expected an array, got bytes"),
        (_identify_wire(stun_alternate=1), "identify.stun_alternate: expected a boolean"),
    ],
)
def test_bad_identify(wire: WireMap, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Identify.from_wire(wire)


def test_identify_size_limit() -> None:
    big = Identify("p", "a", ED25519_KEY, tuple(bytes([i]) * 200 for i in range(1, 21)), None,
                   ())
    assert big.encoded_size() > MAX_IDENTIFY_SIZE
    with pytest.raises(FrameTooLarge, match=r"identify: encoded message of \d+ bytes exceeds "
                                            r"the limit of 4096 bytes"):
        big.encode()
    with pytest.raises(FrameTooLarge, match="identify: encoded message"):
        Identify.from_wire(big.to_wire())
    assert Identify.from_wire(big.to_wire(), max_size=8192) == big
    assert len(big.encode(max_size=8192)) == big.encoded_size()
    with pytest.raises(FrameTooLarge, match="limit of 100 bytes"):
        IDENTIFY_FULL.encode(max_size=100)


def test_identify_rejects_lists_at_construction() -> None:
    with pytest.raises(ValidationError,
                       match=r"identify\.listen_addrs: expected a tuple, got array"):
        Identify("p", "a", ED25519_KEY, [ADDR_A], None, ())  # type: ignore[arg-type]


# --- autonat -------------------------------------------------------------------------------


def test_autonat_enums_match_the_spec() -> None:
    assert {m.name: m.value for m in ResponseStatus} == {
        "E_INTERNAL_ERROR": 0, "E_REQUEST_REJECTED": 100, "E_DIAL_REFUSED": 101, "OK": 200}
    assert {m.name: m.value for m in DialStatus} == {
        "UNUSED": 0, "E_DIAL_ERROR": 100, "E_DIAL_BACK_ERROR": 101, "OK": 200}
    assert {m.name: m.value for m in DialBackStatus} == {"OK": 0}
    assert DIAL_REQUEST_PROTOCOL_ID == "/libp2p/autonat/2/dial-request"
    assert DIAL_BACK_PROTOCOL_ID == "/libp2p/autonat/2/dial-back"


def test_autonat_wire_layout() -> None:
    assert DIAL_REQUEST.to_wire() == {"type": "dial-request", "addrs": [ADDR_A, ADDR_B],
                                      "nonce": 0x0123456789ABCDEF}
    assert DialResponse(ResponseStatus.OK, 1, DialStatus.E_DIAL_ERROR).to_wire() == {
        "type": "dial-response", "status": 200, "addr_idx": 1, "dial_status": 100}


def test_dial_backs_are_optional_on_the_wire() -> None:
    """Omitted when empty (older peers' bytes unchanged); absent decodes as none reported."""
    assert "filtering" not in DialRequest(addrs=(ADDR_A,), nonce=1).to_wire()
    assert not decode_autonat_message({"type": "dial-request", "addrs": [ADDR_A],
                                       "nonce": 1}).filtering  # type: ignore[union-attr]
    plain = {"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 200}
    assert decode_autonat_message(plain) == DialResponse(ResponseStatus.OK, 0, DialStatus.OK)
    both = DialResponse(ResponseStatus.OK, 0, DialStatus.E_DIAL_ERROR,
                        (DialBackAttempt(DialBackSource.CONTACTED_IP, DialStatus.OK),
                         DialBackAttempt(DialBackSource.OTHER_IP, DialStatus.E_DIAL_ERROR)))
    assert both.to_wire()["dial_backs"] == [{"source": 1, "dial_status": 200},
                                            {"source": 2, "dial_status": 100}]
    assert both.attempt(DialBackSource.CONTACTED_IP) is DialStatus.OK
    assert both.attempt(DialBackSource.OTHER_IP) is DialStatus.E_DIAL_ERROR
    assert DialResponse(ResponseStatus.OK, 0, DialStatus.OK).attempt(
        DialBackSource.OTHER_IP) is None


def test_integer_statuses_are_stored_as_enum_members() -> None:
    response = DialResponse(200, 0, 101)  # type: ignore[arg-type]
    assert response.status is ResponseStatus.OK
    assert response.dial_status is DialStatus.E_DIAL_BACK_ERROR
    assert DialBackResponse(0).status is DialBackStatus.OK  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("m", "fragment"),
    [
        ({"addrs": [ADDR_A], "nonce": 1}, "autonat message: missing field 'type'"),
        ({"type": "dial-me", "nonce": 1}, r"autonat message: unknown type 'dial-me' \(known: "),
        ({"type": 7}, "autonat message: unknown type 7"),
        ({"type": "dial-request", "addrs": [], "nonce": 1},
         "dial-request.addrs: expected 1 to 16 items, got 0"),
        ({"type": "dial-request", "addrs": [ADDR_A] * 17, "nonce": 1},
         "dial-request.addrs: expected 1 to 16 items, got 17"),
        ({"type": "dial-request", "addrs": [b"x" * 257], "nonce": 1},
         r"dial-request.addrs\[0\]: expected 1 to 256 bytes, got 257"),
        ({"type": "dial-request", "addrs": [ADDR_A], "nonce": -1},
         r"dial-request.nonce: -1 is out of range \[0, 18446744073709551615\]"),
        ({"type": "dial-request", "addrs": [ADDR_A], "nonce": True},
         "dial-request.nonce: expected an integer, got bool"),
        ({"type": "dial-request", "addrs": [ADDR_A]}, "dial-request: missing field 'nonce'"),
        ({"type": "dial-request", "addrs": [ADDR_A], "nonce": 1, "filtering": 1},
         "dial-request.filtering: expected a bool, got int"),
        ({"type": "dial-data-request", "addr_idx": 2**32, "num_bytes": 1},
         "dial-data-request.addr_idx: 4294967296 is out of range"),
        ({"type": "dial-data-request", "addr_idx": 0, "num_bytes": False},
         "dial-data-request.num_bytes: expected an integer, got bool"),
        ({"type": "dial-data-response", "data": b""},
         "dial-data-response.data: expected 1 to 4096 bytes, got 0"),
        ({"type": "dial-data-response", "data": b"x" * 4097},
         "dial-data-response.data: expected 1 to 4096 bytes, got 4097"),
        ({"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 0,
          "dial_backs": [{"source": 3, "dial_status": 200}]},
         r"dial-response.dial_backs\[0\].source: unknown DialBackSource value 3"),
        ({"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 0,
          "dial_backs": [{"source": 1, "dial_status": 200}, {"source": 1, "dial_status": 0}]},
         "dial-response.dial_backs: one attempt per source at most"),
        ({"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 0,
          "dial_backs": [{"source": 1, "dial_status": 200}] * 3},
         "dial-response.dial_backs: expected 0 to 2 items, got 3"),
        ({"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 0,
          "dial_backs": [7]}, r"dial-response.dial_backs\[0\]: expected a map, got int"),
        ({"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 0,
          "dial_backs": {}}, "dial-response.dial_backs: expected an array"),
        ({"type": "dial-response", "status": 201, "addr_idx": 0, "dial_status": 0},
         r"dial-response.status: unknown ResponseStatus value 201 \(known: E_INTERNAL_ERROR=0"),
        ({"type": "dial-response", "status": 200, "addr_idx": 0, "dial_status": 1},
         "dial-response.dial_status: unknown DialStatus value 1"),
        ({"type": "dial-response", "status": True, "addr_idx": 0, "dial_status": 0},
         "dial-response.status: expected an integer, got bool"),
        ({"type": "dial-back", "nonce": 2**64}, "dial-back.nonce: 18446744073709551616 is out"),
        ({"type": "dial-back-response", "status": 1},
         "dial-back-response.status: unknown DialBackStatus value 1"),
        ({"type": "dial-back-response"}, "dial-back-response: missing field 'status'"),
    ],
)
def test_bad_autonat_messages(m: WireMap, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        decode_autonat_message(m)


def test_from_wire_checks_the_type_tag() -> None:
    with pytest.raises(ValidationError, match="dial-back: field 'type' must be 'dial-back', "
                                              "got 'dial-request'"):
        DialBack.from_wire(DIAL_REQUEST.to_wire())
    with pytest.raises(ValidationError, match="hello frame: field 't' must be 'hello'"):
        Hello.from_wire(Auth(SIGNATURE).to_wire())


def test_autonat_decoder_rejects_non_maps() -> None:
    with pytest.raises(ValidationError, match="autonat message: expected a map, got array"):
        decode_autonat_message([1])  # type: ignore[arg-type]
