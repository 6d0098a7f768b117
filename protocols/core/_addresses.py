"""WebSocket multiaddrs: the only addresses this node dials or advertises.

Theory of operation
-------------------
A usable address has exactly this shape (string or binary multiaddr)::

    /<ip4|ip6|dns|dns4|dns6>/<host>/tcp/<port>/<ws|wss|tls/ws>[/p2p/<peer id>]

:class:`WsAddress` holds it as plain, validated fields and renders one
canonical form (``/wss`` for TLS, lower-case DNS names, compressed IPv6,
base58btc peer ids). Anything else - UDP, QUIC, plain TCP without ``/ws``,
relays, ``/dnsaddr``, IPv6 zones - raises :class:`AddressError` with a
message that says what is wrong, so a caller can report and skip the entry.

Parsing is our own strict decoder for this small grammar rather than the
general ``multiaddr`` parser: the grammar is tiny, strictness (minimal
varints, exact lengths, canonical peer ids, length caps) is what keeps
hostile input harmless, and every failure must be an ``AddressError``. The
``multiaddr`` package is used for the :class:`~multiaddr.Multiaddr` type and
to name protocols we do not support in error messages; tests check our bytes
against it. (Never import ``multiaddr.resolvers``: it pulls in trio.)

Binary form: each component is ``uvarint(code)`` followed by a fixed-size
value (ip4: 4, ip6: 16, tcp: 2 bytes big-endian), a ``uvarint`` length and
that many bytes (dns names as ASCII, p2p as the peer id multihash), or nothing
(ws, wss, tls).

DNS names must be ASCII (IDNs in their ``xn--`` form) and may not look like
numbers: resolvers turn ``2130706433`` or ``0x7f.1`` into IP addresses, which
would slip a loopback address past the address policy. The policy still has
to check resolved IPs (DNS can point anywhere).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from multiaddr import Multiaddr
from multiaddr.protocols import protocol_with_code

from ._errors import AddressError, ValidationError
from ._identity import PeerId

__all__ = ["HOST_KINDS", "WsAddress", "parse_addresses"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST_KINDS: Final = ("ip4", "ip6", "dns", "dns4", "dns6")
MAX_ADDRESS_LENGTH: Final = 1024  # characters or bytes; real addresses are < 120

_P_IP4, _P_TCP, _P_IP6 = 4, 6, 41
_P_DNS, _P_DNS4, _P_DNS6 = 53, 54, 55
_P_P2P, _P_TLS, _P_WS, _P_WSS = 421, 448, 477, 478
_VARIABLE = -1

# name -> (code, value size in bytes: 0 none, >0 fixed, -1 length-prefixed)
_BY_NAME: Final[dict[str, tuple[int, int]]] = {
    "ip4": (_P_IP4, 4),
    "tcp": (_P_TCP, 2),
    "ip6": (_P_IP6, 16),
    "dns": (_P_DNS, _VARIABLE),
    "dns4": (_P_DNS4, _VARIABLE),
    "dns6": (_P_DNS6, _VARIABLE),
    "p2p": (_P_P2P, _VARIABLE),
    "ipfs": (_P_P2P, _VARIABLE),  # legacy name of /p2p
    "tls": (_P_TLS, 0),
    "ws": (_P_WS, 0),
    "wss": (_P_WSS, 0),
}
_BY_CODE: Final = {code: (name, size) for name, (code, size) in _BY_NAME.items() if name != "ipfs"}
_CODE: Final = {name: code for name, (code, _size) in _BY_NAME.items()}

_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL: Final = re.compile(r"0x[0-9a-f]*|[0-9]+")


@dataclass(frozen=True, slots=True)
class WsAddress:
    """A validated WebSocket multiaddr. ``kind`` is one of :data:`HOST_KINDS`."""

    host: str
    kind: str
    port: int
    secure: bool
    peer_id: PeerId | None = None

    def __post_init__(self) -> None:
        if self.kind not in HOST_KINDS:
            raise AddressError(f"address kind must be one of {HOST_KINDS}, got {self.kind!r}")
        if not isinstance(self.host, str) or _canonical_host(self.kind, self.host) != self.host:
            raise AddressError(f"host {self.host!r} is not a canonical /{self.kind} value")
        if type(self.port) is not int or not 0 <= self.port <= 0xFFFF:
            raise AddressError(f"port must be an integer 0..65535, got {self.port!r}")
        if not isinstance(self.secure, bool):
            raise AddressError(f"secure must be a bool, got {self.secure!r}")
        if self.peer_id is not None and not isinstance(self.peer_id, PeerId):
            raise AddressError(f"peer_id must be a PeerId, got {type(self.peer_id).__name__}")

    @classmethod
    def parse(cls, value: str | bytes | Multiaddr) -> WsAddress:
        """Parse a string or binary multiaddr; :class:`AddressError` says what is wrong."""
        if isinstance(value, Multiaddr):
            value = value.to_bytes()
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if isinstance(value, str):
            _check_length(len(value))
            return _from_components(_text_components(value))
        if isinstance(value, bytes):
            _check_length(len(value))
            return _from_components(_binary_components(value))
        raise AddressError(f"expected a multiaddr str or bytes, got {type(value).__name__}")

    @classmethod
    def from_url(cls, url: str, peer_id: PeerId | None = None) -> WsAddress:
        """Parse ``ws://host:port/`` or ``wss://host[:port]/`` (path must be ``/``)."""
        if not isinstance(url, str):
            raise AddressError(f"expected a URL string, got {type(url).__name__}")
        _check_length(len(url))
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise AddressError(f"bad URL {_clip(url)!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss"):
            raise AddressError(f"URL scheme must be ws or wss, got {_clip(url)!r}")
        if parts.username is not None or parts.query or parts.fragment:
            raise AddressError(f"URL must not carry user info, query or fragment: {_clip(url)!r}")
        if parts.path not in ("", "/"):
            raise AddressError(f"URL path must be '/', got {_clip(parts.path)!r}")
        host = parts.hostname
        if not host:
            raise AddressError(f"URL has no host: {_clip(url)!r}")
        kind, host = _classify_host(host)
        if port is None:
            port = 443 if scheme == "wss" else 80
        return cls(host, kind, port, scheme == "wss", peer_id)

    def to_multiaddr(self) -> Multiaddr:
        return Multiaddr(self.to_bytes())

    def to_bytes(self) -> bytes:
        out = bytearray(_uvarint(_CODE[self.kind]))
        if self.kind in ("ip4", "ip6"):
            out += ipaddress.ip_address(self.host).packed
        else:
            name = self.host.encode("ascii")
            out += _uvarint(len(name)) + name
        out += _uvarint(_P_TCP) + self.port.to_bytes(2, "big")
        out += _uvarint(_P_WSS if self.secure else _P_WS)
        if self.peer_id is not None:
            multihash = self.peer_id.to_bytes()
            out += _uvarint(_P_P2P) + _uvarint(len(multihash)) + multihash
        return bytes(out)

    def __str__(self) -> str:
        text = f"/{self.kind}/{self.host}/tcp/{self.port}/{'wss' if self.secure else 'ws'}"
        return text if self.peer_id is None else f"{text}/p2p/{self.peer_id}"

    def url(self, path: str = "/") -> str:
        """The WebSocket URL to dial, e.g. ``ws://[::1]:44000/``."""
        if not path.startswith("/"):
            raise ValueError(f"URL path must start with '/', got {path!r}")
        host = f"[{self.host}]" if self.kind == "ip6" else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{path}"

    def with_peer_id(self, peer_id: PeerId | None) -> WsAddress:
        return WsAddress(self.host, self.kind, self.port, self.secure, peer_id)

    @property
    def ip(self) -> IPAddress | None:
        """The IP address, or ``None`` for DNS names (parsed once per host, see :func:`_ip`)."""
        if self.kind in ("ip4", "ip6"):
            return _ip(self.kind, self.host)
        return None


