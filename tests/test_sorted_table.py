"""SortedTable keeps key order under inserts, replacements and removals, and caches tuples."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.node._sorted_table import SortedTable


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.integers())))
def test_matches_a_sorted_dict(ops: list[tuple[bool, int, int]]) -> None:
    table: SortedTable[int, int] = SortedTable()
    plain: dict[int, int] = {}
    for put, key, value in ops:
        if put:
            table[key] = value
            plain[key] = value
        else:
            assert table.pop(key) == plain.pop(key, None)
        assert table.keys() == tuple(sorted(plain))
        assert table.values() == tuple(plain[k] for k in sorted(plain))
        assert len(table) == len(plain) and all(table.get(k) == v for k, v in plain.items())


def test_tuples_are_reused_until_something_changes() -> None:
    table: SortedTable[str, int] = SortedTable()
    table["b"], table["a"] = 2, 1
    values, keys = table.values(), table.keys()
    assert (values, keys) == ((1, 2), ("a", "b"))
    assert table.values() is values and table.keys() is keys
    table["a"] = 10  # a replacement: new values, same keys
    assert table.values() == (10, 2) and table.keys() is keys
    table.pop("b")
    assert table.keys() == ("a",) and table.values() == (10,)
