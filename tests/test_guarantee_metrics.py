"""P(a year's loss > guarantee) and P(worst cumulative loss > guarantee) (``docs/methodology.md`` §3.7)."""

from __future__ import annotations

import numpy as np

import leadsim
from tests.helpers import small_config


def _with_settlements(net: np.ndarray, fg: float):
    """A small run whose annual net settlements (draw, year, track) and guarantee are replaced by known ones."""
    ds = leadsim.simulate(small_config(**{"simulation.draws": net.shape[0]}), progress=False)
    ds["net_settlement"] = (("draw", "year", "track"), net)
    ds["cumulative_settlement"] = (("draw", "track"), net.sum(axis=1))
    ds["financial_guarantee"] = fg
    ds = ds.drop_vars(["cash_settlement", "financial_guarantee_by_year"])  # the accrual view and one amount
    return ds


def test_worst_cumulative_loss_beyond_guarantee_by_hand():
    fg = 10.0
    net = np.zeros((4, 10, 2))
    net[0, :, 0] = [-6, -6, 20, 0, 0, 0, 0, 0, 0, 0]   # no year beyond 10, but a drawdown of 12 > 10
    net[1, :, 0] = [-11, 30, 0, 0, 0, 0, 0, 0, 0, 0]   # one year beyond 10: drawdown 11 > 10
    net[2, :, 0] = [5, -4, -4, 5, 0, 0, 0, 0, 0, 0]    # drawdown 8 < 10
    net[3, :, 0] = [1] * 10                              # never a loss
    net[:, :, 1] = 0.5 * net[:, :, 0]                    # professional: half of everything
    s = leadsim.summarize(_with_settlements(net, fg))
    hor = s.sel(period="horizon")
    # global: draws 0 and 1 have a worst cumulative loss above 10; only draw 1 has a single year above 10
    assert float(s.p_drawdown_beyond_guarantee.sel(track="global")) == 2 / 4
    assert float(hor.p_beyond_guarantee.sel(track="global")) == 1 / 4
    assert abs(float(s.p_drawdown_beyond_guarantee_se.sel(track="global")) - np.sqrt(0.5 * 0.5 / 4)) < 1e-15
    # professional: drawdowns 6, 5.5, 4, 0: none beyond 10
    assert float(s.p_drawdown_beyond_guarantee.sel(track="professional")) == 0.0
