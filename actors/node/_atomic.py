"""Crash-safe file replacement: readers see the old file or the new one, never half.

Theory of operation
-------------------
:func:`atomic_write_bytes` writes to a temporary file in the *same
directory* (``rename`` is only atomic within one file system), flushes and
``fsync``s it, sets its mode, renames it over the target with
``os.replace`` and finally ``fsync``s the directory so the rename itself
survives a power cut. If anything fails the temporary file is removed and
the old file is untouched. The function is synchronous and blocking; actors
call it through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably (file mode ``mode``)."""
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        dir_fd = os.open(directory, flags)
    except OSError:  # e.g. Windows cannot open directories; the rename still happened
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems refuse fsync on directories
    finally:
        os.close(dir_fd)
