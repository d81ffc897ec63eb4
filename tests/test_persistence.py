"""Persistence: the lag-1 correlation of latent-normalised spending among survivors equals the configured rho.

Each survivor's spending is mapped back to its latent, ``z = Phi^{-1}(F(x / m))``, with the independent
scipy marginal ``F`` (:mod:`tests.spliced_exact`) and the kernel's mean per unit ``Q``. The populations
have no zero mass (so the map is one to one), deaths are independent of risk (``death_risk_beta = 0``) so
that surviving does not select on the latent, and macro noise is off so ``m`` is known. Pairs are
(PY1, PY2) of the same beneficiary, alive and aligned all of both years (12 member-months each).

Tolerance rule: the sample correlation of n bivariate-normal pairs has SE ``(1 - rho^2) / sqrt(n)``; the
estimate must be within ``K_SE = 4`` SE of rho.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import leadsim
from leadsim.config import POPULATIONS
from leadsim.model.cohort import cohort_model
from tests.spliced_exact import ExactSpliced

K_SE = 4.0


@pytest.fixture(scope="module")
def panel_and_model():
    o = {"simulation.years": 2, "aco.beneficiaries": 60_000,
         "trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0,
         "aco.mix.aged_disabled": 0.0, "aco.mix.esrd": 0.5, "aco.mix.high_needs": 0.5}
    for q in POPULATIONS:
        o[f"trend.national_mean.{q}"] = 0.0
        o[f"population.{q}.death_risk_beta"] = 0.0
    cfg = leadsim.load_config(overrides=o)
    return cfg, leadsim.trajectories(cfg, draw=0), cohort_model(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("pop", ["esrd", "high_needs"])
def test_lag1_latent_correlation_is_rho(panel_and_model, pop):
    cfg, panel, model = panel_and_model
    pc = cfg.population[pop]
    assert pc.zero_share == 0.0
    j = POPULATIONS.index(pop)
    both = ((panel.population.values == pop).all(axis=1) & (panel.member_months.values == 12.0).all(axis=1))
    x = panel.spending.values[both]
    n = x.shape[0]
    assert n > 15_000  # ~65% of 30,000 survive and stay two years
    marginal = ExactSpliced(pc.zero_share, pc.sigma, pc.tail_start, pc.tail_alpha, mean=1.0)
    z = special.ndtri(marginal.cdf(x / model.base_mean[j]))
    assert np.isfinite(z).all()
    # the recovered latents are standard normal (deaths and exits do not select on risk here)
    assert abs(z.mean()) < K_SE / np.sqrt(n)
    r = np.corrcoef(z[:, 0], z[:, 1])[0, 1]
    se = (1.0 - pc.rho**2) / np.sqrt(n)
    assert abs(r - pc.rho) <= K_SE * se, (r, pc.rho, se)
    # the raw dollars are less correlated than the latent (heavy tails): persistence is set on the latent
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] < r
