"""Top layer of :mod:`actors`: what users and other programs see - the HTTP API,
Prometheus metrics and the ``autonat`` command line.

May import: every other layer of :mod:`actors`, and :mod:`protocols`.

A lazy facade (PEP 562), like :mod:`actors`: a command that needs no HTTP
server (``autonat probe``) never loads hypercorn or prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cli import main
    from ._http_api import HttpApi, HttpApiStatistics, HttpResponse, package_version, serve_http
    from ._metrics import (
        METRIC_NAMES,
        NodeCollector,
        StatusSource,
        node_registry,
        render_metrics,
    )

__all__ = [
    "METRIC_NAMES",
    "HttpApi",
    "HttpApiStatistics",
    "HttpResponse",
    "NodeCollector",
    "StatusSource",
    "main",
    "node_registry",
    "package_version",
    "render_metrics",
    "serve_http",
]

_HOMES = {
    "main": "_cli",
    "HttpApi": "_http_api", "HttpApiStatistics": "_http_api", "HttpResponse": "_http_api",
    "package_version": "_http_api", "serve_http": "_http_api",
    "METRIC_NAMES": "_metrics", "NodeCollector": "_metrics", "StatusSource": "_metrics",
    "node_registry": "_metrics", "render_metrics": "_metrics",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` (once; later reads find it in globals)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
