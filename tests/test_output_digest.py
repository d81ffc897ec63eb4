"""Refactors keep every output bit-identical: the digest of three fixed runs is stored in tests/data."""

import json
from pathlib import Path

import pytest

from tests.digest_tool import combined, default_digest

FIXTURE = json.loads((Path(__file__).parent / "data" / "output_digest.json").read_text())
CASES = {"default": None, "stop_loss": {"policy.stop_loss.enabled": True},
         "mssp": {"policy.preset": "mssp_enhanced"}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_digest_unchanged(case):
    got = default_digest(CASES[case])
    want = FIXTURE[case]["variables"]
    changed = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    assert not changed, f"outputs changed in {case}: {changed}"
    assert combined(got) == FIXTURE[case]["combined"]
