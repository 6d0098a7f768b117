"""A supervised actor with a mailbox that outlives its crashes.

Run it with ``python examples/supervisor_demo.py`` (well under a second).

A counter actor keeps a running total. It is PERMANENT: when a ``Crash``
message kills it, the supervisor restarts it after a short backoff, with a
fresh (zero) total - but the mailbox belongs to the caller, so the ``Add``
sent while the actor was down is waiting for the new incarnation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import trio

from actors import ChildSpec, Mailbox, MailboxReceiver, ReplySender, Restart, Supervisor, call
from protocols import Backoff


@dataclass(frozen=True)
class Add:
    amount: int


@dataclass(frozen=True)
class Total:
    reply: ReplySender[int]


@dataclass(frozen=True)
class Crash:
    pass


CounterMessage = Add | Total | Crash


async def counter(
    inbox: MailboxReceiver[CounterMessage],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    total = 0
    task_status.started()  # ready: the supervisor may start the next child
    async for message in inbox:
        match message:
            case Add(amount):
                total += amount
            case Total(reply):
                reply.reply(total)
            case Crash():
                raise RuntimeError("asked to crash")


async def main() -> None:
    mailbox: Mailbox[CounterMessage] = Mailbox(capacity=16, name="counter")
    supervisor = Supervisor(
        [
            ChildSpec(
                "counter",
                functools.partial(counter, mailbox.receiver()),
                restart=Restart.PERMANENT,
                mailbox=mailbox,
            )
        ],
        max_restarts=3,
        within=10.0,
        backoff=Backoff(initial=0.05, maximum=1.0),
        name="demo",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)  # returns once the counter is ready
        await mailbox.send(Add(2))
        await mailbox.send(Add(3))
        print("total before the crash:", await call(mailbox, Total, timeout=1.0))
        await mailbox.send(Crash())
        await mailbox.send(Add(7))  # waits in the mailbox while the counter restarts
        print("total after the restart:", await call(mailbox, Total, timeout=1.0))
        child = supervisor.statistics().child("counter")
        print(
            f"counter: state={child.state.value} incarnation={child.incarnation} "
            f"restarts={child.restarts} last_error={child.last_error}"
        )
        nursery.cancel_scope.cancel()  # shut down: children stop in reverse order
    mailbox.close()


if __name__ == "__main__":
    trio.run(main)
