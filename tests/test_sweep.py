"""ClosedSweep: tables of live connections stay bounded when end notices are lost."""

from __future__ import annotations

from typing import Any, cast

import trio

from actors.node._sweep import MIN_SWEEP_SIZE, ClosedSweep


class _Conn:
    def __init__(self) -> None:
        self.closed = trio.Event()


def _sweep(table: dict[int, _Conn]) -> ClosedSweep[int, _Conn]:
    return ClosedSweep(table, lambda _key, conn: cast(Any, conn))


def test_now_removes_closed_entries_only() -> None:
    table = {index: _Conn() for index in range(10)}
    for index in (2, 5, 7):
        table[index].closed.set()
    assert _sweep(table).now() == [2, 5, 7]
    assert sorted(table) == [0, 1, 3, 4, 6, 8, 9]


def test_maybe_sweeps_once_per_doubling_and_bounds_the_table() -> None:
    table: dict[int, _Conn] = {}
    sweep = _sweep(table)
    swept_at: list[int] = []
    live = 10
    for index in range(5000):  # every entry but the last `live` closes unnoticed
        table[index] = _Conn()
        if index >= live:
            table[index - live].closed.set()
        if sweep.maybe():
            swept_at.append(len(table))
        assert len(table) <= max(MIN_SWEEP_SIZE, 2 * (live + 1)) + 1
    assert swept_at, "the table was never swept"
    assert len(swept_at) < 5000 // 10  # not a scan per insertion


def test_maybe_does_not_scan_below_the_threshold() -> None:
    table = {index: _Conn() for index in range(MIN_SWEEP_SIZE - 1)}
    for conn in table.values():
        conn.closed.set()
    assert _sweep(table).maybe() == []
    assert len(table) == MIN_SWEEP_SIZE - 1
