"""The node's key file: 64 raw bytes, mode 0600, created atomically.

Theory of operation
-------------------
The key file holds :meth:`Keypair.to_bytes` - the 32-byte Ed25519 secret seed
then the 32-byte public key - exactly like Pyrsia's ``p2p_keypair.ser``, so an
existing Pyrsia node keeps its peer id. This module does local file I/O only
(no network), which is why it may live in the sans-io package.

Loading refuses, with a message that names the file and says what to do:
a missing file, a non-regular file, a file that group or others may read or
write (like OpenSSH, checked on the open descriptor: ``chmod 600 <file>``),
a size other than 64 bytes, and a public half that does not match the seed.

Creating never exposes a half-written or world-readable key: the bytes go to
a temporary file in the same directory, opened with ``O_CREAT | O_EXCL`` and
mode 0600 from the start, are fsynced, and then appear under the final name
in one step. :func:`load_or_create_keypair` publishes with ``link()``, which
fails if the name exists, so two processes racing to create the same key
agree on one key (the loser loads the winner's). :func:`save_keypair`
publishes with ``rename()`` and replaces any old file. A missing parent
directory is created with mode 0700. The directory is fsynced afterwards so
the new name survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from ..core import InvalidKey, KeyFileError, Keypair

__all__ = ["load_keypair", "load_or_create_keypair", "save_keypair"]

KEY_FILE_SIZE: Final = 64
_UNSAFE_BITS: Final = 0o077
_FORMAT: Final = "32-byte secret seed then 32-byte public key, like Pyrsia's p2p_keypair.ser"


def load_keypair(path: str | os.PathLike[str]) -> Keypair:
    """Load the key pair from ``path``; :class:`KeyFileError` says what is wrong."""
    keypair = _load(Path(path), missing_ok=False)
    assert keypair is not None
    return keypair


def load_or_create_keypair(path: str | os.PathLike[str]) -> tuple[Keypair, bool]:
    """Load ``path``, or create it with a new key. Returns ``(keypair, created)``."""
    target = Path(path)
    existing = _load(target, missing_ok=True)
    if existing is not None:
        return existing, False
    keypair = Keypair.generate()
    if _write(target, keypair.to_bytes(), replace=False):
        return keypair, True
    # Another process created the file between our load and our link: use theirs.
    return load_keypair(target), False


def save_keypair(path: str | os.PathLike[str], keypair: Keypair) -> None:
    """Write ``keypair`` to ``path`` (mode 0600), atomically replacing any old file."""
    _write(Path(path), keypair.to_bytes(), replace=True)


def _load(path: Path, *, missing_ok: bool) -> Keypair | None:
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang us (fstat rejects it).
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise KeyFileError(
            f"key file {path} does not exist (`autonat id --key {path}` creates one)"
        ) from None
    except OSError as exc:
        raise _os_error("cannot open key file", path, exc) from exc
    try:
        _check_metadata(path, os.fstat(fd))
        data = _read_at_most(fd, KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise _os_error("cannot read key file", path, exc) from exc
    finally:
        os.close(fd)
    if len(data) != KEY_FILE_SIZE:
        raise KeyFileError(
            f"key file {path} is {len(data)} bytes, expected {KEY_FILE_SIZE} ({_FORMAT})"
        )
    try:
        return Keypair.from_bytes(data)
    except InvalidKey as exc:
        raise KeyFileError(f"key file {path} is corrupt: {exc}") from exc


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _check_metadata(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix" and mode & _UNSAFE_BITS:
        raise KeyFileError(
            f"key file {path} has unsafe permissions {mode:04o} (group or others may "
            f"read or write the secret key); run: chmod 600 {path}"
        )
    if info.st_size != KEY_FILE_SIZE:
        raise KeyFileError(
            f"key file {path} is {info.st_size} bytes, expected {KEY_FILE_SIZE} ({_FORMAT})"
        )


def _os_error(what: str, path: Path, exc: OSError) -> KeyFileError:
    reason = exc.strerror or str(exc)
    return KeyFileError(f"{what} {path}: {reason}")


def _write(path: Path, data: bytes, *, replace: bool) -> bool:
    """Atomically publish ``data`` at ``path``. False if ``replace`` is off and it exists."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
        _write_new_file(temp, data)
        try:
            return _publish(temp, path, replace=replace)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    except OSError as exc:
        raise _os_error("cannot write key file", path, exc) from exc


def _write_new_file(temp: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _publish(temp: Path, path: Path, *, replace: bool) -> bool:
    if replace:
        os.replace(temp, path)
    else:
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links on this file system: claim the name exclusively instead.
            if not _claim_by_rename(temp, path):
                return False
    _fsync_directory(path.parent)
    return True


def _claim_by_rename(temp: Path, path: Path) -> bool:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        return False
    os.replace(temp, path)
    return True


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
