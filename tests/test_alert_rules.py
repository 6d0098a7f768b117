"""deploy/prometheus/autonat-alerts.yml: valid for Prometheus, alerting as its unit tests say,
and naming only metrics a live node exports.

``promtool check rules`` parses every expression; ``promtool test rules`` runs
autonat-alerts.test.yml (series in, alerts out, at given times); and the
metric names in the rules are compared with a live node's ``/metrics`` (a
renamed metric would leave an alert that can never fire). promtool comes
with the Debian package ``prometheus``; a missing one fails the test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.required_tools import required_tool
from tests.test_metrics_ops import _exported_names, _scrape

RULES_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RULES = RULES_DIR / "autonat-alerts.yml"
METRIC = re.compile(r"\b((?:autonat|process|python)_[a-z_]+)\b")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([required_tool("promtool", "prometheus"), *args], cwd=RULES_DIR,
                          capture_output=True, text=True, timeout=60, check=False)


def test_promtool_checks_the_rules() -> None:
    out = _promtool("check", "rules", RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 11 rules found" in out.stdout


def test_the_rules_unit_tests_pass() -> None:
    out = _promtool("test", "rules", "autonat-alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n"
                      "        expr: rate(autonat_dials_total[5m] > 1\n")
    out = _promtool("check", "rules", str(broken))
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


async def test_every_metric_the_rules_name_is_exported() -> None:
    named = set(METRIC.findall(RULES.read_text()))
    assert {"autonat_nat_status", "autonat_supervisor_running", "process_open_fds"} <= named
    missing = named - _exported_names(await _scrape("127.0.142.20"))
    assert not missing, f"the alert rules name metrics /metrics does not have: {missing}"
