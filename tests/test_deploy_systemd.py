"""deploy/systemd/autonat.service: checked by ``systemd-analyze verify`` and read key by key.

``systemd-analyze verify`` loads the unit as systemd would and reports every
unknown or malformed setting; it also checks that ``ExecStart``'s program
exists, so the test points it at the ``autonat`` script of this environment
(the shipped unit says ``/opt/autonat/bin/autonat``). Any output is a failure:
systemd only warns about settings it ignores. CI installs systemd (``.ci/run``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.required_tools import required_tool

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "autonat.service"
SHIPPED_EXEC = "/opt/autonat/bin/autonat"


def _settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines by key (every value, in order); comments and sections dropped."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    autonat = Path(sys.executable).with_name("autonat")
    assert autonat.exists(), f"{autonat} missing: install the project (make test does)"
    unit = tmp_path / "autonat.service"
    unit.write_text(text.replace(SHIPPED_EXEC, str(autonat)))
    analyze = required_tool("systemd-analyze", "systemd")
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path: Path) -> None:
    out = _verify(tmp_path, UNIT.read_text())
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check can fail: a misspelt setting is reported."""
    out = _verify(tmp_path, UNIT.read_text().replace("Type=notify", "Type=notifyy"))
    assert "notifyy" in out.stdout + out.stderr


def test_the_unit_is_a_hardened_notify_service_with_a_watchdog() -> None:
    settings = _settings(UNIT.read_text())
    single = {key: values[-1] for key, values in settings.items()}
    assert single["Type"] == "notify"
    assert single["ExecStart"].startswith(SHIPPED_EXEC + " node ")
    assert "${STATE_DIRECTORY}" in single["ExecStart"]
    assert single.get("DynamicUser") == "yes" or single.get("User")
    assert single["StateDirectory"] == "autonat"
    assert single["WatchdogSec"].endswith("s") and single["Restart"] == "on-failure"
    assert single["ProtectSystem"] == "strict"
    assert single["NoNewPrivileges"] == "yes"
    assert single["PrivateTmp"] == "yes"
    assert set(single["RestrictAddressFamilies"].split()) == {
        "AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    assert single["CapabilityBoundingSet"] == ""
