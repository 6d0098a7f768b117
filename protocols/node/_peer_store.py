"""The persisted peer store: :class:`PeerRecord` list <-> versioned JSON bytes.

Theory of operation
-------------------
The StatusTracker persists what it knows about peers to ``peers.json`` so a
restarted node can dial them again without a bootstrap server. The file is::

    {"version": 1, "peers": [
        {"peer_id": "12D3KooW...", "addrs": ["/ip4/.../tcp/4001/ws/p2p/12D3KooW..."],
         "agent_version": "...", "protocols": ["..."], "first_seen": 1700000000.0,
         "last_seen": 1700000100.0, "sources": ["https://boot/status"],
         "from_bootstrap": true}, ...]}

Times are Unix seconds. Unknown fields are ignored, so a newer writer's file
stays readable as long as ``version`` is 1; a new incompatible layout gets a
new version number.

:func:`decode_peer_store` treats the file as untrusted (it may be truncated by
a crash of an older version, edited by hand, or simply damaged). The whole
document is rejected with :class:`PeerStoreError` when it is too big, not
JSON, not an object, or not version 1 - the caller then sets the file aside.
Single bad entries are skipped with a reason (bad peer id, bad times, an
entry with no usable address); single bad addresses inside a good entry are
dropped with a reason. At most ``max_peers`` entries are examined and at most
:data:`MAX_REASONS` reasons kept, so the result is bounded whatever the
input. Later duplicates of a peer id are skipped.

:func:`encode_peer_store` writes the records in the order given (the model
supplies most recently seen first) and stops before the output would exceed
``max_bytes``, so everything it writes can be read back by the decoder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Final

from ..core import (
    AddressError,
    PeerId,
    PeerStoreError,
    ProtocolError,
    ValidationError,
    WsAddress,
    describe,
)
from ._snapshot import MAX_ADDRS_PER_PEER, PeerRecord

__all__ = ["PEER_STORE_VERSION", "decode_peer_store", "encode_peer_store"]

PEER_STORE_VERSION: Final = 1
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
DEFAULT_MAX_PEERS: Final = 1000
MAX_REASONS: Final = 50
_MAX_INT_DIGITS: Final = 20


def encode_peer_store(
    records: Iterable[PeerRecord], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """Serialise ``records`` (in order) as version-1 JSON of at most ``max_bytes``."""
    head, tail = b'{"version":%d,"peers":[' % PEER_STORE_VERSION, b"]}\n"
    parts: list[bytes] = []
    size = len(head) + len(tail)
    for record in records:
        entry = json.dumps(_record_to_json(record), separators=(",", ":"), allow_nan=False)
        encoded = entry.encode("utf-8")
        cost = len(encoded) + (1 if parts else 0)
        if size + cost > max_bytes:
            break
        parts.append(encoded)
        size += cost
    return head + b",".join(parts) + tail


def decode_peer_store(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_peers: int = DEFAULT_MAX_PEERS
) -> tuple[list[PeerRecord], list[str]]:
    """Parse a peer store file: ``(records, reasons for what was skipped)``."""
    entries = _read_document(data, max_bytes)
    records: list[PeerRecord] = []
    reasons = _Reasons()
    seen: set[PeerId] = set()
    for index, entry in enumerate(entries[:max_peers]):
        record = _decode_entry(entry, f"peers[{index}]", reasons)
        if record is None:
            continue
        if record.peer_id in seen:
            reasons.add(f"peers[{index}]: duplicate of an earlier entry for {record.peer_id}")
            continue
        seen.add(record.peer_id)
        records.append(record)
    if len(entries) > max_peers:
        reasons.add(f"{len(entries) - max_peers} entries beyond the limit of {max_peers} ignored")
    return records, reasons.finish()


def _record_to_json(record: PeerRecord) -> dict[str, object]:
    return {
        "peer_id": str(record.peer_id),
        "addrs": [str(addr) for addr in record.addrs],
        "agent_version": record.agent_version,
        "protocols": list(record.protocols),
        "first_seen": record.first_seen,
        "last_seen": record.last_seen,
        "sources": list(record.sources),
        "from_bootstrap": record.from_bootstrap,
    }


class _Reasons:
    """Keeps the first :data:`MAX_REASONS` reasons and counts the rest."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.more = 0

    def add(self, reason: str) -> None:
        if len(self.kept) < MAX_REASONS:
            self.kept.append(reason)
        else:
            self.more += 1

    def finish(self) -> list[str]:
        if self.more:
            return [*self.kept, f"... and {self.more} more problems"]
        return self.kept


