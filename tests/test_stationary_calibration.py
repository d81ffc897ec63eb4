"""Stationary calibration, where it is not the identity (slow): the residuals ``docs/model.md`` reports.

With all macro noise off the realised mean cost is deterministic, so over many draws

* spending PBPM / (H x growth) -> 1, with ``H = mean_annual_cost / 12`` and ``growth = (1 + mu)^(t + 1)``
  (``mean_annual_cost`` is per-capita spending of the stationary population, in base-year dollars);
* the member-month-weighted mean risk score -> 1 (scores are normalised on the stationary cohort);
* stop-loss charge / payout -> 1 + loading (the charge is priced on the stationary latent law).

Each is a ratio of sums over independent draws; its Monte Carlo standard error is the delta-method one,
``sd(num - r den) sqrt(n) / sum(den)``. A check passes within ``K_SE`` standard errors, and also asserts
that the standard error is small enough for the check to mean something (a ~0.1% calibration error fails).
Single-population ACOs (no transitions) and the default mix (with transitions into ESRD and High Needs)
are both checked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import leadsim
from leadsim.model.cohort import cohort_model, stop_loss_price

pytestmark = pytest.mark.slow

K_SE = 4.0
QUIET = {"trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0}
POPS = ("aged_disabled", "esrd", "high_needs")
DRAWS = {"aged_disabled": 2000, "esrd": 1000, "high_needs": 1000}
BENEFICIARIES = 10_000


def ratio_se(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum(num) / sum(den)`` over draws (axis 0) and its delta-method standard error."""
    n = num.shape[0]
    r = num.sum(0) / den.sum(0)
    return r, np.sqrt((num - r * den).var(0, ddof=1) * n) / den.sum(0)


def _config(**overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return leadsim.load_config(overrides={**QUIET, "simulation.draws": 1000, "aco.beneficiaries": BENEFICIARIES,
                                              "policy.stop_loss.enabled": True, **overrides})


@pytest.fixture(scope="module", params=POPS)
def single_population(request):
    """A single-population ACO (no transitions), macro noise off, stop-loss elected."""
    pop = request.param
    mix = dict.fromkeys(POPS, 0.0) | {pop: 1.0}
    cfg = _config(**{"simulation.draws": DRAWS[pop], "aco.mix": mix, "population.aged_disabled.high_needs_rate": 0.0,
                     "population.aged_disabled.esrd_rate": 0.0})
    return pop, cfg, leadsim.simulate(cfg, progress=False)


def _check(r, se, target, max_se):
    """Every year and the pooled years within K_SE standard errors of ``target``; SEs below ``max_se``."""
    assert np.all(se < max_se), se
    assert np.all(np.abs(r - target) <= K_SE * se), (r, se, (r - target) / se)


def test_spending_pbpm_is_the_configured_mean_cost_times_growth(single_population):
    pop, cfg, ds = single_population
    a = ds.sel(population=pop)
    h = getattr(cfg.population, pop).mean_annual_cost / 12.0
    growth = (1.0 + getattr(cfg.trend.national_mean, pop)) ** np.arange(1, cfg.simulation.years + 1)
    num, den = a.expenditure.values, a.member_months.values * h * growth
    r, se = ratio_se(num, den)
    _check(r, se, 1.0, 0.001)                                 # each year: 1.000 +- 0.001 resolved
    rp, sep = ratio_se(num.sum(1, keepdims=True), den.sum(1, keepdims=True))
    _check(rp, sep, 1.0, 0.0005)


def test_mean_risk_score_is_one(single_population):
    pop, _, ds = single_population
    a = ds.sel(population=pop)
    num, den = (a.risk_score * a.member_months).values, a.member_months.values
    r, se = ratio_se(num, den)
    _check(r, se, 1.0, 0.0006)
    rp, sep = ratio_se(num.sum(1, keepdims=True), den.sum(1, keepdims=True))
    _check(rp, sep, 1.0, 0.0003)


def test_stop_loss_charge_is_mean_payout_times_one_plus_loading(single_population):
    pop, cfg, ds = single_population
    charge = ds.stop_loss_charge.isel(track=0).values
    payout = ds.stop_loss_payout.sel(population=pop).values
    assert np.all(payout.mean(0) > 0)
    target = 1.0 + cfg.policy.stop_loss.loading
    r, se = ratio_se(charge, payout)
    _check(r, se, target, 0.012)
    rp, sep = ratio_se(charge.sum(1, keepdims=True), payout.sum(1, keepdims=True))
    _check(rp, sep, target, 0.004)


@pytest.fixture(scope="module")
def default_mix():
    cfg = _config(**{"simulation.draws": 2000})
    return cfg, leadsim.simulate(cfg, progress=False), stop_loss_price(cfg, cohort_model(cfg))


@pytest.mark.parametrize("pop", POPS)
def test_default_mix_loading_per_population(default_mix, pop):
    """With the default mix (and its transitions A&D -> ESRD / High Needs), each population's charge is its
    mean payout times 1 + loading, pooled over the years (before the entrant mix was solved for the
    configured equilibrium, ESRD was 1.071 +- 0.003 and High Needs 1.087 +- 0.002 here)."""
    cfg, ds, price = default_mix
    j = POPS.index(pop)
    charge = ds.member_months.sel(population=pop).values * price[None, :, j]
    payout = ds.stop_loss_payout.sel(population=pop).values
    rp, sep = ratio_se(charge.sum(1, keepdims=True), payout.sum(1, keepdims=True))
    _check(rp, sep, 1.0 + cfg.policy.stop_loss.loading, 0.004)


def test_default_mix_charge_is_the_priced_pbpm_times_member_months(default_mix):
    _, ds, price = default_mix
    total = (ds.member_months.values * price[None]).sum(2)
    np.testing.assert_allclose(ds.stop_loss_charge.isel(track=0).values, total, rtol=1e-12)
