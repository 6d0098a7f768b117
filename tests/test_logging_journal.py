"""Logs under systemd's journal: ``auto`` detects ``$JOURNAL_STREAM`` and writes
``<priority>event="..." key=value`` lines (no timestamp: journald stamps them)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from actors import configure_logging
from actors.runtime import get_logger


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def _log_some(path: Path, fmt: str, environ: dict[str, str]) -> list[str]:
    with path.open("w") as stream:
        info = os.fstat(stream.fileno())
        stream_id = f"{info.st_dev}:{info.st_ino}"
        configure_logging(fmt, "debug", file=stream,
                          environ={k: v.replace("SELF", stream_id) for k, v in environ.items()})
        log = get_logger("test", actor="journal", node="12D3KooWJustAnExample")
        log.info("node running", http="http://127.0.0.1:7888", peers=[1, 2])
        log.warning("restart intensity close", actor="dialer")
        try:
            raise ValueError("broken\nin two lines")
        except ValueError:
            log.exception("child crashed")
    return path.read_text().splitlines()


def test_auto_under_journald_writes_priority_prefixed_logfmt(
        tmp_path: Path, restore_structlog: None) -> None:
    lines = _log_some(tmp_path / "journal", "auto", {"JOURNAL_STREAM": "SELF"})
    assert lines[0] == ('<6>event="node running" actor=journal node=12D3KooWJustAnExample '
                        'http=http://127.0.0.1:7888 peers="[1, 2]"')
    assert lines[1] == '<4>event="restart intensity close" actor=dialer node=12D3KooWJustAnExample'
    assert lines[2].startswith('<3>event="child crashed" ') and "exception=" in lines[2]
    assert len(lines) == 3  # the traceback stays on its line: one journal entry per event


def test_auto_writes_json_when_journal_stream_is_another_stream(
        tmp_path: Path, restore_structlog: None) -> None:
    for environ in ({"JOURNAL_STREAM": "1:2"}, {}):
        lines = _log_some(tmp_path / "log", "auto", environ)
        assert json.loads(lines[0])["event"] == "node running"


def test_journal_can_be_chosen_explicitly(tmp_path: Path, restore_structlog: None) -> None:
    lines = _log_some(tmp_path / "log", "journal", {})
    assert lines[0].startswith('<6>event="node running"')
    with pytest.raises(ValueError, match="journal"):
        configure_logging("syslog")
