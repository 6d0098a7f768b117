"""A userspace link emulator for the NAT lab: one-way delay, jitter and loss.

Theory of operation
-------------------
The lab's kernel has no ``netem``, so ``tc`` cannot slow a link down. Instead a
participant's access link is cut in two by a "link" namespace holding two
interfaces, ``uplink`` (towards the internet bridge) and ``downlink`` (towards
the participant), with no address and no forwarding. This module, run inside it as
``python -m tests.lab.linkem --a uplink --b downlink --delay-ms D ...`` (or as a script),
opens one ``AF_PACKET``/``SOCK_RAW`` socket per interface (protocol 0 at
creation, ``ETH_P_ALL`` at ``bind``, so it never sees other interfaces' frames),
reads every Ethernet frame arriving on one side and writes it, unchanged, to the
other side when it is due. Frames the kernel reports as ``PACKET_OUTGOING`` are
our own sends, looped back to the socket, and are ignored.

The decision for each frame is made by a sans-io core that never touches a
socket or a clock: a :class:`LinkProfile` (frozen, validated once) per
direction and a :class:`LinkDirection` that, given a frame and its arrival time,
either drops it or queues it with a due time ``arrival + delay + U(-jitter,
+jitter)``, raised to the previous frame's due time so that jitter never
reorders a direction (TCP would read reordering as loss). Since due times are
non-decreasing, each direction's queue is a FIFO (a ``deque``); the runner
waits in ``poll`` until the earlier of the two queue heads is due (at most
:data:`MAX_WAIT_S`, so a stop request is noticed) and sends what is due. All
randomness comes from one seeded ``random.Random`` per direction, so a seed
reproduces a run's decisions.

The notation of the scenarios is per direction, like ``netem`` on both ends:
"40 ms" is 40 ms one-way in each direction (+80 ms round trip), "150 ms ± 20 ms"
adds uniform jitter of ±20 ms, "50 ms + 10 % loss" drops each IPv4 frame with
probability 0.1 in each direction.

Loss applies to IPv4 frames only. ARP is delayed like everything else, but never
dropped: the emulator models loss on an IP *path*, and the lab's link is an
Ethernet segment only because the lab bridges its internet. On a real path,
neighbour resolution happens on the first hop, not across the lossy wide-area
path; dropping ARP here would add the kernel's 1 s neighbour retries (and
"incomplete" neighbour states that drop queued IP packets wholesale) that no
real internet path has. Frames that are neither ARP nor IPv4 are treated like
IPv4 (the lab disables IPv6, so there should be none).

Each direction holds at most ``queue_limit`` (default 4096) frames; beyond that
a frame is dropped (drop-tail) and counted apart from random loss.

Offloads must be off on both ends of both veth pairs around the link namespace
(``ethtool -K IF tx off rx off tso off gso off gro off``, see
:data:`OFFLOAD_OFF`): with TSO/GSO/GRO a veth hands over TCP super-frames larger
than the MTU, which the other veth refuses to send, and with checksum offload
frames carry unfinished checksums (``CHECKSUM_PARTIAL``) that a raw socket
copies as they are. With the features off the kernel segments and checksums in
software before the frame reaches the emulator.

On SIGTERM or SIGINT the runner stops (within :data:`MAX_WAIT_S`), drops what is
still queued, and prints one JSON line of statistics per direction to stdout.
It needs only the standard library, so it runs as a module or as a script.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

ETH_P_ALL = 0x0003
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
PACKET_OUTGOING = 4
QUEUE_LIMIT = 4096
MAX_WAIT_S = 0.2
MAX_FRAME = 65536
READ_BURST = 256
"""Frames read from one socket per wakeup, so one busy side cannot starve the other."""
OFFLOAD_OFF = ("tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")
"""The ``ethtool -K IF ...`` arguments the lab applies to every veth end around a link."""


# --- the sans-io core --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LinkProfile:
    """One direction of a link: one-way delay, uniform jitter (±), loss probability."""

    delay_ms: float
    jitter_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "loss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise ValueError(f"LinkProfile.{name} must be a finite number, got {value!r}")
        if self.delay_ms < 0 or self.delay_ms > 60_000:
            raise ValueError(f"delay_ms must be in [0, 60000], got {self.delay_ms}")
        if self.jitter_ms < 0 or self.jitter_ms > self.delay_ms:
            raise ValueError(f"jitter_ms must be in [0, delay_ms={self.delay_ms}], "
                             f"got {self.jitter_ms}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")

    @property
    def key(self) -> str:
        """A short tag for scenario keys: ``d40``, ``d150j20``, ``d50l10``."""
        text = f"d{self.delay_ms:g}"
        if self.jitter_ms:
            text += f"j{self.jitter_ms:g}"
        if self.loss:
            text += f"l{self.loss * 100:g}"
        return text.replace(".", "p")

    def describe(self) -> str:
        """Human notation: ``40 ms``, ``150 ms ± 20 ms``, ``50 ms + 10 % loss`` (one-way)."""
        text = f"{self.delay_ms:g} ms"
        if self.jitter_ms:
            text += f" ± {self.jitter_ms:g} ms"
        if self.loss:
            text += f" + {self.loss * 100:g} % loss"
        return text

    def argv(self) -> list[str]:
        """The runner's command-line flags for this profile."""
        return ["--delay-ms", f"{self.delay_ms:g}", "--jitter-ms", f"{self.jitter_ms:g}",
                "--loss", f"{self.loss:g}"]



