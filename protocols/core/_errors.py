"""The error family of the sans-io layer.

Every failure that input from the outside world can cause in ``protocols/``
is a :class:`ProtocolError` subclass, so an actor can catch exactly one type
at its I/O boundary and close a connection (or skip an entry) with a message
that says what was wrong. Programming errors (wrong argument types passed by
our own code) stay ordinary ``TypeError``/``ValueError``.

Following trio's ``_core/_exceptions.py``, "the input was bad" and "the peer
misbehaved in the protocol" get distinct types, because callers react to
them differently (drop a frame versus close a connection).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: untrusted input could not be accepted."""


class DecodeError(ProtocolError):
    """Bytes are not a well-formed frame (bad msgpack, wrong container types)."""


class FrameTooLarge(DecodeError):
    """A frame, string, binary, array or map exceeds its configured limit."""


class ValidationError(ProtocolError):
    """A well-formed frame carries a field that is missing, mistyped or out of range."""


class AddressError(ProtocolError):
    """A multiaddr or URL cannot be parsed or is not usable by this node."""


class InvalidKey(ProtocolError):
    """A public key or signature is malformed (not a key-file problem)."""


class KeyFileError(Exception):
    """The node's key file is unusable: wrong size, mismatched halves, unsafe mode.

    Not a :class:`ProtocolError`: it comes from local configuration, not from a peer.
    The message always names the file and says what to do.
    """


class HandshakeError(ProtocolError):
    """The connection handshake failed; the connection must be closed."""


class HandshakeOrderError(HandshakeError):
    """A handshake frame arrived out of order or a non-handshake frame came first."""


class BadSignature(HandshakeError):
    """The peer's signature over our nonce does not verify."""


class PeerIdMismatch(HandshakeError):
    """The authenticated peer id differs from the ``/p2p/`` id that was dialed."""


class HandshakeTimeout(HandshakeError):
    """The handshake did not complete before its deadline."""


class StreamError(ProtocolError):
    """A stream-level protocol violation (bad stream id, frame after fin, ...)."""


class StatusDocumentError(ProtocolError):
    """A ``/status`` document is unusable as a whole (not JSON, not an object, too big)."""


class PeerStoreError(ProtocolError):
    """The persisted peer store is unusable as a whole (not JSON, wrong version, too big)."""


class StreamLimitReached(Exception):
    """This side cannot open another stream: its concurrent-stream limit is reached
    (or the connection ran out of stream ids).

    Not a :class:`ProtocolError`: nothing the peer sent is wrong. Wait for a
    stream to finish, or use another connection.
    """


class ConfigError(ProtocolError):
    """A setting from a config file, the environment or a flag is unusable.

    The message names the source (file or variable) where known and the key,
    e.g. ``node.toml: unknown key 'target_peer' in [dialer] (did you mean
    'target_peers'?)``.
    """
