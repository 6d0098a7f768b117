"""actors.node._storage: one write policy for the key file and the peer store."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from actors import atomic_write_bytes, create_exclusive, load_or_create_keypair

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX fsync of directories")


def _spy_fsync(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what each fsync flushed: "file" or "dir"."""
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


@posix_only
@pytest.mark.parametrize("write", ["replace", "exclusive", "key file"])
def test_file_then_directory_are_fsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str) -> None:
    synced = _spy_fsync(monkeypatch)
    target = tmp_path / "sub" / "f"
    if write == "replace":
        atomic_write_bytes(target, b"data")
    elif write == "exclusive":
        assert create_exclusive(target, b"data")
    else:
        load_or_create_keypair(target)
    assert synced == ["file", "dir"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert os.listdir(target.parent) == ["f"]


def test_create_exclusive_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    assert not create_exclusive(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


@posix_only
def test_create_exclusive_without_hard_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "f"
    assert create_exclusive(target, b"one")
    assert not create_exclusive(target, b"two")
    assert target.read_bytes() == b"one"
    assert os.listdir(tmp_path) == ["f"]


@posix_only
def test_unsupported_directory_fsync_is_tolerated_other_errors_are_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    failure = errno.EINVAL

    def dir_fsync_fails(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(failure, os.strerror(failure))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", dir_fsync_fails)
    atomic_write_bytes(tmp_path / "f", b"one")
    assert (tmp_path / "f").read_bytes() == b"one"
    failure = errno.EIO
    with pytest.raises(OSError, match=r"Input/output error|I/O error"):
        atomic_write_bytes(tmp_path / "f", b"two")
