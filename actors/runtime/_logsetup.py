"""Logging for the actors: quiet until the application configures it.

Theory of operation
-------------------
A library must not talk before it is asked to. Every actor module takes its
logger from :func:`get_logger`, never from ``structlog.get_logger``. While
structlog is unconfigured (``structlog.is_configured()`` is False: nobody
called ``structlog.configure``), those loggers drop debug and info events;
warnings and errors still go through structlog's defaults. Once the
application configures structlog - :func:`configure_logging`, or its own
``structlog.configure`` - they behave exactly like structlog's bound loggers
under that configuration.

A logger is resolved against the *current* configuration (re-resolved only
when it changes), so a logger created before ``configure_logging`` follows
it, and ``structlog.testing.capture_logs`` sees every actor. The check is a
few identity comparisons per call: a debug call filtered out by the level
costs well under a microsecond (about 0.4 us more than on a plain bound
logger; a ``structlog.get_logger`` proxy resolved per call costs ~5 us).

Field conventions: each actor's logger binds ``actor`` and, when it belongs
to a node, ``node`` (our full peer id, once); a remote peer is ``peer``.

:func:`configure_logging` is what the CLI and the examples use: JSON lines
(ISO UTC timestamps, full peer ids) for machines, or a compact console
format for people: local ``HH:MM:SS.mmm`` time, narrow level and event
columns, fields in the order they were bound, and every peer id shortened
to its last 8 characters (as ``autonat demo`` prints them).

Under systemd, stderr goes to the journal, which stamps every line itself
and reads a syslog priority prefix (``<3>`` error ... ``<7>`` debug,
``SyslogLevelPrefix=`` is on by default). ``auto`` recognises that case
the way ``sd_journal_stream_fd(3)`` documents it - ``$JOURNAL_STREAM``
holds the ``device:inode`` of the journal's stream and it is the one our
stderr is - and then writes the ``journal`` format: the priority prefix and
plain ``key=value`` (logfmt) fields, ``event`` first, full peer ids, no
timestamp and no colour, so ``journalctl -p warning`` filters by level and
the lines stay greppable. ``auto`` is thus: console on a terminal, journal
under journald, JSON lines otherwise (pipes, files, containers).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TextIO, cast

import structlog
from structlog.typing import Context, EventDict, FilteringBoundLogger, Processor

__all__ = ["LogFormat", "configure_logging", "get_logger", "node_field"]

LogFormat = Literal["json", "console", "journal", "auto"]
LogMethod = Callable[..., Any]

QUIET_BELOW: int = logging.WARNING
"""While structlog is unconfigured, events below this level are dropped."""
SHORT_PEER_ID = 8
"""Console output shows peer ids as their last this many characters."""
CONSOLE_EVENT_WIDTH = 18

_PEER_ID = re.compile(r"(?:12D3KooW|16Uiu2HA|Qm)[1-9A-HJ-NP-Za-km-z]{40,46}")


def get_logger(name: str, **bind: Any) -> FilteringBoundLogger:
    """A structlog logger named ``name`` with ``bind`` bound; quiet until configured.

    Use it like ``structlog.get_logger(name).bind(**bind)``.
    """
    return _QuietLogger(name, bind)


def node_field(peer: object | None) -> dict[str, str]:
    """``{"node": str(peer)}``, or nothing for None: ``get_logger(name, **node_field(peer))``."""
    return {} if peer is None else {"node": str(peer)}


class _ConfigView(Protocol):
    """What a logger reads of structlog's global configuration, on every call."""

    @property
    def is_configured(self) -> bool: ...
    @property
    def default_processors(self) -> object: ...
    @property
    def default_wrapper_class(self) -> object: ...
    @property
    def logger_factory(self) -> object: ...
    @property
    def default_context_class(self) -> object: ...


