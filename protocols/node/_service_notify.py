"""What a node tells its service manager (systemd's ``sd_notify`` protocol), and when.

Theory of operation
-------------------
A unit with ``Type=notify`` starts a process with ``NOTIFY_SOCKET`` set to
a unix datagram socket (a path, or an abstract name written with a leading
``@``). The process sends newline-separated ``KEY=value`` assignments, one
datagram per message:

* ``READY=1`` once the service is really up - for us: the Dialer bound its
  listeners and the HTTP API serves. systemd starts the units ordered after
  ours only then, and ``systemctl start`` returns only then;
* ``STATUS=<text>`` a one-line state shown by ``systemctl status``: here the
  lifecycle and the NAT verdict. It is sent when the *verdict* changes (the
  :data:`StatusKey` fields), not for every peer that comes and goes, and at
  most once per ``min_interval`` seconds (:class:`StatusThrottle`) - a flapping
  verdict must not become a stream of messages;
* ``WATCHDOG=1`` keep-alives when the unit has ``WatchdogSec=``: systemd passes
  ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the pid meant) and kills and
  restarts the service when no keep-alive came for that long. The node pings
  every ``WATCHDOG_USEC / 2`` (:func:`watchdog_interval`), from its supervisor
  and only while the supervisor is healthy, so a node whose actor tree is
  escalating - or whose event loop is stuck - gets restarted by systemd;
* ``STOPPING=1`` when the shutdown begins.

This module is the sans-io part: parsing the environment's values, encoding
messages, the status text and its throttle. The socket I/O is
``actors.runtime.ServiceNotifier``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._snapshot import NodeSnapshot

__all__ = [
    "STATUS_MIN_INTERVAL",
    "StatusKey",
    "StatusThrottle",
    "encode_notify",
    "notify_address",
    "status_key",
    "status_text",
    "watchdog_interval",
]

STATUS_MIN_INTERVAL: Final = 5.0
"""Seconds between two ``STATUS=`` messages at least (the first one is sent at once)."""
MAX_STATUS_CHARS: Final = 200

StatusKey = tuple[str, str, str, str]
"""What a ``STATUS=`` change is about: lifecycle, NAT status, mapping and filtering."""


def notify_address(value: str) -> str | bytes:
    """The socket address of ``NOTIFY_SOCKET``: a filesystem path, or an abstract name.

    ``@name`` is Linux's abstract namespace (``b"\\0name"``). Anything else is
    refused with a ``ValueError`` that says what systemd would have set.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET={value!r} is neither an absolute path nor an abstract "
                     "name starting with '@' (systemd sets it for Type=notify units; unset it "
                     "when running the node by hand)")


def encode_notify(**fields: str) -> bytes:
    """One notify datagram: ``KEY=value`` lines (values must be single-line)."""
    if not fields:
        raise ValueError("a notify message needs at least one field")
    lines = []
    for key, value in fields.items():
        if "\n" in value:
            raise ValueError(f"notify field {key} must be one line, got {value!r}")
        lines.append(f"{key}={value}")
    return ("\n".join(lines) + "\n").encode()


def watchdog_interval(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None.

    None when the watchdog is off: ``WATCHDOG_USEC`` unset or 0, or
    ``WATCHDOG_PID`` names another process. A malformed value is a ValueError.
    """
    if not usec:
        return None
    if pid and pid.strip() != str(own_pid):
        if not pid.strip().isdigit():
            raise ValueError(f"WATCHDOG_PID={pid!r} is not a process id")
        return None
    try:
        micros = int(usec)
    except ValueError:
        raise ValueError(f"WATCHDOG_USEC={usec!r} is not a whole number of microseconds "
                         "(systemd sets it from WatchdogSec=)") from None
    if micros < 0:
        raise ValueError(f"WATCHDOG_USEC={usec!r} is negative")
    return micros / 2e6 if micros else None


def status_key(snapshot: NodeSnapshot) -> StatusKey:
    """The verdict part of ``snapshot``: a new ``STATUS=`` is due when it changes."""
    return (snapshot.lifecycle.value, snapshot.nat_status, snapshot.nat_mapping,
            snapshot.nat_filtering)


def status_text(snapshot: NodeSnapshot) -> str:
    """One line for ``systemctl status``, e.g.
    ``fully_connected: NAT public (mapping none, filtering none), 4 peers``."""
    peers = len(snapshot.connected_peers)
    text = (f"{snapshot.lifecycle.value}: NAT {snapshot.nat_status} (mapping "
            f"{snapshot.nat_mapping}, filtering {snapshot.nat_filtering}), "
            f"{peers} peer{'' if peers == 1 else 's'}")
    if snapshot.reachable_addrs:
        text += f", reachable at {snapshot.reachable_addrs[0]}"
    return text[:MAX_STATUS_CHARS]


@dataclass
class StatusThrottle:
    """Decides when a ``STATUS=`` is sent: on a new :data:`StatusKey`, rate-limited.

    :meth:`offer` every snapshot; :meth:`poll` returns the text to send now
    (or None), :meth:`due` when the next one may go. The last offered text wins:
    changes within one interval are folded into one message.
    """

    min_interval: float = STATUS_MIN_INTERVAL
    _sent_key: StatusKey | None = None
    _sent_at: float | None = None
    _key: StatusKey | None = None
    _text: str = ""

    def __post_init__(self) -> None:
        if self.min_interval < 0:
            raise ValueError(f"min_interval must be >= 0, got {self.min_interval}")

    def offer(self, snapshot: NodeSnapshot) -> None:
        self._key, self._text = status_key(snapshot), status_text(snapshot)

    def due(self) -> float | None:
        """When :meth:`poll` returns a text (``-inf``: now); None: nothing to send."""
        if self._key is None or self._key == self._sent_key:
            return None
        return float("-inf") if self._sent_at is None else self._sent_at + self.min_interval

    def poll(self, now: float) -> str | None:
        due = self.due()
        if due is None or now < due:
            return None
        self._sent_key, self._sent_at = self._key, now
        return self._text