def parse_addresses(
    values: Iterable[object], *, limit: int
) -> tuple[list[WsAddress], list[tuple[str, str]]]:
    """Parse many entries; never raises for bad ones.

    Returns ``(good, rejected)`` where ``rejected`` holds ``(entry, reason)``.
    At most ``limit`` entries are examined; the rest are counted, not parsed,
    and reported as one ``"over limit"`` entry, so the result stays bounded.
    """
    good: list[WsAddress] = []
    rejected: list[tuple[str, str]] = []
    skipped = 0
    for index, value in enumerate(values):
        if index >= limit:
            skipped += 1
            continue
        if not isinstance(value, str | bytes | bytearray | Multiaddr):
            rejected.append((describe(value), f"expected a multiaddr string, got {_type(value)}"))
            continue
        try:
            good.append(WsAddress.parse(value))
        except AddressError as exc:
            rejected.append((describe(value), str(exc)))
    if skipped:
        rejected.append((f"{skipped} more entries", f"over limit of {limit} addresses"))
    return good, rejected


def describe(value: object) -> str:
    """A short printable rendering of an untrusted entry, for error reports."""
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + _clip(bytes(value).hex())
    return f"<{_type(value)}>"


# --- components -------------------------------------------------------------


@dataclass(frozen=True)
class _Component:
    """One multiaddr component, value still undecoded (text or bytes)."""

    name: str
    text: str | None = None
    raw: bytes | None = None
    known: bool = True


