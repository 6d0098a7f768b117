"""The bootstrap ``GET /status`` document, Pyrsia-compatible.

The fields: (docs/architecture.md, "Bootstrap /status").

Theory of operation
-------------------
A Pyrsia node serves::

    {"peers_count": 1, "peer_id": "12D3KooW...", "peer_addrs": ["/ip4/.../p2p/12D3KooW..."]}

Our nodes serve the same three fields first, then optional ones
(``nat_status``, ``nat_mapping``, ``state``, ``uptime_s``, ``connections``,
``probes_served``, ``version``, ``udp`` - an object ``{"mapping", "filtering"}``)
and any ``extra`` scalar fields. Readers ignore
fields they do not know, so old and new nodes interoperate.

:func:`parse_status_document` treats the body as hostile. The size is checked
before any decoding; JSON is strict (no ``NaN``/``Infinity``); integers with
more than 20 digits become floats instead of costing quadratic time; deep
nesting ends in a caught ``RecursionError``. Problems with the document as a
whole - too big, not JSON, not an object, ``peer_id`` missing, mistyped or
not a peer id - raise :class:`StatusDocumentError`. Problems with single
entries or optional fields are reported in ``ParsedStatus.rejected`` as
``(entry, reason)`` and skipped. Only the first ``max_addrs`` entries of
``peer_addrs`` are looked at; the rest are counted and reported as one
``"over limit"`` entry, so the result is bounded whatever the input.

Entries must be WebSocket multiaddrs (:class:`WsAddress`); Pyrsia's own
entries are plain ``/tcp`` and are reported as ``unsupported transport (no /ws
or /wss)``. Duplicates are dropped silently. An entry without ``/p2p/`` is
attributed to the document's own ``peer_id``: a boot node lists its own
addresses first (Pyrsia lists only its own), a third party's address without
an id could not be authenticated anyway, and the handshake rejects a wrong
id (``PeerIdMismatch``), so a wrong guess costs one failed dial, not trust.

:func:`build_status_document` writes compact UTF-8 JSON with the fields in
Pyrsia's order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Final

from ..core import AddressError, PeerId, StatusDocumentError, ValidationError, WsAddress, describe

__all__ = [
    "ParsedStatus",
    "StatusDocument",
    "StatusScalar",
    "StatusValue",
    "build_status_document",
    "parse_status_document",
]

StatusScalar = str | int | float | bool | None
StatusValue = StatusScalar | tuple[StatusScalar, ...]

DEFAULT_MAX_BYTES: Final = 256 * 1024
DEFAULT_MAX_ADDRS: Final = 256
_MAX_INT_DIGITS: Final = 20
_MAX_TEXT: Final = 256  # optional string fields longer than this are rejected
_REQUIRED: Final = ("peers_count", "peer_id", "peer_addrs")
_OPTIONAL_TEXT: Final = ("nat_status", "nat_mapping", "state", "version")
_OPTIONAL_COUNT: Final = ("connections", "probes_served")


@dataclass(frozen=True)
class StatusDocument:
    """What a node says about itself on ``/status``. Optional fields may be ``None``."""

    peer_id: str
    peers_count: int
    peer_addrs: tuple[str, ...]
    nat_status: str | None = None
    nat_mapping: str | None = None
    state: str | None = None
    uptime_s: float | None = None
    connections: int | None = None
    probes_served: int | None = None
    version: str | None = None
    extra: tuple[tuple[str, StatusValue], ...] = ()
    udp: tuple[tuple[str, str], ...] | None = None
    """Our UDP NAT profile, written as the object ``{"mapping": ..., "filtering": ...}``."""

    def __post_init__(self) -> None:
        if not isinstance(self.peer_id, str) or not self.peer_id:
            raise ValidationError("StatusDocument.peer_id must be a non-empty string")
        if not _is_count(self.peers_count):
            raise ValidationError(f"peers_count must be an int >= 0, got {self.peers_count!r}")
        if not isinstance(self.peer_addrs, tuple) or not all(
            isinstance(entry, str) for entry in self.peer_addrs
        ):
            raise ValidationError("peer_addrs must be a tuple of strings")
        for name in _OPTIONAL_TEXT:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{name} must be a string or None, got {value!r}")
        for name in _OPTIONAL_COUNT:
            value = getattr(self, name)
            if value is not None and not _is_count(value):
                raise ValidationError(f"{name} must be an int >= 0 or None, got {value!r}")
        if self.uptime_s is not None and not _is_duration(self.uptime_s):
            raise ValidationError(f"uptime_s must be a finite number >= 0, got {self.uptime_s!r}")
        _check_extra(self.extra)
        if self.udp is not None and not (isinstance(self.udp, tuple) and all(
                isinstance(pair, tuple) and len(pair) == 2
                and all(isinstance(part, str) for part in pair) for pair in self.udp)):
            raise ValidationError(f"udp must be a tuple of (name, value) strings, got "
                                  f"{self.udp!r}")


@dataclass(frozen=True)
class ParsedStatus:
    """A parsed ``/status`` body: the document, its usable addresses, and what was skipped."""

    document: StatusDocument
    addresses: tuple[WsAddress, ...]
    rejected: tuple[tuple[str, str], ...]

    @property
    def peer_id(self) -> PeerId:
        """The serving node's peer id (validated while parsing)."""
        return PeerId.from_string(self.document.peer_id)


