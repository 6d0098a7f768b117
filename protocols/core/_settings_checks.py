"""Checks shared by the frozen settings objects of every layer.

Theory of operation
-------------------
Each component of a node's configuration (the connection limits in
:mod:`protocols.wire`, the dialer's in :mod:`protocols.node`, the AutoNAT
client's and server's in :mod:`protocols.autonat`, bootstrap's in
:mod:`protocols.bootstrap`, HTTP and logging in :mod:`protocols.config`) is a
frozen dataclass validated in ``__post_init__``. They live in different layers
but must word their errors alike, because the configuration loader finds the
culprit of a rejected value by the field name the message starts with
(``target_peers must be > 0, got 0``). These helpers are that wording; each
raises :class:`ValueError` naming the field.
"""

from __future__ import annotations

import ipaddress

__all__ = ["check_ip_setting", "check_positive_setting"]


def check_positive_setting(name: str, value: float) -> None:
    """``name must be > 0, got VALUE`` unless ``value > 0``."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_ip_setting(name: str, value: str) -> None:
    """``name must be an IP address, got VALUE`` unless ``value`` parses as one."""
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be an IP address, got {value!r}") from exc
