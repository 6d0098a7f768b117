"""Test-wide settings: quiet, structured logs (shown by pytest only for failures), and the
Hypothesis profiles.

Hypothesis profiles (``HYPOTHESIS_PROFILE=<name>``; ``ci`` when unset):

* ``ci`` - what ``make test`` and CI use. No per-example ``deadline`` and no
  ``too_slow`` health check: on a loaded 2-core machine, or on a fresh clone
  where Hypothesis first builds its Unicode tables (seconds, once per
  process), a slow example says nothing about correctness and would make the
  suite fail at random. Examples are derandomized (a fixed seed per test):
  a random run once found a real corner case and failed CI with it, which
  is a flaky suite; the same examples every run make CI's answer depend on
  the code alone. A failure prints the blob that reproduces it.
* ``thorough`` - random examples, ten times as many, for exploring locally
  (``HYPOTHESIS_PROFILE=thorough make test``); what it finds becomes an
  ``@example`` in the test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, settings

structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
    wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    cache_logger_on_first_use=False,
)



@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Every test ends with the logging configuration it started with: a command run
    in-process (``main([...])``) configures structlog for the whole process, with
    pytest's capture stream as its file - closed once that test ends, so a later
    test's first log line would raise ``ValueError: I/O operation on closed file``."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True,
    derandomize=True)
settings.register_profile("thorough", settings.get_profile("ci"), max_examples=1000,
                          derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
