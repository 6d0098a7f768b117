"""The examples the README points to run and show what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_two_nodes_example_prints_what_each_node_learned() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "two_nodes.py")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    heads = [line for line in lines if line.startswith("node ")]
    assert len(heads) == 2 and all("(connected)" in h for h in heads)
    a_id, b_id = (h.split()[2] for h in heads)
    assert any(f"knows {b_id}" in line and "/ip4/127.0.0.2/" in line for line in lines)
    assert any(f"knows {a_id}" in line and "/ip4/127.0.0.1/" in line for line in lines)
    assert sum("sees us at /ip4/127.0.0." in line for line in lines) == 2
