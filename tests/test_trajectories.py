"""``leadsim.trajectories`` (one draw's slot-level panel) is consistent with ``leadsim.simulate``."""

from __future__ import annotations

import numpy as np

import leadsim
from leadsim.config import POPULATIONS


def test_panel_sums_to_simulate():
    """Summing the panel by population reproduces that draw's member-months (exactly), expenditure
    (to summation rounding, 1e-12) and deaths; vacant slots carry nothing."""
    cfg = leadsim.load_config(overrides={"aco.beneficiaries": 400, "simulation.draws": 4,
                                         "simulation.chunk_draws": 4, "aco.growth": 0.02})
    ds = leadsim.simulate(cfg, progress=False)
    d = 3
    panel = leadsim.trajectories(cfg, draw=d)
    assert panel.attrs["draw"] == d
    assert list(panel.year.values) == cfg.years
    pop = panel.population.values
    vacant = pop == ""
    assert (panel.member_months.values[vacant] == 0).all() and (panel.spending.values[vacant] == 0).all()
    for j, name in enumerate(POPULATIONS):
        sel = pop == name
        mm = np.where(sel, panel.member_months.values, 0.0).sum(axis=0)
        spend = np.where(sel, panel.spending.values, 0.0).sum(axis=0)
        deaths = (sel & panel.died.values).sum(axis=0)
        np.testing.assert_array_equal(mm, ds.member_months.values[d, :, j], err_msg=name)
        np.testing.assert_allclose(spend, ds.expenditure.values[d, :, j], rtol=1e-12, atol=0, err_msg=name)
        np.testing.assert_array_equal(deaths, ds.deaths.values[d, :, j], err_msg=name)
    # the aligned count follows aco.growth
    aligned = (~vacant).sum(axis=0)
    np.testing.assert_array_equal(aligned, np.round(400 * 1.02 ** np.arange(cfg.simulation.years)))
