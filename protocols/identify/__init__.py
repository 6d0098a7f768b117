"""The Identify protocol: its message and the rules for what we send and what we believe.

May import: :mod:`protocols.wire`, :mod:`protocols.core` (not its sibling
:mod:`protocols.autonat`).
"""

from __future__ import annotations

from ._identify_msg import (
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    MAX_IDENTIFY_SIZE,
    Identify,
)
from ._identify_rules import PeerIdentified, advertised_addrs, build_identify, interpret_identify

__all__ = [
    "IDENTIFY_PROTOCOL_ID",
    "IDENTIFY_PUSH_PROTOCOL_ID",
    "MAX_IDENTIFY_SIZE",
    "Identify",
    "PeerIdentified",
    "advertised_addrs",
    "build_identify",
    "interpret_identify",
]
