"""The ``autonat`` command's entry point (``python -m actors.cli`` too).

It imports nothing heavy itself: the command line, Trio and the HTTP stack
load inside :func:`main`, so a Ctrl-C that arrives while they load ends the
process with one line and status 130 instead of a traceback. The command
line itself lives in :mod:`actors.surfaces`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``autonat`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        from .surfaces import main as run
    except KeyboardInterrupt:
        print("autonat: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
