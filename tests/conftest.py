"""Shared fixtures."""

from __future__ import annotations

import pytest

from tests.helpers import small_config


@pytest.fixture
def small_cfg():
    return small_config()