def ethertype(frame: bytes) -> int | None:
    """The Ethernet type of ``frame`` (``None`` for a runt shorter than a header)."""
    if len(frame) < 14:
        return None
    return int.from_bytes(frame[12:14], "big")


@dataclasses.dataclass
class DirectionStats:
    """What one direction did with the frames it was offered."""

    received: int = 0
    forwarded: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    dropped_send: int = 0
    dropped_at_exit: int = 0
    ipv4_received: int = 0
    arp_received: int = 0
    max_queue: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class LinkDirection:
    """One direction of an emulated link: decides drop or due time, keeps the FIFO queue.

    Sans-io: the caller passes arrival times and asks for frames due at a time;
    ``rng`` makes every decision reproducible.
    """

    def __init__(self, profile: LinkProfile, rng: random.Random, *,
                 queue_limit: int = QUEUE_LIMIT) -> None:
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be >= 1, got {queue_limit}")
        self.profile = profile
        self.rng = rng
        self.queue_limit = queue_limit
        self.stats = DirectionStats()
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._last_due = -math.inf

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, frame: bytes, now: float) -> float | None:
        """A frame arrived at ``now`` (seconds): its due time, or ``None`` if dropped."""
        self.stats.received += 1
        kind = ethertype(frame)
        if kind == ETHERTYPE_IPV4:
            self.stats.ipv4_received += 1
        elif kind == ETHERTYPE_ARP:
            self.stats.arp_received += 1
        if len(self._queue) >= self.queue_limit:
            self.stats.dropped_queue += 1
            return None
        if kind != ETHERTYPE_ARP and self.profile.loss > 0.0 \
                and self.rng.random() < self.profile.loss:
            self.stats.dropped_loss += 1
            return None
        delay_ms = self.profile.delay_ms
        if self.profile.jitter_ms > 0.0:
            delay_ms += self.rng.uniform(-self.profile.jitter_ms, self.profile.jitter_ms)
        due = max(now + delay_ms / 1000.0, self._last_due)
        self._last_due = due
        self._queue.append((due, frame))
        self.stats.max_queue = max(self.stats.max_queue, len(self._queue))
        return due

    def next_due(self) -> float | None:
        """When the head of the queue is due (``None``: queue empty)."""
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: float) -> list[bytes]:
        """Remove and return, in order, every frame due at or before ``now``."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(self._queue.popleft()[1])
        return out

    def sent(self, ok: bool) -> None:
        """Count the outcome of sending a popped frame."""
        if ok:
            self.stats.forwarded += 1
        else:
            self.stats.dropped_send += 1

    def discard(self) -> int:
        """Drop everything still queued (at exit); return how many."""
        count = len(self._queue)
        self.stats.dropped_at_exit += count
        self._queue.clear()
        return count


# --- the I/O runner ----------------------------------------------------------------------


def _open(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def run(a_if: str, b_if: str, profile: LinkProfile, *, seed: int = 0,
        queue_limit: int = QUEUE_LIMIT, max_seconds: float | None = None) -> dict[str, Any]:
    """Forward frames between ``a_if`` and ``b_if`` until SIGTERM/SIGINT (or
    ``max_seconds``); return the statistics."""
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    socks = {"a": _open(a_if), "b": _open(b_if)}
    master = random.Random(seed)
    dirs = {"a": LinkDirection(profile, random.Random(master.getrandbits(64)),
                               queue_limit=queue_limit),
            "b": LinkDirection(profile, random.Random(master.getrandbits(64)),
                               queue_limit=queue_limit)}
    other = {"a": "b", "b": "a"}
    poller = select.poll()
    by_fd = {}
    for side, sock in socks.items():
        poller.register(sock.fileno(), select.POLLIN)
        by_fd[sock.fileno()] = side
    started = time.monotonic()
    print(f"linkem: ready {a_if}<->{b_if} {profile.describe()} seed={seed}",
          file=sys.stderr, flush=True)
    try:
        while not stop.requested:
            now = time.monotonic()
            if max_seconds is not None and now - started >= max_seconds:
                break
            heads = [due for due in (d.next_due() for d in dirs.values()) if due is not None]
            wait = MAX_WAIT_S if not heads else min(MAX_WAIT_S, max(0.0, min(heads) - now))
            for fd, _events in poller.poll(wait * 1000.0):
                side = by_fd[fd]
                _read_side(socks[side], dirs[side])
            now = time.monotonic()
            for side, direction in dirs.items():
                out = socks[other[side]]
                for frame in direction.pop_due(now):
                    direction.sent(_send(out, frame))
    finally:
        for direction in dirs.values():
            direction.discard()
        for sock in socks.values():
            sock.close()
    return {"profile": dataclasses.asdict(profile), "seed": seed,
            "seconds": round(time.monotonic() - started, 3),
            f"{a_if}->{b_if}": dirs["a"].stats.as_dict(),
            f"{b_if}->{a_if}": dirs["b"].stats.as_dict()}


def _read_side(sock: socket.socket, direction: LinkDirection) -> None:
    for _ in range(READ_BURST):
        try:
            frame, addr = sock.recvfrom(MAX_FRAME)
        except (BlockingIOError, InterruptedError):
            return
        if addr[2] == PACKET_OUTGOING:
            continue
        direction.offer(frame, time.monotonic())


def _send(sock: socket.socket, frame: bytes) -> bool:
    try:
        sock.send(frame)
    except OSError:  # ENOBUFS, EMSGSIZE (an offload left on), interface gone
        return False
    return True


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="linkem", description=__doc__.split("\n")[0]
                                     if __doc__ else None)
    parser.add_argument("--a", required=True, help="one interface (e.g. the internet side)")
    parser.add_argument("--b", required=True, help="the other interface")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay, each way")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="uniform jitter (±)")
    parser.add_argument("--loss", type=float, default=0.0,
                        help="IPv4 loss probability in [0, 1), each way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queue-limit", type=int, default=QUEUE_LIMIT)
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop after this long (default: until SIGTERM/SIGINT)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        profile = LinkProfile(args.delay_ms, args.jitter_ms, args.loss)
    except ValueError as exc:
        print(f"linkem: {exc}", file=sys.stderr)
        return 2
    stats = run(args.a, args.b, profile, seed=args.seed, queue_limit=args.queue_limit,
                max_seconds=args.max_seconds)
    print(json.dumps(stats, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
