"""The node's file storage: crash-safe writes, the key file, peer store and config reads.

Every file the node writes goes through here; :mod:`protocols` only turns
bytes into values and back (:func:`~protocols.decode_key_file`,
:func:`~protocols.encode_peer_store`, ...). All functions are synchronous
and blocking; actors call the peer-store helpers through
``trio.to_thread.run_sync``.

Theory of operation
-------------------
One write policy, for the key file and the peer store alike: readers see
the old file or the new one, never half of one, and a file we reported
written survives a power cut.

1. A missing parent directory is created with mode 0700.
2. The bytes go to a temporary file ``.<name>.<random>.tmp`` in the *same
   directory* (a rename is atomic only within one file system), created
   with ``O_CREAT | O_EXCL`` and the final mode from the start, so the data
   is never in a file others may read.
3. The temporary file is flushed and ``fsync``ed.
4. It is published under the final name in one step: ``os.replace`` to
   replace an old file (:func:`atomic_write_bytes`), or ``os.link``, which
   fails if the name exists, to create a file exclusively
   (:func:`create_exclusive`: two processes racing to create the same key
   agree on one). Where the file system has no hard links the name is
   claimed with ``O_EXCL`` and then replaced.
5. The directory is ``fsync``ed so the new name itself is durable.

If a step fails the temporary file is removed, the old file is untouched
and the error propagates - except a directory ``fsync`` that the platform
or file system does not support (Windows cannot open a directory; some
file systems answer ``EINVAL``): the file is then published but its name
may not survive a crash, which is all such a system offers.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import time
from pathlib import Path
from typing import Final

from protocols import (
    KEY_FILE_MODE,
    KEY_FILE_SIZE,
    ConfigError,
    KeyFileError,
    Keypair,
    Settings,
    check_key_file_metadata,
    decode_key_file,
    encode_key_file,
    load_config_text,
)

__all__ = [
    "atomic_write_bytes",
    "create_exclusive",
    "load_config_file",
    "load_keypair",
    "load_or_create_keypair",
    "read_at_most",
    "remove_stale_temporaries",
    "rename_aside",
    "save_keypair",
]

DIRECTORY_MODE: Final = 0o700
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_NO_LINKS: Final = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)
_NO_DIR_FSYNC: Final = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)


# --- the write policy --------------------------------------------------------------


def atomic_write_bytes(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``) atomically and durably."""
    _write(Path(path), data, mode, replace=True)


def create_exclusive(path: Path | str, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data`` atomically and durably; False if it already exists."""
    return _write(Path(path), data, mode, replace=False)


def _write(path: Path, data: bytes, mode: int, *, replace: bool) -> bool:
    directory = path.parent
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    temp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    _write_new_file(temp, data, mode)
    try:
        published = _publish(temp, path, mode, replace=replace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    if published:
        _fsync_directory(directory)
    return published


STALE_AFTER: Final = 60.0
"""A temporary file older than this (seconds) belongs to a writer that died."""


def remove_stale_temporaries(path: Path, *, now: float | None = None) -> list[Path]:
    """Delete ``.<name>.<16 hex>.tmp`` files of ``path`` left by a killed writer.

    A write takes milliseconds, so one older than :data:`STALE_AFTER` is no
    longer anybody's: a ``kill -9`` between creating and publishing it left it
    behind. Younger ones may belong to a live writer and are kept. Returns
    the files removed; files it cannot remove are skipped.
    """
    now = time.time() if now is None else now
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        token = candidate.name[len(path.name) + 2:-len(".tmp")]
        if len(token) != 16 or any(ch not in "0123456789abcdef" for ch in token):
            continue
        with contextlib.suppress(OSError):
            if now - candidate.lstat().st_mtime > STALE_AFTER:
                candidate.unlink()
                removed.append(candidate)
    return removed


def _write_new_file(temp: Path, data: bytes, mode: int) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            if hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), mode)  # the umask may have taken bits away
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _publish(temp: Path, path: Path, mode: int, *, replace: bool) -> bool:
    if replace:
        os.replace(temp, path)
        return True
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # No hard links on this file system: claim the name exclusively instead.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, mode))
        except FileExistsError:
            return False
        os.replace(temp, path)
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        if os.name == "posix":
            raise
        return  # Windows cannot open a directory
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


# --- reading -------------------------------------------------------------------------


def read_at_most(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` (a decoder given ``limit + 1`` can say "too big")."""
    with path.open("rb") as file:
        return file.read(limit)


MAX_CONFIG_BYTES: Final = 1024 * 1024
"""A config file larger than this is refused unread (every documented key fits in 10 KB)."""


def load_config_file(path: Path) -> Settings:
    """:func:`~protocols.load_config_text` on a file; an unreadable file is a ConfigError."""
    try:
        data = read_at_most(path, MAX_CONFIG_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES} bytes; "
                          "is this the right file?")
    return load_config_text(text, source=str(path))


def rename_aside(path: Path, suffix: str) -> Path:
    """Move ``path`` to ``<path><suffix>`` (or ``-1``, ``-2``, ... if taken); the new path."""
    target = path.with_name(path.name + suffix)
    counter = 0
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}{suffix}-{counter}")
    os.rename(path, target)
    return target


# --- the key file ----------------------------------------------------------------------


def load_keypair(path: str | os.PathLike[str]) -> Keypair:
    """Load the key pair from ``path``; :class:`~protocols.KeyFileError` says what is wrong."""
    keypair = _load_keypair(Path(path), missing_ok=False)
    assert keypair is not None
    return keypair


def load_or_create_keypair(path: str | os.PathLike[str]) -> tuple[Keypair, bool]:
    """Load ``path``, or create it (mode 0600) with a new key. Returns ``(keypair, created)``.

    An existing file is never replaced: when another process creates it
    between our load and our write, its key is loaded and returned.
    """
    target = Path(path)
    existing = _load_keypair(target, missing_ok=True)
    if existing is not None:
        return existing, False
    keypair = Keypair.generate()
    try:
        created = create_exclusive(target, encode_key_file(keypair), KEY_FILE_MODE)
    except OSError as exc:
        raise _os_error("cannot write key file", target, exc) from exc
    if created:
        return keypair, True
    return load_keypair(target), False


def save_keypair(path: str | os.PathLike[str], keypair: Keypair) -> None:
    """Write ``keypair`` to ``path`` (mode 0600), atomically replacing any old file."""
    target = Path(path)
    try:
        atomic_write_bytes(target, encode_key_file(keypair), KEY_FILE_MODE)
    except OSError as exc:
        raise _os_error("cannot write key file", target, exc) from exc


def _load_keypair(path: Path, *, missing_ok: bool) -> Keypair | None:
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang us (fstat rejects it).
        fd = os.open(path, os.O_RDONLY | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise KeyFileError(
            f"key file {path} does not exist (`autonat id --key {path}` creates one)"
        ) from None
    except OSError as exc:
        raise _os_error("cannot open key file", path, exc) from exc
    try:
        info = os.fstat(fd)
        check_key_file_metadata(info.st_mode, info.st_size, name=str(path),
                                check_permissions=os.name == "posix")
        data = _read_fd(fd, KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise _os_error("cannot read key file", path, exc) from exc
    finally:
        os.close(fd)
    return decode_key_file(data, name=str(path))


def _read_fd(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _os_error(what: str, path: Path, exc: OSError) -> KeyFileError:
    return KeyFileError(f"{what} {path}: {exc.strerror or exc}")
