"""StunResponder: a STUN Binding server (RFC 8489) with RFC 5780 behaviour discovery, sans-io.

Theory of operation
-------------------
The responder is handed each datagram with the address it came from and the
local address it arrived on (:meth:`StunResponder.handle_datagram`) and
returns the datagrams to send, each with the local address to send it from.
It keeps no state per transaction: a retransmitted request simply gets the
same answer again.

**What is answered.** Only a well-formed Binding request with the magic
cookie, at most ``max_request_size`` bytes, from a source with a non-zero
port. Everything else - garbage, RFC 3489 requests without the cookie,
responses, indications, other methods, requests over a rate limit - is
dropped silently and counted by reason in :meth:`statistics`. A server that
answers errors to junk is a reflector; one that answers nothing to junk
is not.

**The answer** is a success response with:

* ``XOR-MAPPED-ADDRESS``: the request's source, as seen here;
* ``RESPONSE-ORIGIN``: the local address the response is sent from;
* ``OTHER-ADDRESS``: when an alternate is configured, the address that
  differs from the receiving one in both IP and port;
* ``SOFTWARE``: only when it fits the size rule below;
* ``FINGERPRINT``, always, so the answer is told from other traffic.

``MAPPED-ADDRESS`` is left out: it serves only RFC 3489 clients, whose
requests lack the magic cookie and are not answered at all (their
``CHANGED-ADDRESS`` semantics differ, and refusing them keeps answers small).

**CHANGE-REQUEST** (RFC 5780) asks for the answer to come from the other IP
and/or the other port. It is honoured when an alternate is configured; the
answer always goes to the request's own source address (the attribute that
would redirect it, ``RESPONSE-PORT``, is not supported and so draws a 420).
Without an alternate, a CHANGE-REQUEST that asks for a change is answered
with error 420 (Unknown Attribute) listing it, as RFC 5780 asks of servers
that cannot change address (one asking for no change is answered as if it
were absent: RFC 3489-era clients send it in every test); any other unknown
comprehension-required attribute draws the same 420 listing it, per RFC 8489.

**No amplification.** Every answer obeys, checked in code before it is
returned (:func:`check_no_amplification`, a :class:`LocalProtocolError` if
broken, which would be a bug here)::

    len(answer) <= len(request) + the attributes the standards require

where the required attributes are, for a success response,
``XOR-MAPPED-ADDRESS``, ``RESPONSE-ORIGIN``, ``OTHER-ADDRESS`` (when
configured) and ``FINGERPRINT``, and for an error response ``ERROR-CODE``,
``UNKNOWN-ATTRIBUTES`` and ``FINGERPRINT``. ``SOFTWARE`` is therefore only
sent when the request was at least that much larger than a bare header. So
a 20-byte Binding request (the smallest) gets at most 64 bytes back over
IPv4 with an alternate, 100 over IPv6, and an attacker spoofing a victim's
address gains a fixed few dozen bytes per packet, within the rate limits.

**Rate limits.** Answers (not drops) take a token from three buckets: the
source IP's, its subnet's (IPv4 /24, IPv6 /56) and a global one; an empty
bucket drops the request (counted per bucket kind). The per-IP and
per-subnet buckets live in bounded LRU maps (:class:`TokenBuckets`).

The driving contract: ``handle_datagram(data, source, local, now)``;
:meth:`poll_timeout` is always ``None`` (buckets refill lazily), and
:meth:`handle_timeout` does nothing. A ``local`` address that is not one of
the responder's own is a driver bug and raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from ..core import IPNetwork, LocalProtocolError, ValidationError, subnet_of
from ._datagram import Datagram
from ._rate_limit import TokenBuckets
from ._stun_codec import (
    BINDING,
    FINGERPRINT_ATTRIBUTE_SIZE,
    HEADER_SIZE,
    IP,
    Attribute,
    AttrType,
    ChangeRequest,
    Endpoint,
    ErrorCode,
    OtherAddress,
    ResponseOrigin,
    Software,
    StunClass,
    StunDecodeError,
    StunMessage,
    UnknownAttributes,
    XorMappedAddress,
    attribute_size,
    decode_message,
    encode_message,
)

__all__ = [
    "REQUIRED_SUCCESS_ATTRIBUTES",
    "StunAddresses",
    "StunResponder",
    "StunResponderConfig",
    "StunResponderStatistics",
    "check_no_amplification",
]

REQUIRED_SUCCESS_ATTRIBUTES: Final = (XorMappedAddress, ResponseOrigin, OtherAddress)
_REQUIRED_ERROR_ATTRIBUTES: Final = (ErrorCode, UnknownAttributes)
_UNKNOWN_ATTRIBUTE_REASON: Final = "Unknown Attribute"


@dataclass(frozen=True, slots=True)
class StunAddresses:
    """The server's addresses: ``primary``, and optionally an ``alternate`` that differs
    from it in both IP and port. With an alternate the server listens on all four
    combinations (primary/alternate IP x primary/alternate port), as RFC 5780 asks."""

    primary: Endpoint
    alternate: Endpoint | None = None

    def __post_init__(self) -> None:
        alt = self.alternate
        if alt is None:
            return
        if alt.ip.version != self.primary.ip.version:
            raise ValueError("the alternate address must be of the primary's IP family")
        if alt.ip == self.primary.ip or alt.port == self.primary.port:
            raise ValueError("the alternate must differ from the primary in IP and in port")

    def locals(self) -> tuple[Endpoint, ...]:
        """Every local address the server receives on (and sends from)."""
        alt = self.alternate
        if alt is None:
            return (self.primary,)
        p = self.primary
        return (p, Endpoint(p.ip, alt.port), Endpoint(alt.ip, p.port), alt)

    def other(self, local: Endpoint) -> Endpoint | None:
        """OTHER-ADDRESS for a request received on ``local``: the other IP, the other port."""
        return self.changed(local, change_ip=True, change_port=True)

    def changed(self, local: Endpoint, *, change_ip: bool, change_port: bool) -> Endpoint | None:
        """Where an answer to a request received on ``local`` comes from under CHANGE-REQUEST."""
        alt = self.alternate
        if alt is None:
            return None if (change_ip or change_port) else local
        p = self.primary
        ip: IP = local.ip
        port = local.port
        if change_ip:
            ip = alt.ip if ip == p.ip else p.ip
        if change_port:
            port = alt.port if port == p.port else p.port
        return Endpoint(ip, port)


@dataclass(frozen=True, slots=True)
class StunResponderConfig:
    """Limits of a :class:`StunResponder`. Rates are answers per second, bursts in answers."""

    software: str | None = None
    """Sent as SOFTWARE when the size rule allows; None never sends it."""
    max_request_size: int = 548
    """Larger datagrams are dropped unparsed (548: the classic minimum IPv4 payload)."""
    ip_rate: float = 5.0
    ip_burst: int = 20
    subnet_rate: float = 20.0
    subnet_burst: int = 80
    global_rate: float = 1000.0
    global_burst: int = 2000
    max_buckets: int = 4096
    """Per-IP buckets, and separately per-subnet buckets, kept at most (LRU)."""
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56

    def __post_init__(self) -> None:
        if self.software is not None:
            Software(self.software)
        if not HEADER_SIZE <= self.max_request_size <= 0xFFFF:
            raise ValueError("max_request_size must be 20..65535")
        for name in ("ip_rate", "subnet_rate", "global_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("ip_burst", "subnet_burst", "global_burst", "max_buckets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv4_prefix must be 0..32 and ipv6_prefix 0..128")


@dataclass(frozen=True, slots=True)
class StunResponderStatistics:
    received: int
    answered: int
    """Success responses sent."""
    changed: int
    """Of those, sent from another address under CHANGE-REQUEST."""
    errors: int
    """420 error responses sent."""
    dropped: tuple[tuple[str, int], ...]
    """Datagrams dropped without an answer, by reason, sorted."""
    ip_buckets: int
    subnet_buckets: int
    evicted_buckets: int


def check_no_amplification(request_size: int, response: bytes, message: StunMessage) -> None:
    """Raise :class:`LocalProtocolError` unless ``response`` (encoding ``message`` plus
    FINGERPRINT) is at most ``request_size`` plus its required attributes."""
    required_kinds = (REQUIRED_SUCCESS_ATTRIBUTES if message.cls is StunClass.SUCCESS
                      else _REQUIRED_ERROR_ATTRIBUTES)
    allowance = FINGERPRINT_ATTRIBUTE_SIZE + sum(
        attribute_size(a, message.transaction_id) for a in message.attributes
        if isinstance(a, required_kinds))
    if len(response) > request_size + allowance:
        raise LocalProtocolError(
            f"STUN answer of {len(response)} bytes to a request of {request_size} exceeds "
            f"the request plus {allowance} bytes of required attributes")


class StunResponder:
    """Answers STUN Binding requests; see the module docstring."""

    def __init__(self, addresses: StunAddresses,
                 config: StunResponderConfig | None = None) -> None:
        self._addresses = addresses
        self._config = config = config or StunResponderConfig()
        self._locals = frozenset(addresses.locals())
        self._ip_buckets: TokenBuckets[IP] = TokenBuckets(
            rate=config.ip_rate, burst=config.ip_burst, max_buckets=config.max_buckets)
        self._subnet_buckets: TokenBuckets[IPNetwork] = TokenBuckets(
            rate=config.subnet_rate, burst=config.subnet_burst, max_buckets=config.max_buckets)
        self._global: TokenBuckets[None] = TokenBuckets(
            rate=config.global_rate, burst=config.global_burst, max_buckets=1)
        self._received = 0
        self._answered = 0
        self._changed = 0
        self._errors = 0
        self._dropped: Counter[str] = Counter()

    @property
    def addresses(self) -> StunAddresses:
        return self._addresses

    # --- the driving contract ----------------------------------------------------------

    def handle_datagram(self, data: bytes, source: Endpoint, local: Endpoint,
                        now: float) -> list[Datagram]:
        """One datagram received on ``local`` from ``source``; returns what to send."""
        if local not in self._locals:
            raise LocalProtocolError(
                f"StunResponder: datagram on {local}, not one of its addresses "
                f"({', '.join(map(str, self._addresses.locals()))})")
        self._received += 1
        if len(data) > self._config.max_request_size:
            return self._drop("too-large")
        if source.port == 0 or source.ip.version != local.ip.version:
            return self._drop("bad-source")
        try:
            decoded = decode_message(data, max_size=self._config.max_request_size)
        except StunDecodeError:
            return self._drop("malformed")
        request = decoded.message
        if request.cls is not StunClass.REQUEST or request.method != BINDING:
            return self._drop("not-binding-request")
        if not self._admit(source.ip, now):
            return []
        unknown = request.unknown_required()
        change = request.first(ChangeRequest)
        if change is not None and not (change.change_ip or change.change_port):
            change = None  # asks for no change (older clients send it in every test)
        if change is not None and self._addresses.alternate is None:
            unknown = (*unknown, int(AttrType.CHANGE_REQUEST))
        if unknown:
            return [self._error_420(request, decoded.size, unknown, source, local)]
        send_from = local
        if change is not None:
            moved = self._addresses.changed(local, change_ip=change.change_ip,
                                            change_port=change.change_port)
            assert moved is not None  # an alternate exists, checked above
            send_from = moved
        attributes: list[Attribute] = [XorMappedAddress(source), ResponseOrigin(send_from)]
        other = self._addresses.other(local) if self._addresses.alternate else None
        if other is not None:
            attributes.append(OtherAddress(other))
        payload = self._respond(request, decoded.size, attributes, StunClass.SUCCESS)
        self._answered += 1
        if send_from != local:
            self._changed += 1
        return [Datagram(payload, send_from, source)]

    def poll_timeout(self) -> float | None:
        return None

    def handle_timeout(self, now: float) -> list[Datagram]:
        return []

    def statistics(self) -> StunResponderStatistics:
        return StunResponderStatistics(
            received=self._received, answered=self._answered, changed=self._changed,
            errors=self._errors, dropped=tuple(sorted(self._dropped.items())),
            ip_buckets=len(self._ip_buckets), subnet_buckets=len(self._subnet_buckets),
            evicted_buckets=self._ip_buckets.evicted + self._subnet_buckets.evicted)

    # --- helpers -----------------------------------------------------------------------

    def _drop(self, reason: str) -> list[Datagram]:
        self._dropped[reason] += 1
        return []

    def _admit(self, ip: IP, now: float) -> bool:
        """Take a token from each bucket, or from none (dropping and counting why)."""
        subnet = subnet_of(ip, ipv4_prefix=self._config.ipv4_prefix,
                           ipv6_prefix=self._config.ipv6_prefix)
        if not self._ip_buckets.peek(ip, now):
            self._dropped["rate-limited-ip"] += 1
            return False
        if not self._subnet_buckets.peek(subnet, now):
            self._dropped["rate-limited-subnet"] += 1
            return False
        if not self._global.peek(None, now):
            self._dropped["rate-limited-global"] += 1
            return False
        self._ip_buckets.take(ip, now)
        self._subnet_buckets.take(subnet, now)
        self._global.take(None, now)
        return True

    def _error_420(self, request: StunMessage, request_size: int, unknown: tuple[int, ...],
                   source: Endpoint, local: Endpoint) -> Datagram:
        attributes: list[Attribute] = [ErrorCode(420, _UNKNOWN_ATTRIBUTE_REASON),
                                       UnknownAttributes(unknown[:16])]
        payload = self._respond(request, request_size, attributes, StunClass.ERROR)
        self._errors += 1
        return Datagram(payload, local, source)

    def _respond(self, request: StunMessage, request_size: int, attributes: list[Attribute],
                 cls: StunClass) -> bytes:
        software = self._config.software
        message = StunMessage(BINDING, cls, request.transaction_id, tuple(attributes))
        payload = encode_message(message, fingerprint=True)
        if software is not None:
            try:
                with_software = StunMessage(BINDING, cls, request.transaction_id,
                                            (*attributes, Software(software)))
            except ValidationError:  # pragma: no cover - validated in the config
                with_software = message
            longer = encode_message(with_software, fingerprint=True)
            try:
                check_no_amplification(request_size, longer, with_software)
            except LocalProtocolError:
                pass  # SOFTWARE does not fit this request: answer without it
            else:
                message, payload = with_software, longer
        check_no_amplification(request_size, payload, message)
        return payload
