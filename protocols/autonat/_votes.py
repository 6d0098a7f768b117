"""The vote rule with hysteresis, for any set of values.

Theory of operation
-------------------
Each server's latest live evidence is one vote for a value. A value wins
once it has ``threshold`` votes and more than any other value; otherwise
the verdict stays what it was (hysteresis: a confirmed verdict flips only
when the contrary evidence reaches the same weight), and it is ``unknown``
when there are no votes at all. :class:`~._reachability.Reachability` votes
``reachable``/``unreachable`` per address; :mod:`._nat_filtering` reuses the
rule for its three filtering values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

__all__ = ["vote_verdict"]

_V = TypeVar("_V", bound=str)


def vote_verdict(current: _V | Literal["unknown"], votes: Mapping[_V, int],
                 threshold: int) -> _V | Literal["unknown"]:
    """The vote rule with hysteresis (module docstring), for any set of values.

    The value with the most votes wins once it has ``threshold`` of them and
    more than any other value; otherwise the verdict stays ``current``, and is
    ``unknown`` when there are no votes at all. Reachability votes
    ``reachable``/``unreachable``; NAT filtering reuses it for its three values.
    """
    live = {value: count for value, count in votes.items() if count > 0}
    if not live:
        return "unknown"
    best = max(live.values())
    leaders = [value for value, count in live.items() if count == best]
    if best >= threshold and len(leaders) == 1:
        return leaders[0]
    return current
