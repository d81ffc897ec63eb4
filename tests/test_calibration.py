"""Calibration rules (issue 10): the ACO's mean-reverting cost level, uncertain care management, the stop-loss
charge at realised trend, per-population MSSP truncation and regional adjustment, REACH's national RTA, the
entrant mix, the annual financial guarantee and enhanced PCC as cash. Hand-worked cases and closed forms; the
statistical checks against public figures are in ``test_calibration_facts.py`` (slow)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import leadsim
from leadsim.config import ConfigError, LeadsimWarning
from leadsim.ledger.benchmark import benchmark_pbpm, historical_adjustment, reach_rta_update, track_policy
from leadsim.ledger.settlement import financial_guarantee_by_year
from leadsim.model.cohort import cohort_model, stop_loss_price
from leadsim.model.drivers import ar1, macro_paths
from leadsim.model.marginals import SplicedMarginal
from leadsim.model.outliers import truncation_caps
from leadsim.model.rng import MACRO_SLOT, N_STREAMS, Stream, key_np, normals_np, word_np
from tests.helpers import small_config


def cfg_of(**overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(overrides=overrides)


# ------------------------------------------------------------------------------------------------------------
# 1. the ACO's cost level
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, replacement", [("trend.aco_sd", "trend.aco_level_sd"),
                                              ("trend.aco_ar", "trend.aco_level_persistence")])
def test_retired_aco_growth_keys_name_their_replacement(key, replacement):
    with pytest.raises(ConfigError) as err:
        leadsim.load_config(overrides={key: 0.02})
    assert str(err.value).startswith(f"{key}: retired key; use {replacement}")


def test_aco_level_is_the_keyed_ar1_in_log_level():
    cfg = cfg_of(**{"trend.national_sd": 0.0, "trend.regional_sd": 0.0})
    draws = np.arange(5)
    m = macro_paths(cfg, draws)
    k = key_np(cfg.simulation.seed, draws.astype(np.uint64), MACRO_SLOT)[:, None]
    base = (np.arange(10, dtype=np.uint64) + np.uint64(1)) * np.uint64(N_STREAMS)
    eps, _ = normals_np(word_np(k, base + np.uint64(Stream.ACO)))
    level = np.zeros((5, 10))
    prev = np.zeros(5)
    for t in range(10):                                   # l_t = 0.8 l_{t-1} + 0.0265 eps_t, l_{-1} = 0
        prev = 0.8 * prev + 0.0265 * eps[:, t]
        level[:, t] = prev
    np.testing.assert_allclose(m.aco_level, level, rtol=0, atol=1e-15)
    # the ACO's cumulative cost factor is the region's times exp(l_t)
    ratio = np.cumprod(1 + m.aco_growth, axis=1) / np.cumprod(1 + m.regional_growth, axis=1)
    np.testing.assert_allclose(ratio, np.exp(level)[:, :, None].repeat(3, axis=2), rtol=1e-12)


def test_aco_level_variance_is_bounded_closed_form():
    cfg = cfg_of()
    n = 20_000
    lv = macro_paths(cfg, np.arange(n)).aco_level
    psi, s = 0.8, 0.0265
    t = np.arange(1, 11)
    exact = s * np.sqrt((1 - psi ** (2 * t)) / (1 - psi**2))   # -> s / sqrt(1 - psi^2) = 4.42%
    sd = lv.std(axis=0, ddof=1)
    se = exact / np.sqrt(2 * (n - 1))
    assert np.all(np.abs(sd - exact) < 4 * se), (sd, exact)
    assert exact[-1] < 1.01 * s / np.sqrt(1 - psi**2)
    # lag-k correlation of the stationary part tends to psi^k: corr(l_9, l_6) = psi^3 sd_6 / sd_9
    r = np.corrcoef(lv[:, 8], lv[:, 5])[0, 1]
    assert abs(r - psi**3 * exact[5] / exact[8]) < 4 * (1 - r * r) / np.sqrt(n)


def test_ar1_helper_matches_recursion():
    e = np.array([[1.0, -2.0, 0.5]])
    np.testing.assert_allclose(ar1(e, 0.8, 0.1), [[0.1, 0.08 - 0.2, 0.8 * (0.08 - 0.2) + 0.05]])


# ------------------------------------------------------------------------------------------------------------
# 2. uncertain care-management effect
# ------------------------------------------------------------------------------------------------------------
def test_care_management_scale_is_keyed_and_leaves_other_draws_alone():
    path = [-0.01, -0.02, -0.03]
    known = macro_paths(cfg_of(**{"aco.care_management_effect": path}), np.arange(4000))
    np.testing.assert_array_equal(known.care_management, np.tile(path + [-0.03] * 7, (4000, 1)))
    unsure = macro_paths(cfg_of(**{"aco.care_management_effect": path, "aco.care_management_cv": 0.5}),
                         np.arange(4000))
    # common random numbers: every other driver is bit-identical
    for name in ("national_growth", "regional_growth", "aco_growth", "quality", "aco_level"):
        np.testing.assert_array_equal(getattr(known, name), getattr(unsure, name))
    c = unsure.care_management[:, 2]                       # -3% x (1 + 0.5 eps): mean -3%, sd 1.5%
    assert abs(c.mean() + 0.03) < 4 * 0.015 / np.sqrt(c.size)
    assert abs(c.std(ddof=1) - 0.015) < 4 * 0.015 / np.sqrt(2 * c.size)
    # one scale per draw: the ratio to the path is the same every year
    np.testing.assert_allclose(unsure.care_management[:, 0] / -0.01, unsure.care_management[:, 9] / -0.03)
    # and it reaches the kernel's mean cost
    cfg = small_config(**{"aco.care_management_effect": path, "aco.care_management_cv": 0.5})
    ds = leadsim.simulate(cfg, progress=False)
    assert np.isfinite(ds["expenditure"].values).all()


# ------------------------------------------------------------------------------------------------------------
# 3. stop-loss charge at the realised national trend
# ------------------------------------------------------------------------------------------------------------
def test_realised_charge_equals_ex_ante_at_expected_trend_and_scales_with_national_trend():
    cfg = small_config(**{"policy.stop_loss.enabled": True})
    model = cohort_model(cfg)
    ex_ante = stop_loss_price(cfg, model)                                  # (years, 3)
    mu = np.array(cfg.trend.national_mean.ordered())
    g = np.broadcast_to(mu, (1, 10, 3)).copy()
    realised = stop_loss_price(cfg, model, g)[0]
    np.testing.assert_allclose(realised, ex_ante, rtol=1e-12)
    # national trend 2 pp higher from PY2028 on: the charge scales by the attachment trend (homogeneity)
    g2 = g.copy()
    g2[:, 1:, :] += 0.02
    high = stop_loss_price(cfg, model, g2)[0]
    factor = np.cumprod(1 + g2[0], axis=0) / np.cumprod(1 + g[0], axis=0)
    np.testing.assert_allclose(high, ex_ante * factor, rtol=1e-12)
    # the engine uses it: the stored charge varies across draws with national trend
    ds = leadsim.simulate(cfg, progress=False)
    ch = ds["stop_loss_charge"].sel(track="global", year=2036).values
    assert ch.std() > 0
    ds_ex = leadsim.simulate(small_config(**{"policy.stop_loss.enabled": True,
                                             "policy.stop_loss.basis": "expected"}), progress=False)
    pbpm = ds_ex["stop_loss_charge"].sel(track="global") / ds_ex["member_months"].sum("population")
    np.testing.assert_allclose(pbpm.values, np.broadcast_to(
        (ex_ante * ds_ex["member_months"].values).sum(axis=2) / ds_ex["member_months"].sum("population").values,
        pbpm.shape), rtol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# 4. fair comparators
# ------------------------------------------------------------------------------------------------------------
def test_mssp_caps_are_the_national_99th_percentile_per_population():
    cfg = cfg_of(**{"policy.preset": "mssp_enhanced"})
    caps = truncation_caps(cfg)
    for j, pop in enumerate(cfg.population.ordered()):
        marg = SplicedMarginal(pop.zero_share, pop.sigma, pop.tail_start, pop.tail_alpha)
        unit = caps[j] / (pop.mean_annual_cost * (1 + cfg.trend.national_mean.ordered()[j]))
        assert abs(float(marg.cdf(unit)) - 0.99) < 1e-10
    # A&D about 12 x mean, ESRD about 5.35 x mean (docs/methodology.md §4)
    mean27 = np.array([14_400 * 1.05, 110_000 * 1.04, 55_000 * 1.05])
    np.testing.assert_allclose(caps / mean27, [11.83, 5.36, 6.27], atol=0.01)
    # a single cap is still available, and the kernel gets one cap per population
    one = cfg_of(**{"policy.preset": "mssp_enhanced", "policy.stop_loss.truncation_percentile": None,
                    "policy.stop_loss.truncation_cap": 4e5})
    np.testing.assert_array_equal(truncation_caps(one), [4e5] * 3)
    np.testing.assert_array_equal(cohort_model(cfg).kernel.trunc_cap, caps)
    with pytest.raises(ConfigError, match="not both"):
        cfg_of(**{"policy.preset": "mssp_enhanced", "policy.stop_loss.truncation_cap": 4e5})


@pytest.mark.parametrize("h_to_r, expected", [
    (0.97, 0.35 * (1200 / 0.97 - 1200)),      # below its region: +35% of the gap = 12.99 PBPM (cap 60)
    (0.80, 0.05 * 1200),                      # +35% of 300 = 105 -> capped at 5% of national = 60
    (1.10, 0.15 * (1200 / 1.10 - 1200)),      # above its region: 15% of -109.09 = -16.36 (limit -18)
    (1.25, -0.015 * 1200),                    # 15% of -240 = -36 -> limited to -1.5% of national = -18
])
def test_mssp_regional_adjustment_by_hand(h_to_r, expected):
    cfg = cfg_of(**{"policy.preset": "mssp_enhanced", "aco.historical_to_regional": h_to_r})
    adj = historical_adjustment(cfg, track_policy(cfg, "enhanced"))
    assert abs(adj[0] - expected) < 1e-9
    # LEAD floors a negative REA at 0 (rea_share_negative = 0)
    lead = cfg_of(**{"aco.historical_to_regional": h_to_r})
    rea = historical_adjustment(lead, track_policy(lead, "global"))[0]
    assert rea == (min(0.5 * (1200 / h_to_r - 1200), 60.0) if h_to_r < 1 else 0.0)


def test_reach_rta_is_measured_on_national_trend():
    cfg = cfg_of(**{"policy.preset": "reach_py2026", "trend.national_sd": 0.0, "quality.sd": 0.0})
    z = np.zeros((1, 10, 3))
    nat = z + 0.07                                     # national 2 pp above the 5% forecast
    reg = z + 0.03                                     # the region 2 pp below it
    pros = np.tile(cfg.trend.national_mean.ordered(), (10, 1))
    parts = benchmark_pbpm(cfg, "global", nat, reg, pros, np.ones((1, 10, 3)), np.ones((1, 10)))
    p_cum = np.cumprod(1 + pros, axis=0)
    expected = reach_rta_update(p_cum, np.cumprod(1 + nat[0], axis=0), 0.01, [0.0, 0.04, 0.08], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(parts.blended_update[0], expected, rtol=1e-14)
    # PY2027 A&D by hand: delta = 1.07 / 1.05 - 1 = 1.905% > 1%: the ACO gets the whole adjustment
    assert abs(parts.blended_update[0, 0, 0] - 1.07) < 1e-14
    two_way = cfg_of(**{"policy.preset": "reach_py2026", "policy.benchmark.rta_reference": "two_way"})
    tw = benchmark_pbpm(two_way, "global", nat, reg, pros, np.ones((1, 10, 3)), np.ones((1, 10)))
    # on the two-way trend the region's shortfall hides the national excess: TW = 0.25 x 1.07 + 0.75 x 1.03
    # = 1.04 is within 1% of 1.05, so no adjustment at all
    assert abs(tw.blended_update[0, 0, 0] - 1.05) < 1e-14


def test_reach_blend_is_60_40():
    cfg = cfg_of(**{"policy.preset": "reach_py2026"})
    assert cfg.policy.benchmark.convergence == [0.4]


# ------------------------------------------------------------------------------------------------------------
# 5. equilibrium mix, guarantee, PCC cash
# ------------------------------------------------------------------------------------------------------------
def test_entrant_mix_is_solved_so_the_equilibrium_is_the_configured_mix():
    m = cohort_model(cfg_of())
    np.testing.assert_allclose(m.equilibrium_mix, [0.95, 0.01, 0.04], atol=1e-9)
    assert np.all(m.entrant_mix >= 0) and abs(m.entrant_mix.sum() - 1) < 1e-12
    # High Needs entrants are fewer than 4%: transitions from A&D supply the rest
    assert m.entrant_mix[2] < 0.04 and m.entrant_mix[0] > 0.95
    np.testing.assert_allclose(m.kernel.mix_cum, [m.entrant_mix[0], m.entrant_mix[0] + m.entrant_mix[1]])
    with pytest.warns(LeadsimWarning, match="not an equilibrium"):
        bad = cohort_model(leadsim.load_config(overrides={"population.aged_disabled.high_needs_rate": 0.02}))
    assert bad.entrant_mix[2] == 0.0 and bad.equilibrium_mix[2] > 0.05


def test_financial_guarantee_is_recomputed_each_year():
    cfg = cfg_of()
    fg = financial_guarantee_by_year(cfg)
    base = 10_000 * (0.95 * 14_400 + 0.01 * 110_000 + 0.04 * 55_000)      # $169.8M
    assert abs(fg[0] - 0.04 * base) < 1e-6                                # $6.792M, as before
    by_hand = 0.04 * 10_000 * (0.95 * 14_400 * 1.05**9 + 0.01 * 110_000 * 1.04**9 + 0.04 * 55_000 * 1.05**9)
    assert abs(fg[9] - by_hand) < 1e-6                                   # PY2036: about 55% higher
    grown = financial_guarantee_by_year(cfg_of(**{"aco.growth": 0.1}))
    np.testing.assert_allclose(grown / fg, 1.1 ** np.arange(10), rtol=1e-14)


def test_enhanced_pcc_is_cash_recouped_at_settlement():
    ds = leadsim.simulate(small_config(), progress=False)
    np.testing.assert_allclose(ds["pcc_advance"].values, 0.03836 * ds["benchmark"].values, rtol=1e-15)
    np.testing.assert_array_equal(ds["cash_settlement"].values,
                                  ds["net_settlement"].values - ds["pcc_advance"].values)
    np.testing.assert_allclose(ds["financial_guarantee_by_year"].values, financial_guarantee_by_year(
        small_config()), rtol=0)
    # cash owed in a loss year includes the recoupment, so P(beyond guarantee) can only rise vs accrual
    s = leadsim.summarize(ds)
    acc = leadsim.summarize(ds.drop_vars(["cash_settlement"]))
    assert np.all(s.p_beyond_guarantee.values >= acc.p_beyond_guarantee.values)


def test_realised_stop_loss_charge_is_bit_identical_across_chunk_sizes():
    runs = [leadsim.simulate(small_config(**{"policy.stop_loss.enabled": True, "simulation.draws": 13,
                                             "simulation.chunk_draws": c}), progress=False) for c in (13, 4, 1)]
    for other in runs[1:]:
        for name in ("stop_loss_charge", "net_settlement", "cash_settlement"):
            np.testing.assert_array_equal(runs[0][name].values, other[name].values, err_msg=name)
