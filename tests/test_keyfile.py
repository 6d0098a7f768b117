"""Key file: Pyrsia's 64-byte format (protocols), mode 0600, atomic creation (actors)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from actors import load_keypair, load_or_create_keypair, save_keypair
from protocols import (
    KEY_FILE_SIZE,
    KeyFileError,
    Keypair,
    check_key_file_metadata,
    decode_key_file,
    encode_key_file,
)

# libp2p/specs peer-ids/peer-ids.md test vector (Ed25519 private key protobuf,
# whose Data is the 64-byte seed+public layout of Pyrsia's p2p_keypair.ser);
# peer id as asserted by go-libp2p p2p/http/auth/auth_test.go.
SPEC_KEYPAIR_BYTES = bytes.fromhex(
    "7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SPEC_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_loads_pyrsia_format_with_same_peer_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "p2p_keypair.ser", SPEC_KEYPAIR_BYTES)
    keypair = load_keypair(path)
    assert str(keypair.peer_id) == SPEC_PEER_ID
    assert keypair.to_bytes() == SPEC_KEYPAIR_BYTES


@posix_only
def test_create_then_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p2p_keypair.ser"
    created, was_created = load_or_create_keypair(path)
    assert was_created
    assert _mode(path) == 0o600
    assert path.read_bytes() == created.to_bytes()
    loaded, was_created_again = load_or_create_keypair(path)
    assert not was_created_again
    assert loaded == created
    assert load_keypair(str(path)) == created


@posix_only
def test_create_makes_private_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "node" / "key"
    _, created = load_or_create_keypair(path)
    assert created
    assert _mode(path.parent) == 0o700
    assert _mode(path) == 0o600


def test_atomic_creation_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "key"
    load_or_create_keypair(path)
    save_keypair(path, Keypair.generate())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


@posix_only
def test_save_replaces_and_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first, second = Keypair.generate(), Keypair.generate()
    save_keypair(path, first)
    save_keypair(path, second)
    assert load_keypair(path) == second
    assert _mode(path) == 0o600


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    results: list[tuple[Keypair, bool]] = []
    lock = threading.Lock()

    def create() -> None:
        result = load_or_create_keypair(path)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 8
    assert len({keypair.to_bytes() for keypair, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert path.read_bytes() == results[0][0].to_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = _write(tmp_path / "key", SPEC_KEYPAIR_BYTES)
    keypair, created = load_or_create_keypair(path)
    assert not created
    assert str(keypair.peer_id) == SPEC_PEER_ID


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.ser"
    with pytest.raises(KeyFileError, match=f"{path}.*does not exist"):
        load_keypair(path)


@pytest.mark.parametrize("size", [0, 32, 63, 65, 96])
def test_wrong_size(tmp_path: Path, size: int) -> None:
    path = _write(tmp_path / "key", (SPEC_KEYPAIR_BYTES * 2)[:size])
    with pytest.raises(KeyFileError, match=rf"{path} is {size} bytes, expected 64"):
        load_keypair(path)
    # A corrupt existing file is reported, not silently replaced.
    with pytest.raises(KeyFileError):
        load_or_create_keypair(path)
    assert path.stat().st_size == size


def test_mismatched_public_half(tmp_path: Path) -> None:
    data = SPEC_KEYPAIR_BYTES[:32] + Keypair.generate().public_key.raw
    path = _write(tmp_path / "key", data)
    with pytest.raises(KeyFileError, match=rf"{path} is corrupt: .*does not match"):
        load_keypair(path)


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o666])
def test_unsafe_permissions(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "key", SPEC_KEYPAIR_BYTES, mode)
    with pytest.raises(KeyFileError, match=rf"{path} has unsafe permissions.*chmod 600 {path}"):
        load_keypair(path)


@posix_only
def test_read_only_owner_mode_is_fine(tmp_path: Path) -> None:
    path = _write(tmp_path / "key", SPEC_KEYPAIR_BYTES, 0o400)
    assert str(load_keypair(path).peer_id) == SPEC_PEER_ID


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "dir"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match=f"{path} is not a regular file"):
        load_keypair(path)


@posix_only
def test_symlink_to_private_file_is_followed(tmp_path: Path) -> None:
    target = _write(tmp_path / "real", SPEC_KEYPAIR_BYTES)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert str(load_keypair(link).peer_id) == SPEC_PEER_ID


def test_unwritable_directory_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    path = blocker / "key"  # parent is a regular file
    with pytest.raises(KeyFileError, match=f"cannot .*{path}"):
        load_or_create_keypair(path)


@posix_only
def test_fifo_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_keypair(path)


def test_permission_error_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # test_unreadable needs a non-root user; this covers the same path everywhere.
    path = _write(tmp_path / "key", SPEC_KEYPAIR_BYTES)
    real_open = os.open

    def deny(target: object, flags: int, *args: int) -> int:
        if Path(str(target)) == path:
            raise PermissionError(13, "Permission denied", str(target))
        return real_open(target, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(KeyFileError, match=rf"cannot open key file {path}: Permission denied"):
        load_keypair(path)


@posix_only
def test_key_bytes_are_never_in_a_readable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[int, int]] = []
    real_open = os.open

    def spy(target: object, flags: int, mode: int = 0o777, *args: int) -> int:
        if flags & os.O_CREAT:
            created.append((flags, mode))
        return real_open(target, flags, mode, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    load_or_create_keypair(tmp_path / "key")
    assert created, "the key file must be created through os.open"
    for flags, mode in created:
        assert flags & os.O_EXCL
        assert mode == 0o600


# --- the sans-io half: bytes and stat numbers in, a key pair or a KeyFileError out ------


def test_format_round_trip_without_files() -> None:
    keypair = decode_key_file(SPEC_KEYPAIR_BYTES, name="k")
    assert str(keypair.peer_id) == SPEC_PEER_ID
    assert encode_key_file(keypair) == SPEC_KEYPAIR_BYTES
    assert len(encode_key_file(Keypair.generate())) == KEY_FILE_SIZE


@pytest.mark.parametrize("size", [0, 63, 65])
def test_decode_names_the_file_and_the_size(size: int) -> None:
    with pytest.raises(KeyFileError, match=rf"key file /x/key is {size} bytes, expected 64"):
        decode_key_file((SPEC_KEYPAIR_BYTES * 2)[:size], name="/x/key")


def test_decode_rejects_a_mismatched_public_half() -> None:
    data = SPEC_KEYPAIR_BYTES[:32] + Keypair.generate().public_key.raw
    with pytest.raises(KeyFileError, match=r"key file k is corrupt: .*does not match"):
        decode_key_file(data, name="k")


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_metadata_accepts_owner_only_regular_files(mode: int) -> None:
    check_key_file_metadata(stat.S_IFREG | mode, 64, name="k")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o666, 0o601])
def test_metadata_refuses_group_or_other_bits(mode: int) -> None:
    with pytest.raises(KeyFileError, match=rf"k has unsafe permissions {mode:04o}.*chmod 600 k"):
        check_key_file_metadata(stat.S_IFREG | mode, 64, name="k")
    # Where permission bits mean nothing (not POSIX) they are not checked.
    check_key_file_metadata(stat.S_IFREG | mode, 64, name="k", check_permissions=False)


@pytest.mark.parametrize("kind", [stat.S_IFDIR, stat.S_IFIFO, stat.S_IFLNK, stat.S_IFSOCK])
def test_metadata_refuses_non_regular_files(kind: int) -> None:
    with pytest.raises(KeyFileError, match="k is not a regular file"):
        check_key_file_metadata(kind | 0o600, 64, name="k")


def test_metadata_refuses_a_wrong_size_before_reading() -> None:
    with pytest.raises(KeyFileError, match=r"k is 96 bytes, expected 64"):
        check_key_file_metadata(stat.S_IFREG | 0o600, 96, name="k")
