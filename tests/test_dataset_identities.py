"""The definitions of ``docs/design.md`` hold in every stored run (stop-loss with a neutrality factor included)."""

from __future__ import annotations

import numpy as np
import pytest

import leadsim
from tests.helpers import small_config


@pytest.fixture(scope="module")
def ds():
    cfg = small_config(**{"policy.stop_loss.enabled": True, "policy.stop_loss.neutrality": 0.9,
                          "policy.stop_loss.attachments": [20_000.0, 60_000.0, 150_000.0],
                          "aco.operating_cost_pbpm": 3.0, "aco.historical_to_regional": 1.05})
    return leadsim.simulate(cfg, progress=False)


def test_gross_savings_definition(ds):
    spend = ds.expenditure.sum("population") - ds.stop_loss_payout.sum("population") + ds.stop_loss_charge
    np.testing.assert_allclose(ds.gross_savings, ds.benchmark - spend, rtol=0, atol=1e-6)
    assert float(ds.stop_loss_payout.sum()) > 0  # the identity is exercised with payouts


def test_net_and_cumulative_settlement_definitions(ds):
    np.testing.assert_allclose(ds.net_settlement, ds.shared_savings + ds.add_on_payments - ds.operating_cost,
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(ds.cumulative_settlement, ds.net_settlement.sum("year"), rtol=1e-12)
    np.testing.assert_allclose(ds.savings_rate, ds.gross_savings / ds.benchmark, rtol=1e-12)
    # higher-spending ACO: the 1.5% administrative add-on is paid on benchmark dollars
    np.testing.assert_allclose(ds.add_on_payments, 0.015 * ds.benchmark, rtol=1e-12)
