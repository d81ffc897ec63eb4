"""Model vs public facts (``docs/calibration.md`` §7): statistical checks of the default calibration.

Tolerances combine the Monte Carlo standard error (3 SE) with the precision of the public figure (its published
range, or the stated rounding). Slow: about four minutes on two cores (``pytest -m slow``).
"""

from __future__ import annotations

import numpy as np
import pytest

from leadsim.testing import calibration as cal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dispersion():
    return cal.aco_dispersion(1000)


def test_savings_rate_dispersion_is_bounded(dispersion):
    sd, se = dispersion["sd"], dispersion["sd_se"]
    # the bar: PY2036 no more than 1.5 x PY2029 and at most 8%
    assert sd[-1] <= 1.5 * sd[2]
    assert sd[-1] <= 0.08
    # MSSP PUFs: cross-ACO SD of the gross savings rate 4.2-5.6% in every year; from PY2029 on (the model
    # starts at l = 0 in the base year, as an ACO's first agreement does) every year is inside that range
    assert np.all(sd[2:] > 0.042 - 3 * se[2:]) and np.all(sd[2:] < 0.056 + 3 * se[2:]), sd
    # no growth without bound: the last five years move by less than 1 pp
    assert sd[-1] - sd[5] < 0.01


def test_savings_rate_persistence_matches_mssp(dispersion):
    lag, se = dispersion["lag_corr"], dispersion["lag_corr_se"]
    assert 0.51 - 3 * se[1] < lag[1] < 0.77 + 3 * se[1]       # published lag-1 range
    # lag-2 and lag-3 medians 0.49 and 0.38; the median over ACOs is itself uncertain by about 0.1
    assert abs(lag[2] - 0.49) < 0.10 + 3 * se[2]
    assert abs(lag[3] - 0.38) < 0.10 + 3 * se[3]
    assert lag[1] > lag[2] > lag[3]


def test_stop_loss_after_the_fact_is_no_hedge_against_trend():
    after = cal.stop_loss_hedge(1000, basis="realised")
    before = cal.stop_loss_hedge(1000, basis="expected")
    # the bar: within 5% of each other (at this seed), and consistent with no hedge at 3 SE
    assert abs(after["ratio"] - 1.0) < 0.05
    assert abs(after["ratio"] - 1.0) < 3 * after["ratio_se"]
    # the ex-ante basis pays out far more in high-trend draws: a hedge of several standard errors
    assert before["ratio"] > 1.0 + 6 * before["ratio_se"]


def test_mssp_truncation_removes_the_documented_share():
    t = cal.mssp_truncation(200)
    # about 1% of A&D beneficiary-years (+-0.3 pp: the panel of one draw and the decedent uplift) and
    # 3-5% of A&D spending
    assert 0.03 < t["spend_share"][0] < 0.05
    assert abs(t["years_share"][0] - 0.01) < 0.003
    np.testing.assert_allclose(t["cap_to_mean"][:2], [12.0, 5.35], rtol=0.02)


def test_professional_rate_with_noise_off_is_the_withhold():
    p = cal.professional_noise_off(400)
    assert abs(p["expected"] + 0.0045) < 1e-12
    assert abs(p["mean"] - p["expected"]) < 3 * p["se"], p


def test_beneficiary_level_facts():
    f = cal.population_facts()
    # concentration of A&D spending (Wallis et al. 2021; CBO/KFF): top 1% 15-20%, 5% 40-45%, 10% 55-60%
    assert 0.15 < f["top1"] < 0.20 and 0.40 < f["top5"] < 0.45 and 0.55 < f["top10"] < 0.60
    # decedents (KFF, 2014): about 3.8 x survivors' spending per person, 13.5% of spending
    assert abs(f["decedent_ratio"] - 3.8) < 0.3
    assert abs(f["decedent_share"] - 0.135) < 0.015
    # persistence of the top decile: order of magnitude 40-50%
    assert 0.35 < f["persist"] < 0.60
    # p99 / mean: A&D about 12 (OACT thresholds; full-year members of the ACO cohort run a little lower)
    assert 10.0 < f["p99_to_mean"][0] < 13.0
    assert 4.0 < f["p99_to_mean"][1] < 6.0


def test_beneficiary_noise_is_the_size_mssp_minimum_savings_rates_allow_for():
    m = cal.msr_comparison((5_000, 10_000, 20_000), draws=1000)
    for n, v in m.items():
        # the MSR table (2011 data, normal approximation, rounded to 0.1 pp) against the model's 90% half-width:
        # within 30% where the table is not floored at 2%
        assert abs(v["half_width"] / v["msr"] - 1.0) < 0.30 + 3 * v["se"] / v["msr"], (n, v)
    # and it falls with size roughly as 1 / sqrt(n)
    assert abs(m[5_000]["half_width"] / m[20_000]["half_width"] - 2.0) < 0.3
