"""Process-wide structlog configuration, done once by the CLI.

Library code (actors, embedding programs) only calls ``structlog.get_logger``;
configuring output is the application's job. The CLI picks JSON lines when
stderr is not a TTY (daemons, log shippers) or when asked, and a readable
console renderer otherwise.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["json", "console", "auto"]


def configure_logging(fmt: LogFormat | str = "auto", level: str = "info") -> None:
    """Configure structlog for the whole process; ``auto`` means console on a TTY."""
    if fmt not in ("json", "console", "auto"):
        raise ValueError(f"unknown log format {fmt!r}: use json, console or auto")
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if use_json else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _identity(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event
