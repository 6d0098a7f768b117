"""The msgpack codec: limits, the closed value universe, one error family."""

from __future__ import annotations

import enum

import msgpack
import pytest

from protocols import DEFAULT_LIMITS, DecodeError, FrameTooLarge, Limits, ValidationError, WireMap
from protocols import pack as pack_frame
from protocols import unpack as unpack_frame
from protocols.wire._codec import (
    check_bool,
    check_bytes,
    check_enum,
    check_int,
    check_str,
    check_wire_value,
    require,
)


def raw(obj: object) -> bytes:
    """Encode with plain msgpack, bypassing our checks (a hostile peer's encoder)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def test_round_trip_of_every_wire_type() -> None:
    frame: WireMap = {"n": None, "b": True, "i": -(2**63), "u": 2**64 - 1, "s": "héllo",
             "x": b"\x00\xff", "l": [1, [b"", {"k": "v"}]], "m": {}}
    assert unpack_frame(pack_frame(frame)) == frame


def test_pack_is_deterministic_and_uses_bin_type() -> None:
    assert pack_frame({"a": b"\x01"}) == b"\x81\xa1a\xc4\x01\x01"
    assert pack_frame({"a": "x"}) == b"\x81\xa1a\xa1x"


# --- limits -----------------------------------------------------------------


def test_limits_defaults_and_validation() -> None:
    assert DEFAULT_LIMITS.max_frame_size == 64 * 1024
    with pytest.raises(ValueError, match="max_str_len must be a positive integer"):
        Limits(max_str_len=0)
    with pytest.raises(ValueError, match="max_depth must be a positive integer"):
        Limits(max_depth=True)
    with pytest.raises(ValueError, match="max_depth must be at most 64"):
        Limits(max_depth=65)
    with pytest.raises(ValueError, match="max_frame_size must be at most"):
        Limits(max_frame_size=2**30)


def test_oversized_frame_is_refused_before_parsing() -> None:
    limits = Limits(max_frame_size=100)
    data = raw({"pad": b"x" * 200})
    with pytest.raises(FrameTooLarge, match=r"frame of \d+ bytes exceeds the limit of 100 bytes"):
        unpack_frame(data, limits)
    # Even bytes that are not msgpack at all: the length check comes first.
    with pytest.raises(FrameTooLarge, match="exceeds the limit"):
        unpack_frame(b"\xc1" * 101, limits)


def test_pack_refuses_frames_the_peer_would_refuse() -> None:
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 100 bytes"):
        pack_frame({"pad": b"x" * 200}, Limits(max_frame_size=100, max_bin_len=1000))
    with pytest.raises(FrameTooLarge, match="bytes of length 200 exceeds the limit of 10"):
        pack_frame({"pad": b"x" * 200}, Limits(max_bin_len=10))


@pytest.mark.parametrize(
    ("limits", "obj", "fragment"),
    [
        (Limits(max_str_len=3), {"a": "abcd"}, "max_str_len(3)"),
        (Limits(max_str_len=3), {"abcd": 1}, "max_str_len(3)"),
        (Limits(max_bin_len=3), {"a": b"abcd"}, "max_bin_len(3)"),
        (Limits(max_array_len=3), {"a": [1, 2, 3, 4]}, "max_array_len(3)"),
        (Limits(max_map_len=2), {"a": 1, "b": 2, "c": 3}, "max_map_len(2)"),
        (Limits(max_map_len=2), {"a": {"x": 1, "y": 2, "z": 3}}, "max_map_len(2)"),
    ],
)
def test_container_limits(limits: Limits, obj: object, fragment: str) -> None:
    with pytest.raises(FrameTooLarge, match=r"frame exceeds a limit: .*" + fragment.replace(
            "(", r"\(").replace(")", r"\)")):
        unpack_frame(raw(obj), limits)


def test_str_limit_counts_utf8_bytes_not_characters() -> None:
    limits = Limits(max_str_len=4)
    assert unpack_frame(raw({"a": "éé"}), limits) == {"a": "éé"}
    with pytest.raises(FrameTooLarge, match="max_str_len"):
        unpack_frame(raw({"a": "ééé"}), limits)
    with pytest.raises(FrameTooLarge, match="string of length 6 exceeds the limit of 4"):
        pack_frame({"a": "ééé"}, limits)


def test_nesting_depth_limit() -> None:
    limits = Limits(max_depth=3)
    assert unpack_frame(raw({"a": [[1]]}), limits) == {"a": [[1]]}
    with pytest.raises(FrameTooLarge, match=r"frame\.a\[0\]\[0\]: nesting deeper than 3"):
        unpack_frame(raw({"a": [[[1]]]}), limits)
    with pytest.raises(FrameTooLarge, match="nesting deeper than 3"):
        pack_frame({"a": {"b": {"c": {}}}}, limits)


def test_nesting_beyond_the_parser_stack_is_frame_too_large() -> None:
    data = b"\x81\xa1a" + b"\x91" * 5000 + b"\xc0"
    with pytest.raises(FrameTooLarge, match="nesting"):
        unpack_frame(data)


# --- the value universe -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (b"", DecodeError, "empty frame"),
        (raw({"a": 1}) + b"\x00", DecodeError, "trailing bytes"),
        (raw([1, 2]), DecodeError, "must be a msgpack map, got array"),
        (raw("hello"), DecodeError, "must be a msgpack map, got string"),
        (raw(7), DecodeError, "must be a msgpack map, got integer"),
        (raw({1: "a"}), DecodeError, "map keys must be strings"),
        (b"\x81\xc4\x01k\x01", DecodeError, "map keys must be strings, got bytes"),
        (b"\x82\xa1a\x01\xa1a\x02", DecodeError, "duplicate map key 'a'"),
        (raw({"a": 1.5}), DecodeError, "frame.a: float values are not allowed"),
        (raw({"a": [0.0]}), DecodeError, r"frame.a\[0\]: float values"),
        (b"\x81\xa1a\xd4\x05\x00", DecodeError, "ext types"),
        (b"\x81\xa1a\xc7\x00\x05", DecodeError, r"ext types are not allowed \(ext type 5\)"),
        (b"\x81\xa1a\xd6\xff\x00\x00\x00\x01", DecodeError, "timestamps"),
        (b"\x81\xa1a\xc7\x00\xff", DecodeError, "timestamps"),
        (b"\x81\xa1a\xc1", DecodeError, "reserved type byte"),
        (b"\x81\xa1a\xa2\xff\xfe", DecodeError, "not valid UTF-8"),
        (b"\x82\xa1a\x01", DecodeError, "truncated"),
        (b"\xdf\xff\xff\xff\xff", FrameTooLarge, "max_map_len"),
    ],
)
def test_malformed_frames(data: bytes, error: type[DecodeError], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        unpack_frame(data)


def test_text_messages_are_refused() -> None:
    with pytest.raises(DecodeError, match="a frame must be binary, got str"):
        unpack_frame("{}")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = raw({"a": 1})
    assert unpack_frame(bytearray(data)) == {"a": 1}  # type: ignore[arg-type]
    assert unpack_frame(memoryview(data)) == {"a": 1}  # type: ignore[arg-type]


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (1.0, "float values are not allowed"),
        ((1, 2), "tuple values are not allowed"),
        (bytearray(b"x"), "bytearray values are not allowed"),
        (2**64, "does not fit in msgpack"),
        (-(2**63) - 1, "does not fit in msgpack"),
        ("\ud800", "not encodable as UTF-8"),
        ({1: 2}, "map keys must be strings, got integer"),
    ],
)
def test_pack_refuses_values_outside_the_universe(value: object, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        pack_frame({"v": value})  # type: ignore[dict-item]


def test_check_wire_value_accepts_int_subclasses_but_pack_is_plain() -> None:
    check_wire_value({"c": Colour.RED})
    assert unpack_frame(pack_frame({"c": Colour.RED})) == {"c": 1}


def test_pack_rejects_non_dict_as_programming_error() -> None:
    with pytest.raises(TypeError, match="a frame must be a dict"):
        pack_frame([1])  # type: ignore[arg-type]


# --- field checkers -------------------------------------------------------------


def test_check_int_refuses_bool_and_float() -> None:
    assert check_int(5, "f", 0, 10) == 5
    with pytest.raises(ValidationError, match="f: expected an integer, got bool"):
        check_int(True, "f", 0, 10)
    with pytest.raises(ValidationError, match="f: expected an integer, got float"):
        check_int(1.0, "f", 0, 10)
    with pytest.raises(ValidationError, match=r"f: 11 is out of range \[0, 10\]"):
        check_int(11, "f", 0, 10)


def test_check_bool_refuses_ints() -> None:
    assert check_bool(False, "f") is False
    with pytest.raises(ValidationError, match="f: expected a bool, got integer"):
        check_bool(1, "f")


def test_check_bytes_messages() -> None:
    with pytest.raises(ValidationError, match="n: expected exactly 32 bytes, got 31"):
        check_bytes(b"x" * 31, "n", 32, 32)
    with pytest.raises(ValidationError, match="a: expected 1 to 4 bytes, got 0"):
        check_bytes(b"", "a", 1, 4)
    with pytest.raises(ValidationError, match="a: expected bytes, got string"):
        check_bytes("abc", "a", 1, 4)


def test_check_str_messages() -> None:
    assert check_str("ok", "s", 1, 4) == "ok"
    with pytest.raises(ValidationError, match="s: expected 1 to 4 UTF-8 bytes, got 6"):
        check_str("ééé", "s", 1, 4)
    with pytest.raises(ValidationError, match="s: contains control characters"):
        check_str("a\nb", "s", 1, 4)
    with pytest.raises(ValidationError, match="s: string is not encodable as UTF-8"):
        check_str("\udc80", "s", 1, 4)


def test_check_enum_names_known_values() -> None:
    assert check_enum(1, Colour, "c") is Colour.RED
    with pytest.raises(ValidationError, match=r"c: unknown Colour value 2 \(known: RED=1\)"):
        check_enum(2, Colour, "c")
    with pytest.raises(ValidationError, match="c: expected an integer, got bool"):
        check_enum(True, Colour, "c")


def test_require_names_the_missing_field() -> None:
    assert require({"a": 1}, "a", "thing") == 1
    with pytest.raises(ValidationError, match="thing: missing field 'b'"):
        require({"a": 1}, "b", "thing")
    with pytest.raises(ValidationError, match="thing: expected a map, got array"):
        require([1], "b", "thing")  # type: ignore[arg-type]


def test_valid_frames_are_checked_once_without_the_slow_walk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # msgpack's own limits already hold for decoded frames; the path-building walk only
    # runs to explain a problem (packing: after a fast pass said "look closer")
    from protocols.wire import _codec

    def walked(*args: object) -> None:
        raise AssertionError("the slow walk ran for a valid frame")

    monkeypatch.setattr(_codec, "_walk", walked)
    frame = {"a": [1, "x" * 100, b"\x00" * 50, {"b": None, "c": True}], "é": "ü" * 10}
    assert _codec.unpack(_codec.pack(frame)) == frame
