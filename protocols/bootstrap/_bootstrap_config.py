"""Where a node fetches peers from and how hard it tries: :class:`BootstrapConfig`.

Theory of operation
-------------------
The BootstrapFetcher (docs/architecture.md, "Bootstrap /status") GETs each
URL of ``boot_urls``, bounding one fetch by ``fetch_timeout`` (each network
step gets at most half of it), abandoning bodies over ``max_status_bytes`` and
reading at most ``max_status_addrs`` addresses per document. A failing URL is
retried after a jittered delay from ``fetch_retry_initial`` doubling up to
``fetch_retry_max``; while the node has fewer connections than its target,
rounds repeat at most every ``refetch_interval`` seconds (doubling, up to
16x, while the target stays out of reach). A redirect is followed only to
the same host name unless ``cross_host_redirects`` is on. These values are the
``bootstrap`` component of :class:`~protocols.NodeConfig`, declared only
here and validated at construction with a :class:`ValueError` naming the
field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ..core import check_positive_setting

__all__ = ["MAX_URL_LENGTH", "BootstrapConfig"]

MAX_URL_LENGTH: Final = 2048


@dataclass(frozen=True)
class BootstrapConfig:
    """The BootstrapFetcher's settings (seconds, bytes); validated at construction."""

    boot_urls: tuple[str, ...] = ()
    """Bootstrap ``/status`` URLs (used by the BootstrapFetcher)."""
    fetch_timeout: float = 10.0
    """Total deadline of one bootstrap fetch (connect, redirects, headers, body); each
    network step (connect, read, write, pool wait) gets at most half of it."""
    fetch_retry_initial: float = 2.0
    """First retry delay of a failed bootstrap URL; doubles (jittered) per failure."""
    fetch_retry_max: float = 300.0
    """Cap of the per-URL retry delay."""
    max_status_bytes: int = 256 * 1024
    """A ``/status`` body larger than this is abandoned while streaming (``too_large``)."""
    max_status_addrs: int = 256
    """Entries of ``peer_addrs`` looked at per document (and fallback addresses sent)."""
    refetch_interval: float = 30.0
    """Minimum time between bootstrap rounds while connected peers < ``target_peers``;
    grows (doubling, up to 16x) while the target stays out of reach."""
    cross_host_redirects: bool = False
    """Follow a redirect from a boot URL to another host name. Off: such a redirect
    is a failed fetch, so a boot server cannot send the node to fetch from a third
    party (same-host redirects, e.g. http to https, are always followed)."""

    def __post_init__(self) -> None:
        for url in self.boot_urls:
            _check_http_url("boot_urls", url)
        for name in ("fetch_timeout", "fetch_retry_initial", "fetch_retry_max",
                     "refetch_interval", "max_status_bytes", "max_status_addrs"):
            check_positive_setting(name, getattr(self, name))
        if self.fetch_retry_max < self.fetch_retry_initial:
            raise ValueError("fetch_retry_max must be >= fetch_retry_initial")


def _check_http_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH
            or any(ch.isspace() for ch in url)):
        raise ValueError(f"{name} entries must be http(s) URLs such as "
                         f"http://boot.example:7888/status, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{name} entry {url!r} has a bad port: {exc}") from None
