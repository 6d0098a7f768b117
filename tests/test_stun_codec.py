"""The STUN codec against the RFC 5769 test vectors, plus round trips and fuzzing."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import DecodeError
from protocols.stun import (
    BINDING,
    ChangeRequest,
    Endpoint,
    ErrorCode,
    MappedAddress,
    Nonce,
    OtherAddress,
    Realm,
    ResponseOrigin,
    Software,
    StunClass,
    StunDecodeError,
    StunMessage,
    UnknownAttribute,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    decode_message,
    encode_message,
    long_term_key,
    short_term_key,
)


def vector(text: str) -> bytes:
    """The bytes of an RFC 5769 figure: the first four hex pairs of each line."""
    out = bytearray()
    for line in text.strip().splitlines():
        out += bytes.fromhex("".join(line.split()[:4]))
    return bytes(out)


# RFC 5769 section 2.1, "Sample Request"
SAMPLE_REQUEST = vector("""
    00 01 00 58     Request type and message length
    21 12 a4 42     Magic cookie
    b7 e7 a7 01  }
    bc 34 d6 86  }  Transaction ID
    fa 87 df ae  }
    80 22 00 10     SOFTWARE attribute header
    53 54 55 4e  }
    20 74 65 73  }  User-agent...
    74 20 63 6c  }  ...name
    69 65 6e 74  }
    00 24 00 04     PRIORITY attribute header
    6e 00 01 ff     ICE priority value
    80 29 00 08     ICE-CONTROLLED attribute header
    93 2f f9 b1  }  Pseudo-random tie breaker...
    51 26 3b 36  }   ...for ICE control
    00 06 00 09     USERNAME attribute header
    65 76 74 6a  }
    3a 68 36 76  }  Username (9 bytes) and padding (3 bytes)
    59 20 20 20  }
    00 08 00 14     MESSAGE-INTEGRITY attribute header
    9a ea a7 0c  }
    bf d8 cb 56  }
    78 1e f2 b5  }  HMAC-SHA1 fingerprint
    b2 d3 f2 49  }
    c1 b5 71 a2  }
    80 28 00 04     FINGERPRINT attribute header
    e5 7a 3b cf     CRC32 fingerprint
""")

# RFC 5769 section 2.2, "Sample IPv4 Response"
SAMPLE_IPV4_RESPONSE = vector("""
    01 01 00 3c     Response type and message length
    21 12 a4 42     Magic cookie
    b7 e7 a7 01  }
    bc 34 d6 86  }  Transaction ID
    fa 87 df ae  }
    80 22 00 0b     SOFTWARE attribute header
    74 65 73 74  }
    20 76 65 63  }  UTF-8 server name
    74 6f 72 20  }
    00 20 00 08     XOR-MAPPED-ADDRESS attribute header
    00 01 a1 47     Address family (IPv4) and xor'd mapped port number
    e1 12 a6 43     Xor'd mapped IPv4 address
    00 08 00 14     MESSAGE-INTEGRITY attribute header
    2b 91 f5 99  }
    fd 9e 90 c3  }
    8c 74 89 f9  }  HMAC-SHA1 fingerprint
    2a f9 ba 53  }
    f0 6b e7 d7  }
    80 28 00 04     FINGERPRINT attribute header
    c0 7d 4c 96     CRC32 fingerprint
""")

# RFC 5769 section 2.3, "Sample IPv6 Response"
SAMPLE_IPV6_RESPONSE = vector("""
    01 01 00 48     Response type and message length
    21 12 a4 42     Magic cookie
    b7 e7 a7 01  }
    bc 34 d6 86  }  Transaction ID
    fa 87 df ae  }
    80 22 00 0b     SOFTWARE attribute header
    74 65 73 74  }
    20 76 65 63  }  UTF-8 server name
    74 6f 72 20  }
    00 20 00 14     XOR-MAPPED-ADDRESS attribute header
    00 02 a1 47     Address family (IPv6) and xor'd mapped port number
    01 13 a9 fa  }
    a5 d3 f1 79  }  Xor'd mapped IPv6 address
    bc 25 f4 b5  }
    be d2 b9 d9  }
    00 08 00 14     MESSAGE-INTEGRITY attribute header
    a3 82 95 4e  }
    4b e6 7b f1  }
    17 84 c9 7c  }  HMAC-SHA1 fingerprint
    82 92 c2 75  }
    bf e3 ed 41  }
    80 28 00 04     FINGERPRINT attribute header
    c8 fb 0b 4c     CRC32 fingerprint