def _text_components(text: str) -> Iterator[_Component]:
    if not text.startswith("/"):
        raise AddressError(f"a multiaddr starts with '/': {_clip(text)!r}")
    parts = text[1:].split("/")
    if parts[-1] == "":
        parts.pop()  # tolerate one trailing slash
    index = 0
    while index < len(parts):
        name = parts[index]
        if not name:
            raise AddressError(f"empty component in {_clip(text)!r}")
        spec = _BY_NAME.get(name)
        if spec is None:
            yield _Component(_clip(name, 32), known=False)
            return
        canonical = "p2p" if name == "ipfs" else name
        if spec[1] == 0:
            yield _Component(canonical)
            index += 1
            continue
        if index + 1 >= len(parts) or not parts[index + 1]:
            raise AddressError(f"/{name} needs a value in {_clip(text)!r}")
        yield _Component(canonical, text=parts[index + 1])
        index += 2


def _binary_components(data: bytes) -> Iterator[_Component]:
    pos = 0
    while pos < len(data):
        code, pos = _read_uvarint(data, pos)
        spec = _BY_CODE.get(code)
        if spec is None:
            yield _Component(_protocol_name(code), known=False)
            return
        name, size = spec
        if size == _VARIABLE:
            size, pos = _read_uvarint(data, pos)
        if pos + size > len(data):
            raise AddressError(f"binary multiaddr truncated in /{name} value")
        yield _Component(name, raw=data[pos : pos + size] if size else None)
        pos += size


def _from_components(components: Iterator[_Component]) -> WsAddress:
    host_part = next(components, None)
    if host_part is None:
        raise AddressError("empty multiaddr")
    if host_part.name not in HOST_KINDS:
        raise AddressError(
            f"unsupported address type /{host_part.name} (expected /ip4, /ip6, /dns, /dns4 "
            "or /dns6)"
        )
    kind, host = host_part.name, _decode_host(host_part)
    port = _decode_port(_expect_tcp(next(components, None)))
    secure = _decode_websocket(components)
    peer_id = _decode_tail(components)
    return WsAddress(host, kind, port, secure, peer_id)


def _expect_tcp(part: _Component | None) -> _Component:
    if part is None:
        raise AddressError("missing /tcp/<port> (only /tcp/<port>/ws or /wss is supported)")
    if part.name != "tcp":
        raise AddressError(
            f"unsupported transport /{part.name} (only /tcp/<port>/ws or /wss is supported)"
        )
    return part


def _decode_websocket(components: Iterator[_Component]) -> bool:
    part = next(components, None)
    if part is None or part.name == "p2p":
        raise AddressError("unsupported transport (no /ws or /wss)")
    if part.name in ("ws", "wss"):
        return part.name == "wss"
    if part.name == "tls":
        after = next(components, None)
        if after is None or after.name != "ws":
            shown = "end" if after is None else f"/{after.name}"
            raise AddressError(f"/tls must be followed by /ws, got {shown}")
        return True
    raise AddressError(f"unsupported protocol /{part.name} after /tcp (expected /ws or /wss)")


def _decode_tail(components: Iterator[_Component]) -> PeerId | None:
    part = next(components, None)
    if part is None:
        return None
    if part.name == "p2p-circuit":
        raise AddressError("relay addresses (/p2p-circuit) are not supported")
    if part.name != "p2p":
        raise AddressError(f"unsupported protocol /{part.name} after /ws (only /p2p/<id>)")
    peer_id = _decode_peer_id(part)
    extra = next(components, None)
    if extra is not None:
        raise AddressError(f"unexpected /{extra.name} after /p2p (relays are not supported)")
    return peer_id


