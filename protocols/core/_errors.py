"""The error families of the sans-io layer.

Three families, because callers react to them differently::

    ProtocolError                 a protocol could not proceed (catch-all for both sides)
    +-- LocalProtocolError        WE did something wrong: our bug, never the peer's fault
    |   +-- ProbeSchedulerError   (protocols.autonat) the probe actor drove the scheduler wrongly
    +-- RemoteProtocolError       what a PEER (or any untrusted input) sent is unusable
        +-- DecodeError           bytes are not a well-formed frame
        |   +-- FrameTooLarge
        +-- ValidationError       a well-formed value has a bad field
        +-- AddressError          a multiaddr or URL is unusable
        +-- InvalidKey            a public key or signature is malformed
        +-- HandshakeError        the connection handshake failed
        |   +-- HandshakeOrderError, BadSignature, PeerIdMismatch, HandshakeTimeout
        +-- StreamError           the peer broke the stream-mux rules
        +-- StatusDocumentError   a /status document is unusable as a whole

    SettingsError                 this node's own settings or files are unusable
    +-- ConfigError               a config file, environment variable or flag
    +-- KeyFileError              the key file
    +-- PeerStoreError            the persisted peer store as a whole

    StreamLimitReached            no stream id or slot left; nobody did anything wrong

The split between local and remote follows h11: a :class:`RemoteProtocolError`
closes the connection (or skips the entry) with a message that says what the
peer sent; a :class:`LocalProtocolError` is a bug in this node - calling a
state machine in a state that does not accept the call (the stream mux asked
to send on a dead stream, the handshake started twice, a lifecycle pair the
table does not hold), or constructing an event or snapshot with an impossible
value. Actors catch :class:`RemoteProtocolError` at their I/O boundaries and
let :class:`LocalProtocolError` crash the task, so the supervisor logs it.
``except ProtocolError`` still catches both.

:class:`SettingsError` is not a :class:`ProtocolError`: nothing a peer sent is
involved, and the fix is the operator's (edit the file, chmod the key, delete
the peer store). Its messages name the file or variable and say what to do.

Where a type is raised, decided per site:

* :class:`ValidationError`, :class:`DecodeError`, :class:`AddressError` and
  :class:`InvalidKey` are raised by the parsers and by the ``__post_init__``
  of wire messages (frames, Identify, AutoNAT messages, ``/status``), which
  are the boundary for untrusted input: a message is built from the wire far
  more often than by us, so an invalid field there is "remote". The same
  parsers read local text too (config values, the key file, the peer store);
  there the caller re-raises as the matching :class:`SettingsError`
  (``ConfigError`` from the config loader, ``KeyFileError`` from the key-file
  code) or skips the entry with a reason (the peer store). The rate window
  of :class:`~protocols.bootstrap.RoundRobin`, ``uptime_s`` of a status view
  and the fields of ``PeerRecord`` and ``NodeSnapshot`` are values this node
  builds, so they raise :class:`LocalProtocolError` (the peer-store decoder,
  which builds ``PeerRecord`` from a file, catches :class:`ProtocolError` and
  skips the entry).
* Node and AutoNAT events (``PeersFound``, ``ProbeResult``, ``InboundProbe``,
  ...) are built by our actors only: :class:`LocalProtocolError`.
* The stream mux and the handshake raise :class:`LocalProtocolError` for
  calls their state does not allow and :class:`StreamError` /
  :class:`HandshakeError` for frames the peer sent.
* Parameter objects (``NodeConfig``, ``Limits``, ``MuxLimits``,
  ``ReachabilityConfig``, ``Backoff``, ...) keep raising ``ValueError`` /
  ``TypeError`` for impossible arguments: the config loader turns
  ``NodeConfig``'s ``ValueError`` into :class:`ConfigError` naming the key,
  and anywhere else such an argument is a programming error.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: a protocol or state machine could not proceed (local or remote cause)."""


class LocalProtocolError(ProtocolError):
    """This node misused a machine or built an invalid value: a bug here, not the peer's.

    Raised for a call the machine's current state does not accept (the message
    names the state and the input) and for events or snapshots constructed
    with impossible values.
    """


class RemoteProtocolError(ProtocolError):
    """Untrusted input (a peer's frame, a fetched document) could not be accepted."""


class DecodeError(RemoteProtocolError):
    """Bytes are not a well-formed frame (bad msgpack, wrong container types)."""


class FrameTooLarge(DecodeError):
    """A frame, string, binary, array or map exceeds its configured limit."""


class ValidationError(RemoteProtocolError):
    """A well-formed frame carries a field that is missing, mistyped or out of range."""


class AddressError(RemoteProtocolError):
    """A multiaddr or URL cannot be parsed or is not usable by this node."""


class InvalidKey(RemoteProtocolError):
    """A public key or signature is malformed (not a key-file problem)."""


class HandshakeError(RemoteProtocolError):
    """The connection handshake failed; the connection must be closed."""


class HandshakeOrderError(HandshakeError):
    """A handshake frame arrived out of order or a non-handshake frame came first."""


class BadSignature(HandshakeError):
    """The peer's signature over our nonce does not verify."""


class PeerIdMismatch(HandshakeError):
    """The authenticated peer id differs from the ``/p2p/`` id that was dialed."""


class SelfConnection(HandshakeError):
    """The peer authenticated as this node itself: the connection looped back to our own
    listener (a hairpin test, or an address of ours dialed by mistake). Never a peer."""


class HandshakeTimeout(HandshakeError):
    """The handshake did not complete before its deadline."""


class StreamError(RemoteProtocolError):
    """A stream-level protocol violation (bad stream id, frame after fin, ...)."""


class StatusDocumentError(RemoteProtocolError):
    """A ``/status`` document is unusable as a whole (not JSON, not an object, too big)."""


class SettingsError(Exception):
    """This node's own configuration or persisted state is unusable.

    Not a :class:`ProtocolError`: it comes from local files, the environment or
    flags, not from a peer. The message names the source and says what to do.
    """


class ConfigError(SettingsError):
    """A setting from a config file, the environment or a flag is unusable.

    The message names the source (file or variable) where known and the key,
    e.g. ``node.toml: unknown key 'target_peer' in [dialer] (did you mean
    'target_peers'?)``.
    """


class KeyFileError(SettingsError):
    """The node's key file is unusable: wrong size, mismatched halves, unsafe mode.

    The message always names the file and says what to do.
    """


class PeerStoreError(SettingsError):
    """The persisted peer store is unusable as a whole (not JSON, wrong version, too big)."""


class StreamLimitReached(Exception):
    """This side cannot open another stream: its concurrent-stream limit is reached
    (or the connection ran out of stream ids).

    Not a :class:`ProtocolError`: nothing the peer sent is wrong. Wait for a
    stream to finish, or use another connection.
    """
