"""The link emulator's sans-io core (no sockets, no root): delays, FIFO, loss, ARP, queue."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from .linkem import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    LinkDirection,
    LinkProfile,
    ethertype,
    main,
)


def frame(kind: int = ETHERTYPE_IPV4, payload: bytes = b"x" * 46) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + kind.to_bytes(2, "big") + payload


def test_profile_validates_once() -> None:
    for bad in ({"delay_ms": -1.0}, {"delay_ms": math.nan}, {"delay_ms": 10.0, "jitter_ms": 11.0},
                {"delay_ms": 10.0, "jitter_ms": -1.0}, {"delay_ms": 10.0, "loss": 1.0},
                {"delay_ms": 10.0, "loss": -0.1}, {"delay_ms": True}):
        with pytest.raises(ValueError):
            LinkProfile(**bad)
    profile = LinkProfile(150.0, jitter_ms=20.0)
    with pytest.raises(AttributeError):
        profile.delay_ms = 1.0  # type: ignore[misc]


def test_profile_notation() -> None:
    assert (LinkProfile(40.0).key, LinkProfile(40.0).describe()) == ("d40", "40 ms")
    assert LinkProfile(150.0, 20.0).key == "d150j20"
    assert LinkProfile(150.0, 20.0).describe() == "150 ms ± 20 ms"
    assert LinkProfile(50.0, loss=0.1).key == "d50l10"
    assert LinkProfile(50.0, loss=0.1).describe() == "50 ms + 10 % loss"
    assert LinkProfile(50.0, 5.0, 0.25).argv() == ["--delay-ms", "50", "--jitter-ms", "5",
                                                   "--loss", "0.25"]


def test_fixed_delay_is_exact_one_way() -> None:
    direction = LinkDirection(LinkProfile(40.0), random.Random(1))
    for i in range(100):
        now = i * 0.001
        assert direction.offer(frame(), now) == pytest.approx(now + 0.040)


def test_jitter_stays_within_bounds_spreads_and_keeps_fifo() -> None:
    direction = LinkDirection(LinkProfile(150.0, jitter_ms=20.0), random.Random(7))
    dues, samples = [], []
    now = 0.0
    for _ in range(2000):
        now += 0.050  # frames further apart than the jitter: no FIFO clamping
        due = direction.offer(frame(), now)
        assert due is not None
        dues.append(due)
        samples.append((due - now) * 1000.0)
        direction.pop_due(due)
    assert all(130.0 - 1e-9 <= ms <= 170.0 + 1e-9 for ms in samples)
    assert min(samples) < 132.0 and max(samples) > 168.0  # uses the whole ± range
    assert abs(sum(samples) / len(samples) - 150.0) < 1.0  # uniform: mean 150, sd 11.5/sqrt(n)


def test_jitter_never_reorders_a_direction() -> None:
    direction = LinkDirection(LinkProfile(150.0, jitter_ms=20.0), random.Random(3))
    sent = [frame(payload=i.to_bytes(4, "big") * 12) for i in range(500)]
    dues = [direction.offer(f, i * 0.0005) for i, f in enumerate(sent)]  # 0.5 ms apart
    assert all(due is not None for due in dues)
    assert dues == sorted(dues)  # type: ignore[type-var]
    clamped = sum(1 for a, b in itertools.pairwise(dues) if a == b)
    assert clamped > 0  # jitter would have reordered these: the FIFO rule held them back
    assert direction.next_due() == dues[0]
    out = direction.pop_due(dues[250])  # type: ignore[arg-type]
    out += direction.pop_due(math.inf)
    assert out == sent and len(direction) == 0 and direction.next_due() is None


def test_pop_due_releases_only_what_is_due() -> None:
    direction = LinkDirection(LinkProfile(50.0), random.Random(0))
    direction.offer(frame(payload=b"a" * 46), 0.0)
    direction.offer(frame(payload=b"b" * 46), 0.010)
    assert direction.pop_due(0.049) == []
    assert direction.pop_due(0.050) == [frame(payload=b"a" * 46)]
    assert direction.next_due() == pytest.approx(0.060)


@pytest.mark.parametrize("loss", [0.02, 0.10, 0.25])
def test_loss_rate_within_binomial_bounds(loss: float) -> None:
    n = 20_000
    direction = LinkDirection(LinkProfile(50.0, loss=loss), random.Random(12345),
                              queue_limit=n)
    dropped = sum(1 for i in range(n) if direction.offer(frame(), i * 1e-4) is None)
    sd = math.sqrt(n * loss * (1 - loss))
    assert abs(dropped - n * loss) < 4.5 * sd, (dropped, n * loss, sd)
    assert direction.stats.dropped_loss == dropped and direction.stats.dropped_queue == 0
    assert len(direction) == n - dropped


def test_same_seed_same_decisions() -> None:
    def decisions(seed: int) -> list[float | None]:
        direction = LinkDirection(LinkProfile(50.0, 10.0, 0.25), random.Random(seed))
        return [direction.offer(frame(), i * 0.1) for i in range(200)]

    assert decisions(5) == decisions(5)
    assert decisions(5) != decisions(6)


def test_arp_is_delayed_but_never_dropped() -> None:
    direction = LinkDirection(LinkProfile(50.0, loss=0.25), random.Random(9), queue_limit=5000)
    arp = frame(ETHERTYPE_ARP, b"\x00" * 28)
    dues = [direction.offer(arp, i * 0.01) for i in range(2000)]
    assert all(due is not None for due in dues)
    assert dues[0] == pytest.approx(0.050)
    assert direction.stats.arp_received == 2000 and direction.stats.dropped_loss == 0
    ip_dropped = sum(1 for i in range(400) if direction.offer(frame(), 30.0 + i) is None)
    assert ip_dropped > 0  # the same direction does drop IPv4


def test_queue_is_bounded_and_drops_tail() -> None:
    direction = LinkDirection(LinkProfile(1000.0), random.Random(0), queue_limit=4096)
    for i in range(5000):
        direction.offer(frame(payload=i.to_bytes(4, "big") * 12), 0.0)
    assert len(direction) == 4096
    assert direction.stats.dropped_queue == 5000 - 4096
    assert direction.stats.max_queue == 4096
    assert direction.stats.received == 5000
    out = direction.pop_due(1.0)
    assert out[0][14:18] == (0).to_bytes(4, "big") and out[-1][14:18] == (4095).to_bytes(4, "big")
    assert direction.offer(frame(), 1.0) is not None  # room again after draining


def test_counts_sends_and_leftovers() -> None:
    direction = LinkDirection(LinkProfile(10.0), random.Random(0))
    for i in range(3):
        direction.offer(frame(), i * 0.001)
    for _ in direction.pop_due(0.0105):
        direction.sent(True)
    direction.sent(False)
    assert direction.discard() == 2
    stats = direction.stats.as_dict()
    assert (stats["forwarded"], stats["dropped_send"], stats["dropped_at_exit"]) == (1, 1, 2)


def test_ethertype() -> None:
    assert ethertype(frame(ETHERTYPE_ARP)) == ETHERTYPE_ARP
    assert ethertype(b"\x00" * 13) is None


def test_runner_rejects_a_bad_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--a", "x", "--b", "y", "--delay-ms", "10", "--loss", "1.5"]) == 2
    assert "loss" in capsys.readouterr().err
