"""Per-stream flow control: credit windows counted in messages.

Theory of operation
-------------------
Without flow control a connection has one reader for all its streams, so a
stream whose consumer stops reading either stalls every other stream (the
reader waits for room in its inbox) or grows without bound (it does not).
Credit windows, as yamux and HTTP/2 use them, remove that choice: the peer may
only send what the receiver has room for, so delivery never has to wait.

Every stream starts with ``MuxLimits.stream_window`` credit in each
direction. Sending a message spends one credit; a sender without credit waits
(:meth:`~protocols.StreamMux.send_credit` is 0 and
:meth:`~protocols.StreamMux.encode_message` refuses). The receiver counts the
messages its application has *consumed* and grants them back with a window
update frame ``{"s": <id>, "w": <credit>}``; it batches them, granting once
half the window (at least one message) was consumed, so a busy stream costs
one update per half window, not one per message. A bare fin and an error
frame carry no message and cost no credit. A stream whose peer already sent
fin gets no more updates: the peer cannot send anything more.

The bookkeeping of one stream, :class:`FlowWindow`, keeps the invariant
``receive_credit + buffered + unreported == window``: what the peer may still
send, what arrived but was not consumed, and what was consumed but not yet
granted back. Hence the receiver never holds more than ``window`` unconsumed
messages, and a sender that is out of credit is always waiting for a consumer
with messages in hand - once it reads half of them, credit flows again (no
deadlock between batching and an empty window).

Why messages, not bytes: our frames carry whole msgpack maps, each at most
``MuxLimits.max_frame_bytes``, and a stream is a sequence of messages, not a
byte stream. Counting messages bounds a stream's buffered input to
``window x max_frame_bytes`` - the same bound the bounded inbox had before -
and needs no sizes at consumption time, when the decoded map no longer knows
its encoded length. A byte window would also have to be at least one maximal
frame to avoid deadlock, since a frame cannot be split.

The window is part of the wire protocol: both ends assume the same initial
window (every node runs this code with the default of 16 messages; with
different values a sender may overrun the smaller window, or wait for credit
the peer grants only after half of its larger one). A peer
that sends beyond the credit it was granted gets that stream reset with
``flow-control`` (see :mod:`protocols.wire._mux` for why the stream, not the
connection); granting more credit than a stream can count (2**32 - 1) is a
connection-level violation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core import LocalProtocolError, StreamError
from ._codec import U32_MAX

DEFAULT_STREAM_WINDOW: Final = 16
"""Messages each side may send on a stream before the receiver grants more."""


@dataclass
class FlowWindow:
    """The credit of one stream in both directions; no I/O, no time."""

    window: int
    send_credit: int
    """Messages we may still send before the peer grants more."""
    receive_credit: int
    """Messages the peer may still send before we grant more."""
    buffered: int = 0
    """Messages received that our application has not consumed yet."""
    unreported: int = 0
    """Messages consumed but not yet granted back to the peer."""

    @classmethod
    def open(cls, window: int) -> FlowWindow:
        return cls(window=window, send_credit=window, receive_credit=window)

    @property
    def batch(self) -> int:
        """Consumed messages that make a window update worth sending."""
        return max(1, self.window // 2)

    # --- sending ------------------------------------------------------------

    def spend(self) -> None:
        """One message was sent; the caller checked :attr:`send_credit` first."""
        assert self.send_credit > 0, "sent without credit"
        self.send_credit -= 1

    def grant(self, credit: int) -> int:
        """The peer granted ``credit`` more; the new send credit.

        Raises :class:`~protocols.StreamError` when the total cannot be counted.
        """
        if self.send_credit + credit > U32_MAX:
            raise StreamError(f"window update of {credit} overflows the send credit "
                              f"({self.send_credit} already granted)")
        self.send_credit += credit
        return self.send_credit

    # --- receiving ----------------------------------------------------------

    def accept(self) -> bool:
        """A message arrived: ``False`` if the peer had no credit left for it."""
        if self.receive_credit == 0:
            return False
        self.receive_credit -= 1
        self.buffered += 1
        return True

    def consume(self, count: int) -> int:
        """Our application consumed ``count`` messages; the credit to grant now, or 0.

        Raises :class:`~protocols.LocalProtocolError` when more messages are
        consumed than arrived.
        """
        if count > self.buffered:
            raise LocalProtocolError(f"consumed {count} messages but only {self.buffered} "
                                     "arrived unconsumed")
        self.buffered -= count
        self.unreported += count
        if self.unreported < self.batch:
            return 0
        credit, self.unreported = self.unreported, 0
        self.receive_credit += credit
        return credit
