"""``python -m actors.cli``: the ``autonat`` command line (it lives in :mod:`actors.surfaces`)."""

from __future__ import annotations

import sys

from .surfaces import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
