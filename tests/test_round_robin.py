"""RoundRobin: own addresses first, then rotating, bounded windows over the other peers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import LocalProtocolError, RoundRobin

OWN = ("/ip4/198.51.100.1/tcp/44000/ws/p2p/boot",)
PEERS = tuple(f"/ip4/198.51.100.{i + 10}/tcp/44000/ws/p2p/peer{i}" for i in range(10))


def test_successive_windows_rotate_and_wrap() -> None:
    rr = RoundRobin(window=4)
    first = rr.next_window(OWN, PEERS)
    second = rr.next_window(OWN, PEERS)
    third = rr.next_window(OWN, PEERS)
    assert first == OWN + PEERS[0:4]
    assert second == OWN + PEERS[4:8]
    assert third == OWN + PEERS[8:10] + PEERS[0:2]  # wraps around
    assert rr.cursor == 2


def test_successive_windows_cover_every_peer() -> None:
    rr = RoundRobin(window=3)
    seen: set[str] = set()
    for _ in range(math.ceil(len(PEERS) / 3)):
        seen.update(rr.next_window(OWN, PEERS)[len(OWN):])
    assert seen == set(PEERS)


def test_default_window_is_eight() -> None:
    rr = RoundRobin()
    assert rr.window == 8
    assert len(rr.next_window(OWN, PEERS)) == len(OWN) + 8


def test_own_addresses_always_first_and_not_repeated() -> None:
    rr = RoundRobin(window=4)
    own = (PEERS[0], "/ip4/198.51.100.2/tcp/44000/ws/p2p/boot")
    for _ in range(5):
        window = rr.next_window(own, PEERS)
        assert window[:2] == own
        assert PEERS[0] not in window[2:]
        assert len(window) == 2 + 4


def test_no_other_peers_returns_own_only() -> None:
    rr = RoundRobin(window=4)
    assert rr.next_window(OWN, ()) == OWN
    assert rr.next_window((), ()) == ()
    assert rr.cursor == 0


def test_one_peer_is_always_returned() -> None:
    rr = RoundRobin(window=4)
    for _ in range(3):
        assert rr.next_window(OWN, PEERS[:1]) == OWN + PEERS[:1]


def test_fewer_peers_than_window_returns_all_of_them() -> None:
    rr = RoundRobin(window=8)
    for _ in range(3):
        assert set(rr.next_window(OWN, PEERS[:3])[1:]) == set(PEERS[:3])


def test_duplicates_are_dropped() -> None:
    rr = RoundRobin(window=8)
    assert rr.next_window(OWN * 2, (PEERS[0], PEERS[0], PEERS[1])) == OWN + PEERS[:2]


def test_shrinking_list_keeps_cursor_in_range() -> None:
    rr = RoundRobin(window=4)
    rr.next_window(OWN, PEERS)
    rr.next_window(OWN, PEERS)  # cursor now 8
    window = rr.next_window(OWN, PEERS[:3])  # 8 % 3 == 2
    assert window == (*OWN, PEERS[2], PEERS[0], PEERS[1])
    assert rr.cursor < 3


def test_deterministic() -> None:
    a, b = RoundRobin(window=3), RoundRobin(window=3)
    assert [a.next_window(OWN, PEERS) for _ in range(7)] == [
        b.next_window(OWN, PEERS) for _ in range(7)]


@pytest.mark.parametrize("window", [0, -1, 257, True, 1.5, "8"])
def test_invalid_window_is_rejected(window: object) -> None:
    with pytest.raises(LocalProtocolError):
        RoundRobin(window=window)  # type: ignore[arg-type]


def test_a_single_string_is_not_a_list_of_addresses() -> None:
    rr = RoundRobin()
    with pytest.raises(TypeError):
        rr.next_window(OWN, PEERS[0])
    with pytest.raises(TypeError):
        rr.next_window(OWN[0], PEERS)
    with pytest.raises(TypeError):
        rr.next_window(OWN, [b"bytes"])  # type: ignore[list-item]


@given(
    own=st.lists(st.sampled_from(PEERS[:4] + OWN), max_size=4),
    others=st.lists(st.sampled_from(PEERS), max_size=30),
    window=st.integers(min_value=1, max_value=12),
    calls=st.integers(min_value=1, max_value=12),
)
def test_windows_are_bounded_unique_and_cover_the_pool(
        own: list[str], others: list[str], window: int, calls: int) -> None:
    rr = RoundRobin(window=window)
    mine = tuple(dict.fromkeys(own))
    pool = [p for p in dict.fromkeys(others) if p not in mine]
    seen: set[str] = set()
    for _ in range(calls):
        result = rr.next_window(own, others)
        assert result[:len(mine)] == mine
        rest = result[len(mine):]
        assert len(rest) == min(window, len(pool))
        assert len(set(result)) == len(result)
        assert set(rest) <= set(pool)
        assert rr.cursor < max(1, len(pool))
        seen.update(rest)
    if calls >= math.ceil(len(pool) / window):
        assert seen == set(pool)
