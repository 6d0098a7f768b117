"""Tests of actors.runtime._mailbox: bounded typed mailboxes, views, close/gone, call()."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from actors import (
    ActorGone,
    Mailbox,
    MailboxClosed,
    MailboxReceiver,
    MailboxSender,
    MailboxState,
    ReplySender,
    call,
)

GUARD = 60.0  # virtual seconds; every test runs under fail_after(GUARD)


def test_errors_follow_trios_closed_vs_broken_distinction() -> None:
    assert issubclass(MailboxClosed, trio.ClosedResourceError)
    assert issubclass(ActorGone, trio.BrokenResourceError)
    assert not issubclass(MailboxClosed, ActorGone)
    assert not issubclass(ActorGone, MailboxClosed)


@pytest.mark.parametrize("capacity", [-1, 1.5, math.inf, True])
def test_capacity_must_be_a_non_negative_int(capacity: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        Mailbox(capacity)  # type: ignore[arg-type]


async def test_messages_arrive_in_order_and_capacity_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[int] = Mailbox(2, name="box")
        mailbox.send_nowait(1)
        await mailbox.send(2)
        with pytest.raises(trio.WouldBlock):
            mailbox.send_nowait(3)
        stats = mailbox.statistics()
        assert (stats.name, stats.state, stats.capacity, stats.buffered) == (
            "box",
            MailboxState.OPEN,
            2,
            2,
        )
        receiver = mailbox.receiver()
        assert receiver.receive_nowait() == 1
        assert await receiver.receive() == 2
        with pytest.raises(trio.WouldBlock):
            receiver.receive_nowait()
        stats = mailbox.statistics()
        assert (stats.sent, stats.received, stats.buffered) == (2, 2, 0)


async def test_full_mailbox_applies_backpressure(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[str] = Mailbox(1)
        sender = mailbox.sender()
        done = trio.Event()
        mailbox.send_nowait("first")

        async def blocked_send() -> None:
            await sender.send("second")
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_send)
            await trio.sleep(5)
            assert not done.is_set()
            assert mailbox.statistics().tasks_waiting_send == 1
            assert await mailbox.receiver().receive() == "first"
            await done.wait()
        assert mailbox.receiver().receive_nowait() == "second"


def test_views_cannot_close_the_mailbox() -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    receiver = mailbox.receiver()
    sender = mailbox.sender()
    assert isinstance(receiver, MailboxReceiver)
    assert isinstance(sender, MailboxSender)
    assert not hasattr(receiver, "close")
    assert not hasattr(sender, "close")
    assert receiver.name == sender.name == "mailbox"
    assert sender.statistics() == receiver.statistics() == mailbox.statistics()


async def test_owner_close_fails_senders_and_drains_receivers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[int] = Mailbox(1)
        await mailbox.send(1)
        errors: list[BaseException] = []

        async def blocked_send() -> None:
            try:
                await mailbox.sender().send(2)
            except MailboxClosed as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_send)
            await trio.sleep(1)
            mailbox.close()
        assert len(errors) == 1  # the blocked sender was woken
        with pytest.raises(MailboxClosed):
            await mailbox.send(3)
        with pytest.raises(MailboxClosed):
            mailbox.send_nowait(3)
        received = [message async for message in mailbox.receiver()]
        assert received == [1]  # buffered messages are still delivered, then the end
        assert mailbox.state is MailboxState.CLOSED
        mailbox.close()  # idempotent
        mailbox.revive()  # closed is final
        assert mailbox.state is MailboxState.CLOSED


async def test_gone_fails_senders_fast_and_wakes_blocked_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[int] = Mailbox(1)
        await mailbox.send(1)
        errors: list[BaseException] = []

        async def blocked_send() -> None:
            try:
                await mailbox.send(2)
            except ActorGone as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_send)
            await trio.sleep(1)
            mailbox.mark_gone("test says so")
        assert len(errors) == 1
        assert "test says so" in str(errors[0])
        with pytest.raises(ActorGone):
            await mailbox.send(3)
        with pytest.raises(ActorGone):
            mailbox.send_nowait(3)
        with pytest.raises(ActorGone):
            await mailbox.receiver().receive()
        stats = mailbox.statistics()
        assert (stats.state, stats.dropped, stats.buffered) == (MailboxState.GONE, 1, 0)

        mailbox.revive()
        await mailbox.send(4)
        assert mailbox.receiver().receive_nowait() == 4
        assert mailbox.state is MailboxState.OPEN


async def test_blocked_receiver_learns_the_actor_is_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[int] = Mailbox(1)

        async def receive() -> None:
            with pytest.raises(ActorGone):
                await mailbox.receiver().receive()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.sleep(1)
            mailbox.mark_gone("bye")


# -- call() ---------------------------------------------------------------------


@dataclass(frozen=True)
class Double:
    value: int
    reply: ReplySender[int]


async def doubler(receiver: MailboxReceiver[Double], delay: float = 0.0) -> None:
    async for request in receiver:
        await trio.sleep(delay)
        request.reply.reply(request.value * 2)


async def test_call_carries_its_own_reply_channel(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[Double] = Mailbox(4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(doubler, mailbox.receiver(), 0.5)
            results: list[int] = []
            for value in (1, 2):
                # a request class applied partially is a ReplySender -> request factory
                results.append(await call(mailbox, functools.partial(Double, value), timeout=1.0))
            assert results == [2, 4]
            assert trio.current_time() == pytest.approx(1.0)
            nursery.cancel_scope.cancel()


async def test_call_times_out_and_a_late_reply_is_harmless(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        mailbox: Mailbox[Double] = Mailbox(4)
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            # with a lambda, mypy needs the reply type from the context
            _result: int = await call(mailbox, lambda r: Double(1, r), timeout=2.5)
        assert trio.current_time() - start == pytest.approx(2.5)
        late = mailbox.receiver().receive_nowait()
        assert late.reply.reply(2) is False  # the caller left; no error for the actor
        assert late.reply.used


async def test_reply_twice_is_a_programming_error() -> None:
    send, _receive = trio.open_memory_channel[int](1)
    reply = ReplySender(send)
    assert reply.reply(1) is True
    with pytest.raises(RuntimeError):
        reply.reply(2)


async def test_call_to_a_closed_or_gone_mailbox_raises_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        closed: Mailbox[Double] = Mailbox(1)
        closed.close()
        with pytest.raises(MailboxClosed):
            await call(closed, functools.partial(Double, 1), timeout=math.inf)
        gone: Mailbox[Double] = Mailbox(1)
        gone.mark_gone("stopped")
        with pytest.raises(ActorGone):
            await call(gone.sender(), functools.partial(Double, 1), timeout=math.inf)
        with pytest.raises(ValueError):
            await call(gone, functools.partial(Double, 1), timeout=-1)