# --- values -----------------------------------------------------------------


def _decode_host(part: _Component) -> str:
    kind = part.name
    if part.text is not None:
        return _canonical_host(kind, part.text)
    raw = part.raw or b""
    if kind in ("ip4", "ip6"):
        return _ip_text(raw)
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise AddressError(f"/{kind} name is not ASCII (use the xn-- form)") from None
    return _canonical_host(kind, name)


IP_CACHE_SIZE: Final = 65536
"""Hosts whose parsed IP and canonical text are remembered (least recently used dropped).

Addresses are built and asked for their IP far more often than there are
distinct hosts (every event, snapshot and policy check carries them), and
parsing with :mod:`ipaddress` dominated profiles; the caches are bounded, so
a peer sending many distinct addresses only costs the parsing it always did.
The size holds every host of a 10,000-host simulation (about 17,000 distinct
IPs, all in one process): an LRU cache smaller than the set of hosts visited in
rotation hits almost never. One entry is a few hundred bytes.
"""


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def _ip_text(raw: bytes) -> str:
    """The canonical text of a binary ``ip4``/``ip6`` address (4 or 16 bytes)."""
    return str(ipaddress.ip_address(raw))


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def _ip(kind: str, text: str) -> IPAddress:
    """The IP of an ``ip4``/``ip6`` host text; ``ValueError`` if it is not one."""
    return ipaddress.IPv4Address(text) if kind == "ip4" else ipaddress.IPv6Address(text)


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def _canonical_ip(kind: str, text: str) -> str:
    return str(_ip(kind, text))


def _canonical_host(kind: str, text: str) -> str:
    if kind == "ip4":
        try:
            return _canonical_ip(kind, text)
        except ValueError:
            raise AddressError(f"bad /ip4 address {_clip(text)!r}") from None
    if kind == "ip6":
        if "%" in text:
            raise AddressError(f"IPv6 zones are not supported: {_clip(text)!r}")
        try:
            return _canonical_ip(kind, text)
        except ValueError:
            raise AddressError(f"bad /ip6 address {_clip(text)!r}") from None
    return _check_dns_name(kind, text)


def _check_dns_name(kind: str, text: str) -> str:
    if not text.isascii():
        raise AddressError(f"/{kind} name {_clip(text)!r} is not ASCII (use the xn-- form)")
    name = text.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError(f"bad /{kind} name {_clip(text)!r}")
    if all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        raise AddressError(
            f"/{kind} name {_clip(text)!r} looks like an IP address; use /ip4 or /ip6"
        )
    return name


def _classify_host(host: str) -> tuple[str, str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "dns", _check_dns_name("dns", host)
    return ("ip4" if ip.version == 4 else "ip6"), _canonical_host(f"ip{ip.version}", host)


def _decode_port(part: _Component) -> int:
    if part.raw is not None:
        return int.from_bytes(part.raw, "big")
    text = part.text or ""
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 0xFFFF:
        raise AddressError(f"bad /tcp port {_clip(text)!r} (expected 0..65535)")
    return int(text)


def _decode_peer_id(part: _Component) -> PeerId:
    try:
        if part.text is not None:
            return PeerId.from_string(part.text)
        return PeerId.from_bytes(part.raw or b"")
    except ValidationError as exc:
        raise AddressError(f"bad peer id in /p2p: {exc}") from None


# --- helpers ----------------------------------------------------------------


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a minimal unsigned varint (at most 9 bytes, as multiformats requires)."""
    value = 0
    for shift in range(0, 63, 7):
        if pos >= len(data):
            raise AddressError("binary multiaddr truncated inside a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise AddressError("binary multiaddr has a non-minimal varint")
            return value, pos
    raise AddressError("binary multiaddr has a varint longer than 9 bytes")


def _protocol_name(code: int) -> str:
    try:
        return str(protocol_with_code(code).name)
    except Exception:  # the registry raises its own lookup errors
        return f"<protocol code {code}>"


def _check_length(length: int) -> None:
    if length > MAX_ADDRESS_LENGTH:
        raise AddressError(f"multiaddr is {length} long, limit is {MAX_ADDRESS_LENGTH}")


def _clip(text: str, limit: int = 100) -> str:
    """Shorten untrusted text for a message; escape control characters."""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


def _type(value: object) -> str:
    return type(value).__name__
