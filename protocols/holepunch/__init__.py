"""Hole punching (DCUtR semantics): the ``/libp2p/dcutr`` messages and the sans-io
machine that decides when to try, the roles, the moment to dial and the retries.

May import: :mod:`protocols.wire`, :mod:`protocols.core`.
"""

from __future__ import annotations

from ._holepunch import (
    HolePunch,
    HolePunchConfig,
    HolePunchFinished,
    HolePunchRole,
    HolePunchState,
    PunchDirect,
    PunchOutcome,
    SendPunchMessage,
    skip_reason,
)
from ._holepunch_msg import (
    HOLEPUNCH_PROTOCOL_ID,
    MAPPINGS,
    MAX_PUNCH_ADDRS,
    HolePunchConnect,
    HolePunchMessage,
    HolePunchSync,
    decode_holepunch_message,
    own_punch_addrs,
    usable_punch_addrs,
)

__all__ = [
    "HOLEPUNCH_PROTOCOL_ID",
    "MAPPINGS",
    "MAX_PUNCH_ADDRS",
    "HolePunch",
    "HolePunchConfig",
    "HolePunchConnect",
    "HolePunchFinished",
    "HolePunchMessage",
    "HolePunchRole",
    "HolePunchState",
    "HolePunchSync",
    "PunchDirect",
    "PunchOutcome",
    "SendPunchMessage",
    "decode_holepunch_message",
    "own_punch_addrs",
    "skip_reason",
    "usable_punch_addrs",
]