class _PublicConfig:
    """structlog's configuration through its public API (slower: a dict per read)."""

    @property
    def is_configured(self) -> bool:
        return structlog.is_configured()

    @property
    def default_processors(self) -> object:
        return structlog.get_config()["processors"]

    @property
    def default_wrapper_class(self) -> object:
        return structlog.get_config()["wrapper_class"]

    @property
    def logger_factory(self) -> object:
        return structlog.get_config()["logger_factory"]

    @property
    def default_context_class(self) -> object:
        return structlog.get_config()["context_class"]


_structlog_config: _ConfigView
try:  # read only: a few attribute reads per call instead of building get_config()'s dict
    from structlog._config import _CONFIG as _structlog_config
except ImportError:  # pragma: no cover - a structlog release that moved it
    _structlog_config = _PublicConfig()


class _QuietLogger:
    """A bound logger that drops debug/info while structlog is unconfigured.

    The structlog logger it delegates to is built on first use and rebuilt
    whenever the configuration it was built from is replaced (compared by
    identity, so ``capture_logs``' in-place edits are seen, as by any logger).
    """

    __slots__ = ("_bound", "_built_from", "_name", "_values")

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self._name = name
        self._values = values
        self._built_from: tuple[object, object, object, object] | None = None
        self._bound: FilteringBoundLogger | None = None

    def __repr__(self) -> str:
        return f"<QuietLogger {self._name} {self._values!r}>"

    @property
    def _context(self) -> Context:
        return self._values

    def _logger(self) -> FilteringBoundLogger:
        config, built = _structlog_config, self._built_from
        if (built is None or self._bound is None
                or config.default_processors is not built[0]
                or config.default_wrapper_class is not built[1]
                or config.logger_factory is not built[2]
                or config.default_context_class is not built[3]):
            self._built_from = (config.default_processors, config.default_wrapper_class,
                                config.logger_factory, config.default_context_class)
            bound = structlog.get_logger(self._name).bind(**self._values)
            self._bound = cast(FilteringBoundLogger, bound)
        return self._bound

    # --- context -------------------------------------------------------------

    def bind(self, **new_values: Any) -> _QuietLogger:
        return _QuietLogger(self._name, {**self._values, **new_values})

    def unbind(self, *keys: str) -> _QuietLogger:
        values = dict(self._values)
        for key in keys:
            del values[key]  # KeyError for a key that is not bound, like structlog
        return _QuietLogger(self._name, values)

    def try_unbind(self, *keys: str) -> _QuietLogger:
        values = {k: v for k, v in self._values.items() if k not in keys}
        return _QuietLogger(self._name, values)

    def new(self, **new_values: Any) -> _QuietLogger:
        return _QuietLogger(self._name, dict(new_values))

    # --- levels --------------------------------------------------------------

    def is_enabled_for(self, level: int) -> bool:
        if level < QUIET_BELOW and not _structlog_config.is_configured:
            return False
        return self._logger().is_enabled_for(level)

    def get_effective_level(self) -> int:
        level = self._logger().get_effective_level()
        return level if _structlog_config.is_configured else max(level, QUIET_BELOW)

    # --- logging methods ----------------------------------------------------------
    # Properties that hand out the structlog logger's own bound method (or a
    # no-op while unconfigured), so the caller's arguments are passed once.

    @property
    def debug(self) -> LogMethod:
        return self._logger().debug if _structlog_config.is_configured else _drop

    @property
    def info(self) -> LogMethod:
        return self._logger().info if _structlog_config.is_configured else _drop

    @property
    def msg(self) -> LogMethod:
        return self._logger().msg if _structlog_config.is_configured else _drop

    @property
    def adebug(self) -> LogMethod:
        return self._logger().adebug if _structlog_config.is_configured else _adrop

    @property
    def ainfo(self) -> LogMethod:
        return self._logger().ainfo if _structlog_config.is_configured else _adrop

    @property
    def amsg(self) -> LogMethod:
        return self._logger().amsg if _structlog_config.is_configured else _adrop

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        if level >= QUIET_BELOW or _structlog_config.is_configured:
            return self._logger().log(level, event, *args, **kw)
        return None

    async def alog(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        if level >= QUIET_BELOW or _structlog_config.is_configured:
            return await self._logger().alog(level, event, *args, **kw)
        return None

    # warning and above: always passed on

    @property
    def warning(self) -> LogMethod:
        return self._logger().warning

    @property
    def warn(self) -> LogMethod:
        return self._logger().warn

    @property
    def error(self) -> LogMethod:
        return self._logger().error

    @property
    def err(self) -> LogMethod:
        return self._logger().err

    @property
    def exception(self) -> LogMethod:
        return self._logger().exception

    @property
    def critical(self) -> LogMethod:
        return self._logger().critical

    @property
    def fatal(self) -> LogMethod:
        return self._logger().fatal

    @property
    def awarning(self) -> LogMethod:
        return self._logger().awarning

    @property
    def awarn(self) -> LogMethod:
        return self._logger().awarn

    @property
    def aerror(self) -> LogMethod:
        return self._logger().aerror

    @property
    def aexception(self) -> LogMethod:
        return self._logger().aexception

    @property
    def acritical(self) -> LogMethod:
        return self._logger().acritical

    @property
    def afatal(self) -> LogMethod:
        return self._logger().afatal


def _drop(event: str, *args: Any, **kw: Any) -> None:
    """A dropped debug/info event (structlog is not configured yet)."""


async def _adrop(event: str, *args: Any, **kw: Any) -> None:
    """A dropped async debug/info event."""


# --- process-wide configuration (the application's job) ---------------------------


def configure_logging(
    fmt: LogFormat | str = "auto", level: str = "info", *, file: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure structlog for the whole process; ``auto`` means console on a TTY,
    journal under journald (``environ``'s ``JOURNAL_STREAM``), JSON lines otherwise.

    Lines go to ``file`` (default ``sys.stderr``, looked up now).
    """
    if fmt not in ("json", "console", "journal", "auto"):
        raise ValueError(f"unknown log format {fmt!r}: use json, console, journal or auto")
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    stream = file if file is not None else sys.stderr
    tty = stream.isatty()
    if fmt == "auto" and not tty and under_journald(
            stream, os.environ if environ is None else environ):
        fmt = "journal"
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if fmt == "journal":
        processors += [structlog.processors.format_exc_info, _journal_line]
    elif fmt == "json" or (fmt == "auto" and not tty):
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            _console_time,
            _short_peer_ids,
            structlog.dev.ConsoleRenderer(
                colors=tty, pad_event_to=CONSOLE_EVENT_WIDTH, pad_level=False, sort_keys=False
            ),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


SYSLOG_PRIORITY: dict[str, int] = {
    "debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
    "critical": 2, "fatal": 2,
}
"""structlog level -> syslog priority, the ``<N>`` prefix journald reads."""
_LOGFMT = structlog.processors.LogfmtRenderer(key_order=["event"])


def under_journald(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal's stream that ``$JOURNAL_STREAM`` names."""
    expected = environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no file descriptor (StringIO)
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def _journal_line(logger: object, method: str, event: EventDict) -> str:
    """``<priority>event="..." key=value ...``: one line for journald (see the module doc)."""
    level = str(event.pop("level", method))
    priority = SYSLOG_PRIORITY.get(level, 6)
    return f"<{priority}>{_LOGFMT(logger, method, event)}"


def _console_time(logger: object, method: str, event: EventDict) -> EventDict:
    """Local wall-clock time ``HH:MM:SS.mmm`` (the console is read by a person, today)."""
    now = time.time()
    millis = int(now * 1000) % 1000
    event["timestamp"] = f"{time.strftime('%H:%M:%S', time.localtime(now))}.{millis:03d}"
    return event


def _short_peer_ids(logger: object, method: str, event: EventDict) -> EventDict:
    """Peer ids (also inside addresses and lists) as their last ``SHORT_PEER_ID`` characters."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = _PEER_ID.sub(_tail, value)
        elif isinstance(value, list | tuple):
            event[key] = [_PEER_ID.sub(_tail, v) if isinstance(v, str) else v for v in value]
    return event


def _tail(match: re.Match[str]) -> str:
    return match.group()[-SHORT_PEER_ID:]