def parse_status_document(
    body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_addrs: int = DEFAULT_MAX_ADDRS
) -> ParsedStatus:
    """Parse a ``/status`` body. See the module docstring for what is accepted."""
    obj = _decode_json(body, max_bytes)
    peer_id = _read_peer_id(obj)
    rejected: list[tuple[str, str]] = []
    entries = _read_addr_entries(obj, max_addrs, rejected)
    addresses = _usable_addresses(entries, peer_id, rejected)
    document = StatusDocument(
        peer_id=str(peer_id),
        peers_count=_read_count(obj, "peers_count", rejected) or 0,
        peer_addrs=tuple(entry for entry in entries if isinstance(entry, str)),
        nat_status=_read_text(obj, "nat_status", rejected),
        nat_mapping=_read_text(obj, "nat_mapping", rejected),
        state=_read_text(obj, "state", rejected),
        uptime_s=_read_duration(obj, "uptime_s", rejected),
        connections=_read_count(obj, "connections", rejected),
        probes_served=_read_count(obj, "probes_served", rejected),
        version=_read_text(obj, "version", rejected),
    )
    return ParsedStatus(document, tuple(addresses), tuple(rejected))


def build_status_document(doc: StatusDocument) -> bytes:
    """Serialise ``doc`` as compact JSON (Pyrsia's field order, then ours)."""
    out: dict[str, object] = {
        "peers_count": doc.peers_count,
        "peer_id": doc.peer_id,
        "peer_addrs": list(doc.peer_addrs),
    }
    for spec in fields(doc):
        value = getattr(doc, spec.name)
        if spec.name not in _REQUIRED and spec.name != "extra" and value is not None:
            out[spec.name] = dict(value) if spec.name == "udp" else value
    for key, extra_value in doc.extra:
        out[key] = list(extra_value) if isinstance(extra_value, tuple) else extra_value
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --- parsing helpers ----------------------------------------------------------


def _decode_json(body: bytes, max_bytes: int) -> dict[str, object]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    if len(body) > max_bytes:
        raise StatusDocumentError(f"status document is {len(body)} bytes, limit is {max_bytes}")
    try:
        obj: object = json.loads(
            bytes(body), parse_int=_parse_int, parse_constant=_reject_constant
        )
    except RecursionError:
        raise StatusDocumentError("status document is nested too deeply") from None
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise StatusDocumentError(f"status document is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise StatusDocumentError(f"status document is a JSON {_json_type(obj)}, not an object")
    return obj


def _parse_int(text: str) -> int | float:
    # Python's int() is quadratic in the digit count; huge numbers are never counts.
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _read_peer_id(obj: dict[str, object]) -> PeerId:
    value = obj.get("peer_id")
    if value is None:
        raise StatusDocumentError("status document has no peer_id")
    if not isinstance(value, str):
        raise StatusDocumentError(f"peer_id must be a string, got a JSON {_json_type(value)}")
    try:
        return PeerId.from_string(value)
    except ValidationError as exc:
        raise StatusDocumentError(f"status document peer_id is invalid: {exc}") from None


def _read_addr_entries(
    obj: dict[str, object], max_addrs: int, rejected: list[tuple[str, str]]
) -> list[object]:
    value = obj.get("peer_addrs")
    if value is None:
        return []
    if not isinstance(value, list):
        rejected.append(("peer_addrs", f"expected a list, got a JSON {_json_type(value)}"))
        return []
    if len(value) > max_addrs:
        rejected.append(
            (f"{len(value) - max_addrs} more entries", f"over limit of {max_addrs} addresses")
        )
    return value[:max_addrs]


def _usable_addresses(
    entries: list[object], peer_id: PeerId, rejected: list[tuple[str, str]]
) -> list[WsAddress]:
    seen: set[WsAddress] = set()
    usable: list[WsAddress] = []
    for entry in entries:
        if not isinstance(entry, str):
            reason = f"expected a multiaddr string, got a JSON {_json_type(entry)}"
            rejected.append((describe(entry), reason))
            continue
        try:
            address = WsAddress.parse(entry)
        except AddressError as exc:
            rejected.append((describe(entry), str(exc)))
            continue
        if address.peer_id is None:
            address = address.with_peer_id(peer_id)
        if address not in seen:
            seen.add(address)
            usable.append(address)
    return usable


def _read_text(obj: dict[str, object], name: str, rejected: list[tuple[str, str]]) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        return value
    rejected.append((name, f"expected a string of at most {_MAX_TEXT} characters"))
    return None


def _read_count(obj: dict[str, object], name: str, rejected: list[tuple[str, str]]) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if _is_count(value):
        assert isinstance(value, int)
        return value
    rejected.append((name, f"expected an integer >= 0, got a JSON {_json_type(value)}"))
    return None


def _read_duration(
    obj: dict[str, object], name: str, rejected: list[tuple[str, str]]
) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if _is_duration(value):
        assert isinstance(value, int | float)
        return float(value)
    rejected.append((name, "expected a finite number >= 0"))
    return None


# --- validation helpers -------------------------------------------------------


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_duration(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _check_extra(extra: object) -> None:
    if not isinstance(extra, tuple):
        raise ValidationError("extra must be a tuple of (name, value) pairs")
    reserved = {spec.name for spec in fields(StatusDocument)} - {"extra"}
    names: set[str] = set()
    for pair in extra:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValidationError(f"extra entries must be (name, value) pairs, got {pair!r}")
        name, value = pair
        if name in reserved or name in names:
            raise ValidationError(f"extra field {name!r} is reserved or repeated")
        names.add(name)
        values = value if isinstance(value, tuple) else (value,)
        if not all(_is_scalar(item) for item in values):
            raise ValidationError(
                f"extra field {name!r} must be a JSON scalar or a tuple of scalars"
            )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
