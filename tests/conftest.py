"""Test-wide settings: quiet, structured logs (shown by pytest only for failures)."""

from __future__ import annotations

import logging

import structlog

structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
    wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    cache_logger_on_first_use=False,
)
