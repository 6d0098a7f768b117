"""Programs some tests drive (Debian packages that ``.ci/run`` installs when missing).

:func:`required_tool` returns a program's path. A missing program fails the
test with what to install: CI must never pass by skipping what it was meant
to check. ``AUTONAT_ALLOW_MISSING_TOOLS=1`` turns that failure into a skip,
for a developer's machine without the package - a choice made on purpose,
never silently.
"""

from __future__ import annotations

import os
import shutil

import pytest

ALLOW_MISSING: str = "AUTONAT_ALLOW_MISSING_TOOLS"


def required_tool(name: str, package: str) -> str:
    """The path of ``name``; fails (or, with ``AUTONAT_ALLOW_MISSING_TOOLS=1``, skips)
    when it is not on ``PATH``."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = (f"{name} is not installed: install the Debian package {package} "
               f"(.ci/run does), or set {ALLOW_MISSING}=1 to skip the tests that need it")
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(message)
    pytest.fail(message)
