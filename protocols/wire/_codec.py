"""The wire codec: one frame is one msgpack map, decoded under explicit limits.

Theory of operation
-------------------
Every WebSocket binary message carries exactly one msgpack map
(docs/architecture.md, "Wire protocol"). :func:`unpack` is the only place
untrusted bytes meet the msgpack parser, and it keeps three promises that
the rest of ``protocols/`` relies on:

1. **Bounded memory.** The frame length is checked *before* parsing, and
   msgpack itself is given the per-container limits from :class:`Limits`, so
   a small frame cannot declare a huge array or string.
2. **A closed value universe.** A decoded frame contains only
   :data:`WireValue` values: nil, bool, int, str (valid UTF-8), bytes, lists
   and maps with string keys. Floats, ext types, timestamps, non-string or
   duplicate map keys, trailing bytes and non-map top levels are rejected, and
   nesting is bounded by ``Limits.max_depth``.
3. **One error family.** Whatever the bytes, the result is a map or a
   :class:`~protocols.DecodeError` (:class:`~protocols.FrameTooLarge` when a
   limit was exceeded) - never a msgpack, Unicode or overflow exception.

:func:`pack` is the mirror image: it encodes with ``use_bin_type`` and checks
the same rules, so we never send a frame that a peer with the same limits
would refuse.

The second half of the module holds the small field checkers shared by the
message dataclasses (``check_int``, ``check_bytes`` ...). They run both in
``__post_init__`` (so an invalid message cannot even be constructed) and in
``from_wire``, and raise :class:`~protocols.ValidationError` with the field's
name and what was wrong. ``bool`` is an ``int`` subclass in Python; the
integer checker refuses it explicitly.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Final, TypeAlias, TypeVar

import msgpack

from ..core import DecodeError, FrameTooLarge, ProtocolError, ValidationError

WireValue: TypeAlias = "bool | int | str | bytes | list[WireValue] | dict[str, WireValue] | None"
"""Everything a decoded frame may contain (recursive)."""

WireMap: TypeAlias = "dict[str, WireValue]"
"""A msgpack map with string keys: a frame, or a message carried in one."""

U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
MAX_MULTIADDR_SIZE: Final = 256
"""Upper bound for one binary multiaddr in any message."""

_MSGPACK_INT_MIN: Final = -(2**63)
_ABSOLUTE_MAX_FRAME: Final = 16 * 1024 * 1024
_ABSOLUTE_MAX_DEPTH: Final = 64
_SHOW_LIMIT: Final = 40


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied to every frame; lengths in bytes (str: UTF-8 bytes) or items.

    ``max_depth`` counts containers: a flat frame map has depth 1, a list
    inside it depth 2.
    """

    max_frame_size: int = 64 * 1024
    max_str_len: int = 4096
    max_bin_len: int = 64 * 1024
    max_array_len: int = 256
    max_map_len: int = 64
    max_depth: int = 16

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{spec.name} must be a positive integer, got {value!r}")
        if self.max_frame_size > _ABSOLUTE_MAX_FRAME:
            raise ValueError(f"Limits.max_frame_size must be at most {_ABSOLUTE_MAX_FRAME}")
        if self.max_depth > _ABSOLUTE_MAX_DEPTH:
            raise ValueError(f"Limits.max_depth must be at most {_ABSOLUTE_MAX_DEPTH}")


DEFAULT_LIMITS: Final = Limits()

# Only the type universe and the absolute caps: used to check values at
# construction time, when the connection's limits are not known yet.
STRUCTURAL_LIMITS: Final = Limits(
    max_frame_size=_ABSOLUTE_MAX_FRAME,
    max_str_len=_ABSOLUTE_MAX_FRAME,
    max_bin_len=_ABSOLUTE_MAX_FRAME,
    max_array_len=_ABSOLUTE_MAX_FRAME,
    max_map_len=_ABSOLUTE_MAX_FRAME,
    max_depth=_ABSOLUTE_MAX_DEPTH,
)


def show(value: object) -> str:
    """A short ``repr`` for error messages (peer-controlled values can be long)."""
    text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else text[:_SHOW_LIMIT] + "..."


def kind(value: object) -> str:
    """The wire name of a value's type, for error messages."""
    names = {type(None): "nil", bool: "bool", int: "integer", str: "string",
             bytes: "bytes", list: "array", dict: "map", float: "float"}
    return names.get(type(value), type(value).__name__)


