"""The node's key file format: 64 raw bytes, owner-only permissions.

Theory of operation
-------------------
The key file holds :meth:`Keypair.to_bytes` - the 32-byte Ed25519 secret seed
then the 32-byte public key - exactly like Pyrsia's ``p2p_keypair.ser``, so an
existing Pyrsia node keeps its peer id.

This module only judges bytes and numbers: it never opens, stats or writes a
file (that is :mod:`actors.node._storage`). The caller hands over what it
read - the ``st_mode`` and ``st_size`` of the open descriptor, then the bytes
- and the name to put in the message. A refusal is a :class:`KeyFileError`
that names the file and says what to do: a non-regular file, a file that
group or others may read or write (like OpenSSH: ``chmod 600 <file>``), a
size other than 64 bytes, and a public half that does not match the seed.
"""

from __future__ import annotations

import stat
from typing import Final

from ..core import InvalidKey, KeyFileError, Keypair

__all__ = [
    "KEY_FILE_MODE",
    "KEY_FILE_SIZE",
    "check_key_file_metadata",
    "decode_key_file",
    "encode_key_file",
]

KEY_FILE_SIZE: Final = 64
KEY_FILE_MODE: Final = 0o600
"""The permission bits a key file is created with."""
_UNSAFE_BITS: Final = 0o077
_FORMAT: Final = "32-byte secret seed then 32-byte public key, like Pyrsia's p2p_keypair.ser"


def encode_key_file(keypair: Keypair) -> bytes:
    """The 64 bytes of the key file for ``keypair``."""
    return keypair.to_bytes()


def decode_key_file(data: bytes, *, name: str) -> Keypair:
    """The key pair in ``data`` (the file's content); ``name`` is the file named in errors."""
    if len(data) != KEY_FILE_SIZE:
        raise _wrong_size(name, len(data))
    try:
        return Keypair.from_bytes(data)
    except InvalidKey as exc:
        raise KeyFileError(f"key file {name} is corrupt: {exc}") from exc


def check_key_file_metadata(st_mode: int, st_size: int, *, name: str,
                            check_permissions: bool = True) -> None:
    """Refuse a key file by its ``stat`` result: not regular, unsafe mode, wrong size.

    ``st_mode`` is the full mode (file type and permission bits).
    ``check_permissions`` is off where permission bits mean nothing (not POSIX).
    """
    if not stat.S_ISREG(st_mode):
        raise KeyFileError(f"key file {name} is not a regular file")
    mode = stat.S_IMODE(st_mode)
    if check_permissions and mode & _UNSAFE_BITS:
        raise KeyFileError(
            f"key file {name} has unsafe permissions {mode:04o} (group or others may "
            f"read or write the secret key); run: chmod 600 {name}"
        )
    if st_size != KEY_FILE_SIZE:
        raise _wrong_size(name, st_size)


def _wrong_size(name: str, size: int) -> KeyFileError:
    return KeyFileError(
        f"key file {name} is {size} bytes, expected {KEY_FILE_SIZE} ({_FORMAT})"
    )
