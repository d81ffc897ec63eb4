"""Shared fixtures, and the rule that a test marked ``ci_required`` may not skip in CI."""

from __future__ import annotations

import os

import pytest

from tests.helpers import small_config


@pytest.fixture
def small_cfg():
    return small_config()


def in_ci() -> bool:
    """CI runs with ``CI=true`` (as most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skip of a ``ci_required`` test (e.g. no headless browser installed) is a failure."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci() and item.get_closest_marker("ci_required") is not None:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"{item.nodeid} is marked ci_required but skipped under CI=true ({reason}); "
                        ".ci/run must install what it needs")
