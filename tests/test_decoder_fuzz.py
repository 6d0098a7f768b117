"""Decoders under hostile input: any bytes give a message or a ProtocolError.

Three sources of input: arbitrary bytes, the golden vectors mutated at the
byte level (bit flips, truncation, insertion, deletion), and the golden
vectors mutated at the field level (values swapped between fields, fields
dropped or renamed, values replaced by arbitrary wire values) and re-encoded
with plain msgpack, so the decoders see well-formed frames with wrong
contents. Whatever a decoder accepts must survive a re-encode unchanged.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import (
    Auth,
    DialBack,
    DialBackResponse,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    ErrorFrame,
    Hello,
    Identify,
    ProtocolError,
    StreamFrame,
    WindowUpdate,
    WireMap,
    WireMessage,
    WireValue,
    decode_autonat_message,
    decode_handshake_frame,
    decode_stream_frame,
    unpack,
)
from protocols.bootstrap import PeersRequest, PeersResponse


def _decode_peers(data: bytes) -> object:
    """A peer-exchange message: the request or the response (each stream carries both)."""
    obj = unpack(data)
    try:
        return PeersRequest.from_wire(obj)
    except ProtocolError:
        return PeersResponse.from_wire(obj)


GOLDEN = {name: bytes.fromhex(hex_)
          for name, hex_ in json.loads(
              (Path(__file__).parent / "golden" / "messages.json").read_text()).items()}
SEEDS = sorted(GOLDEN)


def _via_stream_frame(data: bytes) -> object:
    """The full post-handshake path: frame, then both message decoders."""
    frame = decode_stream_frame(data)
    if isinstance(frame, StreamFrame):
        for decode in (decode_autonat_message, Identify.from_wire):
            with contextlib.suppress(ProtocolError):
                decode(frame.message)
    return frame


DECODERS: dict[str, Callable[[bytes], object]] = {
    "unpack": unpack,
    "handshake": decode_handshake_frame,
    "stream": decode_stream_frame,
    "stream+messages": _via_stream_frame,
    "identify": lambda data: Identify.from_wire(unpack(data)),
    "autonat": lambda data: decode_autonat_message(unpack(data)),
    "peers": _decode_peers,
}

FROM_WIRE: list[Callable[[WireMap], WireMessage]] = [
    Hello.from_wire, Auth.from_wire, StreamFrame.from_wire, ErrorFrame.from_wire,
    WindowUpdate.from_wire,
    Identify.from_wire, DialRequest.from_wire, DialDataRequest.from_wire,
    DialDataResponse.from_wire, DialResponse.from_wire, DialBack.from_wire,
    DialBackResponse.from_wire, decode_autonat_message,
    PeersRequest.from_wire, PeersResponse.from_wire,
]


def assert_total(decode: Callable[[bytes], object], data: bytes) -> None:
    """``decode`` returns or raises ProtocolError; accepted messages re-encode stably."""
    try:
        result = decode(data)
    except ProtocolError:
        return
    if isinstance(result, WireMessage):
        assert decode(result.encode()) == result


def assert_total_from_wire(build: Callable[[WireMap], WireMessage], obj: WireMap) -> None:
    try:
        message = build(obj)
    except ProtocolError:
        return
    assert build(message.to_wire()) == message


# --- strategies -----------------------------------------------------------------------

wire_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False) | st.text(max_size=12) | st.binary(max_size=40))
wire_values: st.SearchStrategy[object] = st.recursive(  # floats too: not WireValue
    wire_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)

KEYS = ["t", "v", "key", "nonce", "sig", "s", "p", "m", "fin", "err", "w", "type", "addrs",
        "addr_idx", "num_bytes", "data", "status", "dial_status", "protocol_version",
        "agent_version", "public_key", "listen_addrs", "observed_addr", "protocols",
        "max", "peers", "peer_id"]


@st.composite
def byte_mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(GOLDEN[draw(st.sampled_from(SEEDS))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif data:
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


def _decoded_seed(draw: st.DrawFn) -> WireMap:
    obj: WireMap = msgpack.unpackb(GOLDEN[draw(st.sampled_from(SEEDS))], raw=False)
    return obj


@st.composite
def field_mutants(draw: st.DrawFn) -> WireMap:
    obj = _decoded_seed(draw)
    target: dict[str, object] = obj  # type: ignore[assignment]
    if isinstance(obj.get("m"), dict) and draw(st.booleans()):
        target = obj["m"]  # type: ignore[assignment]
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(target)
        op = draw(st.sampled_from(["swap", "drop", "rename", "replace", "add"]))
        if op == "swap" and len(keys) >= 2:
            a, b = draw(st.permutations(keys))[:2]
            target[a], target[b] = target[b], target[a]
        elif op == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        elif op == "rename" and keys:
            old = draw(st.sampled_from(keys))
            target[draw(st.sampled_from(KEYS))] = target.pop(old)
        elif op == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(wire_values)
        else:
            target[draw(st.sampled_from(KEYS))] = draw(wire_values)
    return obj


def _raw(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@FUZZ
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes(decoder: str, data: bytes) -> None:
    assert_total(DECODERS[decoder], data)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@FUZZ
@given(data=byte_mutants())
def test_byte_mutated_golden_frames(decoder: str, data: bytes) -> None:
    assert_total(DECODERS[decoder], data)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@FUZZ
@given(obj=field_mutants())
def test_field_mutated_golden_frames(decoder: str, obj: WireMap) -> None:
    assert_total(DECODERS[decoder], _raw(obj))


@FUZZ
@given(obj=field_mutants() | st.dictionaries(st.sampled_from(KEYS), wire_values, max_size=8))
def test_from_wire_on_arbitrary_maps(obj: WireMap) -> None:
    for build in FROM_WIRE:
        assert_total_from_wire(build, obj)


@given(value=wire_values)
def test_from_wire_on_non_maps(value: WireValue) -> None:
    for build in FROM_WIRE:
        assert_total_from_wire(build, value)  # type: ignore[arg-type]


def test_every_golden_frame_decodes_somewhere() -> None:
    # The seeds are valid, so mutations start from frames the decoders accept.
    for name, data in GOLDEN.items():
        accepted = []
        for decode in DECODERS.values():
            try:
                decode(data)
                accepted.append(decode)
            except ProtocolError:
                pass
        assert len(accepted) >= 2, name  # unpack plus at least one message decoder