def _read_document(data: bytes, max_bytes: int) -> list[object]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"peer store data must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise PeerStoreError(f"peer store is {len(data)} bytes, limit is {max_bytes}")
    try:
        obj: object = json.loads(bytes(data), parse_int=_parse_int, parse_constant=_no_constant)
    except RecursionError:
        raise PeerStoreError("peer store is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise PeerStoreError(f"peer store is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PeerStoreError(f"peer store is a JSON {type(obj).__name__}, not an object")
    version = obj.get("version")
    if type(version) is not int or version != PEER_STORE_VERSION:
        raise PeerStoreError(
            f"peer store version is {describe(version)}, this node reads {PEER_STORE_VERSION}"
        )
    peers = obj.get("peers")
    if not isinstance(peers, list):
        raise PeerStoreError("peer store has no 'peers' list")
    return peers


def _parse_int(text: str) -> int | float:
    # int() is quadratic in the number of digits; no valid field needs more than 20.
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _decode_entry(entry: object, where: str, reasons: _Reasons) -> PeerRecord | None:
    if not isinstance(entry, dict):
        reasons.add(f"{where}: expected an object, got {describe(entry)}")
        return None
    try:
        peer_id = PeerId.from_string(_text(entry, "peer_id", None))
        addrs = _decode_addrs(entry.get("addrs"), peer_id, where, reasons)
        if not addrs:
            raise ValidationError("no usable address")
        return PeerRecord(
            peer_id=peer_id,
            addrs=addrs,
            first_seen=_time(entry, "first_seen"),
            last_seen=_time(entry, "last_seen"),
            agent_version=_text(entry, "agent_version", ""),
            protocols=_strings(entry, "protocols"),
            sources=_strings(entry, "sources"),
            from_bootstrap=_flag(entry, "from_bootstrap"),
        )
    except ProtocolError as exc:
        reasons.add(f"{where}: {exc}")
        return None


def _decode_addrs(
    value: object, peer_id: PeerId, where: str, reasons: _Reasons
) -> tuple[WsAddress, ...]:
    if not isinstance(value, list):
        raise ValidationError(f"'addrs' must be a list, got {describe(value)}")
    addrs: dict[WsAddress, None] = {}
    for item in value[:MAX_ADDRS_PER_PEER]:
        try:
            if not isinstance(item, str):
                raise AddressError(f"expected a multiaddr string, got {describe(item)}")
            addr = WsAddress.parse(item)
            if addr.peer_id not in (None, peer_id):
                raise AddressError(f"{describe(item)} belongs to another peer")
        except AddressError as exc:
            reasons.add(f"{where}: address skipped: {exc}")
            continue
        addrs[addr.with_peer_id(peer_id)] = None
    return tuple(addrs)


def _text(entry: dict[str, object], name: str, default: str | None) -> str:
    value = entry.get(name, default)
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string, got {describe(value)}")
    return value


def _flag(entry: dict[str, object], name: str) -> bool:
    value = entry.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"'{name}' must be true or false, got {describe(value)}")
    return value


def _time(entry: dict[str, object], name: str) -> float:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"'{name}' must be a finite number, got {describe(value)}")
    return float(value)


def _strings(entry: dict[str, object], name: str) -> tuple[str, ...]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"'{name}' must be a list of strings")
    return tuple(value)