# --- encoding and decoding whole frames ------------------------------------


def pack(obj: WireMap, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode one frame; raise FrameTooLarge/DecodeError if a peer would refuse it."""
    if not isinstance(obj, dict):
        raise TypeError(f"a frame must be a dict, got {type(obj).__name__}")
    check_wire_value(obj, limits)
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(data) > limits.max_frame_size:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the limit of "
                            f"{limits.max_frame_size} bytes")
    return data


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS) -> WireMap:
    """Decode one frame into a map; any bad input raises DecodeError or a subclass."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"a frame must be binary, got {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > limits.max_frame_size:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of "
                            f"{limits.max_frame_size} bytes")
    if size == 0:
        raise DecodeError("empty frame")
    obj = _unpackb(data, limits)
    if not isinstance(obj, dict):
        raise DecodeError(f"a frame must be a msgpack map, got {kind(obj)}")
    # msgpack already enforced every length limit, string keys and no ext types
    # (see _unpackb); left to check: the nesting depth, and no floats
    if not _decoded_fits(obj, limits.max_depth):
        _walk(obj, limits, "frame", 1)  # raises, naming the offending element
    return obj


def _decoded_fits(obj: object, max_depth: int) -> bool:
    """What msgpack's own limits leave open: no container deeper than ``max_depth``
    and no float anywhere (a False answer sends the caller to the precise walk)."""
    level: list[object] = [obj]
    for _ in range(max_depth):
        deeper: list[object] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            for item in items:  # type: ignore[attr-defined]
                kind_ = type(item)
                if kind_ is list or kind_ is dict:
                    deeper.append(item)
                elif kind_ is float:
                    return False
        if not deeper:
            return True
        level = deeper
    return False


def _unpackb(data: bytes | bytearray | memoryview, limits: Limits) -> object:
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, timestamp=0,
            ext_hook=_reject_ext, object_pairs_hook=_build_map,
            max_str_len=limits.max_str_len, max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len, max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # the boundary: whatever msgpack raises becomes ours
        raise _translate(exc) from None


def _translate(exc: Exception) -> DecodeError:
    text = str(exc)
    if isinstance(exc, msgpack.ExtraData):
        return DecodeError("trailing bytes after the msgpack object")
    if isinstance(exc, msgpack.StackError):
        return FrameTooLarge("msgpack nesting exceeds the parser's stack")
    if isinstance(exc, msgpack.FormatError):
        return DecodeError("not msgpack: reserved type byte")
    if isinstance(exc, UnicodeDecodeError):
        return DecodeError("a string is not valid UTF-8")
    if "max_ext_len" in text or "timestamp" in text:
        return DecodeError("ext types (including timestamps) are not allowed")
    if "exceeds max_" in text:
        return FrameTooLarge(f"frame exceeds a limit: {text}")
    if "incomplete" in text:
        return DecodeError("truncated msgpack object")
    if "map key" in text:
        return DecodeError("map keys must be strings")
    return DecodeError(f"not valid msgpack ({type(exc).__name__}: {show(text)})")


_STR_ONLY: Final = frozenset({str})


def _reject_ext(code: int, data: bytes) -> object:
    raise DecodeError(f"ext types are not allowed (ext type {code})")


def _build_map(pairs: list[tuple[object, object]]) -> dict[object, object]:
    """A decoded map: string keys only, none twice (checked in C when all is well)."""
    result = dict(pairs)
    if len(result) == len(pairs) and _STR_ONLY.issuperset(map(type, result)):
        return result
    seen: set[object] = set()
    for key, _value in pairs:
        if not isinstance(key, str):
            raise DecodeError(f"map keys must be strings, got {kind(key)}")
        if key in seen:
            raise DecodeError(f"duplicate map key {show(key)}")
        seen.add(key)
    return result  # str subclasses cannot come out of msgpack; kept for safety


# --- the value universe ------------------------------------------------------


def check_wire_value(value: object, limits: Limits = STRUCTURAL_LIMITS,
                     path: str = "frame") -> None:
    """Raise unless ``value`` is a :data:`WireValue` within ``limits``.

    A fast pass (:func:`_fits`) accepts the common case without building a
    path for every element; only when it says no does the precise walk run,
    to raise the same error naming the offending element.
    """
    if not _fits(value, limits, 1):
        _walk(value, limits, path, 1)


def _fits(value: object, limits: Limits, depth: int) -> bool:
    """True when ``value`` is certainly valid (exact types only); False means "look closer"."""
    kind_ = type(value)
    if kind_ is str:
        if value.isascii():  # type: ignore[attr-defined]
            return len(value) <= limits.max_str_len  # type: ignore[arg-type]
        return _utf8_fits(value, limits.max_str_len)  # type: ignore[arg-type]
    if kind_ is bytes:
        return len(value) <= limits.max_bin_len  # type: ignore[arg-type]
    if kind_ is int:
        return _MSGPACK_INT_MIN <= value <= U64_MAX  # type: ignore[operator]
    if value is None or kind_ is bool:
        return True
    if depth > limits.max_depth:
        return False
    if kind_ is list:
        return len(value) <= limits.max_array_len and all(  # type: ignore[arg-type]
            _fits(item, limits, depth + 1) for item in value)  # type: ignore[attr-defined]
    if kind_ is dict:
        return len(value) <= limits.max_map_len and all(  # type: ignore[arg-type]
            type(key) is str and _fits(key, limits, depth) and _fits(item, limits, depth + 1)
            for key, item in value.items())  # type: ignore[attr-defined]
    return False


def _utf8_fits(text: str, limit: int) -> bool:
    try:
        return len(text.encode("utf-8")) <= limit
    except UnicodeEncodeError:
        return False


def _walk(value: object, limits: Limits, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _MSGPACK_INT_MIN <= value <= U64_MAX:
            raise DecodeError(f"{path}: integer {show(value)} does not fit in msgpack")
    elif isinstance(value, str):
        _check_len(_utf8_len(value, path, DecodeError), limits.max_str_len, path, "string")
    elif isinstance(value, bytes):
        _check_len(len(value), limits.max_bin_len, path, "bytes")
    elif isinstance(value, list | dict):
        _walk_container(value, limits, path, depth)
    else:
        raise DecodeError(f"{path}: {kind(value)} values are not allowed in frames")


def _walk_container(value: list[object] | dict[object, object], limits: Limits,
                    path: str, depth: int) -> None:
    if depth > limits.max_depth:
        raise FrameTooLarge(f"{path}: nesting deeper than {limits.max_depth} levels")
    if isinstance(value, list):
        _check_len(len(value), limits.max_array_len, path, "array")
        for index, item in enumerate(value):
            _walk(item, limits, f"{path}[{index}]", depth + 1)
        return
    _check_len(len(value), limits.max_map_len, path, "map")
    for key, item in value.items():
        if not isinstance(key, str):
            raise DecodeError(f"{path}: map keys must be strings, got {kind(key)}")
        _check_len(_utf8_len(key, path, DecodeError), limits.max_str_len, path, "map key")
        _walk(item, limits, f"{path}.{key[:_SHOW_LIMIT]}", depth + 1)


def _check_len(size: int, limit: int, path: str, what: str) -> None:
    if size > limit:
        raise FrameTooLarge(f"{path}: {what} of length {size} exceeds the limit of {limit}")


def _utf8_len(text: str, path: str, error: type[ProtocolError]) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise error(f"{path}: string is not encodable as UTF-8") from None


# --- field checkers for message dataclasses ---------------------------------


class WireMessage(ABC):
    """Base of every message dataclass: ``to_wire`` plus an ``encode`` shortcut."""

    __slots__ = ()

    @abstractmethod
    def to_wire(self) -> WireMap:
        """The message as a wire map (deterministic key order)."""

    def encode(self, limits: Limits = DEFAULT_LIMITS) -> bytes:
        """The message as msgpack bytes, checked against ``limits``."""
        return pack(self.to_wire(), limits)


def require(obj: WireMap, key: str, where: str) -> WireValue:
    """``obj[key]``, or ValidationError naming the missing field."""
    if not isinstance(obj, dict):
        raise ValidationError(f"{where}: expected a map, got {kind(obj)}")
    if key not in obj:
        raise ValidationError(f"{where}: missing field {key!r}")
    return obj[key]


def check_tag(obj: WireMap, key: str, expected: str, where: str) -> None:
    """Require ``obj[key] == expected`` (the type tag of a message)."""
    value = require(obj, key, where)
    if value != expected or not isinstance(value, str):
        raise ValidationError(f"{where}: field {key!r} must be {expected!r}, got {show(value)}")


def check_int(value: object, field: str, lo: int, hi: int) -> int:
    """An integer (never a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field}: expected an integer, got {kind(value)}")
    if not lo <= value <= hi:
        raise ValidationError(f"{field}: {show(value)} is out of range [{lo}, {hi}]")
    return int(value)


def check_bool(value: object, field: str) -> bool:
    """A real bool (not 0/1)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{field}: expected a bool, got {kind(value)}")
    return value


def check_bytes(value: object, field: str, min_len: int, max_len: int) -> bytes:
    """Bytes whose length is in ``[min_len, max_len]``."""
    if not isinstance(value, bytes):
        raise ValidationError(f"{field}: expected bytes, got {kind(value)}")
    if not min_len <= len(value) <= max_len:
        wanted = (f"exactly {min_len}" if min_len == max_len
                  else f"{min_len} to {max_len}")
        raise ValidationError(f"{field}: expected {wanted} bytes, got {len(value)}")
    return value


def check_str(value: object, field: str, min_len: int, max_len: int) -> str:
    """A printable string of ``min_len`` to ``max_len`` UTF-8 bytes."""
    if not isinstance(value, str):
        raise ValidationError(f"{field}: expected a string, got {kind(value)}")
    size = len(value) if value.isascii() else _utf8_len(value, field, ValidationError)
    if not min_len <= size <= max_len:
        raise ValidationError(f"{field}: expected {min_len} to {max_len} UTF-8 bytes, "
                              f"got {size}")
    if not value.isprintable():
        raise ValidationError(f"{field}: contains control characters: {show(value)}")
    return value


def check_tuple(value: object, field: str, min_count: int, max_count: int) -> tuple[object, ...]:
    """A tuple of ``min_count`` to ``max_count`` items (items checked by the caller)."""
    if not isinstance(value, tuple):
        raise ValidationError(f"{field}: expected a tuple, got {kind(value)}")
    if not min_count <= len(value) <= max_count:
        raise ValidationError(f"{field}: expected {min_count} to {max_count} items, "
                              f"got {len(value)}")
    return value


def check_bytes_tuple(value: object, field: str, min_count: int, max_count: int,
                      max_len: int) -> tuple[bytes, ...]:
    """A tuple of non-empty bytes items, each at most ``max_len`` long."""
    items = check_tuple(value, field, min_count, max_count)
    for i, item in enumerate(items):
        if type(item) is not bytes or not 1 <= len(item) <= max_len:
            check_bytes(item, f"{field}[{i}]", 1, max_len)  # raises, naming the item
    return items  # type: ignore[return-value]  # every item was checked


def check_str_tuple(value: object, field: str, min_count: int, max_count: int,
                    max_len: int) -> tuple[str, ...]:
    """A tuple of non-empty printable strings, each at most ``max_len`` bytes."""
    items = check_tuple(value, field, min_count, max_count)
    for i, item in enumerate(items):
        if not (type(item) is str and item.isascii() and 1 <= len(item) <= max_len
                and item.isprintable()):
            check_str(item, f"{field}[{i}]", 1, max_len)  # raises, or passes non-ASCII text
    return items  # type: ignore[return-value]  # every item was checked


def wire_tuple(value: WireValue, field: str) -> tuple[WireValue, ...]:
    """A wire array as a tuple (the dataclasses store tuples)."""
    if not isinstance(value, list):
        raise ValidationError(f"{field}: expected an array, got {kind(value)}")
    return tuple(value)


_E = TypeVar("_E", bound=enum.IntEnum)


def check_enum(value: object, enum_type: type[_E], field: str) -> _E:
    """A member of ``enum_type`` given as the member or its integer value."""
    number = check_int(value, field, _MSGPACK_INT_MIN, U64_MAX)
    try:
        return enum_type(number)
    except ValueError:
        known = ", ".join(f"{m.name}={m.value}" for m in enum_type)
        raise ValidationError(f"{field}: unknown {enum_type.__name__} value {number} "
                              f"(known: {known})") from None
