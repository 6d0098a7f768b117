"""Typed, bounded mailboxes that outlive an actor's incarnations.

Theory of operation
-------------------
A :class:`Mailbox` wraps one ``trio.open_memory_channel(capacity)`` pair and
is created by the *owner* of an actor (the node), not by the actor. The
supervisor hands the same mailbox to every incarnation of the actor, so a
message sent while the actor is being restarted waits in the buffer (or in a
blocked ``send``) and is received by the next incarnation.

Incarnations and other actors never get the raw channels, only views:
:meth:`Mailbox.receiver` (receive side) and :meth:`Mailbox.sender` (send
side). Views cannot close anything, so an incarnation that exits or crashes
leaves the mailbox intact for its successor.

A mailbox is in one of three states (see :meth:`Mailbox.statistics`):

``open``
    Normal operation. ``send`` blocks while the buffer is full (backpressure).
``closed``
    The owner called :meth:`Mailbox.close`. Senders - including those blocked
    right now - get :class:`MailboxClosed`; receivers drain what is buffered,
    then get ``trio.EndOfChannel`` (``async for`` simply ends). Final.
``gone``
    The supervisor gave the actor up (a TEMPORARY child exited, the child
    could not be kept alive, or its supervisor ended) and called
    :meth:`Mailbox.mark_gone`. Buffered messages are dropped, senders -
    including blocked ones - get :class:`ActorGone` instead of blocking
    forever. :meth:`Mailbox.revive` (called when a supervisor starts the
    child again, e.g. after a parent supervisor restarted it) gives the
    mailbox a fresh channel.

The two errors follow trio's distinction: :class:`MailboxClosed` is a
``trio.ClosedResourceError`` ("you closed it"), :class:`ActorGone` is a
``trio.BrokenResourceError`` ("the other side broke").

Request/reply: :func:`call` sends a request that carries its own one-shot
reply channel (:class:`ReplySender`, a memory channel of size 1) and waits
for the answer under a timeout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

import trio

__all__ = [
    "ActorGone",
    "Mailbox",
    "MailboxClosed",
    "MailboxReceiver",
    "MailboxSender",
    "MailboxState",
    "MailboxStatistics",
    "ReplySender",
    "call",
]

T = TypeVar("T")
R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class MailboxClosed(trio.ClosedResourceError):
    """The mailbox's owner closed it: no more messages are accepted."""


class ActorGone(trio.BrokenResourceError):
    """The actor behind this mailbox is permanently gone; nobody will receive."""


class MailboxState(Enum):
    """Lifecycle of a :class:`Mailbox`."""

    OPEN = "open"
    CLOSED = "closed"
    GONE = "gone"


@dataclass(frozen=True)
class MailboxStatistics:
    """A snapshot of one mailbox (compare ``trio.MemoryChannelStatistics``)."""

    name: str
    state: MailboxState
    capacity: int
    buffered: int
    tasks_waiting_send: int
    tasks_waiting_receive: int
    sent: int
    received: int
    dropped: int