""")

# RFC 5769 section 2.4, "Sample Request with Long-Term Authentication"
SAMPLE_LONG_TERM_REQUEST = vector("""
    00 01 00 60     Request type and message length
    21 12 a4 42     Magic cookie
    78 ad 34 33  }
    c6 ad 72 c0  }  Transaction ID
    29 da 41 2e  }
    00 06 00 12     USERNAME attribute header
    e3 83 9e e3  }
    83 88 e3 83  }
    aa e3 83 83  }  Username value (18 bytes) and padding (2 bytes)
    e3 82 af e3  }
    82 b9 00 00  }
    00 15 00 1c     NONCE attribute header
    66 2f 2f 34  }
    39 39 6b 39  }
    35 34 64 36  }
    4f 4c 33 34  }  Nonce value
    6f 4c 39 46  }
    53 54 76 79  }
    36 34 73 41  }
    00 14 00 0b     REALM attribute header
    65 78 61 6d  }
    70 6c 65 2e  }  Realm value (11 bytes) and padding (1 byte)
    6f 72 67 00  }
    00 08 00 14     MESSAGE-INTEGRITY attribute header
    f6 70 24 65  }
    6d d6 4a 3e  }
    02 b8 e0 71  }  HMAC-SHA1 fingerprint
    2e 85 c9 a2  }
    8c a8 96 66  }
