"""The settings of a node's surfaces: :class:`HttpConfig` and :class:`LoggingConfig`.

Theory of operation
-------------------
The HTTP API (``/status``, ``/metrics``, ``/healthz``) listens on
``http_listen`` (``HOST:PORT``, ``[v6]:PORT`` for IPv6, ``""`` = off); log
lines go out as ``log_format`` (``auto`` picks console on a terminal, the
``journal`` format under systemd's journal, JSON lines otherwise) from
``log_level`` up. Both are components of
:class:`~protocols.NodeConfig` (``http`` and ``logging``), declared only here
and validated at construction with a :class:`ValueError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core import check_ip_setting

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "HttpConfig", "LoggingConfig", "parse_host_port"]

LOG_FORMATS: Final = ("auto", "json", "console", "journal")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6); ``ValueError`` says what is wrong."""
    _, found, rest = text.partition("://")
    if found:
        bare = rest.split("/", 1)[0]
        raise ValueError(f"expected HOST:PORT, not a URL: write {bare!r} instead of {text!r}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:7888, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        check_ip_setting("IPv6 host", host)
    elif ":" in host:
        raise ValueError(f"write an IPv6 host in brackets, e.g. [::1]:7888, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0..65535, got {port}")
    return host, port


@dataclass(frozen=True)
class HttpConfig:
    """Where the HTTP API listens; validated at construction."""

    http_listen: str = "127.0.0.1:7888"
    """``HOST:PORT`` of the HTTP API (``/status``, ``/metrics``, ``/healthz``); "" = off."""

    def __post_init__(self) -> None:
        if self.http_listen:
            try:
                parse_host_port(self.http_listen)
            except ValueError as exc:
                raise ValueError(f"http_listen: {exc}") from None


@dataclass(frozen=True)
class LoggingConfig:
    """How and how much a node logs; validated at construction."""

    log_format: str = "auto"
    """``auto`` (console on a TTY, JSON lines otherwise), ``json`` or ``console``."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, "
                             f"got {self.log_format!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, "
                             f"got {self.log_level!r}")
