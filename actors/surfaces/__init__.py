"""Top layer of :mod:`actors`: what users and other programs see - the HTTP API,
Prometheus metrics and the ``autonat`` command line.

May import: every other layer of :mod:`actors`, and :mod:`protocols`.
"""

from __future__ import annotations

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