class Mailbox(Generic[T]):
    """A bounded, typed mailbox owned by the node and shared by incarnations."""

    def __init__(self, capacity: int, *, name: str = "mailbox") -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool):
            raise TypeError(f"capacity must be an int, got {type(capacity).__name__}")
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._state = MailboxState.OPEN
        self._gone_reason = ""
        self._sent = 0
        self._received = 0
        self._dropped = 0
        self._send, self._recv = trio.open_memory_channel[T](capacity)

    def __repr__(self) -> str:
        return f"<Mailbox {self.name!r} {self._state.value} capacity={self.capacity}>"

    @property
    def state(self) -> MailboxState:
        return self._state

    # -- sending ---------------------------------------------------------

    def _check_sendable(self) -> None:
        if self._state is MailboxState.CLOSED:
            raise MailboxClosed(f"mailbox {self.name!r} is closed")
        if self._state is MailboxState.GONE:
            raise ActorGone(f"actor behind mailbox {self.name!r} is gone: {self._gone_reason}")

    def _translated(self, exc: trio.ClosedResourceError | trio.BrokenResourceError) -> Exception:
        try:
            self._check_sendable()
        except (MailboxClosed, ActorGone) as err:
            return err
        return exc  # pragma: no cover - raw channel closed behind our back

    async def send(self, message: T) -> None:
        """Send, waiting while the mailbox is full.

        Raises :class:`MailboxClosed` or :class:`ActorGone` (also when that
        happens while waiting).
        """
        self._check_sendable()
        channel = self._send
        try:
            await channel.send(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise self._translated(exc) from None
        self._sent += 1

    def send_nowait(self, message: T) -> None:
        """Send without waiting; raises ``trio.WouldBlock`` when full."""
        self._check_sendable()
        try:
            self._send.send_nowait(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:  # pragma: no cover
            raise self._translated(exc) from None
        self._sent += 1

    # -- receiving (used through MailboxReceiver) ------------------------

    def _check_receivable(self) -> None:
        if self._state is MailboxState.GONE:
            raise ActorGone(f"mailbox {self.name!r} was given up: {self._gone_reason}")

    async def _receive(self) -> T:
        self._check_receivable()
        try:
            message = await self._recv.receive()
        except trio.ClosedResourceError:
            self._check_receivable()
            raise  # pragma: no cover
        self._received += 1
        return message

    def _receive_nowait(self) -> T:
        self._check_receivable()
        message = self._recv.receive_nowait()
        self._received += 1
        return message

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Owner: stop accepting messages. Receivers drain, then see EndOfChannel."""
        if self._state is MailboxState.CLOSED:
            return
        self._state = MailboxState.CLOSED
        self._send.close()

    def mark_gone(self, reason: str) -> None:
        """Supervisor: the actor will not receive any more; fail senders fast."""
        if self._state is not MailboxState.OPEN:
            return
        self._state = MailboxState.GONE
        self._gone_reason = reason
        self._dropped += self._recv.statistics().current_buffer_used
        self._recv.close()  # wakes blocked senders with BrokenResourceError

    def revive(self) -> None:
        """Supervisor: the actor is being started again; accept messages again."""
        if self._state is not MailboxState.GONE:
            return
        self._send.close()
        self._send, self._recv = trio.open_memory_channel[T](self.capacity)
        self._state = MailboxState.OPEN
        self._gone_reason = ""

    # -- views and statistics ---------------------------------------------

    def sender(self) -> MailboxSender[T]:
        """A send-only view to hand to other actors."""
        return MailboxSender(self)

    def receiver(self) -> MailboxReceiver[T]:
        """A receive-only, non-owning view to hand to the actor's incarnations."""
        return MailboxReceiver(self)

    def statistics(self) -> MailboxStatistics:
        stats = self._recv.statistics()
        return MailboxStatistics(
            name=self.name,
            state=self._state,
            capacity=self.capacity,
            buffered=stats.current_buffer_used,
            tasks_waiting_send=stats.tasks_waiting_send,
            tasks_waiting_receive=stats.tasks_waiting_receive,
            sent=self._sent,
            received=self._received,
            dropped=self._dropped,
        )


class MailboxSender(Generic[T]):
    """Send-only view of a :class:`Mailbox`; it cannot close the mailbox."""

    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: Mailbox[T]) -> None:
        self._mailbox = mailbox

    def __repr__(self) -> str:
        return f"<MailboxSender {self._mailbox.name!r}>"

    @property
    def name(self) -> str:
        return self._mailbox.name

    async def send(self, message: T) -> None:
        await self._mailbox.send(message)

    def send_nowait(self, message: T) -> None:
        self._mailbox.send_nowait(message)

    def statistics(self) -> MailboxStatistics:
        return self._mailbox.statistics()


class MailboxReceiver(Generic[T]):
    """Receive-only, non-owning view of a :class:`Mailbox` for one incarnation.

    ``async for message in receiver`` ends when the owner closed the mailbox
    and the buffer is drained.
    """

    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: Mailbox[T]) -> None:
        self._mailbox = mailbox

    def __repr__(self) -> str:
        return f"<MailboxReceiver {self._mailbox.name!r}>"

    @property
    def name(self) -> str:
        return self._mailbox.name

    async def receive(self) -> T:
        """Wait for the next message; ``trio.EndOfChannel`` after close and drain."""
        return await self._mailbox._receive()

    def receive_nowait(self) -> T:
        """Next message or ``trio.WouldBlock``."""
        return self._mailbox._receive_nowait()

    def statistics(self) -> MailboxStatistics:
        return self._mailbox.statistics()

    def __aiter__(self) -> MailboxReceiver[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class ReplySender(Generic[R_contra]):
    """One-shot reply channel carried inside a request (see :func:`call`)."""

    __slots__ = ("_channel", "_used")

    def __init__(self, channel: trio.MemorySendChannel[R_contra]) -> None:
        self._channel = channel
        self._used = False

    def __repr__(self) -> str:
        return f"<ReplySender {'used' if self._used else 'pending'}>"

    @property
    def used(self) -> bool:
        return self._used

    def reply(self, value: R_contra) -> bool:
        """Deliver the answer; never blocks.

        Returns False when the caller no longer waits (it timed out or was
        cancelled); a late reply is not an error for the replying actor.
        Replying twice is a programming error (``RuntimeError``).
        """
        if self._used:
            raise RuntimeError("reply() called twice on the same request")
        self._used = True
        try:
            self._channel.send_nowait(value)
        except trio.BrokenResourceError:
            return False
        finally:
            self._channel.close()
        return True


class MessageSink(Protocol[T_contra]):
    """Anything with ``async send(message)``: a Mailbox or a MailboxSender."""

    async def send(self, message: T_contra, /) -> None: ...


async def call(
    target: MessageSink[T],
    make_request: Callable[[ReplySender[R]], T],
    timeout: float,
) -> R:
    """Send ``make_request(reply)`` to ``target`` and wait for the reply.

    ``timeout`` (seconds, may be ``math.inf``) bounds sending and waiting
    together; when it expires ``trio.TooSlowError`` is raised and a late
    reply is discarded. Mailbox errors (:class:`MailboxClosed`,
    :class:`ActorGone`) propagate.

    Typing: mypy infers the reply type when ``make_request`` is the request
    class itself (``call(box, GetTotal, 1.0)`` -> ``int`` for a ``reply:
    ReplySender[int]`` field). With a lambda it cannot see through the body,
    so annotate the result: ``n: int = await call(box, lambda r: Get(key, r), 1.0)``.
    """
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    reply_send, reply_recv = trio.open_memory_channel[R](1)
    with reply_recv, trio.fail_after(timeout):
        await target.send(make_request(ReplySender(reply_send)))
        return await reply_recv.receive()