""")

PASSWORD = short_term_key("VOkJxbRl1RmTxUk/WvJxBt")
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def test_sample_request_decodes_and_verifies() -> None:
    decoded = decode_message(SAMPLE_REQUEST)
    message = decoded.message
    assert (message.method, message.cls, message.transaction_id) == (
        BINDING, StunClass.REQUEST, TXID)
    assert message.attributes == (
        Software("STUN test client"),
        UnknownAttribute(0x0024, bytes.fromhex("6e0001ff")),  # PRIORITY
        UnknownAttribute(0x8029, bytes.fromhex("932ff9b151263b36")),  # ICE-CONTROLLED
        Username(b"evtj:h6vY"),
    )
    assert message.unknown_required() == (0x0024,)
    assert decoded.has_fingerprint
    assert decoded.verify_integrity(PASSWORD)
    assert not decoded.verify_integrity(short_term_key("wrong"))


@pytest.mark.parametrize(("data", "mapped"), [
    (SAMPLE_IPV4_RESPONSE, Endpoint.of("192.0.2.1", 32853)),
    (SAMPLE_IPV6_RESPONSE, Endpoint.of("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
])
def test_sample_responses_decode_and_verify(data: bytes, mapped: Endpoint) -> None:
    decoded = decode_message(data)
    assert decoded.message.cls is StunClass.SUCCESS
    assert decoded.message.attributes == (Software("test vector"), XorMappedAddress(mapped))
    assert decoded.has_fingerprint
    assert decoded.verify_integrity(PASSWORD)


@pytest.mark.parametrize("data", [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE])
def test_encoder_reproduces_the_vectors_byte_for_byte(data: bytes) -> None:
    # The vectors pad with spaces (0x20), on purpose: padding is covered by the hashes.
    message = decode_message(data).message
    assert encode_message(message, integrity_key=PASSWORD, fingerprint=True,
                          padding=0x20) == data


def test_long_term_request_verifies_with_the_long_term_key() -> None:
    decoded = decode_message(SAMPLE_LONG_TERM_REQUEST)
    username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    assert decoded.message.attributes == (
        Username(username.encode()),
        Nonce(b"f//499k954d6OL34oL9FSTvy64sA"),
        Realm("example.org"),
    )
    assert not decoded.has_fingerprint
    # "The\u00adM\u00aatr\u2168" after SASLprep is "TheMatrIX" (the caller's job).
    key = long_term_key(username, "example.org", "TheMatrIX")
    assert decoded.verify_integrity(key)
    assert not decoded.verify_integrity(long_term_key(username, "example.org", "TheMatrix"))
    assert encode_message(decoded.message, integrity_key=key) == SAMPLE_LONG_TERM_REQUEST


def test_a_flipped_bit_breaks_the_fingerprint() -> None:
    data = bytearray(SAMPLE_IPV4_RESPONSE)
    data[30] ^= 0x01  # inside SOFTWARE
    with pytest.raises(StunDecodeError, match="FINGERPRINT"):
        decode_message(bytes(data))


def _header(length: int, *, cookie: int = 0x2112A442, message_type: int = 0x0001) -> bytes:
    return struct.pack("!HHI", message_type, length, cookie) + TXID


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "shorter"),
    (_header(0)[:19], "shorter"),
    (_header(0, cookie=0x12345678), "cookie"),
    (_header(0, message_type=0x8001), "leading bits"),
    (_header(4), "length"),
    (_header(2) + b"\x00\x00", "length"),
    (_header(4) + struct.pack("!HH", 0x8022, 8), "overruns"),
    (_header(8) + struct.pack("!HH", 0x8022, 5) + b"abcd", "overruns"),  # no room to pad
    (_header(8) + struct.pack("!HH", 0x0020, 4) + b"\x00\x01\x00\x00", "address"),
    (_header(12) + struct.pack("!HHBBH", 0x0001, 8, 0, 3, 1) + b"\x01\x02\x03\x04", "family"),
    (_header(8) + struct.pack("!HH", 0x0003, 2) + b"\x00" * 4, "CHANGE-REQUEST"),
    (_header(8) + struct.pack("!HH", 0x8022, 2) + b"\xff\xfe\x00\x00", "UTF-8"),
    (_header(8) + struct.pack("!HHBBBB", 0x0009, 4, 0, 0, 2, 0), "ERROR-CODE"),
    (_header(8) + struct.pack("!HHBBBB", 0x0009, 4, 0, 0, 4, 100), "ERROR-CODE"),
    (_header(8) + struct.pack("!HH", 0x000A, 3) + b"\x00\x01\x00\x00", "odd"),
    (_header(8) + struct.pack("!HH", 0x0008, 4) + b"\x00" * 4, "MESSAGE-INTEGRITY"),
    (_header(8) + struct.pack("!HH", 0x8028, 4) + b"\x00" * 4, "FINGERPRINT does not match"),
    (_header(33 * 4) + struct.pack("!HH", 0x8030, 0) * 33, "more than 32"),
    (_header(2000) + b"\x00" * 2000, "more than"),
])
def test_malformed_datagrams_raise_the_codec_error(data: bytes, reason: str) -> None:
    with pytest.raises(StunDecodeError, match=reason):
        decode_message(data)


def test_nothing_may_follow_fingerprint() -> None:
    message = StunMessage(BINDING, StunClass.REQUEST, TXID)
    data = encode_message(message, fingerprint=True)
    extra = struct.pack("!HH", 0x8030, 0)
    tampered = data[:2] + struct.pack("!H", len(data) - 20 + 4) + data[4:] + extra
    with pytest.raises(StunDecodeError, match="after FINGERPRINT"):
        decode_message(tampered)


def test_attributes_after_message_integrity_are_ignored() -> None:
    message = StunMessage(BINDING, StunClass.REQUEST, TXID, (Software("a"),))
    data = encode_message(message, integrity_key=b"k")
    extra = struct.pack("!HH", 0x8022, 4) + b"late"
    tampered = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:] + extra
    decoded = decode_message(tampered)
    assert decoded.message.attributes == (Software("a"),)
    assert decoded.verify_integrity(b"k")


def test_nonzero_padding_is_accepted() -> None:
    data = _header(8) + struct.pack("!HH", 0x8022, 1) + b"x\xff\xff\xff"
    assert decode_message(data).message.attributes == (Software("x"),)


# --- round trips and fuzzing ----------------------------------------------------------

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
endpoints = st.builds(Endpoint, st.one_of(ipv4, ipv6), st.integers(0, 0xFFFF))
short_text = st.text(max_size=40)
attributes = st.one_of(
    st.builds(MappedAddress, endpoints),
    st.builds(XorMappedAddress, endpoints),
    st.builds(ResponseOrigin, endpoints),
    st.builds(OtherAddress, endpoints),
    st.builds(ChangeRequest, st.booleans(), st.booleans()),
    st.builds(Software, short_text),
    st.builds(ErrorCode, st.integers(300, 699), short_text),
    st.builds(UnknownAttributes, st.lists(st.integers(0, 0xFFFF), max_size=8).map(tuple)),
    st.builds(Username, st.binary(max_size=64)),
    st.builds(Realm, short_text),
    st.builds(Nonce, st.binary(max_size=64)),
    st.builds(UnknownAttribute,
              st.integers(0x8030, 0xFFFF) | st.integers(0x0030, 0x7FFF),
              st.binary(max_size=40)),
)
messages = st.builds(
    StunMessage, st.integers(0, 0xFFF), st.sampled_from(StunClass), st.binary(min_size=12,
                                                                                  max_size=12),
    st.lists(attributes, max_size=8).map(tuple))


@given(messages, st.booleans(), st.one_of(st.none(), st.binary(min_size=1, max_size=32)),
       st.integers(0, 255))
def test_round_trip(message: StunMessage, fingerprint: bool, key: bytes | None,
                    padding: int) -> None:
    data = encode_message(message, integrity_key=key, fingerprint=fingerprint, padding=padding)
    decoded = decode_message(data, max_size=65535)
    assert decoded.message == message
    assert decoded.has_fingerprint == fingerprint
    assert decoded.size == len(data)
    assert decoded.verify_integrity(key) if key is not None else decoded.integrity is None


@given(st.binary(max_size=200))
def test_decoding_random_bytes_raises_only_the_codec_error(data: bytes) -> None:
    with contextlib.suppress(StunDecodeError):
        decode_message(data)


@given(messages, st.data())
def test_decoding_corrupted_messages_raises_only_the_codec_error(message: StunMessage,
                                                                 data: st.DataObject) -> None:
    encoded = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(StunDecodeError):
        decode_message(bytes(encoded[:data.draw(st.integers(0, len(encoded)))]))


def test_the_codec_error_is_a_decode_error() -> None:
    assert issubclass(StunDecodeError, DecodeError)
