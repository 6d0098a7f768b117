"""Sans-io core of trio-autonat: identity, addresses, wire messages and decisions.

Nothing in this package imports trio or performs I/O. State machines take
bytes, events and the current time as arguments and return events and bytes
(the h11 style), so they are tested without sockets and driven by the actors
in :mod:`actors`.
"""

from __future__ import annotations

from ._errors import (
    AddressError,
    BadSignature,
    DecodeError,
    FrameTooLarge,
    HandshakeError,
    HandshakeOrderError,
    HandshakeTimeout,
    InvalidKey,
    KeyFileError,
    PeerIdMismatch,
    ProtocolError,
    StatusDocumentError,
    StreamError,
    ValidationError,
)

__all__ = [
    "AddressError",
    "BadSignature",
    "DecodeError",
    "FrameTooLarge",
    "HandshakeError",
    "HandshakeOrderError",
    "HandshakeTimeout",
    "InvalidKey",
    "KeyFileError",
    "PeerIdMismatch",
    "ProtocolError",
    "StatusDocumentError",
    "StreamError",
    "ValidationError",
]
