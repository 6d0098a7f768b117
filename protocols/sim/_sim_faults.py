"""What goes wrong in a scenario, as data: lying or vanishing servers, killed boot nodes, churn.

Theory of operation
-------------------
Three optional tables of a scenario document (:mod:`._scenario`), each parsed
into a frozen dataclass and validated here, once, with errors that name the
key and say what is allowed::

    [liars]                  # the LAST boot nodes serve AutoNAT wrongly
    claim_reachable = 1      # answer "dial-back OK" without dialing
    claim_unreachable = 2    # answer "dial failed" without dialing
    wrong_observed = 1       # honest dial-backs, but Identify reports a wrong address
    silent = 1               # honest until ``at``, then never answer a dial request
    vanish = 1               # honest until ``at``, then the node is gone
    at = 30.0                # simulated seconds from the start of the run

    [kill]                   # boot nodes killed mid-run (the node shuts down)
    boot_nodes = [0]         # indices into the boot nodes
    at = 10.0

    [churn]                  # hosts leaving and joining while the run lasts
    per_minute = 0.2         # this fraction of the live hosts leaves each minute,
                             # and as many new hosts (same NAT types) join
    duration = 3600.0        # simulated seconds of churn, then the run settles
    converge_s = 60.0        # a host is graded once it has been up this long

The runner (:mod:`actors.surfaces._sim_events`, :mod:`actors.surfaces._sim_adversary`)
acts on them; this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["LIAR_MODES", "BootKill", "Churn", "Liars"]

LIAR_MODES = ("claim_reachable", "claim_unreachable", "wrong_observed", "silent", "vanish")
"""How an adversarial boot node misbehaves, in the order they are assigned."""


class FaultError(ValueError):
    """A fault table that cannot be run (a :class:`~protocols.sim.ScenarioError`)."""


def _count(table: str, key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FaultError(f"{table}.{key} must be an integer >= 0, got {value!r}")
    return value


def _seconds(table: str, key: str, value: object, *, positive: bool = False) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 \
            or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise FaultError(f"{table}.{key} must be a number of seconds {bound}, got {value!r}")
    return float(value)


def _known(table: str, doc: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise FaultError(f"unknown keys {[f'{table}.{k}' for k in unknown]}; "
                         f"[{table}] takes {', '.join(allowed)}")


@dataclass(frozen=True)
class Liars:
    """How many of the last boot nodes misbehave, per mode, and when the vanishing go."""

    claim_reachable: int = 0
    claim_unreachable: int = 0
    wrong_observed: int = 0
    silent: int = 0
    vanish: int = 0
    at: float = 0.0

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> Liars:
        _known("liars", doc, tuple(f.name for f in fields(cls)))
        counts = {mode: _count("liars", mode, doc.get(mode, 0)) for mode in LIAR_MODES}
        return cls(**counts, at=_seconds("liars", "at", doc.get("at", 0.0)))

    @property
    def total(self) -> int:
        return sum(self.modes())

    def modes(self) -> tuple[int, ...]:
        return tuple(getattr(self, mode) for mode in LIAR_MODES)

    def mode_of(self, boot: int, boot_nodes: int) -> str | None:
        """The mode of boot node ``boot`` (None: honest): the last :attr:`total` boot
        nodes lie, in :data:`LIAR_MODES` order."""
        rank = boot - (boot_nodes - self.total)
        if rank < 0:
            return None
        for mode, count in zip(LIAR_MODES, self.modes(), strict=True):
            if rank < count:
                return mode
            rank -= count
        return None


@dataclass(frozen=True)
class BootKill:
    """Boot nodes (indices) that shut down at ``at`` simulated seconds."""

    boot_nodes: tuple[int, ...] = ()
    at: float = 0.0

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> BootKill:
        _known("kill", doc, ("boot_nodes", "at"))
        nodes = doc.get("boot_nodes", [])
        if not isinstance(nodes, list):
            raise FaultError(f"kill.boot_nodes must be a list of boot node indices, got {nodes!r}")
        indices = tuple(_count("kill", "boot_nodes[]", n) for n in nodes)
        if len(set(indices)) != len(indices):
            raise FaultError(f"kill.boot_nodes lists a boot node twice: {list(indices)}")
        return cls(indices, _seconds("kill", "at", doc.get("at", 0.0), positive=True))


@dataclass(frozen=True)
class Churn:
    """Hosts leaving and joining (module docstring)."""

    per_minute: float = 0.0
    duration: float = 0.0
    converge_s: float = 60.0

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> Churn:
        _known("churn", doc, ("per_minute", "duration", "converge_s"))
        rate = doc.get("per_minute", 0.0)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise FaultError(f"churn.per_minute must be a fraction in [0, 1], got {rate!r}")
        return cls(float(rate), _seconds("churn", "duration", doc.get("duration", 0.0)),
                   _seconds("churn", "converge_s", doc.get("converge_s", 60.0), positive=True))

    @property
    def active(self) -> bool:
        return self.per_minute > 0 and self.duration > 0
